import { GatewayError, assistantTexts, badRequest, textOf, userParts, type AttemptContext, type ProviderConfig, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import type { CohereChatRequest, CohereMessage, CohereTool, CohereToolCall, CohereUserContent } from './types.ts'

export const DEFAULT_BASE_URL = 'https://api.cohere.com'

/** Request fields translated below (or owned by the core, like `stream_options`); any other field set is dropped and signalled. */
const HANDLED = new Set([
  'model',
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'stop',
  'temperature',
  'top_p',
  'seed',
  'frequency_penalty',
  'presence_penalty',
  'response_format',
  'tools',
  'tool_choice',
  'stream',
  'stream_options', // Cohere always reports usage at the end of a stream
  'n',
])

/** Values that ask for OpenAI's default behaviour: sending them to nobody loses nothing. */
const isDefault = (name: string, value: unknown) => (name === 'logprobs' && value === false) || (name === 'parallel_tool_calls' && value === true)

export function baseURL(provider: ProviderConfig): string {
  return (provider.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '').replace(/\/v[12]$/, '')
}

export function headers(provider: ProviderConfig, stream: boolean): Record<string, string> {
  const out: Record<string, string> = { 'content-type': 'application/json', accept: stream ? 'text/event-stream' : 'application/json' }
  if (provider.apiKey) out.authorization = `Bearer ${provider.apiKey}`
  return out
}

/** OpenAI chat request → Cohere v2 chat request. Never mutates `body`. */
export function buildChatRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model } = ctx.target
  if (body.n != null && body.n !== 1) {
    throw new GatewayError(400, `The provider '${provider.name}' does not support the 'n' parameter.`, { param: 'n', code: 'unsupported_parameter' })
  }
  const request: CohereChatRequest = { model, messages: translateMessages(body.messages) }
  if (body.stream === true) request.stream = true

  const maxTokens = body.max_completion_tokens ?? body.max_tokens
  if (typeof maxTokens === 'number') request.max_tokens = maxTokens
  if (typeof body.stop === 'string') request.stop_sequences = [body.stop]
  else if (Array.isArray(body.stop) && body.stop.length > 0) request.stop_sequences = [...body.stop]
  // OpenAI allows temperature up to 2, Cohere up to 1.
  if (typeof body.temperature === 'number') request.temperature = Math.min(body.temperature, 1)
  // Cohere's p must lie in [0.01, 0.99]; OpenAI's default 1 means "no truncation", the closest is 0.99.
  if (typeof body.top_p === 'number') request.p = Math.min(Math.max(body.top_p, 0.01), 0.99)
  if (typeof body.seed === 'number') request.seed = body.seed
  for (const name of ['frequency_penalty', 'presence_penalty'] as const) {
    const value = body[name]
    if (typeof value !== 'number') continue
    // Cohere's penalties run from 0 to 1; a negative (repetition-encouraging) value has no equivalent.
    if (value < 0) ctx.dropParam(name)
    else request[name] = Math.min(value, 1)
  }
  const format = translateResponseFormat(body.response_format)
  if (format) request.response_format = format

  const tools = Array.isArray(body.tools) && body.tools.length > 0 ? body.tools.map(translateTool) : undefined
  applyToolChoice(request, tools, body.tool_choice)
  if (request.tools && body.tools.some((t: any) => t?.function?.strict === true)) request.strict_tools = true

  for (const name in body) {
    const value = body[name]
    if (HANDLED.has(name) || value === undefined || value === null || isDefault(name, value)) continue
    ctx.dropParam(name)
  }
  return { url: `${baseURL(provider)}/v2/chat`, headers: headers(provider, request.stream === true), body: JSON.stringify(request) }
}

/**
 * System and developer messages become one leading system message (Cohere expects the system turn first);
 * user parts map one to one; an assistant's text beside tool calls is its `tool_plan`; tool results become
 * tool messages with a text content block.
 */
export function translateMessages(input: unknown): CohereMessage[] {
  if (!Array.isArray(input)) throw badRequest('messages must be an array.', 'messages')
  const system: string[] = []
  const messages: CohereMessage[] = []
  input.forEach((message: any, i: number) => {
    const param = `messages[${i}]`
    switch (message?.role) {
      case 'system':
      case 'developer':
        system.push(textOf(message.content, param))
        break
      case 'user':
        messages.push({ role: 'user', content: userContent(message.content, param) })
        break
      case 'assistant': {
        const text = assistantText(message.content, param)
        const calls = Array.isArray(message.tool_calls) ? message.tool_calls.map((call: any, j: number) => toolCall(call, `${param}.tool_calls[${j}]`)) : []
        if (calls.length > 0) messages.push(text ? { role: 'assistant', tool_plan: text, tool_calls: calls } : { role: 'assistant', tool_calls: calls })
        else if (text) messages.push({ role: 'assistant', content: text })
        // An empty assistant turn carries nothing, and Cohere refuses empty turns.
        break
      }
      case 'tool':
        messages.push({ role: 'tool', tool_call_id: String(message.tool_call_id ?? ''), content: [{ type: 'text', text: textOf(message.content, param) }] })
        break
      default:
        throw badRequest(`The role '${message?.role}' is not supported by this provider.`, `${param}.role`, 'unsupported_value')
    }
  })
  if (system.length > 0) messages.unshift({ role: 'system', content: system.join('\n') })
  return messages
}

const assistantText = (content: unknown, param: string) => assistantTexts(content, param).join('')

function userContent(content: unknown, param: string): string | CohereUserContent[] {
  if (typeof content === 'string' || content == null) return content ?? ''
  return userParts<CohereUserContent>(content, param, {
    text: (part) => [{ type: 'text', text: String(part.text ?? '') }],
    image_url: (part, partParam) => {
      const url = part.image_url?.url
      if (typeof url !== 'string' || !/^(https?:\/\/|data:image\/)/i.test(url)) {
        throw badRequest('Images must be an http(s) URL or a base64 data URL.', `${partParam}.image_url.url`, 'invalid_image_url')
      }
      const detail = part.image_url.detail
      return [{ type: 'image_url', image_url: detail === 'auto' || detail === 'low' || detail === 'high' ? { url, detail } : { url } }]
    },
  })
}

function toolCall(call: any, param: string): CohereToolCall {
  if (typeof call?.id !== 'string' || typeof call.function?.name !== 'string') throw badRequest('A tool call needs an id and a function name.', param)
  const args = call.function.arguments
  // Some clients send '' or an object; Cohere wants a JSON string.
  const text = typeof args === 'string' ? (args.trim() === '' ? '{}' : args) : JSON.stringify(args ?? {})
  return { id: call.id, type: 'function', function: { name: call.function.name, arguments: text } }
}

function translateTool(tool: any, i: number): CohereTool {
  if (tool?.type !== 'function' || typeof tool.function?.name !== 'string') {
    throw badRequest(`Tools of type '${tool?.type}' are not supported by this provider.`, `tools[${i}]`, 'unsupported_value')
  }
  const fn = tool.function
  const out: CohereTool = { type: 'function', function: { name: fn.name, parameters: fn.parameters ?? { type: 'object', properties: {} } } }
  if (typeof fn.description === 'string') out.function.description = fn.description
  return out
}

/**
 * `required` → REQUIRED, `none` → NONE, `auto` is Cohere's default. Cohere cannot name a tool, so forcing one
 * function sends that tool alone, required: the model has no other choice.
 */
function applyToolChoice(request: CohereChatRequest, tools: CohereTool[] | undefined, choice: unknown) {
  if (tools) request.tools = tools
  if (choice == null || choice === 'auto') return
  if (choice === 'none') {
    request.tool_choice = 'NONE'
    return
  }
  if (choice === 'required') {
    request.tool_choice = 'REQUIRED'
    return
  }
  const name = (choice as any)?.type === 'function' ? (choice as any).function?.name : undefined
  if (typeof name !== 'string') throw badRequest('Unsupported tool_choice value.', 'tool_choice', 'unsupported_value')
  const chosen = tools?.filter((t) => t.function.name === name) ?? []
  if (chosen.length === 0) throw badRequest(`tool_choice names '${name}', which is not among the tools.`, 'tool_choice', 'invalid_value')
  request.tools = chosen
  request.tool_choice = 'REQUIRED'
}

function translateResponseFormat(format: any): CohereChatRequest['response_format'] | undefined {
  if (format == null || format.type === 'text') return undefined
  if (format.type === 'json_object') return { type: 'json_object' }
  if (format.type === 'json_schema') {
    const schema = format.json_schema?.schema
    return schema && typeof schema === 'object' ? { type: 'json_object', json_schema: schema } : { type: 'json_object' }
  }
  throw badRequest(`response_format of type '${format.type}' is not supported by this provider.`, 'response_format', 'unsupported_value')
}
