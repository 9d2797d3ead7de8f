/**
 * A fake Cohere API v2 speaking the real wire format (shapes from Cohere's API reference, its streaming guide
 * and the generated `cohere` SDK types): `POST /v2/chat` (JSON, or SSE with `event: <type>` and
 * `data: {"type": <type>, …}` when `stream: true`) and `POST /v2/embed`, with `Authorization: Bearer` auth,
 * `{"message": …}` error bodies (most with an `id`) and the request checks a translating adapter can fail:
 * unknown fields, message shapes, value ranges, the embed `input_type`.
 *
 * Scripted by the text of the last user message (chat) or of the texts (embed):
 * - the conversation ends with a tool result            → "The weather in Paris is sunny."
 * - tools present and the text contains "weather"      → a tool plan, then one `get_weather` call `{"city":"Paris"}`
 * - `fail-400` / `fail-429` / `fail-500` / `fail-503`  → that status with Cohere's body (Cohere sends no retry header)
 * - `finish-length`                                     → the reply cut at max_tokens (3 when none is given), MAX_TOKENS
 * - `midstream-error` when streaming                   → a few content deltas, then `message-end` with finish reason
 *   ERROR and `delta.error`
 * - anything else                                       → FAKE_REPLY
 * `max_tokens` and `stop_sequences` are honoured (one token per word-sized piece).
 */

export const FAKE_REPLY = 'Hello from fake Cohere! 你好 👋'
export const FAKE_TOOL_RESULT_REPLY = 'The weather in Paris is sunny.'
export const FAKE_TOOL_INPUT = { city: 'Paris' }
export const FAKE_TOOL_PLAN = 'I will look up the weather in Paris.'
export const FAKE_API_KEY = 'co-test-key'
/** Tokens of Cohere's own prompt template: counted in `usage.tokens`, not billed. */
export const TEMPLATE_TOKENS = 62

export interface FakeCohereOptions {
  /** The one key accepted, as `Authorization: Bearer`. Default FAKE_API_KEY. */
  apiKey?: string
  /** Write streams in pieces of this many bytes (splitting multi-byte characters) instead of one write per event. */
  streamChunkBytes?: number
}

export interface RecordedRequest {
  method: string
  path: string
  headers: Record<string, string>
  body: any
}

export interface FakeCohere {
  /** The provider's `base_url` (Cohere's is https://api.cohere.com). */
  url: string
  requests: RecordedRequest[]
  /** One entry per successful generation: `usage.billed_units` as reported, what Cohere charges (embed: billed input tokens, completion 0). */
  usageLog: { prompt_tokens: number; completion_tokens: number }[]
  stop(): void
}

const CHAT_MODELS = new Set(['command-a-03-2025', 'command-a-vision-07-2025', 'command-r-plus-08-2024', 'command-r-08-2024', 'command-r7b-12-2024'])
const EMBED_MODELS = new Set(['embed-v4.0', 'embed-english-v3.0', 'embed-multilingual-v3.0'])
const CHAT_FIELDS = new Set([
  'model', 'messages', 'stream', 'tools', 'strict_tools', 'documents', 'citation_options', 'response_format', 'safety_mode', 'max_tokens',
  'stop_sequences', 'temperature', 'seed', 'frequency_penalty', 'presence_penalty', 'k', 'p', 'logprobs', 'tool_choice', 'thinking', 'priority',
])
const EMBED_FIELDS = new Set(['model', 'texts', 'images', 'inputs', 'input_type', 'embedding_types', 'output_dimension', 'max_tokens', 'truncate', 'priority'])
const INPUT_TYPES = new Set(['search_document', 'search_query', 'classification', 'clustering', 'image'])

const encoder = new TextEncoder()
const uuid = () => crypto.randomUUID()
const LOWER = 'abcdefghijklmnopqrstuvwxyz0123456789'
const toolCallId = () => `get_weather_${Array.from({ length: 12 }, () => LOWER[Math.floor(Math.random() * LOWER.length)]).join('')}`

interface Reply {
  /** Text pieces (content deltas), or tool-plan pieces for a tool call. */
  pieces: string[]
  toolCall: { id: string; fragments: string[] } | null
  finish: 'COMPLETE' | 'MAX_TOKENS' | 'STOP_SEQUENCE' | 'TOOL_CALL'
}

export async function startFakeCohere(options: FakeCohereOptions = {}): Promise<FakeCohere> {
  const apiKey = options.apiKey ?? FAKE_API_KEY
  const requests: RecordedRequest[] = []
  const usageLog: FakeCohere['usageLog'] = []

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const path = new URL(req.url).pathname
      const text = await req.text()
      let body: any = null
      let parsed = true
      try {
        body = text ? JSON.parse(text) : null
      } catch {
        parsed = false
      }
      requests.push({ method: req.method, path, headers: Object.fromEntries(req.headers), body })

      if (req.method !== 'POST' || (path !== '/v2/chat' && path !== '/v2/embed')) return error(404, `Not Found: ${req.method} ${path}`)
      const auth = req.headers.get('authorization')
      if (!auth) return error(401, 'no api key supplied')
      if (auth.match(/^Bearer\s+(.+)$/i)?.[1] !== apiKey) return error(401, 'invalid api token')
      if (!parsed || body === null || typeof body !== 'object' || Array.isArray(body)) return error(400, 'invalid request: the request body must be a valid JSON object.')
      return path === '/v2/chat' ? chat(body) : embed(body)
    },
  })

  function chat(body: any): Response {
    const invalid = validateChat(body)
    if (invalid) return error(400, invalid)
    if (!CHAT_MODELS.has(body.model)) {
      return EMBED_MODELS.has(body.model)
        ? error(400, `invalid request: model '${body.model}' is not supported by the chat API.`)
        : error(404, `model '${body.model}' not found, make sure the correct model ID was used and that you have access to the model.`)
    }
    const messages: any[] = body.messages
    const trigger = textOf([...messages].reverse().find((m) => m.role === 'user')?.content)
    const fault = scriptedFault(trigger)
    if (fault) return fault

    const last = messages.at(-1)
    const wantsTool = last.role === 'user' && Array.isArray(body.tools) && body.tools.length > 0 && body.tool_choice !== 'NONE' && /weather/i.test(trigger)
    const reply = wantsTool ? toolReply() : textReply(last.role === 'tool' ? FAKE_TOOL_RESULT_REPLY : FAKE_REPLY, trigger, body)
    const billedInput = Math.max(1, Math.ceil(promptChars(body) / 4))
    const output = reply.pieces.length + (reply.toolCall ? reply.toolCall.fragments.length : 0)
    const usage = { billed_units: { input_tokens: billedInput, output_tokens: output }, tokens: { input_tokens: billedInput + TEMPLATE_TOKENS, output_tokens: output } }
    const id = uuid()

    if (body.stream !== true) {
      const message: Record<string, unknown> = { role: 'assistant' }
      if (reply.toolCall) {
        message.tool_plan = reply.pieces.join('')
        message.tool_calls = [{ id: reply.toolCall.id, type: 'function', function: { name: 'get_weather', arguments: reply.toolCall.fragments.join('') } }]
      } else {
        message.content = [{ type: 'text', text: reply.pieces.join('') }]
      }
      usageLog.push({ prompt_tokens: usage.billed_units.input_tokens, completion_tokens: usage.billed_units.output_tokens })
      return json(200, { id, message, finish_reason: reply.finish, usage })
    }

    const events = [sse('message-start', { id, type: 'message-start', delta: { message: { role: 'assistant', content: [], tool_plan: '', tool_calls: [], citations: [] } } })]
    if (reply.toolCall) {
      for (const piece of reply.pieces) events.push(sse('tool-plan-delta', { type: 'tool-plan-delta', delta: { message: { tool_plan: piece } } }))
      const call = reply.toolCall
      events.push(
        sse('tool-call-start', {
          type: 'tool-call-start',
          index: 0,
          delta: { message: { tool_calls: { id: call.id, type: 'function', function: { name: 'get_weather', arguments: '' } } } },
        }),
      )
      for (const fragment of call.fragments) {
        events.push(sse('tool-call-delta', { type: 'tool-call-delta', index: 0, delta: { message: { tool_calls: { function: { arguments: fragment } } } } }))
      }
      events.push(sse('tool-call-end', { type: 'tool-call-end', index: 0 }))
    } else {
      events.push(sse('content-start', { type: 'content-start', index: 0, delta: { message: { content: { type: 'text', text: '' } } } }))
      for (const [n, piece] of reply.pieces.entries()) {
        if (trigger.includes('midstream-error') && n === 2) {
          events.push(sse('message-end', { type: 'message-end', delta: { error: 'internal server error, this has been reported to our developers', finish_reason: 'ERROR' } }))
          return stream(events)
        }
        events.push(sse('content-delta', { type: 'content-delta', index: 0, delta: { message: { content: { text: piece } } } }))
      }
      events.push(sse('content-end', { type: 'content-end', index: 0 }))
    }
    usageLog.push({ prompt_tokens: usage.billed_units.input_tokens, completion_tokens: usage.billed_units.output_tokens })
    events.push(sse('message-end', { type: 'message-end', delta: { finish_reason: reply.finish, usage } }))
    return stream(events)
  }

  function embed(body: any): Response {
    for (const field of Object.keys(body)) if (!EMBED_FIELDS.has(field)) return error(400, `invalid request: unknown field: parameter ${field} is not a valid field`)
    if (typeof body.model !== 'string') return error(400, 'a model parameter is required for this endpoint.')
    if (!EMBED_MODELS.has(body.model)) {
      return CHAT_MODELS.has(body.model)
        ? error(400, `invalid request: model '${body.model}' is not supported by the embed API.`)
        : error(404, `model '${body.model}' not found, make sure the correct model ID was used and that you have access to the model.`)
    }
    if (!INPUT_TYPES.has(body.input_type)) return error(400, 'invalid request: valid input_type must be provided with the provided model')
    if (!Array.isArray(body.texts) || body.texts.length === 0 || !body.texts.every((t: unknown) => typeof t === 'string')) {
      return error(400, 'invalid request: texts must be a non-empty list of strings.')
    }
    if (body.texts.length > 96) return error(400, `invalid request: texts must contain at most 96 items - received ${body.texts.length}.`)
    const dimensions = body.output_dimension ?? 16
    if (body.output_dimension !== undefined && (body.model !== 'embed-v4.0' || ![256, 512, 1024, 1536].includes(body.output_dimension))) {
      return error(400, 'invalid request: output_dimension must be one of 256, 512, 1024, 1536 and is only supported by embed-v4.0.')
    }
    const fault = scriptedFault(body.texts.join('\n'))
    if (fault) return fault
    const types: string[] = Array.isArray(body.embedding_types) ? body.embedding_types : ['float']
    const embeddings: Record<string, unknown> = {}
    if (types.includes('float')) embeddings.float = body.texts.map((t: string) => fakeEmbedding(t, dimensions))
    const tokens = body.texts.reduce((sum: number, t: string) => sum + Math.max(1, Math.ceil(t.length / 4)), 0)
    usageLog.push({ prompt_tokens: tokens, completion_tokens: 0 })
    return json(200, { id: uuid(), embeddings, texts: body.texts, meta: { api_version: { version: '2' }, billed_units: { input_tokens: tokens } }, response_type: 'embeddings_by_type' })
  }

  function stream(events: string[]): Response {
    return new Response(byteStream(events, options.streamChunkBytes), {
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
    })
  }

  return { url: `http://127.0.0.1:${server.port}`, requests, usageLog, stop: () => server.stop(true) }
}

/** The checks of the real API a translating adapter can trip. Returns the error message, or null. */
function validateChat(body: any): string | null {
  for (const field of Object.keys(body)) if (!CHAT_FIELDS.has(field)) return `invalid request: unknown field: parameter ${field} is not a valid field`
  if (typeof body.model !== 'string') return 'a model parameter is required for this endpoint.'
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'invalid request: messages must not be empty.'
  const callIds = new Set<string>()
  for (const [i, m] of body.messages.entries()) {
    switch (m?.role) {
      case 'system':
        if (!isText(m.content, false)) return `invalid request: messages[${i}]: system content must be a string or a list of text content blocks.`
        break
      case 'user':
        if (!isText(m.content, true)) return `invalid request: messages[${i}]: user content must be a string or a list of text and image_url content blocks.`
        if (textOf(m.content) === '' && !(Array.isArray(m.content) && m.content.length > 0)) return 'message must not be empty in a turn'
        break
      case 'assistant': {
        const calls = m.tool_calls
        if (calls !== undefined) {
          if (!Array.isArray(calls)) return `invalid request: messages[${i}].tool_calls must be a list.`
          for (const c of calls) {
            if (typeof c?.id !== 'string' || c.type !== 'function' || typeof c.function?.name !== 'string' || typeof c.function?.arguments !== 'string') {
              return `invalid request: messages[${i}].tool_calls: each tool call needs an id, type "function" and a function with a name and string arguments.`
            }
            callIds.add(c.id)
          }
        }
        if ((!Array.isArray(calls) || calls.length === 0) && (m.content === undefined || textOf(m.content) === '')) return 'message must not be empty in a turn'
        if (m.content !== undefined && !isText(m.content, false)) return `invalid request: messages[${i}]: assistant content must be a string or a list of text content blocks.`
        if (m.tool_plan !== undefined && typeof m.tool_plan !== 'string') return `invalid request: messages[${i}].tool_plan must be a string.`
        break
      }
      case 'tool':
        if (typeof m.tool_call_id !== 'string' || !callIds.has(m.tool_call_id)) {
          return `invalid request: messages[${i}]: tool_call_id '${m.tool_call_id}' does not match any tool call of a previous assistant message.`
        }
        if (typeof m.content !== 'string' && !(Array.isArray(m.content) && m.content.every((b: any) => (b?.type === 'text' && typeof b.text === 'string') || (b?.type === 'document' && b.document?.data !== undefined)))) {
          return `invalid request: messages[${i}]: tool content must be a string or a list of text and document content blocks.`
        }
        break
      default:
        return `invalid request: messages[${i}].role must be one of user, assistant, system, tool.`
    }
  }
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) return 'invalid request: tools must be a list.'
    for (const t of body.tools) if (t?.type !== 'function' || typeof t.function?.name !== 'string') return 'invalid request: each tool must be of type "function" with a function name.'
  }
  if (body.tool_choice !== undefined && body.tool_choice !== 'REQUIRED' && body.tool_choice !== 'NONE') return 'invalid request: tool_choice must be one of REQUIRED, NONE.'
  if (body.max_tokens !== undefined && (!Number.isInteger(body.max_tokens) || body.max_tokens < 1)) return 'invalid request: max_tokens must be a positive integer.'
  if (body.temperature !== undefined && !(body.temperature >= 0 && body.temperature <= 1)) return 'invalid request: temperature must be between 0 and 1.0 inclusive.'
  if (body.p !== undefined && !(body.p >= 0.01 && body.p <= 0.99)) return 'invalid request: p must be between 0.01 and 0.99 inclusive.'
  for (const name of ['frequency_penalty', 'presence_penalty']) {
    if (body[name] !== undefined && !(body[name] >= 0 && body[name] <= 1)) return `invalid request: ${name} must be between 0 and 1.0 inclusive.`
  }
  if (body.stop_sequences !== undefined && (!Array.isArray(body.stop_sequences) || body.stop_sequences.length > 5)) return 'invalid request: stop_sequences must be a list of at most 5 strings.'
  if (body.response_format !== undefined && !['text', 'json_object'].includes(body.response_format?.type)) return 'invalid request: response_format.type must be one of text, json_object.'
  return null
}

/** Text content: a string or a list of text blocks (and image_url blocks where images are allowed). */
function isText(content: unknown, images: boolean): boolean {
  if (typeof content === 'string') return true
  if (!Array.isArray(content)) return false
  return content.every((b: any) => (b?.type === 'text' && typeof b.text === 'string') || (images && b?.type === 'image_url' && typeof b.image_url?.url === 'string'))
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) return content.map((b: any) => (b?.type === 'text' && typeof b.text === 'string' ? b.text : '')).join('')
  return ''
}

function promptChars(body: any): number {
  let chars = 0
  for (const m of body.messages) {
    chars += textOf(m.content).length + (typeof m.tool_plan === 'string' ? m.tool_plan.length : 0)
    for (const c of m.tool_calls ?? []) chars += c.function.arguments.length
  }
  return chars
}

function scriptedFault(trigger: string): Response | null {
  if (trigger.includes('fail-400')) return error(400, 'invalid request: scripted failure (fail-400).')
  if (trigger.includes('fail-429')) return error(429, 'You are past the per minute request limit, please wait and try again later.')
  if (trigger.includes('fail-500')) return error(500, `internal server error, this has been reported to our developers. id ${uuid()}`)
  if (trigger.includes('fail-503')) return error(503, 'service unavailable: the model is overloaded, please try again later.')
  return null
}

/** Word-sized pieces (leading space kept, as tokenizers do); runs of non-ASCII characters get pieces of their own. */
function splitPieces(text: string): string[] {
  return text.match(/\s*(?:[!-~]+|[^\s\x00-\x7f]+)|\s+$/gu) ?? []
}

function textReply(full: string, trigger: string, body: any): Reply {
  let text = full
  let finish: Reply['finish'] = 'COMPLETE'
  for (const seq of Array.isArray(body.stop_sequences) ? body.stop_sequences : []) {
    const at = text.indexOf(seq)
    if (at !== -1) {
      text = text.slice(0, at)
      finish = 'STOP_SEQUENCE'
    }
  }
  let pieces = splitPieces(text)
  const limit = typeof body.max_tokens === 'number' ? body.max_tokens : trigger.includes('finish-length') ? 3 : Infinity
  if (pieces.length > limit) {
    pieces = pieces.slice(0, limit)
    finish = 'MAX_TOKENS'
  }
  return { pieces, toolCall: null, finish }
}

function toolReply(): Reply {
  // Cohere streams arguments pretty-printed, in fragments that are not valid JSON on their own.
  return { pieces: splitPieces(FAKE_TOOL_PLAN), toolCall: { id: toolCallId(), fragments: ['{\n    "', 'city', '": "', 'Paris', '"\n}'] }, finish: 'TOOL_CALL' }
}

const sse = (type: string, payload: unknown) => `event: ${type}\ndata: ${JSON.stringify(payload)}\n\n`

function json(status: number, value: unknown): Response {
  return new Response(JSON.stringify(value), { status, headers: { 'content-type': 'application/json' } })
}

const error = (status: number, message: string) => json(status, { id: uuid(), message })

/** A deterministic vector from the text. */
function fakeEmbedding(text: string, dimensions: number): number[] {
  let seed = 2166136261
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 16777619) >>> 0
  return Array.from({ length: dimensions }, (_, i) => {
    seed = Math.imul(seed ^ (i + 1), 2654435761) >>> 0
    return Math.round(((seed / 2 ** 32) * 2 - 1) * 1e5) / 1e5
  })
}

/** One write per event, or fixed-size byte pieces when asked (to exercise decoders). */
function byteStream(events: string[], chunkBytes?: number): ReadableStream<Uint8Array> {
  const parts: Uint8Array[] = []
  if (chunkBytes && chunkBytes > 0) {
    const bytes = encoder.encode(events.join(''))
    for (let i = 0; i < bytes.length; i += chunkBytes) parts.push(bytes.subarray(i, i + chunkBytes))
  } else {
    for (const e of events) parts.push(encoder.encode(e))
  }
  return new ReadableStream({
    async pull(controller) {
      const next = parts.shift()
      if (!next) return controller.close()
      controller.enqueue(next)
      await Bun.sleep(1) // separate network writes, as a real upstream produces them
    },
  })
}
