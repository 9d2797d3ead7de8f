/**
 * A fake Anthropic Messages API that speaks the real wire format (shapes from the API docs and
 * `@anthropic-ai/sdk` types): `POST /v1/messages`, its header and body checks, error envelopes and the exact
 * streaming event sequence. What it answers is scripted by the text of the last user message:
 *
 * - contains a `tool_result` block            → "The weather in Paris is sunny."
 * - "fail-400" / "fail-429" / "fail-500" / "fail-503" → that status with Anthropic's error envelope
 *   (invalid_request_error, rate_limit_error with `retry-after: 3`, api_error, api_error)
 * - "overloaded"                              → 529 overloaded_error
 * - "ratelimit"                               → 429 rate_limit_error with `retry-after: 3`
 * - "weather" and the request has tools       → a `get_weather` tool_use block, stop_reason tool_use
 * - "midstream-error" when streaming          → a few text deltas, then `event: error` (overloaded_error)
 * - "stream-die" when streaming               → the first events, then the connection is reset (no error event)
 * - "finish-length"                           → the reply cut to at most 3 pieces, stop_reason max_tokens
 * - "slow-stream:<ms>" when streaming         → 20 text deltas ("1", " 2", …) `<ms>` apart, usage as Anthropic
 *                                               sends it: the input at message_start, the output at message_delta
 * - anything else                             → "Hello from fake Anthropic! 你好 👋"
 *
 * `max_tokens` and `stop_sequences` are honoured on text replies (stop_reason max_tokens / stop_sequence).
 *
 * Prompt caching: the prompt up to the last block carrying `cache_control` (system blocks, then message blocks) is
 * the cached prefix; its tokens are `cache_creation_input_tokens` the first time the fake sees that prefix and
 * `cache_read_input_tokens` afterwards, and `input_tokens` is the rest (all ~4 characters a token).
 *
 * `POST /v1/messages/count_tokens` answers `{input_tokens}`: the same count a generation reports as its whole
 * prompt; "fail-500" in the last user message → 500 api_error.
 *
 * `usageLog` gets one entry per successful generation, the counts reported in OpenAI terms (prompt = input +
 * cache read + cache creation tokens, completion = output tokens), pushed before the response or the stream's
 * last event is sent; errors and `midstream-error` streams add none.
 */

export const FAKE_REPLY = 'Hello from fake Anthropic! 你好 👋'
export const FAKE_TOOL_RESULT_REPLY = 'The weather in Paris is sunny.'
export const FAKE_TOOL_INPUT = { city: 'Paris' }

export interface FakeAnthropicOptions {
  /** The one key accepted, via `x-api-key` or `Authorization: Bearer`. Default 'sk-ant-test'. */
  apiKey?: string
  /** Write streams in pieces of this many bytes (splitting multi-byte characters) instead of one write per event. */
  streamChunkBytes?: number
}

export interface RecordedRequest {
  method: string
  path: string
  headers: Record<string, string>
  body: any
  /** The body exactly as it arrived. */
  text: string
}

export interface UsageEntry {
  prompt_tokens: number
  completion_tokens: number
}

export interface FakeAnthropic {
  /** Base URL including `/v1`. */
  url: string
  requests: RecordedRequest[]
  /** One entry per successful generation: the token counts reported. */
  usageLog: UsageEntry[]
  stop(): void
}

type Block = { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> }

interface Reply {
  blocks: Block[]
  /** Stream pieces per block: text deltas or input_json_delta fragments. */
  pieces: string[][]
  stopReason: 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use'
  stopSequence: string | null
  outputTokens: number
}

/** Text deltas of a `slow-stream:<ms>` reply. */
const SLOW_STREAM_PIECES = 20
/** Pieces of a `finish-length` reply. */
const LENGTH_LIMITED_PIECES = 3
const FAIL_TRIGGERS: [string, number, string, string][] = [
  ['fail-400', 400, 'invalid_request_error', 'messages.0.content: scripted failure (fail-400)'],
  ['fail-429', 429, 'rate_limit_error', 'This request would exceed the rate limit for your organization. Please try again later.'],
  ['fail-500', 500, 'api_error', 'Internal server error'],
  ['fail-503', 503, 'api_error', 'Service unavailable'],
]

const encoder = new TextEncoder()
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const randomId = (prefix: string) => prefix + Array.from({ length: 24 }, () => BASE62[Math.floor(Math.random() * 62)]).join('')

export async function startFakeAnthropic(options: FakeAnthropicOptions = {}): Promise<FakeAnthropic> {
  const apiKey = options.apiKey ?? 'sk-ant-test'
  const requests: RecordedRequest[] = []
  const usageLog: UsageEntry[] = []
  const cachedPrefixes = new Set<string>()

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const path = new URL(req.url).pathname
      const text = await req.text()
      let body: any = null
      try {
        body = text ? JSON.parse(text) : null
      } catch {}
      requests.push({ method: req.method, path, headers: Object.fromEntries(req.headers), body, text })

      const counting = path === '/v1/messages/count_tokens'
      if (req.method !== 'POST' || (path !== '/v1/messages' && !counting)) return errorResponse(404, 'not_found_error', 'Not Found')
      const bearer = req.headers.get('authorization')?.match(/^Bearer\s+(.+)$/i)?.[1]
      const key = req.headers.get('x-api-key') ?? bearer
      if (!key) return errorResponse(401, 'authentication_error', 'x-api-key header is required')
      if (key !== apiKey) return errorResponse(401, 'authentication_error', 'invalid x-api-key')
      const version = req.headers.get('anthropic-version')
      if (!version) return errorResponse(400, 'invalid_request_error', 'anthropic-version: header is required')
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        return errorResponse(400, 'invalid_request_error', 'There was an issue with the request body: the body must be a JSON object')
      }
      const invalid = validate(counting ? { max_tokens: 1, ...body } : body, version)
      if (invalid) return errorResponse(400, 'invalid_request_error', invalid)

      const last = [...body.messages].reverse().find((m: any) => m.role === 'user')
      const blocks = last ? contentBlocks(last.content) : []
      const lastText = blocks.map((b: any) => (b.type === 'text' ? b.text : '')).join(' ')
      if (counting) {
        if (lastText.includes('fail-500')) return errorResponse(500, 'api_error', 'Internal server error')
        return Response.json({ input_tokens: Math.ceil(countChars(body) / 4) })
      }
      for (const [trigger, status, type, message] of FAIL_TRIGGERS) {
        if (lastText.includes(trigger)) return errorResponse(status, type, message, status === 429 ? { 'retry-after': '3' } : {})
      }
      if (lastText.includes('overloaded')) return errorResponse(529, 'overloaded_error', 'Overloaded')
      if (lastText.includes('ratelimit')) {
        return errorResponse(429, 'rate_limit_error', 'This request would exceed the rate limit for your organization. Please try again later.', { 'retry-after': '3' })
      }

      let reply: Reply
      if (blocks.some((b: any) => b.type === 'tool_result')) reply = textReply(FAKE_TOOL_RESULT_REPLY, body)
      else if (Array.isArray(body.tools) && body.tools.length > 0 && lastText.includes('weather')) reply = toolReply()
      else reply = textReply(FAKE_REPLY, lastText.includes('finish-length') ? { ...body, max_tokens: Math.min(body.max_tokens, LENGTH_LIMITED_PIECES) } : body)
      const slow = /slow-stream:(\d+)/.exec(lastText)
      if (slow && body.stream === true) reply = textReply(Array.from({ length: SLOW_STREAM_PIECES }, (_, i) => (i === 0 ? '1' : ` ${i + 1}`)).join(''), body)

      const id = randomId('msg_01')
      const prompt = Math.ceil(countChars(body) / 4)
      const prefix = cachedPrefix(body)
      const cachedTokens = prefix ? Math.min(Math.ceil(prefix.length / 4), prompt) : 0
      const cacheRead = prefix !== null && cachedPrefixes.has(prefix)
      if (prefix !== null) cachedPrefixes.add(prefix)
      const usage = {
        input_tokens: prompt - cachedTokens,
        cache_creation_input_tokens: cacheRead ? 0 : cachedTokens,
        cache_read_input_tokens: cacheRead ? cachedTokens : 0,
        output_tokens: reply.outputTokens,
        service_tier: 'standard',
      }
      const headers = { 'request-id': randomId('req_01') }
      const logUsage = () =>
        void usageLog.push({ prompt_tokens: usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens, completion_tokens: usage.output_tokens })
      if (body.stream !== true) {
        logUsage()
        return Response.json(
          { id, type: 'message', role: 'assistant', model: body.model, content: reply.blocks, stop_reason: reply.stopReason, stop_sequence: reply.stopSequence, usage },
          { headers },
        )
      }
      const failMidway = lastText.includes('midstream-error')
      const events = streamEvents(id, body.model, usage, reply, failMidway)
      // A slow stream is one write per event, whatever the byte pieces asked (they would each wait `<ms>`).
      const dies = lastText.includes('stream-die')
      return new Response(byteStream(dies ? events.slice(0, 4) : events, slow ? undefined : options.streamChunkBytes, failMidway || dies ? undefined : logUsage, slow ? Number(slow[1]) : 1, dies), {
        headers: { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
      })
    },
  })

  return { url: `http://127.0.0.1:${server.port}/v1`, requests, usageLog, stop: () => server.stop(true) }
}

function errorResponse(status: number, type: string, message: string, extraHeaders: Record<string, string> = {}): Response {
  const requestId = randomId('req_01')
  return Response.json({ type: 'error', error: { type, message }, request_id: requestId }, { status, headers: { 'request-id': requestId, ...extraHeaders } })
}

const contentBlocks = (content: unknown): any[] => (typeof content === 'string' ? [{ type: 'text', text: content }] : Array.isArray(content) ? content : [])

const BLOCK_TYPES = new Set(['text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking'])
/** What a tool_result's content list may hold. */
const TOOL_RESULT_BLOCK_TYPES = new Set(['text', 'image', 'document', 'search_result'])

/** The checks of the real API that a translating adapter can get wrong. Returns the error message, or null. */
function validate(body: any, version: string): string | null {
  if (typeof body.model !== 'string') return 'model: Field required'
  if (body.max_tokens === undefined) return 'max_tokens: Field required'
  if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) return 'max_tokens: Input should be a valid integer greater than or equal to 1'
  if (!Array.isArray(body.messages)) return 'messages: Field required'
  if (body.messages.length === 0) return 'messages: at least one message is required'
  // API version 2026-10-21 removed the sampling parameters.
  if (version >= '2026-10-21') for (const field of ['temperature', 'top_p', 'top_k']) if (field in body) return `${field}: Extra inputs are not permitted`
  if (body.system !== undefined && typeof body.system !== 'string' && !Array.isArray(body.system)) return 'system: Input should be a valid string or list'
  for (const [i, m] of body.messages.entries()) {
    if (m?.role === 'system') {
      return 'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.'
    }
    if (m?.role !== 'user' && m?.role !== 'assistant') return `messages.${i}.role: Input should be 'user' or 'assistant'`
    if (typeof m.content !== 'string' && !Array.isArray(m.content)) return `messages.${i}.content: Input should be a valid string or list`
    if (m.content.length === 0 && !(m.role === 'assistant' && i === body.messages.length - 1)) {
      return `messages.${i}: all messages must have non-empty content except for the optional final assistant message`
    }
    if (typeof m.content === 'string') continue
    for (const [j, b] of m.content.entries()) {
      if (!BLOCK_TYPES.has(b?.type)) return `messages.${i}.content.${j}: Input tag '${b?.type}' found using 'type' does not match any of the expected tags`
      if (b.type === 'text' && !b.text) return 'messages: text content blocks must be non-empty'
      if (b.type === 'tool_use' && m.role !== 'assistant') return `messages.${i}.content.${j}: tool_use blocks are only allowed in assistant messages`
      if (b.type === 'tool_result' && m.role !== 'user') return `messages.${i}.content.${j}: tool_result blocks are only allowed in user messages`
      if (b.type === 'tool_result' && b.content !== undefined && typeof b.content !== 'string') {
        if (!Array.isArray(b.content)) return `messages.${i}.content.${j}.tool_result.content: Input should be a valid string or list`
        for (const [k, c] of b.content.entries()) {
          if (!TOOL_RESULT_BLOCK_TYPES.has(c?.type)) return `messages.${i}.content.${j}.tool_result.content.${k}: Input tag '${c?.type}' found using 'type' does not match any of the expected tags`
          if (c.type === 'text' && !c.text) return 'messages: text content blocks must be non-empty'
        }
      }
    }
    // Every tool_use must be answered by a tool_result in the very next message, and vice versa.
    const uses = m.content.filter((b: any) => b.type === 'tool_use').map((b: any) => b.id)
    const next = body.messages[i + 1]
    if (uses.length > 0 && next) {
      const answered = new Set(contentBlocks(next.content).filter((b: any) => b.type === 'tool_result').map((b: any) => b.tool_use_id))
      const missing = uses.filter((id: string) => !answered.has(id))
      if (missing.length > 0) {
        return `messages.${i + 1}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${missing.join(', ')}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`
      }
    }
    const previous = body.messages[i - 1]
    const asked = new Set(previous ? contentBlocks(previous.content).filter((b: any) => b.type === 'tool_use').map((b: any) => b.id) : [])
    for (const [j, b] of m.content.entries()) {
      if (b.type === 'tool_result' && !asked.has(b.tool_use_id)) {
        return `messages.${i}.content.${j}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${b.tool_use_id}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`
      }
    }
  }
  return null
}

/** Characters of prompt text (system, text blocks, tool inputs and results): the basis of ~4 chars per token. */
function countChars(body: any): number {
  let chars = typeof body.system === 'string' ? body.system.length : Array.isArray(body.system) ? body.system.reduce((n: number, b: any) => n + String(b?.text ?? '').length, 0) : 0
  for (const m of body.messages) {
    for (const b of contentBlocks(m.content)) {
      if (b.type === 'text') chars += b.text.length
      else if (b.type === 'tool_use') chars += JSON.stringify(b.input).length
      else if (b.type === 'tool_result') chars += typeof b.content === 'string' ? b.content.length : JSON.stringify(b.content ?? '').length
    }
  }
  return chars
}

/** The text of the prompt up to the last block marked `cache_control` (system, then messages), or null without one. */
function cachedPrefix(body: any): string | null {
  const blocks = [...(Array.isArray(body.system) ? body.system : []), ...body.messages.flatMap((m: any) => contentBlocks(m.content))]
  const last = blocks.findLastIndex((b: any) => b?.cache_control)
  if (last === -1) return null
  return blocks
    .slice(0, last + 1)
    .map((b: any) => (b.type === 'text' ? b.text : JSON.stringify(b.input ?? b.content ?? '')))
    .join('')
}

/** Word-sized pieces (leading space kept, as tokenizers do); runs of non-ASCII characters (CJK, emoji) get pieces of their own. */
export function splitPieces(text: string): string[] {
  return text.match(/\s*(?:[!-~]+|[^\s\x00-\x7f]+)|\s+$/gu) ?? []
}

function textReply(full: string, body: any): Reply {
  let text = full
  let stopReason: Reply['stopReason'] = 'end_turn'
  let stopSequence: string | null = null
  for (const seq of Array.isArray(body.stop_sequences) ? body.stop_sequences : []) {
    const at = text.indexOf(seq)
    if (at !== -1) {
      text = text.slice(0, at)
      stopReason = 'stop_sequence'
      stopSequence = seq
    }
  }
  let pieces = splitPieces(text)
  if (pieces.length > body.max_tokens) {
    pieces = pieces.slice(0, body.max_tokens)
    stopReason = 'max_tokens'
    stopSequence = null
  }
  return { blocks: [{ type: 'text', text: pieces.join('') }], pieces: [pieces], stopReason, stopSequence, outputTokens: pieces.length }
}

function toolReply(): Reply {
  const json = JSON.stringify(FAKE_TOOL_INPUT)
  // The real API opens with an empty partial_json, then sends fragments that are not valid JSON on their own.
  const fragments = ['', json.slice(0, 5), json.slice(5, 12), json.slice(12)]
  return {
    blocks: [{ type: 'tool_use', id: randomId('toolu_01'), name: 'get_weather', input: { ...FAKE_TOOL_INPUT } }],
    pieces: [fragments],
    stopReason: 'tool_use',
    stopSequence: null,
    outputTokens: fragments.length + 12,
  }
}

const sse = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`

function streamEvents(id: string, model: string, usage: Record<string, unknown>, reply: Reply, failMidway: boolean): string[] {
  const events = [
    sse('message_start', {
      type: 'message_start',
      message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } },
    }),
  ]
  reply.blocks.forEach((block, index) => {
    const start = block.type === 'text' ? { type: 'text', text: '' } : { ...block, input: {} }
    events.push(sse('content_block_start', { type: 'content_block_start', index, content_block: start }))
    if (index === 0) events.push(sse('ping', { type: 'ping' }))
    for (const [n, piece] of (reply.pieces[index] ?? []).entries()) {
      if (failMidway && n === 2) {
        events.push(sse('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }))
        return
      }
      const delta = block.type === 'text' ? { type: 'text_delta', text: piece } : { type: 'input_json_delta', partial_json: piece }
      events.push(sse('content_block_delta', { type: 'content_block_delta', index, delta }))
    }
    events.push(sse('content_block_stop', { type: 'content_block_stop', index }))
  })
  if (failMidway) return events
  events.push(sse('message_delta', { type: 'message_delta', delta: { stop_reason: reply.stopReason, stop_sequence: reply.stopSequence }, usage: { output_tokens: reply.outputTokens } }))
  events.push(sse('message_stop', { type: 'message_stop' }))
  return events
}

/** One write per event, or fixed-size byte pieces when asked (to exercise decoders). `onLast` runs before the last write. */
/** `reset`: after the last part, the connection is reset (Bun does so for a body stream that errors). */
function byteStream(events: string[], chunkBytes?: number, onLast?: () => void, pauseMs = 1, reset = false): ReadableStream<Uint8Array> {
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
      if (!next) return reset ? controller.error(undefined) : controller.close()
      if (parts.length === 0) onLast?.()
      controller.enqueue(next)
      await Bun.sleep(pauseMs) // separate network writes, as a real upstream produces them
    },
  })
}
