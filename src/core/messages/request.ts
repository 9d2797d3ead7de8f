import { badRequest } from '../../plugin-sdk/errors.ts'

/**
 * An Anthropic Messages request read into the chat completion body plugins see and translated attempts send.
 * Validation follows the Messages API (a 400 naming the field); what chat cannot carry is listed in the README.
 */

const ROLES = new Set(['user', 'assistant'])
/** The Messages API's ranges (a translated target would take more: OpenAI's temperature goes to 2). */
const RANGES = { temperature: [0, 1], top_p: [0, 1], top_k: [0, Infinity] } as const
const MAX_TOKENS = 2_147_483_647
const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp'])
/** Content blocks with no chat equivalent that can be left out without changing what the model is asked. */
const HISTORY_ONLY = new Set(['thinking', 'redacted_thinking'])

/** Extended thinking's token budget → chat's reasoning_effort: under 4k tokens low, under 16k medium, else high. */
const effortOfBudget = (budget: number) => (budget < 4096 ? 'low' : budget < 16384 ? 'medium' : 'high')
/** output_config.effort → reasoning_effort; Anthropic's levels above high have no chat name. */
const EFFORT: Record<string, string> = { low: 'low', medium: 'medium', high: 'high', xhigh: 'high', max: 'high' }

/** Validates the Messages request and returns its chat body. `countOnly`: a count_tokens body (no max_tokens). */
export function toChat(body: Record<string, any>, countOnly = false): Record<string, any> {
  if (typeof body.model !== 'string' || body.model === '') throw badRequest('model: Field required', 'model', 'missing_required_parameter')
  if (!countOnly) {
    if (body.max_tokens === undefined) throw badRequest('max_tokens: Field required', 'max_tokens', 'missing_required_parameter')
    if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1 || body.max_tokens > MAX_TOKENS) {
      throw badRequest(`max_tokens: Input should be a valid integer from 1 to ${MAX_TOKENS}`, 'max_tokens', 'invalid_value')
    }
  }
  if (!Array.isArray(body.messages)) throw badRequest('messages: Field required', 'messages', 'missing_required_parameter')
  if (body.messages.length === 0) throw badRequest('messages: at least one message is required', 'messages', 'invalid_value')

  const messages: Record<string, any>[] = []
  const system = systemText(body.system)
  if (system !== null) messages.push({ role: 'system', content: system })
  body.messages.forEach((message: any, i: number) => messages.push(...chatMessages(message, `messages.${i}`)))
  const chat: Record<string, any> = { model: body.model, messages }
  if (!countOnly) chat.max_tokens = body.max_tokens

  if (body.stop_sequences !== undefined) {
    if (!Array.isArray(body.stop_sequences) || body.stop_sequences.some((s: unknown) => typeof s !== 'string')) {
      throw badRequest('stop_sequences: Input should be a valid list of strings', 'stop_sequences', 'invalid_value')
    }
    if (body.stop_sequences.length > 0) chat.stop = body.stop_sequences
  }
  for (const name of ['temperature', 'top_p', 'top_k'] as const) {
    const value = body[name]
    if (value === undefined || value === null) continue
    const [least, most] = RANGES[name]
    if (typeof value !== 'number' || !(value >= least && value <= most) || (name === 'top_k' && !Number.isInteger(value))) {
      throw badRequest(`${name}: Input should be a valid ${name === 'top_k' ? 'integer' : 'number'} ${most === Infinity ? `of at least ${least}` : `from ${least} to ${most}`}`, name, 'invalid_value')
    }
    chat[name] = value
  }
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) throw badRequest('tools: Input should be a valid list', 'tools', 'invalid_value')
    if (body.tools.length > 0) chat.tools = body.tools.map(chatTool)
  }
  if (body.tool_choice != null) {
    if ((body.tool_choice.type === 'any' || body.tool_choice.type === 'tool') && !chat.tools) {
      throw badRequest('tool_choice: may only be specified while providing tools', 'tool_choice', 'invalid_value')
    }
    Object.assign(chat, toolChoice(body.tool_choice))
  }
  const effort = reasoningEffort(body)
  if (effort) chat.reasoning_effort = effort
  const format = body.output_config?.format
  if (format != null) {
    if (format.type !== 'json_schema' || typeof format.schema !== 'object') {
      throw badRequest("output_config.format: only {type: 'json_schema', schema} is supported", 'output_config.format', 'invalid_value')
    }
    chat.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: format.schema } }
  }
  const user = body.metadata?.user_id
  if (typeof user === 'string' && user) chat.user = user
  if (body.stream === true && !countOnly) {
    chat.stream = true
    chat.stream_options = { include_usage: true }
  }
  return chat
}

function systemText(system: unknown): string | null {
  if (system === undefined || system === null) return null
  if (typeof system === 'string') return system || null
  if (!Array.isArray(system)) throw badRequest('system: Input should be a valid string or list of text blocks', 'system', 'invalid_value')
  const texts = system.map((block: any, i: number) => {
    if (block?.type !== 'text' || typeof block.text !== 'string') throw badRequest(`system.${i}: only text blocks are allowed`, `system.${i}`, 'invalid_value')
    return block.text as string
  })
  return texts.length > 0 ? texts.join('\n') : null
}

/** One Messages turn → chat messages: a user turn's tool_result blocks become `tool` messages ahead of its other content. */
function chatMessages(message: any, param: string): Record<string, any>[] {
  if (message?.role === 'system') {
    throw badRequest('messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.', `${param}.role`, 'invalid_value')
  }
  if (!ROLES.has(message?.role)) throw badRequest(`${param}.role: Input should be 'user' or 'assistant'`, `${param}.role`, 'invalid_value')
  const content = message.content
  if (typeof content === 'string') return [{ role: message.role, content }]
  if (!Array.isArray(content)) throw badRequest(`${param}.content: Input should be a valid string or list`, `${param}.content`, 'invalid_value')
  return message.role === 'assistant' ? [assistantMessage(content, param)] : userMessages(content, param)
}

function userMessages(content: any[], param: string): Record<string, any>[] {
  const tools: Record<string, any>[] = []
  const parts: Record<string, any>[] = []
  content.forEach((block: any, j: number) => {
    const at = `${param}.content.${j}`
    switch (block?.type) {
      case 'text':
        parts.push({ type: 'text', text: String(block.text ?? '') })
        break
      case 'image':
        parts.push(imagePart(block, at))
        break
      case 'tool_result': {
        if (typeof block.tool_use_id !== 'string') throw badRequest(`${at}.tool_use_id: Field required`, `${at}.tool_use_id`, 'missing_required_parameter')
        const result = toolResult(block.content, at)
        tools.push({ role: 'tool', tool_call_id: block.tool_use_id, content: result.text })
        // Chat tool messages carry text only: a result's images follow in the user turn.
        parts.push(...result.images)
        break
      }
      default:
        throw unsupportedBlock(block, at)
    }
  })
  if (parts.length === 0) return tools
  const single = parts.length === 1 && parts[0]!.type === 'text'
  return [...tools, { role: 'user', content: single ? parts[0]!.text : parts }]
}

function assistantMessage(content: any[], param: string): Record<string, any> {
  const texts: string[] = []
  const calls: Record<string, any>[] = []
  content.forEach((block: any, j: number) => {
    const at = `${param}.content.${j}`
    if (block?.type === 'text') texts.push(String(block.text ?? ''))
    else if (block?.type === 'tool_use') {
      if (typeof block.id !== 'string' || typeof block.name !== 'string') throw badRequest(`${at}: tool_use needs an id and a name`, at, 'invalid_value')
      calls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } })
    } else if (!HISTORY_ONLY.has(block?.type)) throw unsupportedBlock(block, at)
  })
  const message: Record<string, any> = { role: 'assistant', content: texts.length > 0 ? texts.join('') : null }
  if (calls.length > 0) message.tool_calls = calls
  return message
}

function toolResult(content: unknown, param: string): { text: string; images: Record<string, any>[] } {
  if (content === undefined || content === null) return { text: '', images: [] }
  if (typeof content === 'string') return { text: content, images: [] }
  if (!Array.isArray(content)) throw badRequest(`${param}.content: Input should be a valid string or list`, `${param}.content`, 'invalid_value')
  const texts: string[] = []
  const images: Record<string, any>[] = []
  content.forEach((block: any, k: number) => {
    if (block?.type === 'text') texts.push(String(block.text ?? ''))
    else if (block?.type === 'image') images.push(imagePart(block, `${param}.content.${k}`))
    else throw unsupportedBlock(block, `${param}.content.${k}`)
  })
  return { text: texts.join('\n'), images }
}

function imagePart(block: any, param: string): Record<string, any> {
  const source = block.source
  if (source?.type === 'base64') {
    if (!IMAGE_TYPES.has(source.media_type)) {
      throw badRequest(`${param}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'`, `${param}.source.media_type`, 'invalid_value')
    }
    if (typeof source.data !== 'string') throw badRequest(`${param}.source.data: Field required`, `${param}.source.data`, 'missing_required_parameter')
    return { type: 'image_url', image_url: { url: `data:${source.media_type};base64,${source.data}` } }
  }
  if (source?.type === 'url' && typeof source.url === 'string' && /^https?:\/\//i.test(source.url)) return { type: 'image_url', image_url: { url: source.url } }
  throw badRequest(`${param}.source: an image source is {type: 'base64', media_type, data} or {type: 'url', url}`, `${param}.source`, 'invalid_value')
}

const unsupportedBlock = (block: any, param: string) =>
  badRequest(`${param}: content blocks of type '${block?.type}' cannot be sent to this model (it does not speak the Messages API natively)`, `${param}.type`, 'unsupported_content')

function chatTool(tool: any, i: number): Record<string, any> {
  if ((tool?.type !== undefined && tool.type !== 'custom') || typeof tool?.name !== 'string') {
    throw badRequest(`tools.${i}: only client tools ({name, input_schema}) can be sent to this model, not '${tool?.type}'`, `tools.${i}`, 'unsupported_value')
  }
  const fn: Record<string, any> = { name: tool.name, parameters: tool.input_schema ?? { type: 'object', properties: {} } }
  if (typeof tool.description === 'string') fn.description = tool.description
  if (typeof tool.strict === 'boolean') fn.strict = tool.strict
  return { type: 'function', function: fn }
}

function toolChoice(choice: any): Record<string, any> {
  const out: Record<string, any> = {}
  if (choice.type === 'auto') out.tool_choice = 'auto'
  else if (choice.type === 'any') out.tool_choice = 'required'
  else if (choice.type === 'none') out.tool_choice = 'none'
  else if (choice.type === 'tool' && typeof choice.name === 'string') out.tool_choice = { type: 'function', function: { name: choice.name } }
  else throw badRequest("tool_choice: Input should be {type: 'auto' | 'any' | 'none'} or {type: 'tool', name}", 'tool_choice', 'invalid_value')
  if (choice.disable_parallel_tool_use === true) out.parallel_tool_calls = false
  return out
}

function reasoningEffort(body: Record<string, any>): string | null {
  const effort = body.output_config?.effort
  if (typeof effort === 'string' && EFFORT[effort]) return EFFORT[effort]
  const thinking = body.thinking
  if (thinking?.type === 'enabled') {
    if (!Number.isInteger(thinking.budget_tokens)) throw badRequest('thinking.budget_tokens: Field required', 'thinking.budget_tokens', 'missing_required_parameter')
    return effortOfBudget(thinking.budget_tokens)
  }
  return null
}
