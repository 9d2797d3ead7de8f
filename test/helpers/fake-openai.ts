/**
 * A faithful, deterministic OpenAI-compatible upstream for tests, speaking the real wire format
 * (see shared/reference/protocols.md §1.2–1.5, §1.10): chat completions (JSON and SSE, `n`, tool calls,
 * `stream_options.include_usage`), legacy completions, embeddings (float / base64), models, and the Responses API
 * (`POST /v1/responses`, JSON and its named SSE events with `sequence_number`; it stores nothing, so any
 * `previous_response_id` is a 404 as OpenAI answers an unknown one).
 *
 * Scripted behaviour is driven by the last user message text (chat), the prompt (completions) or the input
 * (embeddings):
 * - `fail-400` / `fail-429` / `fail-500` / `fail-503`: an OpenAI error body with that status (429 with `retry-after: 2`);
 * - `finish-length`: the reply cut to its first 3 pieces (fewer if `max_tokens` says so), finish_reason `length`;
 * - `midstream-error`: (streaming) the role chunk and 2 content chunks, then `data: {"error":…}` and the end of the
 *   body, as OpenAI reports a failure once a stream has started;
 * - `slow-first-byte:<ms>`: waits before sending the response headers;
 * - `stream-stall`: (streaming) the role chunk and 2 content chunks, then nothing until the client goes away;
 * - `stream-die`: (streaming) the role chunk and 2 content chunks, then the connection is reset (no `[DONE]`);
 * - `slow-stream:<ms>`: 20 content chunks with `<ms>` between chunks;
 * - `fail-once-503:<tag>`: the first request carrying that tag gets a 503, later ones succeed;
 * - `truncated-body` / `truncated-tail`: a 200 whose JSON is cut short, before its `usage` / only its closing braces
 *   (a compatible server that failed while writing it).
 * Chat replies: tools + "weather" in the last user message → a `get_weather` tool call; a last message with
 * role `tool` → "The weather in Paris is sunny."; "two cities" as well → two parallel calls (Paris, then Rome), streamed
 * one after the other as OpenAI does, or with "interleaved" their argument fragments alternating between the two
 * (`index` tells them apart, as chat's framing allows); a `response_format` json_schema → a JSON value the schema accepts
 * (`schemaExample`); otherwise `DEFAULT_REPLY`. Responses answer the same way (a `function_call_output` last for
 * the tool result, `text.format` for the schema); `midstream-error` ends their stream with `response.failed`.
 *
 * Image parts cost what gpt-4o bills a 1024x1024 image (the fake does not fetch them): 765 tokens, 85 at `detail: "low"`.
 *
 * `streams` gets one record per SSE response: when each chunk was produced and when the client went away.
 *
 * `usageLog` gets one entry per successful generation (chat, completions, embeddings), exactly the counts the
 * fake reported, pushed before the response or the stream's `[DONE]` is sent; failures and cut streams add none.
 */
export interface FakeOpenAIOptions {
  /** The key the fake expects in `Authorization: Bearer …` (default `sk-upstream-test`), or several. */
  apiKey?: string | string[]
  /**
   * `true` (default): `encoding_format: "base64"` gets base64 float32-LE strings, like OpenAI.
   * `false`: `encoding_format` is ignored and floats always come back, like many compatible servers.
   */
  base64Embeddings?: boolean
  /**
   * Mistral's streams: no `stream_options`, no usage-only chunk; the finish chunk carries `usage` (Mistral's
   * CompletionChunk), whatever the request asked.
   */
  usageOnFinishChunk?: boolean
}

export interface RecordedRequest {
  method: string
  /** Path plus query string, e.g. `/v1/chat/completions`. */
  path: string
  /** Header names lowercased. */
  headers: Record<string, string>
  /** Parsed JSON body; the raw text when it is not JSON; `null` when empty. */
  body: any
  /** The body exactly as it arrived. */
  text: string
}

export interface FakeOpenAI {
  /** Base URL including `/v1`, e.g. `http://127.0.0.1:1234/v1`. */
  url: string
  port: number
  /** Every request received, in order (also the rejected ones). */
  requests: RecordedRequest[]
  /** Streams currently being sent. */
  readonly openStreams: number
  /** Streams the client cancelled (disconnected) before the fake finished them. */
  readonly aborted: number
  /** One record per SSE response, in order of arrival (`performance.now()` times, the test's own clock). */
  streams: StreamRecord[]
  /** Answers every request made with `key` with a 429 and `retry-after: seconds` until the time is up. */
  rateLimitKey(key: string, seconds: number): void
  /** One entry per successful generation, the token counts reported (embeddings: completion_tokens 0). */
  usageLog: UsageEntry[]
  stop(): Promise<void>
}

export interface StreamRecord {
  /** The scripted trigger (last user message, prompt) the stream was made for. */
  trigger: string
  /** When each `data:` line (`[DONE]` and error events included) was handed to the response stream. */
  chunkTimes: number[]
  /** When the client disconnected or cancelled; null while open or when the fake ended the stream itself. */
  cancelledAt: number | null
}

export interface UsageEntry {
  prompt_tokens: number
  completion_tokens: number
}

export const DEFAULT_API_KEY = 'sk-upstream-test'
export const DEFAULT_REPLY = 'Hello from fake OpenAI! 你好，世界 🌍✨'
export const TOOL_RESULT_REPLY = 'The weather in Paris is sunny.'
export const TOOL_CALL_ARGUMENTS = '{"city":"Paris"}'
/** How the tool-call arguments are streamed after the first fragment (`arguments: ""`). */
export const TOOL_CALL_ARGUMENT_FRAGMENTS = ['{"', 'city', '":"', 'Paris', '"}']
/** The second of two parallel calls ("two cities"). */
export const SECOND_CALL_ARGUMENT_FRAGMENTS = ['{"', 'city', '":"', 'Rome', '"}']
export const SYSTEM_FINGERPRINT = 'fp_f33640a400'
export const DEFAULT_EMBEDDING_DIMENSIONS = 8
export const SLOW_STREAM_CHUNKS = 20
/** Pieces of a `finish-length` reply. */
export const LENGTH_LIMITED_PIECES = 3
export const RETRY_AFTER_SECONDS = 2

export const FAKE_MODELS = [
  { id: 'gpt-4o', object: 'model', created: 1715367049, owned_by: 'system' },
  { id: 'gpt-4o-mini', object: 'model', created: 1721172741, owned_by: 'system' },
  { id: 'gpt-3.5-turbo-instruct', object: 'model', created: 1692901427, owned_by: 'system' },
  { id: 'text-embedding-3-small', object: 'model', created: 1705948997, owned_by: 'system' },
]

/**
 * How the fake tokenizes a reply into stream pieces: ASCII words keep their leading space, every other
 * character (punctuation, CJK, emoji — whole grapheme clusters) is its own piece, a space before one is a piece.
 */
export function splitPieces(text: string): string[] {
  const out: string[] = []
  let current = ''
  for (const { segment } of new Intl.Segmenter('en', { granularity: 'grapheme' }).segment(text)) {
    if (/^[A-Za-z0-9']$/.test(segment)) {
      if (!/^ ?[A-Za-z0-9']*$/.test(current)) {
        out.push(current)
        current = ''
      }
      current += segment
    } else if (segment === ' ') {
      if (current) out.push(current)
      current = ' '
    } else {
      if (current) out.push(current)
      out.push(segment)
      current = ''
    }
  }
  if (current) out.push(current)
  return out
}

/** The deterministic unit-length vector the fake returns for `text` (every value exact in float32). */
export function fakeEmbedding(text: string, dimensions = DEFAULT_EMBEDDING_DIMENSIONS): number[] {
  let seed = 0x811c9dc5 // FNV-1a over UTF-16 units
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 0x01000193)
  const raw: number[] = []
  for (let i = 0; i < dimensions; i++) {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0
    let t = seed
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    raw.push((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1)
  }
  const norm = Math.hypot(...raw) || 1
  return raw.map((v) => Math.fround(v / norm))
}

/** `ceil(chars / 4)`, the fake's token count for prompts. */
export const fakeTokens = (text: string) => Math.ceil(text.length / 4)

export async function startFakeOpenAI(options: FakeOpenAIOptions = {}): Promise<FakeOpenAI> {
  const apiKeys = [options.apiKey ?? DEFAULT_API_KEY].flat()
  const limitedKeys = new Map<string, number>()
  const failedOnce = new Set<string>()
  const base64Embeddings = options.base64Embeddings ?? true
  const requests: RecordedRequest[] = []
  const usageLog: UsageEntry[] = []
  const logUsage = (u: { prompt_tokens: number; completion_tokens: number }) => void usageLog.push({ prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens })
  const stallReleases = new Set<() => void>()
  const counters = { open: 0, aborted: 0 }
  const streams: StreamRecord[] = []

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 0,
    async fetch(req) {
      const url = new URL(req.url)
      const headers: Record<string, string> = {}
      req.headers.forEach((value, name) => {
        headers[name.toLowerCase()] = value
      })
      const text = await req.text()
      let body: any = text === '' ? null : text
      let bodyIsJson = false
      if (text !== '') {
        try {
          body = JSON.parse(text)
          bodyIsJson = true
        } catch {}
      }
      requests.push({ method: req.method, path: url.pathname + url.search, headers, body, text })

      const given = /^Bearer\s+(.*)$/i.exec(headers.authorization ?? '')?.[1] ?? ''
      if (!apiKeys.includes(given)) {
        return errorResponse(
          401,
          `Incorrect API key provided: ${maskKey(given)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
          'invalid_request_error',
          null,
          'invalid_api_key',
        )
      }

      const limitedUntil = limitedKeys.get(given) ?? 0
      if (limitedUntil > Date.now()) {
        const seconds = Math.ceil((limitedUntil - Date.now()) / 1000)
        return errorResponse(429, `Rate limit reached for requests. Please try again in ${seconds}s.`, 'requests', null, 'rate_limit_exceeded', {
          'retry-after': String(seconds),
        })
      }

      const route = `${req.method} ${url.pathname.replace(/\/+$/, '')}`
      if (route === 'GET /v1/models') return json(200, { object: 'list', data: FAKE_MODELS })
      if (req.method === 'GET' && url.pathname.startsWith('/v1/models/')) {
        const id = decodeURIComponent(url.pathname.slice('/v1/models/'.length))
        const model = FAKE_MODELS.find((m) => m.id === id)
        if (model) return json(200, model)
        return errorResponse(404, `The model '${id}' does not exist`, 'invalid_request_error', 'model', 'model_not_found')
      }
      const handler =
        route === 'POST /v1/chat/completions'
          ? chatCompletions
          : route === 'POST /v1/completions'
            ? completions
            : route === 'POST /v1/embeddings'
              ? embeddings
              : route === 'POST /v1/responses'
                ? responses
                : null
      if (!handler) return errorResponse(404, `Invalid URL (${req.method} ${url.pathname})`, 'invalid_request_error', null, null)
      if (!bodyIsJson || body === null || typeof body !== 'object' || Array.isArray(body)) {
        return errorResponse(
          400,
          "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
          'invalid_request_error',
          null,
          null,
        )
      }
      if (typeof body.model !== 'string' || body.model === '') {
        return errorResponse(400, 'you must provide a model parameter', 'invalid_request_error', null, null)
      }
      return handler(req, body)
    },
  })

  // ---------------------------------------------------------------------------------------------------------------
  // Endpoints

  async function chatCompletions(req: Request, body: any): Promise<Response> {
    if (!Array.isArray(body.messages)) {
      return errorResponse(400, "Missing required parameter: 'messages'.", 'invalid_request_error', 'messages', 'missing_required_parameter')
    }
    const messages: any[] = body.messages
    const trigger = contentText([...messages].reverse().find((m) => m?.role === 'user')?.content)
    const fault = await scriptedFault(req, trigger, 'messages')
    if (fault) return fault

    const n = positiveInt(body.n, 1)
    const model = datedModel(body.model)
    const id = `chatcmpl-${randomId(29)}`
    const created = Math.floor(Date.now() / 1000)
    const promptTokens = fakeTokens(messages.map((m) => contentText(m?.content)).join('')) + messages.reduce((sum, m) => sum + imageTokens(m?.content), 0)
    const last = messages.at(-1)
    const wantsTool =
      last?.role === 'user' && Array.isArray(body.tools) && body.tools.length > 0 && body.tool_choice !== 'none' && /weather/i.test(trigger)
    const slow = /slow-stream:(\d+)/.exec(trigger)
    const schema = body.response_format?.type === 'json_schema' ? body.response_format.json_schema?.schema : undefined
    const replyText = last?.role === 'tool' ? TOOL_RESULT_REPLY : schema !== undefined ? JSON.stringify(schemaExample(schema)) : DEFAULT_REPLY
    let pieces = slow ? slowStreamPieces() : wantsTool ? TOOL_CALL_ARGUMENT_FRAGMENTS : splitPieces(replyText)
    const truncated = !wantsTool && trigger.includes('finish-length')
    if (truncated) pieces = pieces.slice(0, lengthLimit(body))
    const usage = chatUsage(promptTokens, pieces.length * n)
    const callIds = Array.from({ length: n }, () => `call_${randomId(24)}`)
    const finishReason = wantsTool ? 'tool_calls' : truncated ? 'length' : 'stop'
    const twoCalls = wantsTool && /two cities/i.test(trigger)
    const secondIds = callIds.map(() => `call_${randomId(24)}`)

    if (body.stream !== true) {
      const choices = callIds.map((callId, index) => ({
        index,
        message: wantsTool
          ? {
              role: 'assistant',
              content: null,
              tool_calls: [
                { id: callId, type: 'function', function: { name: 'get_weather', arguments: TOOL_CALL_ARGUMENTS } },
                ...(twoCalls ? [{ id: secondIds[index], type: 'function', function: { name: 'get_weather', arguments: SECOND_CALL_ARGUMENT_FRAGMENTS.join('') } }] : []),
              ],
              refusal: null,
              annotations: [],
            }
          : { role: 'assistant', content: pieces.join(''), refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: finishReason,
      }))
      logUsage(usage)
      return json(200, { id, object: 'chat.completion', created, model, choices, usage, service_tier: 'default', system_fingerprint: SYSTEM_FINGERPRINT })
    }

    const includeUsage = body.stream_options?.include_usage === true
    const chunk = (choices: unknown[], chunkUsage: unknown = null) => {
      const c: Record<string, unknown> = { id, object: 'chat.completion.chunk', created, model, service_tier: 'default', system_fingerprint: SYSTEM_FINGERPRINT, choices }
      if (includeUsage) c.usage = chunkUsage
      return c
    }
    const choice = (index: number, delta: unknown, finish: string | null = null) => ({ index, delta, logprobs: null, finish_reason: finish })
    const events: unknown[] = []
    for (let i = 0; i < n; i++) {
      events.push(
        chunk([
          choice(
            i,
            wantsTool
              ? {
                  role: 'assistant',
                  content: null,
                  tool_calls: [{ index: 0, id: callIds[i], type: 'function', function: { name: 'get_weather', arguments: '' } }],
                  refusal: null,
                }
              : { role: 'assistant', content: '', refusal: null },
          ),
        ]),
      )
    }
    const header = (i: number) => ({ tool_calls: [{ index: 1, id: secondIds[i], type: 'function', function: { name: 'get_weather', arguments: '' } }] })
    const second = (piece: string) => ({ tool_calls: [{ index: 1, function: { arguments: piece } }] })
    const interleaved = twoCalls && /interleaved/i.test(trigger)
    if (interleaved) for (let i = 0; i < n; i++) events.push(chunk([choice(i, header(i))]))
    pieces.forEach((piece, at) => {
      for (let i = 0; i < n; i++) {
        events.push(chunk([choice(i, wantsTool ? { tool_calls: [{ index: 0, function: { arguments: piece } }] } : { content: piece })]))
        if (interleaved && at < SECOND_CALL_ARGUMENT_FRAGMENTS.length) events.push(chunk([choice(i, second(SECOND_CALL_ARGUMENT_FRAGMENTS[at]!))]))
      }
    })
    if (twoCalls && !interleaved) {
      for (let i = 0; i < n; i++) events.push(chunk([choice(i, header(i))]), ...SECOND_CALL_ARGUMENT_FRAGMENTS.map((piece) => chunk([choice(i, second(piece))])))
    }
    if (options.usageOnFinishChunk) {
      for (let i = 0; i < n; i++) events.push({ ...chunk([choice(i, {}, finishReason)]), ...(i === n - 1 ? { usage } : {}) })
    } else {
      for (let i = 0; i < n; i++) events.push(chunk([choice(i, {}, finishReason)]))
      if (includeUsage) events.push(chunk([], usage))
    }
    return sseResponse(req, events, n, trigger, slow ? Number(slow[1]) : 0, usage)
  }

  async function responses(req: Request, body: any): Promise<Response> {
    if (body.input === undefined) return errorResponse(400, "Missing required parameter: 'input'.", 'invalid_request_error', 'input', 'missing_required_parameter')
    // The fake keeps nothing: any previous response is one it does not know, as OpenAI answers for another project's.
    if (typeof body.previous_response_id === 'string') {
      return errorResponse(404, `Previous response with id '${body.previous_response_id}' not found.`, 'invalid_request_error', 'previous_response_id', 'previous_response_not_found')
    }
    const items: any[] = typeof body.input === 'string' ? [{ type: 'message', role: 'user', content: body.input }] : Array.isArray(body.input) ? body.input : []
    const isMessage = (item: any) => (item?.type ?? 'message') === 'message'
    const trigger = responsesText([...items].reverse().find((item) => isMessage(item) && item.role === 'user')?.content)
    const fault = await scriptedFault(req, trigger, 'input')
    if (fault) return fault

    const last = items.at(-1)
    const functionTools = Array.isArray(body.tools) ? body.tools.filter((t: any) => t?.type === 'function') : []
    const wantsTool = isMessage(last) && last?.role === 'user' && functionTools.length > 0 && body.tool_choice !== 'none' && /weather/i.test(trigger)
    const format = body.text?.format
    const replyText =
      last?.type === 'function_call_output' ? TOOL_RESULT_REPLY : format?.type === 'json_schema' ? JSON.stringify(schemaExample(format.schema)) : DEFAULT_REPLY
    const slow = /slow-stream:(\d+)/.exec(trigger)
    let pieces = slow ? slowStreamPieces() : wantsTool ? TOOL_CALL_ARGUMENT_FRAGMENTS : splitPieces(replyText)
    const truncated = !wantsTool && trigger.includes('finish-length')
    if (truncated) pieces = pieces.slice(0, lengthLimit({ max_completion_tokens: body.max_output_tokens }))
    const inputText = (typeof body.instructions === 'string' ? body.instructions : '') + items.map((item) => responsesText(item?.content ?? item?.output ?? item?.arguments)).join('')
    const inputTokens = fakeTokens(inputText) + items.reduce((sum, item) => sum + imageTokens(item?.content), 0)
    const usage = {
      input_tokens: inputTokens,
      input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
      output_tokens: pieces.length,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: inputTokens + pieces.length,
    }
    const created = Math.floor(Date.now() / 1000)
    const id = `resp_${randomHex(48)}`
    const itemId = wantsTool ? `fc_${randomHex(48)}` : `msg_${randomHex(48)}`
    const callId = `call_${randomId(24)}`
    const text = pieces.join('')
    const status = truncated ? 'incomplete' : 'completed'
    const response = (state: string, output: unknown[], withUsage: unknown) => ({
      id,
      object: 'response',
      created_at: created,
      status: state,
      background: false,
      completed_at: state === 'completed' ? created : null,
      error: null,
      incomplete_details: state === 'incomplete' ? { reason: 'max_output_tokens' } : null,
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      model: datedModel(body.model),
      output,
      parallel_tool_calls: body.parallel_tool_calls ?? true,
      previous_response_id: null,
      reasoning: { effort: body.reasoning?.effort ?? null, summary: null },
      service_tier: 'default',
      store: body.store ?? true,
      temperature: body.temperature ?? 1,
      text: { format: format ?? { type: 'text' }, verbosity: 'medium' },
      tool_choice: body.tool_choice ?? 'auto',
      tools: body.tools ?? [],
      top_p: body.top_p ?? 1,
      truncation: 'disabled',
      ...(withUsage ? { usage: withUsage } : {}),
      metadata: body.metadata ?? {},
    })
    const finalItem = wantsTool
      ? { id: itemId, type: 'function_call', status: 'completed', arguments: text, call_id: callId, name: 'get_weather' }
      : { id: itemId, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] }
    const chatShapedUsage = { prompt_tokens: usage.input_tokens, completion_tokens: usage.output_tokens }
    if (body.stream !== true) {
      logUsage(chatShapedUsage)
      return json(200, response(status, [finalItem], usage))
    }

    const events: Record<string, unknown>[] = []
    const push = (type: string, fields: Record<string, unknown>) => events.push({ type, sequence_number: events.length, ...fields })
    push('response.created', { response: response('in_progress', [], null) })
    push('response.in_progress', { response: response('in_progress', [], null) })
    const where = { item_id: itemId, output_index: 0 }
    if (wantsTool) {
      push('response.output_item.added', { output_index: 0, item: { ...finalItem, status: 'in_progress', arguments: '' } })
      for (const piece of pieces) push('response.function_call_arguments.delta', { ...where, delta: piece })
      push('response.function_call_arguments.done', { ...where, name: 'get_weather', arguments: text })
    } else {
      push('response.output_item.added', { output_index: 0, item: { ...finalItem, status: 'in_progress', content: [] } })
      push('response.content_part.added', { ...where, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } })
      for (const piece of pieces) push('response.output_text.delta', { ...where, content_index: 0, delta: piece, logprobs: [] })
      push('response.output_text.done', { ...where, content_index: 0, text, logprobs: [] })
      push('response.content_part.done', { ...where, content_index: 0, part: finalItem.content![0] })
    }
    push('response.output_item.done', { output_index: 0, item: finalItem })
    push(`response.${status}`, { response: response(status, [finalItem], usage) })
    const failure = (sequence: number) => {
      const failed = { ...response('failed', [], null), error: { code: 'server_error', message: 'The server had an error while processing your request. Sorry about that!' } }
      return responsesFrame({ type: 'response.failed', sequence_number: sequence, response: failed })
    }
    return sseResponse(req, events, wantsTool ? 3 : 4, trigger, slow ? Number(slow[1]) : 0, chatShapedUsage, { frame: responsesFrame, done: null, failure })
  }

  async function completions(req: Request, body: any): Promise<Response> {
    const prompt = body.prompt
    const prompts: unknown[] = Array.isArray(prompt) && prompt.length > 0 && typeof prompt[0] !== 'number' ? prompt : [prompt ?? '']
    const trigger = prompts.map(promptText).join('\n')
    const fault = await scriptedFault(req, trigger, 'prompt')
    if (fault) return fault

    const n = positiveInt(body.n, 1)
    const choicesCount = prompts.length * n
    const model = datedModel(body.model)
    const id = `cmpl-${randomId(29)}`
    const created = Math.floor(Date.now() / 1000)
    const slow = /slow-stream:(\d+)/.exec(trigger)
    let pieces = slow ? slowStreamPieces() : splitPieces(DEFAULT_REPLY)
    const truncated = trigger.includes('finish-length')
    if (truncated) pieces = pieces.slice(0, lengthLimit(body))
    const finishReason = truncated ? 'length' : 'stop'
    const promptTokens = prompts.reduce<number>((sum, p) => sum + (Array.isArray(p) ? p.length : fakeTokens(promptText(p))), 0)
    const usage = { prompt_tokens: promptTokens, completion_tokens: pieces.length * choicesCount, total_tokens: promptTokens + pieces.length * choicesCount }

    if (body.stream !== true) {
      const choices = Array.from({ length: choicesCount }, (_, index) => ({ text: pieces.join(''), index, logprobs: null, finish_reason: finishReason }))
      logUsage(usage)
      return json(200, { id, object: 'text_completion', created, model, choices, usage, system_fingerprint: SYSTEM_FINGERPRINT })
    }
    const includeUsage = body.stream_options?.include_usage === true
    const chunk = (choices: unknown[], chunkUsage: unknown = null) => {
      const c: Record<string, unknown> = { id, object: 'text_completion', created, choices, model, system_fingerprint: SYSTEM_FINGERPRINT }
      if (includeUsage) c.usage = chunkUsage
      return c
    }
    const events: unknown[] = []
    for (const piece of pieces) {
      for (let i = 0; i < choicesCount; i++) events.push(chunk([{ text: piece, index: i, logprobs: null, finish_reason: null }]))
    }
    for (let i = 0; i < choicesCount; i++) events.push(chunk([{ text: '', index: i, logprobs: null, finish_reason: finishReason }]))
    if (includeUsage) events.push(chunk([], usage))
    // No role chunk in legacy completions: the "first 2 content chunks" are simply the first 2 chunks.
    return sseResponse(req, events, 0, trigger, slow ? Number(slow[1]) : 0, usage)
  }

  async function embeddings(req: Request, body: any): Promise<Response> {
    const input = body.input
    if (input === undefined || input === null) {
      return errorResponse(400, "Missing required parameter: 'input'.", 'invalid_request_error', 'input', 'missing_required_parameter')
    }
    // string | string[] | number[] (one token array) | number[][]
    const items: unknown[] = Array.isArray(input) && input.length > 0 && typeof input[0] !== 'number' ? input : [input]
    const trigger = items.map(promptText).join('\n')
    const fault = await scriptedFault(req, trigger, 'input')
    if (fault) return fault

    const dimensions = positiveInt(body.dimensions, DEFAULT_EMBEDDING_DIMENSIONS)
    const asBase64 = base64Embeddings && body.encoding_format === 'base64'
    const data = items.map((item, index) => {
      const vector = fakeEmbedding(promptText(item), dimensions)
      return { object: 'embedding', index, embedding: asBase64 ? float32Base64(vector) : vector }
    })
    const tokens = items.reduce<number>((sum, item) => sum + (Array.isArray(item) ? item.length : fakeTokens(promptText(item))), 0)
    logUsage({ prompt_tokens: tokens, completion_tokens: 0 })
    return json(200, { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } })
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Streams and faults

  /**
   * Sends `events` as `data:` lines then `data: [DONE]`. `preamble` = how many leading chunks come before the
   * first content chunk (the role chunk of each choice), for `stream-stall` / `stream-die` / `midstream-error`.
   * `usage` goes to the usage log when the stream completes.
   */
  function sseResponse(req: Request, events: unknown[], preamble: number, trigger: string, delayMs: number, usage: UsageEntry, wire: SseWire = CHAT_WIRE): Response {
    const encoder = new TextEncoder()
    const stall = trigger.includes('stream-stall')
    const die = trigger.includes('stream-die')
    const midstreamError = trigger.includes('midstream-error')
    const cutAt = stall || die || midstreamError ? preamble + 2 : Infinity
    let next = 0
    let finished = false
    let releaseStall: (() => void) | undefined
    const record: StreamRecord = { trigger, chunkTimes: [], cancelledAt: null }
    streams.push(record)
    const send = (controller: ReadableStreamDefaultController<Uint8Array>, line: string) => {
      record.chunkTimes.push(performance.now())
      controller.enqueue(encoder.encode(line))
    }
    const finish = (cancelled: boolean) => {
      if (finished) return
      finished = true
      counters.open--
      if (cancelled) {
        counters.aborted++
        record.cancelledAt = performance.now()
      }
      releaseStall?.()
    }
    counters.open++
    req.signal.addEventListener('abort', () => finish(true), { once: true })

    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (finished) return
        if (next > 0 && delayMs > 0) await Bun.sleep(delayMs)
        if (finished) return
        if (next === cutAt) {
          if (midstreamError) {
            send(controller, wire.failure(next))
            finish(false)
            controller.close()
            return
          }
          if (die) {
            // Let the chunks sent so far reach the client first, so it sees a 200 and then a cut body.
            await Bun.sleep(25)
            if (finished) return
            finish(false)
            controller.error(undefined) // Bun resets the connection: the client sees a truncated body, no [DONE]
            return
          }
          // stall: nothing more until the client goes away (or the server stops)
          await new Promise<void>((resolve) => {
            releaseStall = resolve
            stallReleases.add(resolve)
          })
          if (releaseStall) stallReleases.delete(releaseStall)
          return
        }
        if (next < events.length) {
          send(controller, wire.frame(events[next++]))
          return
        }
        logUsage(usage)
        if (wire.done) send(controller, wire.done)
        finish(false)
        controller.close()
      },
      cancel() {
        finish(true)
      },
    })
    return new Response(stream, { status: 200, headers: { ...commonHeaders(), 'content-type': 'text/event-stream; charset=utf-8' } })
  }

  /** Applies the scripted faults that happen before the response; returns the error response, if any. */
  async function scriptedFault(req: Request, trigger: string, param: string): Promise<Response | null> {
    const slowFirstByte = /slow-first-byte:(\d+)/.exec(trigger)
    if (slowFirstByte) await abortableSleep(Number(slowFirstByte[1]), req.signal)
    if (trigger.includes('fail-400')) {
      return errorResponse(400, `Invalid '${param}': scripted failure (fail-400).`, 'invalid_request_error', param, null)
    }
    if (trigger.includes('fail-429')) {
      return errorResponse(
        429,
        `Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in ${RETRY_AFTER_SECONDS}s.`,
        'requests',
        null,
        'rate_limit_exceeded',
        { 'retry-after': String(RETRY_AFTER_SECONDS) },
      )
    }
    if (trigger.includes('fail-500')) {
      return errorResponse(500, 'The server had an error while processing your request. Sorry about that!', 'server_error', null, null)
    }
    const once = /fail-once-503:(\S+)/.exec(trigger)
    if (once && !failedOnce.has(once[1]!)) {
      failedOnce.add(once[1]!)
      return errorResponse(503, 'The server is overloaded or not ready yet.', 'server_error', null, 'server_is_overloaded')
    }
    if (trigger.includes('fail-503')) {
      return errorResponse(503, 'The server is overloaded or not ready yet.', 'server_error', null, 'server_is_overloaded')
    }
    const truncated = /truncated-(body|tail)/.exec(trigger)
    if (truncated) {
      const whole = JSON.stringify({
        id: `chatcmpl-${randomHex(12)}`, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: 'gpt-4o',
        choices: [{ index: 0, message: { role: 'assistant', content: DEFAULT_REPLY }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
      })
      const text = truncated[1] === 'body' ? whole.slice(0, whole.indexOf('"usage"') - 10) : whole.slice(0, -2)
      return new Response(text, { status: 200, headers: { ...commonHeaders(), 'content-type': 'application/json' } })
    }
    return null
  }

  return {
    url: `http://127.0.0.1:${server.port}/v1`,
    port: server.port!,
    requests,
    usageLog,
    streams,
    get openStreams() {
      return counters.open
    },
    get aborted() {
      return counters.aborted
    },
    rateLimitKey(key, seconds) {
      limitedKeys.set(key, Date.now() + seconds * 1000)
    },
    async stop() {
      for (const release of stallReleases) release()
      stallReleases.clear()
      await server.stop(true)
    },
  }
}

// -----------------------------------------------------------------------------------------------------------------
// Helpers

function commonHeaders(): Record<string, string> {
  return { 'x-request-id': `req_${randomHex(32)}`, 'openai-processing-ms': '42', 'openai-version': '2020-10-01' }
}

function json(status: number, value: unknown, extraHeaders: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), { status, headers: { ...commonHeaders(), 'content-type': 'application/json', ...extraHeaders } })
}

function errorResponse(status: number, message: string, type: string, param: string | null, code: string | null, extraHeaders: Record<string, string> = {}): Response {
  return json(status, { error: { message, type, param, code } }, extraHeaders)
}

/** Pieces of a `finish-length` reply: 3, or fewer when the request's own token limit says so. */
function lengthLimit(body: any): number {
  const limit = body.max_completion_tokens ?? body.max_tokens
  return typeof limit === 'number' && limit >= 1 ? Math.min(limit, LENGTH_LIMITED_PIECES) : LENGTH_LIMITED_PIECES
}

function maskKey(key: string): string {
  if (key.length <= 8) return key
  return `${key.slice(0, 3)}${'*'.repeat(key.length - 7)}${key.slice(-4)}`
}

/** OpenAI's model ids in responses carry the snapshot date. */
function datedModel(model: string): string {
  return /-\d{4}-\d{2}-\d{2}$/.test(model) ? model : `${model}-2024-08-06`
}

/** Text of a chat message `content`: a string, or the `text` of its text parts. */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    return content.map((part) => (part && typeof part === 'object' && typeof part.text === 'string' ? part.text : '')).join('')
  }
  return ''
}

/** gpt-4o's count for a 1024x1024 image: 85 + 4 tiles of 170 at high (or auto) detail, 85 at low. */
function imageTokens(content: unknown): number {
  if (!Array.isArray(content)) return 0
  let tokens = 0
  for (const part of content) {
    if (part?.type !== 'image_url' && part?.type !== 'input_image') continue
    tokens += (part.image_url?.detail ?? part.detail) === 'low' ? 85 : 765
  }
  return tokens
}

/** Text of Responses content (a string, or parts with `text`), a function call's arguments or its output. */
function responsesText(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) return content.map((part) => (part && typeof part === 'object' && typeof part.text === 'string' ? part.text : '')).join('')
  return ''
}

/** A value a JSON schema accepts, the same every time: what the fake answers under structured outputs. */
function schemaExample(schema: any): unknown {
  if (!schema || typeof schema !== 'object') return null
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0]
  if (Array.isArray(schema.anyOf) && schema.anyOf.length > 0) return schemaExample(schema.anyOf[0])
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type
  switch (type) {
    case 'object': {
      const properties = schema.properties && typeof schema.properties === 'object' ? schema.properties : {}
      return Object.fromEntries(Object.entries(properties).map(([name, property]) => [name, schemaExample(property)]))
    }
    case 'array':
      return [schemaExample(schema.items)]
    case 'string':
      return 'Paris'
    case 'integer':
    case 'number':
      return 21
    case 'boolean':
      return true
    default:
      return null
  }
}

/** How a stream frames its events and its end: chat's `data:` lines and `[DONE]`, or the Responses API's named events. */
interface SseWire {
  frame(event: unknown): string
  done: string | null
  /** The event a failure mid-stream sends, given the sequence number it takes. */
  failure(sequence: number): string
}

const CHAT_WIRE: SseWire = {
  frame: (event) => `data: ${JSON.stringify(event)}\n\n`,
  done: 'data: [DONE]\n\n',
  failure: () => {
    const error = { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error', param: null, code: 'server_error' }
    return `data: ${JSON.stringify({ error })}\n\n`
  },
}

const responsesFrame = (event: any) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`

/** Text of one prompt / input item: a string, or a token array rendered as its numbers. */
function promptText(item: unknown): string {
  if (typeof item === 'string') return item
  if (Array.isArray(item)) return item.join(',')
  return ''
}

function chatUsage(promptTokens: number, completionTokens: number) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  }
}

function slowStreamPieces(): string[] {
  return Array.from({ length: SLOW_STREAM_CHUNKS }, (_, i) => (i === 0 ? '1' : ` ${i + 1}`))
}

function positiveInt(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 ? value : fallback
}

/** Little-endian float32 bytes, base64 — written independently of the gateway's own encoder. */
function float32Base64(values: number[]): string {
  const view = new DataView(new ArrayBuffer(values.length * 4))
  values.forEach((v, i) => view.setFloat32(i * 4, v, true))
  return Buffer.from(view.buffer).toString('base64')
}

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

function randomId(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length))
  let out = ''
  for (const b of bytes) out += ALPHANUMERIC[b % ALPHANUMERIC.length]
  return out
}

function randomHex(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(length / 2)))
  return Buffer.from(bytes).toString('hex').slice(0, length)
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}
