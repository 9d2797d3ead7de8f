/**
 * A fake Azure OpenAI resource speaking the real wire format (shapes from the Azure REST specs for 2024-10-21,
 * Microsoft's content-filter docs and recorded responses): the deployment-based data plane
 * `POST /openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=…` and the v1
 * surface `POST /openai/v1/{…}` with the deployment as `model`. It reproduces Azure's quirks:
 * - auth by `api-key` (or an Entra/`Bearer` token), 401 `{"error":{"code":"401","message":"Access denied…"}}`;
 * - a missing api-version → 404 "Resource not found", an unknown one → 400 "API version not supported";
 * - an unknown deployment → 404 DeploymentNotFound; a deployment used for the wrong operation → 400 OperationNotSupported;
 * - dated GA versions refuse fields their spec lacks: 400 "Unrecognized request argument supplied: X";
 * - every stream opens with a prompt verdict chunk (`choices: []`, empty id/object/model, `created: 0`,
 *   `prompt_filter_results`), and chunks and bodies carry `content_filter_results`; the asynchronous filter mode
 *   (option) adds verdict-only chunks without `delta`;
 * - JSON keys in alphabetical order, as Azure serialises them.
 *
 * Scripted by the text of the last user message (chat), the prompt (completions) or the input (embeddings):
 * - the conversation ends with a tool result            → "The weather in Paris is sunny."
 * - tools present and the text contains "weather"      → one `get_weather` call with `{"city":"Paris"}`
 * - `fail-400` / `fail-429` / `fail-500` / `fail-503`  → that status in Azure's envelope (429 with `retry-after`,
 *   `retry-after-ms` and `x-ratelimit-*`)
 * - `content-filter`                                    → 400 `code: "content_filter"` with `innererror`
 * - `filtered-output`                                   → part of the reply, then `finish_reason: "content_filter"`
 * - `finish-length`                                     → the reply cut at max tokens (3 when none is given), `length`
 * - `midstream-error` when streaming                   → a few chunks, then `data: {"error":…}` and no [DONE]
 * - anything else                                       → FAKE_REPLY
 * `max_tokens` / `max_completion_tokens` are honoured (one token per word-sized piece).
 */

export const FAKE_REPLY = 'Hello from fake Azure OpenAI! 你好 👋'
export const FAKE_TOOL_RESULT_REPLY = 'The weather in Paris is sunny.'
export const FAKE_TOOL_INPUT = { city: 'Paris' }
export const FAKE_API_KEY = 'azure-test-key'

export type DeploymentKind = 'chat' | 'completions' | 'embeddings'

/** Deployment name → the model behind it. Deployment names differ from model names, as they usually do. */
export const DEFAULT_DEPLOYMENTS: Record<string, { model: string; kind: DeploymentKind }> = {
  'gpt4o-prod': { model: 'gpt-4o-2024-11-20', kind: 'chat' },
  'instruct-prod': { model: 'gpt-35-turbo-instruct', kind: 'completions' },
  'embed-prod': { model: 'text-embedding-3-small', kind: 'embeddings' },
}

export interface FakeAzureOptions {
  /** The one key accepted, via `api-key` or `Authorization: Bearer`. Default FAKE_API_KEY. */
  apiKey?: string
  deployments?: Record<string, { model: string; kind: DeploymentKind }>
  /** Write streams in pieces of this many bytes (splitting multi-byte characters) instead of one write per event. */
  streamChunkBytes?: number
  /** The asynchronous content filter: verdict-only chunks (no `delta`, empty identity) between content chunks. */
  asyncFilter?: boolean
}

export interface RecordedRequest {
  method: string
  path: string
  query: Record<string, string>
  headers: Record<string, string>
  body: any
}

export interface FakeAzure {
  /** The resource endpoint, the provider's `base_url`. */
  url: string
  requests: RecordedRequest[]
  /** One entry per successful generation: the usage the fake reported (embeddings with completion_tokens 0). */
  usageLog: { prompt_tokens: number; completion_tokens: number }[]
  stop(): void
}

const GA_VERSIONS = ['2023-05-15', '2024-02-01', '2024-06-01', '2024-10-21']
const PREVIEW_VERSIONS = ['2024-08-01-preview', '2024-09-01-preview', '2024-10-01-preview', '2024-12-01-preview', '2025-01-01-preview', '2025-03-01-preview', '2025-04-01-preview']

/** Fields of the 2024-10-21 GA request schemas; older GA versions lack the ones added with 2024-09-01. */
const GA_CHAT_FIELDS = [
  'messages', 'model', 'data_sources', 'frequency_penalty', 'presence_penalty', 'logit_bias', 'logprobs', 'top_logprobs', 'max_tokens',
  'max_completion_tokens', 'n', 'parallel_tool_calls', 'response_format', 'seed', 'stop', 'stream', 'stream_options', 'temperature',
  'top_p', 'tools', 'tool_choice', 'function_call', 'functions', 'user',
]
const GA_COMPLETION_FIELDS = [
  'prompt', 'model', 'best_of', 'echo', 'frequency_penalty', 'logit_bias', 'logprobs', 'max_tokens', 'n', 'presence_penalty', 'seed',
  'stop', 'stream', 'stream_options', 'suffix', 'temperature', 'top_p', 'user',
]
const SINCE_2024_09 = new Set(['stream_options', 'max_completion_tokens', 'parallel_tool_calls'])

const OPERATION: Record<DeploymentKind, { name: string; title: string }> = {
  chat: { name: 'chatCompletion', title: 'ChatCompletions_Create' },
  completions: { name: 'completion', title: 'Completions_Create' },
  embeddings: { name: 'embeddings', title: 'Embeddings_Create' },
}

const SAFE = { filtered: false, severity: 'safe' }
const PROMPT_VERDICT = { hate: SAFE, jailbreak: { filtered: false, detected: false }, self_harm: SAFE, sexual: SAFE, violence: SAFE }
const OUTPUT_VERDICT = {
  hate: SAFE,
  protected_material_code: { filtered: false, detected: false },
  protected_material_text: { filtered: false, detected: false },
  self_harm: SAFE,
  sexual: SAFE,
  violence: SAFE,
}
const FILTERED_VERDICT = { ...OUTPUT_VERDICT, violence: { filtered: true, severity: 'medium' } }
const SYSTEM_FINGERPRINT = 'fp_b705f0c291'

const encoder = new TextEncoder()
const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const randomId = (length: number) => Array.from({ length }, () => ALPHANUMERIC[Math.floor(Math.random() * ALPHANUMERIC.length)]).join('')
const uuid = () => crypto.randomUUID()

interface Route {
  kind: DeploymentKind
  deployment: string | null
  v1: boolean
}

export async function startFakeAzure(options: FakeAzureOptions = {}): Promise<FakeAzure> {
  const apiKey = options.apiKey ?? FAKE_API_KEY
  const deployments = options.deployments ?? DEFAULT_DEPLOYMENTS
  const requests: RecordedRequest[] = []
  const usageLog: FakeAzure['usageLog'] = []

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const url = new URL(req.url)
      const text = await req.text()
      let body: any = null
      let parsed = true
      try {
        body = text ? JSON.parse(text) : null
      } catch {
        parsed = false
      }
      requests.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: Object.fromEntries(req.headers), body })

      const route = routeOf(url.pathname)
      if (!route || req.method !== 'POST') return azureError(404, '404', 'Resource not found')
      const bearer = req.headers.get('authorization')?.match(/^Bearer\s+(.+)$/i)?.[1]
      if ((req.headers.get('api-key') ?? bearer) !== apiKey) {
        return azureError(
          401,
          '401',
          'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.',
        )
      }
      const version = url.searchParams.get('api-version')
      if (route.v1) {
        if (version !== null && version !== 'preview' && version !== 'latest') return azureError(400, 'BadRequest', 'API version not supported')
      } else {
        if (version === null) return azureError(404, '404', 'Resource not found')
        if (!GA_VERSIONS.includes(version) && !PREVIEW_VERSIONS.includes(version)) return azureError(400, 'BadRequest', 'API version not supported')
      }
      if (!parsed || body === null || typeof body !== 'object' || Array.isArray(body)) {
        return openAIError(400, 'We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.', 'invalid_request_error', null, null)
      }
      const name = route.v1 ? body.model : route.deployment
      if (route.v1 && typeof name !== 'string') return openAIError(400, 'you must provide a model parameter', 'invalid_request_error', null, null)
      const deployment = deployments[name]
      if (!deployment) {
        return azureError(404, 'DeploymentNotFound', 'The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.')
      }
      if (deployment.kind !== route.kind) {
        return azureError(
          400,
          'OperationNotSupported',
          `The ${OPERATION[route.kind].name} operation does not work with the specified model, ${deployment.model}. Please choose different model and try again. You can learn more about which models can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993.`,
        )
      }
      // Dated GA versions know only their own fields; previews and v1 track OpenAI's API.
      if (!route.v1 && version && GA_VERSIONS.includes(version) && route.kind !== 'embeddings') {
        const known = route.kind === 'chat' ? GA_CHAT_FIELDS : GA_COMPLETION_FIELDS
        for (const field of Object.keys(body)) {
          if (!known.includes(field) || (SINCE_2024_09.has(field) && version < '2024-09-01')) {
            return openAIError(400, `Unrecognized request argument supplied: ${field}`, 'invalid_request_error', null, null)
          }
        }
      }
      const call: Call = { req, body, model: deployment.model, operation: OPERATION[route.kind].title, apiVersion: route.v1 ? 'v1' : version! }
      if (route.kind === 'chat') return chatCompletions(call)
      if (route.kind === 'completions') return completions(call)
      return embeddings(call)
    },
  })

  interface Call {
    req: Request
    body: any
    model: string
    operation: string
    apiVersion: string
  }

  function chatCompletions({ body, model, operation, apiVersion }: Call): Response {
    if (!Array.isArray(body.messages)) return openAIError(400, "Missing required parameter: 'messages'.", 'invalid_request_error', 'messages', 'missing_required_parameter')
    if (body.messages.length === 0) {
      return openAIError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", 'invalid_request_error', 'messages', 'empty_array')
    }
    const invalid = validateMessages(body.messages)
    if (invalid) return invalid
    const maxTokens = body.max_completion_tokens ?? body.max_tokens
    if (maxTokens !== undefined && maxTokens !== null && (!Number.isInteger(maxTokens) || maxTokens < 1)) {
      return openAIError(400, `Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got ${maxTokens} instead.`, 'invalid_request_error', 'max_tokens', 'integer_below_min_value')
    }
    const messages: any[] = body.messages
    const trigger = contentText([...messages].reverse().find((m) => m?.role === 'user')?.content)
    const fault = scriptedFault(trigger, operation, apiVersion)
    if (fault) return fault

    const last = messages.at(-1)
    const wantsTool = last?.role === 'user' && Array.isArray(body.tools) && body.tools.length > 0 && body.tool_choice !== 'none' && /weather/i.test(trigger)
    const reply = wantsTool ? null : textReply(last?.role === 'tool' ? FAKE_TOOL_RESULT_REPLY : FAKE_REPLY, trigger, maxTokens)
    const pieces = reply ? reply.pieces : TOOL_FRAGMENTS
    const finish = wantsTool ? 'tool_calls' : reply!.finish
    const promptTokens = Math.max(1, Math.ceil(messages.map((m) => contentText(m?.content) + JSON.stringify(m?.tool_calls ?? '')).join('').length / 4))
    const usage = chatUsage(promptTokens, wantsTool ? pieces.length + 9 : pieces.length)
    const id = `chatcmpl-${randomId(29)}`
    const created = Math.floor(Date.now() / 1000)
    const callId = `call_${randomId(24)}`
    const verdict = finish === 'content_filter' ? FILTERED_VERDICT : OUTPUT_VERDICT

    if (body.stream !== true) {
      const message = wantsTool
        ? { annotations: [], content: null, refusal: null, role: 'assistant', tool_calls: [{ function: { arguments: TOOL_ARGUMENTS, name: 'get_weather' }, id: callId, type: 'function' }] }
        : finish === 'content_filter'
          ? { annotations: [], refusal: null, role: 'assistant' } // the withheld completion comes without content
          : { annotations: [], content: pieces.join(''), refusal: null, role: 'assistant' }
      usageLog.push({ prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens })
      return json(200, {
        choices: [{ content_filter_results: wantsTool ? {} : verdict, finish_reason: finish, index: 0, logprobs: null, message }],
        created,
        id,
        model,
        object: 'chat.completion',
        prompt_filter_results: [{ prompt_index: 0, content_filter_results: PROMPT_VERDICT }],
        system_fingerprint: SYSTEM_FINGERPRINT,
        usage,
      })
    }

    const includeUsage = body.stream_options?.include_usage === true
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
      choices,
      created,
      id,
      model,
      object: 'chat.completion.chunk',
      system_fingerprint: SYSTEM_FINGERPRINT,
      ...(includeUsage ? { usage: null } : {}),
      ...extra,
    })
    const choice = (delta: unknown, cf: unknown, finishReason: string | null = null) => ({ content_filter_results: cf, delta, finish_reason: finishReason, index: 0, logprobs: null })
    const events: string[] = [data(promptVerdictChunk())]
    events.push(
      data(
        chunk([
          choice(
            wantsTool
              ? { content: null, refusal: null, role: 'assistant', tool_calls: [{ function: { arguments: '', name: 'get_weather' }, id: callId, index: 0, type: 'function' }] }
              : { content: '', refusal: null, role: 'assistant' },
            {},
          ),
        ]),
      ),
    )
    const midstream = trigger.includes('midstream-error')
    for (const [n, piece] of pieces.entries()) {
      if (midstream && n === 2) {
        events.push(data({ error: { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error', param: null, code: null } }))
        return sse(events)
      }
      events.push(data(chunk([choice(wantsTool ? { tool_calls: [{ function: { arguments: piece }, index: 0 }] } : { content: piece }, options.asyncFilter ? undefined : verdict)])))
      if (options.asyncFilter && n === 1) events.push(data(verdictOnlyChunk(OUTPUT_VERDICT, null)))
    }
    if (finish === 'content_filter' && options.asyncFilter) events.push(data(verdictOnlyChunk(FILTERED_VERDICT, 'content_filter')))
    else events.push(data(chunk([choice({}, finish === 'content_filter' ? FILTERED_VERDICT : {}, finish)])))
    if (includeUsage) {
      events.push(data(chunk([], { usage })))
      usageLog.push({ prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens })
    }
    events.push('data: [DONE]\n\n')
    return sse(events)
  }

  function completions({ body, model, operation, apiVersion }: Call): Response {
    if (body.prompt === undefined) return openAIError(400, "Missing required parameter: 'prompt'.", 'invalid_request_error', 'prompt', 'missing_required_parameter')
    const prompts: unknown[] = Array.isArray(body.prompt) ? body.prompt : [body.prompt]
    const trigger = prompts.map((p) => (typeof p === 'string' ? p : '')).join('\n')
    const fault = scriptedFault(trigger, operation, apiVersion)
    if (fault) return fault
    // Legacy completions stop at 16 tokens unless told otherwise.
    const reply = textReply(FAKE_REPLY, trigger, body.max_tokens ?? 16)
    const promptTokens = Math.max(1, Math.ceil(trigger.length / 4))
    const usage = { completion_tokens: reply.pieces.length * prompts.length, prompt_tokens: promptTokens, total_tokens: promptTokens + reply.pieces.length * prompts.length }
    const id = `cmpl-${randomId(29)}`
    const created = Math.floor(Date.now() / 1000)

    if (body.stream !== true) {
      usageLog.push({ prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens })
      return json(200, {
        choices: prompts.map((_, index) => ({ content_filter_results: OUTPUT_VERDICT, finish_reason: reply.finish, index, logprobs: null, text: reply.pieces.join('') })),
        created,
        id,
        model,
        object: 'text_completion',
        prompt_filter_results: prompts.map((_, index) => ({ prompt_index: index, content_filter_results: PROMPT_VERDICT })),
        system_fingerprint: SYSTEM_FINGERPRINT,
        usage,
      })
    }
    const includeUsage = body.stream_options?.include_usage === true
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
      choices,
      created,
      id,
      model,
      object: 'text_completion',
      system_fingerprint: SYSTEM_FINGERPRINT,
      ...(includeUsage ? { usage: null } : {}),
      ...extra,
    })
    const events = [data(promptVerdictChunk())]
    for (const piece of reply.pieces) events.push(data(chunk([{ content_filter_results: OUTPUT_VERDICT, finish_reason: null, index: 0, logprobs: null, text: piece }])))
    events.push(data(chunk([{ content_filter_results: {}, finish_reason: reply.finish, index: 0, logprobs: null, text: '' }])))
    if (includeUsage) {
      events.push(data(chunk([], { usage })))
      usageLog.push({ prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens })
    }
    events.push('data: [DONE]\n\n')
    return sse(events)
  }

  function embeddings({ body, model, operation, apiVersion }: Call): Response {
    const input = body.input
    if (input === undefined || input === null) return openAIError(400, "Missing required parameter: 'input'.", 'invalid_request_error', 'input', 'missing_required_parameter')
    const items: unknown[] = Array.isArray(input) && input.length > 0 && typeof input[0] !== 'number' ? input : [input]
    const trigger = items.map((i) => (typeof i === 'string' ? i : '')).join('\n')
    const fault = scriptedFault(trigger, operation, apiVersion)
    if (fault) return fault
    const dimensions = Number.isInteger(body.dimensions) && body.dimensions > 0 ? body.dimensions : 16
    const base64 = body.encoding_format === 'base64'
    const data = items.map((item, index) => {
      const vector = fakeEmbedding(typeof item === 'string' ? item : JSON.stringify(item), dimensions)
      return { object: 'embedding', index, embedding: base64 ? float32Base64(vector) : vector }
    })
    const tokens = items.reduce<number>((sum, item) => sum + (Array.isArray(item) ? item.length : Math.max(1, Math.ceil(String(item).length / 4))), 0)
    usageLog.push({ prompt_tokens: tokens, completion_tokens: 0 })
    return json(200, { data, model, object: 'list', usage: { prompt_tokens: tokens, total_tokens: tokens } })
  }

  function sse(events: string[]): Response {
    return new Response(byteStream(events, options.streamChunkBytes), { headers: { ...commonHeaders(), 'content-type': 'text/event-stream; charset=utf-8' } })
  }

  return { url: `http://127.0.0.1:${server.port}`, requests, usageLog, stop: () => server.stop(true) }
}

function routeOf(pathname: string): Route | null {
  const kinds: Record<string, DeploymentKind> = { 'chat/completions': 'chat', completions: 'completions', embeddings: 'embeddings' }
  const dated = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|completions|embeddings)$/.exec(pathname)
  if (dated) return { kind: kinds[dated[2]!]!, deployment: decodeURIComponent(dated[1]!), v1: false }
  const v1 = /^\/openai\/v1\/(chat\/completions|completions|embeddings)$/.exec(pathname)
  if (v1) return { kind: kinds[v1[1]!]!, deployment: null, v1: true }
  return null
}

/** OpenAI's rule, enforced by Azure too: tool calls and tool results must pair up in order. */
function validateMessages(messages: any[]): Response | null {
  for (const [i, m] of messages.entries()) {
    if (!['system', 'developer', 'user', 'assistant', 'tool', 'function'].includes(m?.role)) {
      return openAIError(400, `Invalid value: '${m?.role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.`, 'invalid_request_error', `messages[${i}].role`, 'invalid_value')
    }
    if (m.role === 'tool') {
      const previous = messages.slice(0, i).reverse().find((p) => p?.role !== 'tool')
      const ids = new Set((previous?.tool_calls ?? []).map((c: any) => c.id))
      if (!ids.has(m.tool_call_id)) {
        return openAIError(400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.", 'invalid_request_error', `messages.[${i}].role`, null)
      }
    }
    if (m.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
      const answered = new Set<string>()
      for (const next of messages.slice(i + 1)) {
        if (next?.role !== 'tool') break
        answered.add(next.tool_call_id)
      }
      const missing = m.tool_calls.map((c: any) => c.id).filter((id: string) => !answered.has(id))
      if (missing.length > 0 && i < messages.length - 1) {
        return openAIError(
          400,
          `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${missing.join(', ')}`,
          'invalid_request_error',
          `messages.[${i + 1}].role`,
          null,
        )
      }
    }
  }
  return null
}

function scriptedFault(trigger: string, operation: string, apiVersion: string): Response | null {
  if (trigger.includes('content-filter')) {
    return json(400, {
      error: {
        message:
          "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
        type: null,
        param: 'prompt',
        code: 'content_filter',
        status: 400,
        innererror: { code: 'ResponsibleAIPolicyViolation', content_filter_result: { ...PROMPT_VERDICT, violence: { filtered: true, severity: 'medium' } } },
      },
    })
  }
  if (trigger.includes('fail-400')) return openAIError(400, "Invalid 'messages': scripted failure (fail-400).", 'invalid_request_error', 'messages', null)
  if (trigger.includes('fail-429')) {
    return json(
      429,
      {
        error: {
          code: '429',
          message: `Requests to the ${operation} Operation under Azure OpenAI API version ${apiVersion} have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.`,
        },
      },
      { 'retry-after': '6', 'retry-after-ms': '6000', 'x-ratelimit-limit-requests': '60', 'x-ratelimit-limit-tokens': '10000', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-remaining-tokens': '0' },
    )
  }
  if (trigger.includes('fail-500')) {
    const requestId = uuid()
    return openAIError(
      500,
      `The server had an error processing your request. Sorry about that! You can retry your request, or contact us through an Azure support request at: https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing this error. (Please include the request ID ${requestId} in your email.)`,
      'server_error',
      null,
      null,
    )
  }
  if (trigger.includes('fail-503')) return azureError(503, 'ServiceUnavailable', 'The service is temporarily unable to process your request. Please try again later.')
  return null
}

interface TextReply {
  pieces: string[]
  finish: 'stop' | 'length' | 'content_filter'
}

function textReply(full: string, trigger: string, maxTokens: unknown): TextReply {
  let pieces = splitPieces(full)
  const limit = typeof maxTokens === 'number' ? maxTokens : trigger.includes('finish-length') ? 3 : Infinity
  if (trigger.includes('filtered-output')) return { pieces: pieces.slice(0, 2), finish: 'content_filter' }
  if (pieces.length > limit) return { pieces: pieces.slice(0, limit), finish: 'length' }
  return { pieces, finish: 'stop' }
}

const TOOL_ARGUMENTS = JSON.stringify(FAKE_TOOL_INPUT)
/** Argument fragments as OpenAI models stream them: not valid JSON on their own. */
const TOOL_FRAGMENTS = ['{"', 'city', '":"', 'Paris', '"}']

/** Word-sized pieces (leading space kept, as tokenizers do); runs of non-ASCII characters get pieces of their own. */
function splitPieces(text: string): string[] {
  return text.match(/\s*(?:[!-~]+|[^\s\x00-\x7f]+)|\s+$/gu) ?? []
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) return content.map((part) => (part && typeof part.text === 'string' ? part.text : '')).join('')
  return ''
}

function chatUsage(promptTokens: number, completionTokens: number) {
  return {
    completion_tokens: completionTokens,
    completion_tokens_details: { accepted_prediction_tokens: 0, audio_tokens: 0, reasoning_tokens: 0, rejected_prediction_tokens: 0 },
    prompt_tokens: promptTokens,
    prompt_tokens_details: { audio_tokens: 0, cached_tokens: 0 },
    total_tokens: promptTokens + completionTokens,
  }
}

const promptVerdictChunk = () => ({ choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: [{ prompt_index: 0, content_filter_results: PROMPT_VERDICT }] })

/** The asynchronous filter's annotation: no delta, no identity, offsets into the text already sent. */
const verdictOnlyChunk = (verdict: unknown, finish: string | null) => ({
  choices: [{ content_filter_offsets: { check_offset: 35, end_offset: 120, start_offset: 35 }, content_filter_results: verdict, finish_reason: finish, index: 0 }],
  created: 0,
  id: '',
  model: '',
  object: '',
  usage: null,
})

const data = (value: unknown) => `data: ${JSON.stringify(value)}\n\n`

function commonHeaders(): Record<string, string> {
  const id = uuid()
  return {
    'apim-request-id': id,
    'x-request-id': id,
    'x-ms-region': 'Sweden Central',
    'x-ratelimit-remaining-requests': '59',
    'x-ratelimit-remaining-tokens': '9000',
  }
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), { status, headers: { ...commonHeaders(), 'content-type': 'application/json', ...headers } })
}

/** The envelope of Azure's own gateway errors: `code` and `message` only. */
const azureError = (status: number, code: string, message: string) => json(status, { error: { code, message } })

/** The envelope of errors the model service raises (OpenAI's). */
const openAIError = (status: number, message: string, type: string, param: string | null, code: string | null) => json(status, { error: { message, type, param, code } })

/** A deterministic unit-ish vector from the text. */
function fakeEmbedding(text: string, dimensions: number): number[] {
  let seed = 2166136261
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 16777619) >>> 0
  return Array.from({ length: dimensions }, (_, i) => {
    seed = Math.imul(seed ^ (i + 1), 2654435761) >>> 0
    return Math.round(((seed / 2 ** 32) * 2 - 1) * 1e6) / 1e6
  })
}

/** Little-endian float32 bytes, base64, as the OpenAI API encodes them. */
function float32Base64(values: number[]): string {
  const view = new DataView(new ArrayBuffer(values.length * 4))
  values.forEach((v, i) => view.setFloat32(i * 4, v, true))
  return Buffer.from(view.buffer).toString('base64')
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
