/**
 * A fake Google Gemini API (generativelanguage v1beta) that speaks the real wire format: the
 * `models/{model}:generateContent`, `:streamGenerateContent` (SSE with `alt=sse`, a JSON array without),
 * `:batchEmbedContents` and `:embedContent` routes, `x-goog-api-key` or `?key=` auth, Google's error envelope
 * (`{"error":{code,message,status,details}}`), the proto-JSON parser's refusal of unknown fields, the turn
 * rules of function calling, CRLF-framed SSE whose last event carries finishReason and usageMetadata, and
 * function calls without ids. Models named `gemini-3…` attach a thoughtSignature to function calls and refuse
 * a current-turn call sent back without it, as Gemini 3 does.
 *
 * Credentials, as the real API answers them: no key → 403 PERMISSION_DENIED; a wrong key → **400**
 * INVALID_ARGUMENT "API key not valid…" with ErrorInfo reason API_KEY_INVALID (it is the adapter's job to see
 * that this 400 is an auth failure, which the gateway reports as 502).
 *
 * What it answers is scripted by the text of the last user turn (the contract shared by every fake):
 * - "fail-400" / "fail-429" (RetryInfo retryDelay 3s) / "fail-500" / "fail-503" → that status, Google's envelope
 * - the conversation ends with a function response     → "The weather in Paris is sunny."
 * - "weather" and the request has function declarations → one `get_weather` call `{"city":"Paris"}`, finishReason STOP
 * - "finish-length"                                    → the reply cut at 3 tokens (or maxOutputTokens), MAX_TOKENS
 * - "midstream-error" when streaming                   → two chunks, then an `{"error":…}` event
 * - "prompt-blocked"                                   → no candidates, promptFeedback.blockReason SAFETY
 * - anything else                                      → FAKE_REPLY
 * `maxOutputTokens` (MAX_TOKENS), `stopSequences` (STOP) and `candidateCount` are honoured on text replies.
 */

export const FAKE_REPLY = 'Hello from fake Gemini! 你好 👋'
export const FAKE_TOOL_RESULT_REPLY = 'The weather in Paris is sunny.'
export const FAKE_TOOL_INPUT = { city: 'Paris' }
export const FAKE_API_KEY = 'AIzaSy-fake-gemini-key'

export interface FakeGeminiOptions {
  /** The one key accepted, via `x-goog-api-key` or `?key=`. Default FAKE_API_KEY. */
  apiKey?: string
  /** Write streams in pieces of this many bytes (splitting multi-byte characters and CRLFs) instead of one write per event. */
  streamChunkBytes?: number
  /** Reported as thoughtsTokenCount on every generation (thinking models bill them as output). Default: none. */
  thoughtsTokens?: number
}

export interface RecordedRequest {
  method: string
  path: string
  query: Record<string, string>
  headers: Record<string, string>
  body: any
}

export interface FakeGemini {
  /** Base URL including `/v1beta`. */
  url: string
  requests: RecordedRequest[]
  /** One entry per successful generation: the token counts reported (for embeddings, see `embedUsage`). */
  usageLog: { prompt_tokens: number; completion_tokens: number }[]
  stop(): void
}

const encoder = new TextEncoder()
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const random = (length: number) => Array.from({ length }, () => BASE62[Math.floor(Math.random() * 62)]).join('')

// ----------------------------------------------------------------------------------------------------------
// Errors

type Details = Record<string, unknown>[]

function googleError(code: number, status: string, message: string, details?: Details): Response {
  const error: Record<string, unknown> = { code, message, status }
  if (details) error.details = details
  // Google pretty-prints JSON answers.
  return new Response(JSON.stringify({ error }, null, 2), { status: code, headers: { 'content-type': 'application/json; charset=UTF-8', vary: 'Origin, X-Origin, Referer' } })
}

const invalid = (message: string) => googleError(400, 'INVALID_ARGUMENT', message)

/** What the proto-JSON parser says about a payload it cannot map: a BadRequest detail repeating the message. */
const payloadError = (message: string) =>
  googleError(400, 'INVALID_ARGUMENT', message, [{ '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ description: message }] }])

const badKey = () =>
  googleError(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
    { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com', metadata: { service: 'generativelanguage.googleapis.com' } },
    { '@type': 'type.googleapis.com/google.rpc.LocalizedMessage', locale: 'en-US', message: 'API key not valid. Please pass a valid API key.' },
  ])

const noKey = () =>
  googleError(
    403,
    'PERMISSION_DENIED',
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
  )

const rateLimited = (model: string) =>
  googleError(
    429,
    'RESOURCE_EXHAUSTED',
    'You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.',
    [
      {
        '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
        violations: [
          {
            quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests',
            quotaId: 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier',
            quotaDimensions: { location: 'global', model },
            quotaValue: '10',
          },
        ],
      },
      { '@type': 'type.googleapis.com/google.rpc.Help', links: [{ description: 'Learn more about Gemini API quotas', url: 'https://ai.google.dev/gemini-api/docs/rate-limits' }] },
      { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '3s' },
    ],
  )

const INTERNAL = { code: 500, message: 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting', status: 'INTERNAL' }

/** Google's front end answers an unknown URL with an HTML page, not JSON. */
const notFoundPage = (path: string) =>
  new Response(`<!DOCTYPE html>\n<html lang=en>\n  <title>Error 404 (Not Found)!!1</title>\n  <p><b>404.</b> <ins>That’s an error.</ins>\n  <p>The requested URL <code>${path}</code> was not found on this server.  <ins>That’s all we know.</ins>\n`, {
    status: 404,
    headers: { 'content-type': 'text/html; charset=UTF-8' },
  })

// ----------------------------------------------------------------------------------------------------------
// The proto-JSON parser: unknown names and wrong types are refused before anything else is looked at.

type Spec = 'string' | 'int' | 'number' | 'bool' | 'bytes' | 'struct' | 'value' | { enum: string[] } | { message: Fields } | { repeated: Spec } | { map: Spec }
type Fields = { [camelName: string]: Spec }

const SCHEMA: Fields = {}
Object.assign(SCHEMA, {
  type: { enum: ['TYPE_UNSPECIFIED', 'STRING', 'NUMBER', 'INTEGER', 'BOOLEAN', 'ARRAY', 'OBJECT', 'NULL'] },
  format: 'string',
  title: 'string',
  description: 'string',
  nullable: 'bool',
  enum: { repeated: 'string' },
  maxItems: 'int',
  minItems: 'int',
  properties: { map: { message: SCHEMA } },
  required: { repeated: 'string' },
  minProperties: 'int',
  maxProperties: 'int',
  minLength: 'int',
  maxLength: 'int',
  pattern: 'string',
  example: 'value',
  anyOf: { repeated: { message: SCHEMA } },
  propertyOrdering: { repeated: 'string' },
  default: 'value',
  items: { message: SCHEMA },
  minimum: 'number',
  maximum: 'number',
} satisfies Fields)

const BLOB: Fields = { mimeType: 'string', data: 'bytes' }
const PART: Fields = {
  text: 'string',
  inlineData: { message: BLOB },
  fileData: { message: { mimeType: 'string', fileUri: 'string' } },
  functionCall: { message: { id: 'string', name: 'string', args: 'struct' } },
  functionResponse: { message: { id: 'string', name: 'string', response: 'struct', willContinue: 'bool', scheduling: { enum: ['SCHEDULING_UNSPECIFIED', 'SILENT', 'WHEN_IDLE', 'INTERRUPT'] } } },
  executableCode: { message: { language: { enum: ['LANGUAGE_UNSPECIFIED', 'PYTHON'] }, code: 'string' } },
  codeExecutionResult: { message: { outcome: { enum: ['OUTCOME_UNSPECIFIED', 'OUTCOME_OK', 'OUTCOME_FAILED', 'OUTCOME_DEADLINE_EXCEEDED'] }, output: 'string' } },
  videoMetadata: { message: { startOffset: 'string', endOffset: 'string', fps: 'number' } },
  thought: 'bool',
  thoughtSignature: 'bytes',
  partMetadata: 'struct',
}
const DATA_FIELDS = ['text', 'inlineData', 'fileData', 'functionCall', 'functionResponse', 'executableCode', 'codeExecutionResult']
const CONTENT: Fields = { role: 'string', parts: { repeated: { message: PART } } }
const TOOL: Fields = {
  functionDeclarations: {
    repeated: {
      message: {
        name: 'string',
        description: 'string',
        behavior: { enum: ['UNSPECIFIED', 'BLOCKING', 'NON_BLOCKING'] },
        parameters: { message: SCHEMA },
        parametersJsonSchema: 'value',
        response: { message: SCHEMA },
        responseJsonSchema: 'value',
      },
    },
  },
  googleSearch: 'struct',
  googleSearchRetrieval: 'struct',
  codeExecution: 'struct',
  urlContext: 'struct',
}
const GENERATION_CONFIG: Fields = {
  stopSequences: { repeated: 'string' },
  responseMimeType: 'string',
  responseSchema: { message: SCHEMA },
  responseJsonSchema: 'value',
  responseModalities: { repeated: { enum: ['MODALITY_UNSPECIFIED', 'TEXT', 'IMAGE', 'AUDIO'] } },
  candidateCount: 'int',
  maxOutputTokens: 'int',
  temperature: 'number',
  topP: 'number',
  topK: 'int',
  seed: 'int',
  presencePenalty: 'number',
  frequencyPenalty: 'number',
  responseLogprobs: 'bool',
  logprobs: 'int',
  enableEnhancedCivicAnswers: 'bool',
  speechConfig: 'struct',
  thinkingConfig: { message: { includeThoughts: 'bool', thinkingBudget: 'int', thinkingLevel: { enum: ['THINKING_LEVEL_UNSPECIFIED', 'MINIMAL', 'LOW', 'MEDIUM', 'HIGH'] } } },
  mediaResolution: { enum: ['MEDIA_RESOLUTION_UNSPECIFIED', 'MEDIA_RESOLUTION_LOW', 'MEDIA_RESOLUTION_MEDIUM', 'MEDIA_RESOLUTION_HIGH'] },
}
const GENERATE_CONTENT_REQUEST: Fields = {
  model: 'string',
  contents: { repeated: { message: CONTENT } },
  systemInstruction: { message: CONTENT },
  tools: { repeated: { message: TOOL } },
  toolConfig: {
    message: {
      functionCallingConfig: { message: { mode: { enum: ['MODE_UNSPECIFIED', 'AUTO', 'ANY', 'NONE', 'VALIDATED'] }, allowedFunctionNames: { repeated: 'string' } } },
    },
  },
  safetySettings: { repeated: { message: { category: 'string', threshold: 'string' } } },
  generationConfig: { message: GENERATION_CONFIG },
  cachedContent: 'string',
}
const EMBED_CONTENT_REQUEST: Fields = {
  model: 'string',
  content: { message: CONTENT },
  taskType: { enum: ['TASK_TYPE_UNSPECIFIED', 'RETRIEVAL_QUERY', 'RETRIEVAL_DOCUMENT', 'SEMANTIC_SIMILARITY', 'CLASSIFICATION', 'CLUSTERING', 'QUESTION_ANSWERING', 'FACT_VERIFICATION', 'CODE_RETRIEVAL_QUERY'] },
  title: 'string',
  outputDimensionality: 'int',
}
const BATCH_EMBED_REQUEST: Fields = { requests: { repeated: { message: EMBED_CONTENT_REQUEST } } }

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
const camel = (name: string) => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/
const isObject = (v: unknown): v is Record<string, any> => v !== null && typeof v === 'object' && !Array.isArray(v)

/** Checks `value` against a message description the way Google's JSON parser does; returns its complaint or null. */
function parse(value: unknown, fields: Fields, path: string, messageName: string): string | null {
  if (!isObject(value)) return `Invalid value at '${path}' (type.googleapis.com/google.ai.generativelanguage.v1beta.${messageName}), ${JSON.stringify(value)}`
  for (const key of Object.keys(value)) {
    // The parser takes lowerCamelCase and the proto's snake_case names alike.
    const spec = fields[camel(key)]
    if (!spec) return `Invalid JSON payload received. Unknown name "${key}"${path ? ` at '${path}'` : ''}: Cannot find field.`
    const problem = check(value[key], spec, path ? `${path}.${snake(camel(key))}` : snake(camel(key)), camel(key))
    if (problem) return problem
  }
  return null
}

function check(value: unknown, spec: Spec, path: string, name: string): string | null {
  if (value === null) return null // JSON null means "unset" to the parser
  const bad = (type: string) => `Invalid value at '${path}' (${type}), ${JSON.stringify(value)}`
  if (spec === 'string') return typeof value === 'string' ? null : bad('TYPE_STRING')
  if (spec === 'int') return Number.isInteger(value) || (typeof value === 'string' && /^-?\d+$/.test(value)) ? null : bad('TYPE_INT32')
  if (spec === 'number') return typeof value === 'number' ? null : bad('TYPE_FLOAT')
  if (spec === 'bool') return typeof value === 'boolean' ? null : bad('TYPE_BOOL')
  if (spec === 'bytes') return typeof value === 'string' && BASE64.test(value) ? null : `Invalid value at '${path}' (TYPE_BYTES), Base64 decoding failed for ${JSON.stringify(value)}`
  if (spec === 'struct') return isObject(value) ? null : bad('type.googleapis.com/google.protobuf.Struct')
  if (spec === 'value') return null
  if ('enum' in spec) {
    // Enum names are matched without regard to case (the REST docs themselves write "type": "object").
    return typeof value === 'string' && spec.enum.includes(value.toUpperCase()) ? null : bad(`type.googleapis.com/google.ai.generativelanguage.v1beta.${name}`)
  }
  if ('repeated' in spec) {
    if (!Array.isArray(value)) return `Invalid value at '${path}' (${describe(spec.repeated, name)}), ${JSON.stringify(value)}`
    for (const [i, item] of value.entries()) {
      const problem = check(item, spec.repeated, `${path}[${i}]`, name)
      if (problem) return problem
    }
    return null
  }
  if ('map' in spec) {
    if (!isObject(value)) return bad('map')
    for (const [key, item] of Object.entries(value)) {
      const problem = check(item, spec.map, `${path}[${JSON.stringify(key)}]`, name)
      if (problem) return problem
    }
    return null
  }
  return parse(value, spec.message, path, name.charAt(0).toUpperCase() + name.slice(1))
}

const describe = (spec: Spec, name: string) => (typeof spec === 'string' ? `TYPE_${spec.toUpperCase()}` : `type.googleapis.com/google.ai.generativelanguage.v1beta.${name}`)

// ----------------------------------------------------------------------------------------------------------
// Semantic checks of GenerateContentRequest (after parsing), with the real API's messages.

const FUNCTION_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/
const hasCall = (c: any) => (c.parts ?? []).some((p: any) => p.functionCall)
const responses = (c: any) => (c.parts ?? []).filter((p: any) => p.functionResponse)

function validateGenerate(body: any, model: string, issued: Set<string>): string | null {
  const contents: any[] = body.contents ?? []
  if (contents.length === 0) return '* GenerateContentRequest.contents: contents is not specified\n'
  for (const [i, content] of contents.entries()) {
    if (content.role !== undefined && content.role !== 'user' && content.role !== 'model') return 'Please use a valid role: user, model.'
    const parts: any[] = content.parts ?? []
    if (parts.length === 0) return `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.\n`
    for (const [j, part] of parts.entries()) {
      const set = DATA_FIELDS.filter((f) => part[f] !== undefined && part[f] !== null)
      if (set.length === 0) return `* GenerateContentRequest.contents[${i}].parts[${j}].data: required oneof field 'data' must have one initialized field\n`
      if (set.length > 1) return `Invalid JSON payload received. Unknown name "${set[1]}" at 'contents[${i}].parts[${j}]': Oneof field 'data' is already set. Cannot set '${set[1]}'`
      if (part.functionCall && !part.functionCall.name) return `* GenerateContentRequest.contents[${i}].parts[${j}].function_call.name: Name cannot be empty.\n`
      if (part.functionResponse && !part.functionResponse.name) return `* GenerateContentRequest.contents[${i}].parts[${j}].function_response.name: Name cannot be empty.\n`
      if (part.inlineData && (!part.inlineData.mimeType || !part.inlineData.data)) return `* GenerateContentRequest.contents[${i}].parts[${j}].inline_data.data: Required field is not set.\n`
      if (part.thoughtSignature && !issued.has(part.thoughtSignature)) return 'Corrupted thought signature.'
    }
    const previous = contents[i - 1]
    if (hasCall(content)) {
      if (content.role !== 'model') return `* GenerateContentRequest.contents[${i}]: function_call parts are only allowed in model turns.\n`
      if (!previous || previous.role === 'model') return 'Please ensure that function call turn comes immediately after a user turn or after a function response turn.'
    }
    const answered = responses(content)
    if (answered.length > 0) {
      if (!previous || previous.role !== 'model' || !hasCall(previous)) return 'Please ensure that function response turn comes immediately after a function call turn.'
      const calls = previous.parts.filter((p: any) => p.functionCall).length
      if (calls !== answered.length) {
        return 'Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.'
      }
    }
  }
  // Gemini 3: every function-call step of the current turn (since the last real user message) must carry its signature.
  if (/^gemini-3/.test(model)) {
    let start = 0
    contents.forEach((c, i) => {
      if (c.role !== 'model' && c.parts.some((p: any) => !p.functionResponse)) start = i
    })
    for (let i = start; i < contents.length; i++) {
      const first = contents[i].parts.find((p: any) => p.functionCall)
      if (contents[i].role === 'model' && first && !first.thoughtSignature) {
        return `Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call \`default_api:${first.functionCall.name}\` , position ${i + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.`
      }
    }
  }
  for (const [t, tool] of (body.tools ?? []).entries()) {
    for (const [d, fn] of (tool.functionDeclarations ?? tool.function_declarations ?? []).entries()) {
      const at = `tools[${t}].function_declarations[${d}]`
      if (!FUNCTION_NAME.test(fn.name ?? '')) {
        return `* GenerateContentRequest.${at}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.\n`
      }
      if (fn.parameters && (fn.parametersJsonSchema ?? fn.parameters_json_schema)) return `* GenerateContentRequest.${at}: parameters and parameters_json_schema cannot both be set.\n`
    }
  }
  const declared = (body.tools ?? []).some((t: any) => (t.functionDeclarations ?? t.function_declarations ?? []).length > 0)
  const calling = body.toolConfig?.functionCallingConfig ?? body.tool_config?.function_calling_config
  if (calling) {
    const mode = String(calling.mode ?? 'AUTO').toUpperCase()
    if (!declared && mode !== 'NONE') return '* GenerateContentRequest.tool_config.function_calling_config.mode: function_calling_config.mode is set without function_declarations.\n'
    const names = calling.allowedFunctionNames ?? calling.allowed_function_names
    if (names?.length && mode !== 'ANY' && mode !== 'VALIDATED') {
      return '* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: allowed_function_names can only be set when mode is ANY or VALIDATED.\n'
    }
  }
  const config = body.generationConfig ?? body.generation_config ?? {}
  const jsonSchema = config.responseJsonSchema ?? config.response_json_schema
  const mime = config.responseMimeType ?? config.response_mime_type
  if ((jsonSchema !== undefined || config.responseSchema !== undefined) && mime !== 'application/json') {
    return '* GenerateContentRequest.generation_config.response_mime_type: must be application/json when a response schema is set.\n'
  }
  if (jsonSchema !== undefined && (config.responseSchema ?? config.response_schema) !== undefined) {
    return '* GenerateContentRequest.generation_config: response_schema and response_json_schema cannot both be set.\n'
  }
  const max = config.maxOutputTokens ?? config.max_output_tokens
  if (max !== undefined && Number(max) < 1) return '* GenerateContentRequest.generation_config.max_output_tokens: max_output_tokens must be positive.\n'
  const count = config.candidateCount ?? config.candidate_count
  if (count !== undefined && (Number(count) < 1 || Number(count) > 8)) return '* GenerateContentRequest.generation_config.candidate_count: candidate_count must be between 1 and 8.\n'
  return null
}

// ----------------------------------------------------------------------------------------------------------
// Replies

type Part = Record<string, any>

interface Reply {
  /** Per streamed chunk, the parts of each candidate. */
  chunks: Part[][]
  finishReason: 'STOP' | 'MAX_TOKENS'
  /** Output tokens of one candidate. */
  tokens: number
}

/** Word-sized pieces (leading space kept, as tokenizers do); runs of non-ASCII characters (CJK, emoji) get pieces of their own. */
export function splitPieces(text: string): string[] {
  return text.match(/\s*(?:[!-~]+|[^\s\x00-\x7f]+)|\s+$/gu) ?? []
}

function textReply(full: string, config: any, forceLength: boolean): Reply {
  let text = full
  for (const seq of config.stopSequences ?? config.stop_sequences ?? []) {
    const at = text.indexOf(seq)
    if (at !== -1) text = text.slice(0, at)
  }
  let pieces = splitPieces(text)
  let finishReason: Reply['finishReason'] = 'STOP'
  const max = Number(config.maxOutputTokens ?? config.max_output_tokens ?? (forceLength ? 3 : Infinity))
  if (pieces.length > max) {
    pieces = pieces.slice(0, max)
    finishReason = 'MAX_TOKENS'
  }
  // Two tokens per streamed chunk, as Gemini sends small groups of tokens.
  const chunks: Part[][] = []
  for (let i = 0; i < pieces.length; i += 2) chunks.push([{ text: pieces.slice(i, i + 2).join('') }])
  return { chunks: chunks.length > 0 ? chunks : [[{ text: '' }]], finishReason, tokens: pieces.length }
}

function toolReply(model: string, issued: Set<string>): Reply {
  const part: Part = { functionCall: { name: 'get_weather', args: { ...FAKE_TOOL_INPUT } } }
  if (/^gemini-3/.test(model)) {
    const signature = Buffer.from(crypto.getRandomValues(new Uint8Array(48))).toString('base64')
    issued.add(signature)
    part.thoughtSignature = signature
  }
  // The call arrives whole in one event; the stream then closes with an empty text part carrying STOP.
  return { chunks: [[part], [{ text: '' }]], finishReason: 'STOP', tokens: 7 }
}

/** Text the model reads, for the ~4 characters per token count; an image is a flat 258 tokens, as Gemini bills it. */
function promptTokens(body: any): number {
  let chars = 0
  let media = 0
  const system = body.systemInstruction ?? body.system_instruction
  for (const content of [...(system ? [system] : []), ...(body.contents ?? [])]) {
    for (const part of content.parts ?? []) {
      if (typeof part.text === 'string') chars += part.text.length
      else if (part.functionCall) chars += JSON.stringify(part.functionCall.args ?? {}).length
      else if (part.functionResponse) chars += JSON.stringify(part.functionResponse.response ?? {}).length
      else if (part.inlineData || part.fileData) media++
    }
  }
  return Math.max(1, Math.ceil(chars / 4)) + media * 258
}

/** Google's SSE JSON style: a space after each colon, none after commas. */
function googleJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(googleJson).join(',')}]`
  if (isObject(value)) return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${googleJson(v)}`).join(',')}}`
  return JSON.stringify(value)
}

/** Deterministic unit vector from the text, so equal inputs embed equally. */
function embed(text: string, dimensions: number): number[] {
  let seed = 2166136261
  for (const ch of text) seed = Math.imul(seed ^ ch.codePointAt(0)!, 16777619) >>> 0
  const values: number[] = []
  for (let i = 0; i < dimensions; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
    values.push(seed / 2 ** 31 - 1)
  }
  const norm = Math.hypot(...values) || 1
  return values.map((v) => v / norm)
}

/**
 * Gemini reports no usage for embeddings. The log records the ~4 characters per token estimate the gateway is
 * documented to make, so the usage a client sees can be checked against something.
 */
export const embedUsage = (texts: string[]) => ({ prompt_tokens: texts.reduce((sum, t) => sum + Math.ceil(t.length / 4), 0), completion_tokens: 0 })

// ----------------------------------------------------------------------------------------------------------

export async function startFakeGemini(options: FakeGeminiOptions = {}): Promise<FakeGemini> {
  const apiKey = options.apiKey ?? FAKE_API_KEY
  const requests: RecordedRequest[] = []
  const usageLog: FakeGemini['usageLog'] = []
  const issued = new Set<string>()

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const url = new URL(req.url)
      const path = url.pathname
      const text = await req.text()
      let body: any = null
      let malformed = false
      try {
        body = text ? JSON.parse(text) : {}
      } catch {
        malformed = true
      }
      requests.push({ method: req.method, path, query: Object.fromEntries(url.searchParams), headers: Object.fromEntries(req.headers), body })

      const route = /^\/v1beta\/(models|tunedModels)\/([^/:]+):(generateContent|streamGenerateContent|batchEmbedContents|embedContent)$/.exec(path)
      if (!route || req.method !== 'POST') return notFoundPage(path)
      const key = req.headers.get('x-goog-api-key') ?? url.searchParams.get('key')
      if (!key) return noKey()
      if (key !== apiKey) return badKey()
      if (malformed) return payloadError(`Invalid JSON payload received. Unexpected token.\n${text.slice(0, 40)}\n^`)
      if (!isObject(body)) return payloadError(`Invalid JSON payload received. Expected an object.`)
      const model = route[2]!
      const method = route[3]!
      const embeddingModel = model.includes('embedding')
      if (embeddingModel !== (method === 'batchEmbedContents' || method === 'embedContent')) {
        return googleError(
          404,
          'NOT_FOUND',
          `models/${model} is not found for API version v1beta, or is not supported for ${method}. Call ListModels to see the list of available models and their supported methods.`,
        )
      }
      if (method === 'batchEmbedContents' || method === 'embedContent') return embeddings(method, model, body)
      return generate(model, method === 'streamGenerateContent', url.searchParams.get('alt') === 'sse', body)
    },
  })

  function embeddings(method: string, model: string, body: any): Response {
    const batch = method === 'batchEmbedContents'
    const problem = batch ? parse(body, BATCH_EMBED_REQUEST, '', 'BatchEmbedContentsRequest') : parse(body, EMBED_CONTENT_REQUEST, '', 'EmbedContentRequest')
    if (problem) return payloadError(problem)
    const list: any[] = batch ? (body.requests ?? []) : [body]
    if (batch && list.length === 0) return invalid('* BatchEmbedContentsRequest.requests: requests is not specified\n')
    if (list.length > 100) return invalid('* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n')
    const texts: string[] = []
    for (const [i, one] of list.entries()) {
      const at = batch ? `BatchEmbedContentsRequest.requests[${i}]` : 'EmbedContentRequest'
      if (batch && one.model !== `models/${model}`) return invalid(`* ${at}.model: model field must match the model of the batch request (models/${model}).\n`)
      const parts: any[] = one.content?.parts ?? []
      if (parts.length === 0) return invalid(`* ${at}.content.parts: contents.parts must not be empty.\n`)
      if (parts.some((p) => typeof p.text !== 'string')) return invalid(`* ${at}.content.parts: only text parts can be embedded by this model.\n`)
      texts.push(parts.map((p) => p.text).join(''))
    }
    const dims = (one: any) => Number(one.outputDimensionality ?? one.output_dimensionality ?? (model.startsWith('gemini-embedding') ? 3072 : 768))
    const vectors = list.map((one, i) => ({ values: embed(texts[i]!, dims(one)) }))
    usageLog.push(embedUsage(texts))
    const answer = batch ? { embeddings: vectors } : { embedding: vectors[0] }
    return new Response(JSON.stringify(answer, null, 2), { headers: { 'content-type': 'application/json; charset=UTF-8' } })
  }

  function generate(model: string, stream: boolean, sse: boolean, body: any): Response {
    const problem = parse(body, GENERATE_CONTENT_REQUEST, '', 'GenerateContentRequest')
    if (problem) return payloadError(problem)
    const invalidRequest = validateGenerate(body, model, issued)
    if (invalidRequest) return invalid(invalidRequest)

    const contents: any[] = body.contents
    const last = [...contents].reverse().find((c) => c.role !== 'model')
    const lastText = (last?.parts ?? []).map((p: any) => p.text ?? '').join(' ')
    if (lastText.includes('fail-400')) return invalid('Request contains an invalid argument.')
    if (lastText.includes('fail-429')) return rateLimited(model)
    if (lastText.includes('fail-500')) return googleError(INTERNAL.code, INTERNAL.status, INTERNAL.message)
    if (lastText.includes('fail-503')) return googleError(503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.')

    const config = body.generationConfig ?? body.generation_config ?? {}
    const tools = body.tools ?? []
    const declared = tools.some((t: any) => (t.functionDeclarations ?? t.function_declarations ?? []).length > 0)
    const mode = String((body.toolConfig ?? body.tool_config)?.functionCallingConfig?.mode ?? 'AUTO').toUpperCase()
    const endsWithToolResult = contents.at(-1)?.role !== 'model' && responses(contents.at(-1)).length > 0
    const prompt = promptTokens(body)
    const responseId = random(22)
    const thoughts = options.thoughtsTokens ?? 0

    const usage = (candidatesTokenCount: number | undefined) => {
      const meta: Record<string, unknown> = { promptTokenCount: prompt }
      if (candidatesTokenCount !== undefined) meta.candidatesTokenCount = candidatesTokenCount
      meta.totalTokenCount = prompt + (candidatesTokenCount ?? 0) + (candidatesTokenCount !== undefined ? thoughts : 0)
      meta.promptTokensDetails = [{ modality: 'TEXT', tokenCount: prompt }]
      if (thoughts > 0 && candidatesTokenCount !== undefined) meta.thoughtsTokenCount = thoughts
      return meta
    }

    if (lastText.includes('prompt-blocked')) {
      usageLog.push({ prompt_tokens: prompt, completion_tokens: 0 })
      const answer = { promptFeedback: { blockReason: 'SAFETY', safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH' }] }, usageMetadata: { promptTokenCount: prompt, totalTokenCount: prompt }, modelVersion: model, responseId }
      return stream ? streamResponse([answer], sse, () => {}) : json(answer)
    }

    let reply: Reply
    if (endsWithToolResult) reply = textReply(FAKE_TOOL_RESULT_REPLY, config, false)
    else if (declared && mode !== 'NONE' && lastText.includes('weather')) reply = toolReply(model, issued)
    else reply = textReply(FAKE_REPLY, config, lastText.includes('finish-length'))
    const n = Number(config.candidateCount ?? config.candidate_count ?? 1)
    const candidatesTokenCount = reply.tokens * n
    const logUsage = () => usageLog.push({ prompt_tokens: prompt, completion_tokens: candidatesTokenCount + thoughts })

    if (!stream) {
      const candidates = Array.from({ length: n }, (_, index) => ({
        content: { parts: mergeText(reply.chunks.flat()), role: 'model' },
        finishReason: reply.finishReason,
        index,
      }))
      logUsage()
      return json({ candidates, usageMetadata: usage(candidatesTokenCount), modelVersion: model, responseId })
    }

    const failMidway = lastText.includes('midstream-error')
    const events: unknown[] = []
    let produced = 0
    for (const [c, parts] of reply.chunks.entries()) {
      if (failMidway && c === 2) {
        events.push({ error: INTERNAL })
        break
      }
      const final = c === reply.chunks.length - 1
      produced += parts.reduce((sum, p) => sum + (typeof p.text === 'string' ? splitPieces(p.text).length : 0), 0)
      // Proto3 JSON leaves out index 0 on the way; the last event states it along with the finish reason.
      const candidates = Array.from({ length: n }, (_, index) => {
        const candidate: Record<string, unknown> = { content: { parts, role: 'model' } }
        if (final) candidate.finishReason = reply.finishReason
        if (final || index > 0) candidate.index = index
        return candidate
      })
      // Earlier events carry running counts; only the last one has the final usage.
      events.push({ candidates, usageMetadata: final ? usage(candidatesTokenCount) : usage(c === 0 ? undefined : produced * n), modelVersion: model, responseId })
    }
    return streamResponse(events, sse, failMidway ? () => {} : logUsage)
  }

  /** Adjacent text parts read as one in a non-streamed answer, and the stream's closing empty text is not there. */
  function mergeText(parts: Part[]): Part[] {
    const out: Part[] = []
    for (const part of parts) {
      if (part.text === '' && parts.length > 1) continue
      const prev = out.at(-1)
      if (typeof part.text === 'string' && prev && typeof prev.text === 'string' && Object.keys(prev).length === 1) prev.text += part.text
      else out.push({ ...part })
    }
    return out
  }

  function json(answer: unknown): Response {
    return new Response(JSON.stringify(answer, null, 2), { headers: { 'content-type': 'application/json; charset=UTF-8', vary: 'Origin, X-Origin, Referer' } })
  }

  /** `alt=sse`: CRLF-framed `data:` events, no terminator. Otherwise a JSON array, streamed element by element. */
  function streamResponse(events: unknown[], sse: boolean, beforeLast: () => void): Response {
    const texts = sse
      ? events.map((e) => `data: ${googleJson(e)}\r\n\r\n`)
      : events.map((e, i) => (i === 0 ? '[' : '\r\n,') + JSON.stringify(e, null, 2) + (i === events.length - 1 ? ']' : ''))
    const headers = { 'content-type': sse ? 'text/event-stream' : 'application/json; charset=UTF-8', 'x-content-type-options': 'nosniff' }
    return new Response(byteStream(texts, options.streamChunkBytes, beforeLast), { headers })
  }

  return { url: `http://127.0.0.1:${server.port}/v1beta`, requests, usageLog, stop: () => server.stop(true) }
}

/** One write per event, or fixed-size byte pieces when asked; `beforeLast` runs just before the last event's first byte goes out. */
function byteStream(events: string[], chunkBytes: number | undefined, beforeLast: () => void): ReadableStream<Uint8Array> {
  const encoded = events.map((e) => encoder.encode(e))
  const total = encoded.reduce((sum, e) => sum + e.length, 0)
  const lastStart = total - (encoded.at(-1)?.length ?? 0)
  const parts: { bytes: Uint8Array; end: number }[] = []
  if (chunkBytes && chunkBytes > 0) {
    const all = new Uint8Array(total)
    let at = 0
    for (const e of encoded) {
      all.set(e, at)
      at += e.length
    }
    for (let i = 0; i < total; i += chunkBytes) parts.push({ bytes: all.subarray(i, i + chunkBytes), end: Math.min(i + chunkBytes, total) })
  } else {
    let end = 0
    for (const e of encoded) parts.push({ bytes: e, end: (end += e.length) })
  }
  let lastFired = false
  return new ReadableStream({
    async pull(controller) {
      const next = parts.shift()
      if (!next) return controller.close()
      if (!lastFired && next.end > lastStart) {
        lastFired = true
        beforeLast()
      }
      controller.enqueue(next.bytes)
      await Bun.sleep(1) // separate network writes, as a real upstream produces them
    },
  })
}
