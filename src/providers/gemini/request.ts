import { GatewayError, assistantTexts, badRequest, parseDataUrl, textOf, toolArguments, userParts, type AttemptContext, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { thoughtSignatureOf } from './tool-ids.ts'
import type {
  GeminiBatchEmbedContentsRequest,
  GeminiContent,
  GeminiFunctionDeclaration,
  GeminiGenerateContentRequest,
  GeminiGenerationConfig,
  GeminiPart,
  GeminiToolConfig,
} from './types.ts'

export const DEFAULT_BASE_URL = 'https://generativelanguage.googleapis.com/v1beta'

/** batchEmbedContents takes at most this many requests; one OpenAI call is one upstream call, so more is refused up front. */
export const MAX_EMBED_BATCH = 100

/** Request fields translated below (or owned by the core, like `stream_options`); any other field set is dropped and signalled. */
const HANDLED = new Set([
  'model',
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'stop',
  'temperature',
  'top_p',
  // Not OpenAI's, but Anthropic's and Gemini's clients send it (through /v1/messages too).
  'top_k',
  'n',
  'seed',
  'presence_penalty',
  'frequency_penalty',
  'response_format',
  'tools',
  'tool_choice',
  'stream',
  'stream_options',
])

const EMBEDDING_HANDLED = new Set(['model', 'input', 'dimensions', 'encoding_format'])

function baseURL(ctx: AttemptContext): string {
  return (ctx.target.provider.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '')
}

/** `gemini-2.5-flash` → `models/gemini-2.5-flash`; a full resource name (`tunedModels/…`) is kept. */
const resourceName = (model: string) => (model.includes('/') ? model : `models/${model}`)

function headers(ctx: AttemptContext, stream = false): Record<string, string> {
  const out: Record<string, string> = { 'content-type': 'application/json' }
  // The header, not `?key=`: URLs end up in logs and proxies, headers much less so.
  if (ctx.target.provider.apiKey) out['x-goog-api-key'] = ctx.target.provider.apiKey
  if (stream) out.accept = 'text/event-stream'
  return out
}

/** OpenAI chat request → Gemini generateContent (or streamGenerateContent) request. Never mutates `body`. */
export function buildRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { system, contents } = translateMessages(body.messages)
  if (contents.length === 0) throw badRequest('At least one user or assistant message is required by this provider.', 'messages')
  const request: GeminiGenerateContentRequest = { contents }
  if (system !== null) request.systemInstruction = { parts: [{ text: system }] }

  if (Array.isArray(body.tools) && body.tools.length > 0) {
    request.tools = [{ functionDeclarations: body.tools.map(translateTool) }]
    const toolConfig = translateToolChoice(body.tool_choice)
    if (toolConfig) request.toolConfig = toolConfig
  } else if (body.tool_choice != null) {
    translateToolChoice(body.tool_choice) // still validated; without tools there is nothing for it to steer
  }

  const config = generationConfig(body)
  if (Object.keys(config).length > 0) request.generationConfig = config

  for (const name in body) {
    const value = body[name]
    if (HANDLED.has(name) || value === undefined || value === null) continue
    // Gemini has no switch for it; `true` is the default behaviour anyway.
    if (name === 'parallel_tool_calls' && value === true) continue
    ctx.dropParam(name)
  }

  const stream = body.stream === true
  const method = stream ? 'streamGenerateContent?alt=sse' : 'generateContent'
  return { url: `${baseURL(ctx)}/${resourceName(ctx.target.model)}:${method}`, headers: headers(ctx, stream), body: JSON.stringify(request) }
}

function generationConfig(body: Record<string, any>): GeminiGenerationConfig {
  const config: GeminiGenerationConfig = {}
  const max = body.max_completion_tokens ?? body.max_tokens
  if (typeof max === 'number') config.maxOutputTokens = max
  if (typeof body.stop === 'string') config.stopSequences = [body.stop]
  else if (Array.isArray(body.stop) && body.stop.length > 0) config.stopSequences = [...body.stop]
  if (typeof body.temperature === 'number') config.temperature = body.temperature
  if (typeof body.top_p === 'number') config.topP = body.top_p
  if (typeof body.top_k === 'number') config.topK = body.top_k
  if (typeof body.n === 'number' && body.n !== 1) config.candidateCount = body.n
  if (typeof body.seed === 'number') config.seed = body.seed
  if (typeof body.presence_penalty === 'number') config.presencePenalty = body.presence_penalty
  if (typeof body.frequency_penalty === 'number') config.frequencyPenalty = body.frequency_penalty
  const format = body.response_format
  if (format?.type === 'json_object') config.responseMimeType = 'application/json'
  else if (format?.type === 'json_schema') {
    config.responseMimeType = 'application/json'
    if (format.json_schema?.schema !== undefined) config.responseJsonSchema = format.json_schema.schema
  } else if (format != null && format.type !== 'text') {
    throw badRequest(`Unsupported response_format type '${format?.type}'.`, 'response_format.type', 'unsupported_value')
  }
  return config
}

/**
 * System/developer messages → `systemInstruction`; user/assistant → user/model turns, same-role turns merged
 * (tool results then a user's text share one user turn, as Gemini wants); tool results become functionResponse
 * parts named after the call they answer.
 */
export function translateMessages(input: unknown): { system: string | null; contents: GeminiContent[] } {
  if (!Array.isArray(input)) throw badRequest('messages must be an array.', 'messages')
  const system: string[] = []
  const contents: GeminiContent[] = []
  /** tool_call_id → function name: functionResponse must name the function, OpenAI's tool message only has the id. */
  const callNames = new Map<string, string>()
  const push = (role: 'user' | 'model', parts: GeminiPart[]) => {
    if (parts.length === 0) return // Gemini refuses a turn without parts
    const last = contents[contents.length - 1]
    if (last?.role === role) last.parts.push(...parts)
    else contents.push({ role, parts })
  }

  input.forEach((message: any, i: number) => {
    const param = `messages[${i}]`
    switch (message?.role) {
      case 'system':
      case 'developer':
        system.push(textOf(message.content, param))
        break
      case 'user':
        push('user', userTurnParts(message.content, param))
        break
      case 'assistant':
        push('model', modelParts(message, param, callNames))
        break
      case 'tool': {
        const id = String(message.tool_call_id ?? '')
        const name = callNames.get(id)
        if (name === undefined) {
          throw badRequest(`No earlier assistant tool call has the id '${id}'.`, `${param}.tool_call_id`, 'invalid_tool_call_id')
        }
        push('user', [{ functionResponse: { name, response: toolResponse(textOf(message.content, param)) } }])
        break
      }
      default:
        throw badRequest(`The role '${message?.role}' is not supported by this provider.`, `${param}.role`, 'unsupported_value')
    }
  })
  return { system: system.length > 0 ? system.join('\n') : null, contents }
}

/** `response` must be a JSON object: an object result is sent as is, anything else under `output` (Gemini's documented key). */
function toolResponse(content: string): Record<string, unknown> {
  try {
    const parsed = JSON.parse(content)
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed
  } catch {}
  return { output: content }
}

// An empty text part carries nothing and a turn of only empty parts is refused: leave them out.
const text = (value: string): GeminiPart[] => (value ? [{ text: value }] : [])

const userTurnParts = (content: unknown, param: string) =>
  userParts<GeminiPart>(content, param, {
    text: (part) => text(String(part.text ?? '')),
    image_url: (part, partParam) => [imagePart(part.image_url?.url, `${partParam}.image_url.url`)],
    input_audio: ({ input_audio: audio }, partParam) => {
      if (typeof audio?.data !== 'string' || typeof audio?.format !== 'string') {
        throw badRequest('input_audio needs base64 `data` and a `format`.', `${partParam}.input_audio`)
      }
      return [{ inlineData: { mimeType: `audio/${audio.format}`, data: audio.data } }]
    },
    file: (part, partParam) => {
      const data = typeof part.file?.file_data === 'string' ? parseDataUrl(part.file.file_data) : null
      if (!data) throw badRequest('Only files sent inline as a base64 data URL are supported by this provider.', `${partParam}.file`, 'unsupported_content')
      return [{ inlineData: data }]
    },
  })

const IMAGE_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  heic: 'image/heic',
  heif: 'image/heif',
  pdf: 'application/pdf',
}

/** fileData needs a mime type and OpenAI's image_url has none: guess from the extension; JPEG, the commonest, otherwise. */
export function guessMimeType(url: string): string {
  let path = url
  try {
    path = new URL(url).pathname
  } catch {}
  const ext = /\.([a-z0-9]+)$/i.exec(path)?.[1]?.toLowerCase()
  return (ext && IMAGE_TYPES[ext]) || 'image/jpeg'
}

function imagePart(url: unknown, param: string): GeminiPart {
  if (typeof url === 'string') {
    const data = parseDataUrl(url)
    if (data) return { inlineData: data }
    if (/^https?:\/\//i.test(url)) return { fileData: { mimeType: guessMimeType(url), fileUri: url } }
  }
  throw badRequest('Images must be an http(s) URL or a base64 data URL.', param, 'invalid_image_url')
}

function modelParts(message: any, param: string, callNames: Map<string, string>): GeminiPart[] {
  const parts: GeminiPart[] = assistantTexts(message.content, param).flatMap(text)
  if (Array.isArray(message.tool_calls)) {
    message.tool_calls.forEach((call: any, j: number) => {
      const name = call?.function?.name
      if (typeof name !== 'string' || !name) throw badRequest('Tool calls need a function name.', `${param}.tool_calls[${j}].function.name`)
      const id = String(call.id ?? '')
      callNames.set(id, name)
      // No functionCall.id: generateContent pairs calls and responses by name and order, and our ids are ours.
      const part: GeminiPart = { functionCall: { name, args: toolArguments(call.function.arguments, `${param}.tool_calls`) } }
      const signature = thoughtSignatureOf(id)
      if (signature) part.thoughtSignature = signature
      parts.push(part)
    })
  }
  return parts
}

function translateTool(tool: any, i: number): GeminiFunctionDeclaration {
  if (tool?.type !== 'function' || typeof tool.function?.name !== 'string') {
    throw badRequest(`Tools of type '${tool?.type}' are not supported by this provider.`, `tools[${i}]`, 'unsupported_value')
  }
  const fn = tool.function
  const out: GeminiFunctionDeclaration = { name: fn.name }
  if (typeof fn.description === 'string') out.description = fn.description
  // parametersJsonSchema takes OpenAI's JSON Schema as is; `parameters` would reject additionalProperties, $schema, …
  if (fn.parameters != null) out.parametersJsonSchema = fn.parameters
  return out
}

function translateToolChoice(choice: any): GeminiToolConfig | undefined {
  if (choice == null) return undefined
  if (choice === 'auto') return { functionCallingConfig: { mode: 'AUTO' } }
  if (choice === 'none') return { functionCallingConfig: { mode: 'NONE' } }
  if (choice === 'required') return { functionCallingConfig: { mode: 'ANY' } }
  if (choice?.type === 'function' && typeof choice.function?.name === 'string') {
    return { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: [choice.function.name] } }
  }
  if (choice?.type === 'allowed_tools' && Array.isArray(choice.allowed_tools?.tools)) {
    const names = choice.allowed_tools.tools.map((t: any) => t?.function?.name).filter((n: unknown): n is string => typeof n === 'string')
    // VALIDATED is Gemini's "call one of these or answer in text": OpenAI's allowed_tools in auto mode.
    const mode = choice.allowed_tools.mode === 'required' ? 'ANY' : 'VALIDATED'
    return { functionCallingConfig: { mode, allowedFunctionNames: names } }
  }
  throw badRequest('Unsupported tool_choice value.', 'tool_choice', 'unsupported_value')
}

/** OpenAI embeddings request → batchEmbedContents, one request per input string. */
export function buildEmbeddingsRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const inputs = embeddingInputs(body.input)
  if (inputs.length > MAX_EMBED_BATCH) {
    throw new GatewayError(400, `This provider embeds at most ${MAX_EMBED_BATCH} inputs per request.`, { param: 'input', code: 'too_many_inputs' })
  }
  const model = resourceName(ctx.target.model)
  const request: GeminiBatchEmbedContentsRequest = {
    requests: inputs.map((text) => {
      const one: GeminiBatchEmbedContentsRequest['requests'][number] = { model, content: { parts: [{ text }] } }
      if (typeof body.dimensions === 'number') one.outputDimensionality = body.dimensions
      return one
    }),
  }
  for (const name in body) {
    if (!EMBEDDING_HANDLED.has(name) && body[name] !== undefined && body[name] !== null) ctx.dropParam(name)
  }
  return { url: `${baseURL(ctx)}/${model}:batchEmbedContents`, headers: headers(ctx), body: JSON.stringify(request) }
}

/** Gemini embeds text only: token-id arrays (which OpenAI also accepts) cannot be carried. */
export function embeddingInputs(input: unknown): string[] {
  if (typeof input === 'string') return [input]
  if (Array.isArray(input) && input.length > 0 && input.every((item) => typeof item === 'string')) return input as string[]
  throw badRequest('This provider embeds text only: `input` must be a string or an array of strings.', 'input', 'unsupported_value')
}
