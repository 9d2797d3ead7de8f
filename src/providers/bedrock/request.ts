import { GatewayError, assistantTexts, badRequest, hasMedia, parseDataUrl, textOf, toolArguments, userParts, type AttemptContext, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { authorizedRequest, connection, modelURL } from './config.ts'
import type { ContentBlock, ConverseRequest, ImageBlock, ImageFormat, InferenceConfiguration, Message, TextBlock, ToolChoice, ToolConfiguration, ToolSpec } from './types.ts'

export const EVENT_STREAM_TYPE = 'application/vnd.amazon.eventstream'

/** Request fields translated below (or owned by the core); any other field set is dropped and signalled. */
const HANDLED = new Set([
  'model',
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'stop',
  'temperature',
  'top_p',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'stream',
  'stream_options',
  'n',
])

const IMAGE_FORMATS: Record<string, ImageFormat> = {
  'image/png': 'png',
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/gif': 'gif',
  'image/webp': 'webp',
}

/** OpenAI chat request → Converse (or ConverseStream) request, signed (asynchronously: the SDK's signer is). Never mutates `body`. */
export function buildRequest(body: Record<string, any>, ctx: AttemptContext): Promise<UpstreamRequest> {
  const { provider, model } = ctx.target
  if (body.n != null && body.n !== 1) {
    throw new GatewayError(400, `The provider '${provider.name}' does not support the 'n' parameter.`, { param: 'n', code: 'unsupported_parameter' })
  }
  const conn = connection(provider)
  const request = translateChat(body, ctx)
  const stream = body.stream === true
  return authorizedRequest(conn, modelURL(conn, model, stream ? 'converse-stream' : 'converse'), JSON.stringify(request), stream ? EVENT_STREAM_TYPE : 'application/json')
}

/** The Converse body for an OpenAI chat request (exported for tests). */
export function translateChat(body: Record<string, any>, ctx: AttemptContext): ConverseRequest {
  const { system, messages } = translateMessages(body.messages)
  // The provider refuses an empty conversation (a system prompt alone): said here, and nothing is sent.
  if (messages.length === 0) throw badRequest('At least one user or assistant message is required by this provider.', 'messages')
  const request: ConverseRequest = { messages }
  if (system.length > 0) request.system = system

  const inference: InferenceConfiguration = {}
  const defaultMax = ctx.target.provider.options.default_max_tokens
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? (typeof defaultMax === 'number' ? defaultMax : undefined)
  if (typeof maxTokens === 'number') inference.maxTokens = maxTokens
  // Converse caps temperature at 1 where OpenAI allows 2.
  if (typeof body.temperature === 'number') inference.temperature = Math.min(Math.max(body.temperature, 0), 1)
  if (typeof body.top_p === 'number') inference.topP = body.top_p
  if (typeof body.stop === 'string') inference.stopSequences = [body.stop]
  else if (Array.isArray(body.stop) && body.stop.length > 0) inference.stopSequences = [...body.stop]
  if (Object.keys(inference).length > 0) request.inferenceConfig = inference

  const toolConfig = translateTools(body, messages, ctx)
  if (toolConfig) request.toolConfig = toolConfig

  for (const name in body) {
    const value = body[name]
    if (HANDLED.has(name) || value === undefined || value === null) continue
    // Defaults that lose nothing when not carried.
    if (name === 'response_format' && value?.type === 'text') continue
    ctx.dropParam(name)
  }
  return request
}

/** System/developer messages → `system` blocks; the rest → alternating user/assistant turns (Converse requires it). */
export function translateMessages(input: unknown): { system: TextBlock[]; messages: Message[] } {
  if (!Array.isArray(input)) throw badRequest('messages must be an array.', 'messages')
  const system: TextBlock[] = []
  const messages: Message[] = []
  const push = (role: Message['role'], blocks: ContentBlock[]) => {
    if (blocks.length === 0) return
    const last = messages[messages.length - 1]
    if (last?.role === role) last.content.push(...blocks)
    else messages.push({ role, content: blocks })
  }

  input.forEach((message: any, i: number) => {
    const param = `messages[${i}]`
    switch (message?.role) {
      case 'system':
      case 'developer': {
        const value = textOf(message.content, param)
        if (value) system.push({ text: value })
        break
      }
      case 'user':
        push('user', userBlocks(message.content, param))
        break
      case 'assistant':
        push('assistant', assistantBlocks(message, param))
        break
      case 'tool':
        // A result with images is a list of blocks, as Converse takes them inside toolResult.
        push('user', [{ toolResult: { toolUseId: String(message.tool_call_id ?? ''), content: hasMedia(message.content) ? userBlocks(message.content, param) : [{ text: textOf(message.content, param) }] } }])
        break
      default:
        throw badRequest(`The role '${message?.role}' is not supported by this provider.`, `${param}.role`, 'unsupported_value')
    }
  })
  return { system, messages }
}

// Converse refuses blank text blocks ("The text field in the ContentBlock object … is blank").
const text = (value: string): TextBlock[] => (value.trim() ? [{ text: value }] : [])

const userBlocks = (content: unknown, param: string) =>
  userParts<TextBlock | ImageBlock>(content, param, {
    text: (part) => text(String(part.text ?? '')),
    image_url: (part, partParam) => [imageBlock(part.image_url?.url, `${partParam}.image_url.url`)],
  })

/**
 * Converse carries image bytes (or S3 locations), never a web URL. Fetching the URL ourselves would make the
 * gateway a client-steered fetcher (SSRF), and dropping the image would change the question, so an http(s)
 * URL is refused.
 */
function imageBlock(url: unknown, param: string): ImageBlock {
  if (typeof url === 'string') {
    const data = parseDataUrl(url)
    if (data) {
      const format = IMAGE_FORMATS[data.mimeType.toLowerCase()]
      if (!format) throw badRequest(`Image type '${data.mimeType}' is not supported; use PNG, JPEG, GIF or WebP.`, param, 'invalid_image_format')
      return { image: { format, source: { bytes: data.data } } }
    }
    if (/^https?:\/\//i.test(url)) {
      throw badRequest('This provider accepts images only as base64 data URLs (data:image/png;base64,…), not web URLs.', param, 'unsupported_image_url')
    }
  }
  throw badRequest('Images must be a base64 data URL.', param, 'invalid_image_url')
}

function assistantBlocks(message: any, param: string): ContentBlock[] {
  const blocks: ContentBlock[] = assistantTexts(message.content, param).flatMap(text)
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      blocks.push({ toolUse: { toolUseId: String(call.id), name: String(call.function?.name), input: toolArguments(call.function?.arguments, `${param}.tool_calls`) } })
    }
  }
  return blocks
}

const usesTools = (messages: Message[]) => messages.some((m) => m.content.some((b) => 'toolUse' in b || 'toolResult' in b))

/**
 * `tools` → `toolConfig`. `tool_choice: "none"` has no Converse equivalent: the tools are left out, unless
 * the history holds tool calls, which Converse refuses without a toolConfig; then the tools stay, the model
 * chooses freely, and `tool_choice` is reported dropped.
 */
function translateTools(body: Record<string, any>, messages: Message[], ctx: AttemptContext): ToolConfiguration | undefined {
  if (!Array.isArray(body.tools) || body.tools.length === 0) {
    if (body.tool_choice != null && body.tool_choice !== 'none' && body.tool_choice !== 'auto') {
      throw badRequest('tool_choice requires tools.', 'tool_choice', 'invalid_value')
    }
    return undefined
  }
  const tools = body.tools.map((tool: any, i: number) => toolSpec(tool, i, ctx))
  const choice = body.tool_choice
  let toolChoice: ToolChoice | undefined
  if (choice == null || choice === 'auto') toolChoice = undefined // auto is Converse's default
  else if (choice === 'required') toolChoice = { any: {} }
  else if (choice?.type === 'function' && typeof choice.function?.name === 'string') toolChoice = { tool: { name: choice.function.name } }
  else if (choice === 'none') {
    if (!usesTools(messages)) return undefined
    ctx.dropParam('tool_choice')
  } else throw badRequest('Unsupported tool_choice value.', 'tool_choice', 'unsupported_value')
  if (body.parallel_tool_calls === false) ctx.dropParam('parallel_tool_calls')
  return toolChoice ? { tools, toolChoice } : { tools }
}

function toolSpec(tool: any, i: number, ctx: AttemptContext): ToolSpec {
  if (tool?.type !== 'function' || !tool.function || typeof tool.function.name !== 'string') {
    throw badRequest(`Tools of type '${tool?.type}' are not supported by this provider.`, `tools[${i}]`, 'unsupported_value')
  }
  const fn = tool.function
  if (fn.strict === true) ctx.dropParam(`tools[${i}].function.strict`)
  const spec: ToolSpec['toolSpec'] = { name: fn.name, inputSchema: { json: fn.parameters ?? { type: 'object', properties: {} } } }
  if (typeof fn.description === 'string' && fn.description) spec.description = fn.description
  return { toolSpec: spec }
}
