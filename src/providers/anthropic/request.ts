import { GatewayError, assistantTexts, badRequest, hasMedia, parseDataUrl, textOf, toolArguments, userParts, type AttemptContext, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import {
  ANTHROPIC_VERSION,
  type AnthropicContentBlockParam,
  type AnthropicImageBlock,
  type AnthropicMessageParam,
  type AnthropicMessagesRequest,
  type AnthropicTool,
  type AnthropicToolChoice,
} from './types.ts'

export const DEFAULT_BASE_URL = 'https://api.anthropic.com/v1'
const DEFAULT_MAX_TOKENS = 4096

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
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'user',
  'stream',
  'stream_options',
  'n',
])

/** OpenAI chat request → Anthropic Messages request. Never mutates `body`. */
export function buildRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model } = ctx.target
  if (body.n != null && body.n !== 1) {
    throw new GatewayError(400, `The provider '${provider.name}' does not support the 'n' parameter.`, { param: 'n', code: 'unsupported_parameter' })
  }

  const { system, messages } = translateMessages(body.messages)
  // The provider refuses an empty conversation (a system prompt alone): said here, and nothing is sent.
  if (messages.length === 0) throw badRequest('At least one user or assistant message is required by this provider.', 'messages')
  const defaultMax = provider.options.default_max_tokens
  const request: AnthropicMessagesRequest = {
    model,
    // Anthropic requires max_tokens; OpenAI leaves it optional.
    max_tokens: body.max_completion_tokens ?? body.max_tokens ?? (typeof defaultMax === 'number' ? defaultMax : DEFAULT_MAX_TOKENS),
    messages,
  }
  if (system !== null) request.system = system
  if (typeof body.stop === 'string') request.stop_sequences = [body.stop]
  else if (Array.isArray(body.stop)) request.stop_sequences = [...body.stop]
  // OpenAI allows temperature up to 2, Anthropic up to 1.
  if (typeof body.temperature === 'number') request.temperature = Math.min(body.temperature, 1)
  if (typeof body.top_p === 'number') request.top_p = body.top_p
  if (typeof body.top_k === 'number') request.top_k = body.top_k
  if (Array.isArray(body.tools) && body.tools.length > 0) request.tools = body.tools.map(translateTool)
  const toolChoice = translateToolChoice(body, request.tools !== undefined)
  if (toolChoice) request.tool_choice = toolChoice
  if (typeof body.user === 'string') request.metadata = { user_id: body.user }
  if (body.stream === true) request.stream = true

  for (const name in body) {
    const value = body[name]
    if (HANDLED.has(name) || value === undefined || value === null) continue
    if (name === 'response_format' && value?.type === 'text') continue // the default: nothing is lost
    ctx.dropParam(name)
  }

  const baseURL = (provider.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '')
  const headers: Record<string, string> = { 'anthropic-version': ANTHROPIC_VERSION, 'content-type': 'application/json' }
  if (provider.apiKey) headers['x-api-key'] = provider.apiKey
  if (request.stream) headers.accept = 'text/event-stream'
  return { url: `${baseURL}/messages`, headers, body: JSON.stringify(request) }
}

/** System/developer messages go to the top-level `system`; the rest become user/assistant turns, same-role turns merged. */
export function translateMessages(input: unknown): { system: string | null; messages: AnthropicMessageParam[] } {
  if (!Array.isArray(input)) throw badRequest('messages must be an array.', 'messages')
  const system: string[] = []
  const messages: AnthropicMessageParam[] = []
  const push = (role: AnthropicMessageParam['role'], blocks: AnthropicContentBlockParam[]) => {
    if (blocks.length === 0) return
    const last = messages[messages.length - 1]
    if (last?.role === role) last.content.push(...blocks)
    else messages.push({ role, content: blocks })
  }

  input.forEach((message: any, i: number) => {
    const param = `messages[${i}]`
    switch (message?.role) {
      case 'system':
      case 'developer':
        system.push(textOf(message.content, param))
        break
      case 'user':
        push('user', userBlocks(message.content, param))
        break
      case 'assistant':
        push('assistant', assistantBlocks(message, param))
        break
      case 'tool':
        // A result with images (or a PDF) is a list of blocks, as Anthropic takes them inside tool_result.
        push('user', [{ type: 'tool_result', tool_use_id: String(message.tool_call_id ?? ''), content: hasMedia(message.content) ? userBlocks(message.content, param) : textOf(message.content, param) }])
        break
      default:
        throw badRequest(`The role '${message?.role}' is not supported by this provider.`, `${param}.role`, 'unsupported_value')
    }
  })
  return { system: system.length > 0 ? system.join('\n') : null, messages }
}

// Anthropic rejects empty text blocks, so they are left out.
const text = (value: string): AnthropicContentBlockParam[] => (value ? [{ type: 'text', text: value }] : [])

const userBlocks = (content: unknown, param: string) =>
  userParts<AnthropicContentBlockParam>(content, param, {
    text: (part) => text(String(part.text ?? '')),
    image_url: (part, partParam) => [imageBlock(part.image_url?.url, `${partParam}.image_url.url`)],
    // Chat's file part (the Responses door's `input_file` with `file_data`): a PDF is a document block.
    file: (part, partParam) => {
      const file = typeof part.file?.file_data === 'string' ? parseDataUrl(part.file.file_data) : null
      if (file?.mimeType !== 'application/pdf') throw badRequest('Only PDF files sent inline as a base64 data URL are supported by this provider.', `${partParam}.file`, 'unsupported_content')
      return [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: file.data } }]
    },
  })

function imageBlock(url: unknown, param: string): AnthropicImageBlock {
  if (typeof url === 'string') {
    const data = parseDataUrl(url)
    if (data) return { type: 'image', source: { type: 'base64', media_type: data.mimeType, data: data.data } }
    if (/^https?:\/\//i.test(url)) return { type: 'image', source: { type: 'url', url } }
  }
  throw badRequest('Images must be an http(s) URL or a base64 data URL.', param, 'invalid_image_url')
}

function assistantBlocks(message: any, param: string): AnthropicContentBlockParam[] {
  const blocks: AnthropicContentBlockParam[] = assistantTexts(message.content, param).flatMap(text)
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      blocks.push({ type: 'tool_use', id: String(call.id), name: String(call.function?.name), input: toolArguments(call.function?.arguments, `${param}.tool_calls`) })
    }
  }
  return blocks
}

function translateTool(tool: any, i: number): AnthropicTool {
  if (tool?.type !== 'function' || !tool.function) {
    throw badRequest(`Tools of type '${tool?.type}' are not supported by this provider.`, `tools[${i}]`, 'unsupported_value')
  }
  const fn = tool.function
  const out: AnthropicTool = { name: fn.name, input_schema: fn.parameters ?? { type: 'object', properties: {} } }
  if (typeof fn.description === 'string') out.description = fn.description
  if (typeof fn.strict === 'boolean') out.strict = fn.strict
  return out
}

function translateToolChoice(body: Record<string, any>, hasTools: boolean): AnthropicToolChoice | undefined {
  const choice = body.tool_choice
  let out: Exclude<AnthropicToolChoice, { type: 'none' }> | undefined
  if (choice === 'auto') out = { type: 'auto' }
  else if (choice === 'none') return { type: 'none' }
  else if (choice === 'required') out = { type: 'any' }
  else if (choice?.type === 'function' && typeof choice.function?.name === 'string') out = { type: 'tool', name: choice.function.name }
  else if (choice != null) throw badRequest('Unsupported tool_choice value.', 'tool_choice', 'unsupported_value')
  // Anthropic has no top-level switch: the flag rides on tool_choice, which needs tools.
  if (body.parallel_tool_calls === false && hasTools) {
    out ??= { type: 'auto' }
    out.disable_parallel_tool_use = true
  }
  return out
}
