import { randomBytes } from 'node:crypto'
import { badRequest } from '../../plugin-sdk/errors.ts'

/*
 * Responses API items (`input` and `output` entries) in the one shape the gateway keeps them: every item typed and
 * with an id, message content as parts. Stored contexts, `input_items` and chat translation all read this shape.
 */

export type Item = Record<string, any>

/**
 * OpenAI-looking ids: `resp_…`, `msg_…`, `fc_…`; 48 hex digits like theirs. The first 12 are the time in ms, so the
 * stored responses and items they key are appended to their B-trees instead of landing on a random page of a table
 * that holds 30 days; the other 36 (144 random bits) keep them unguessable.
 */
export const newId = (prefix: string) => `${prefix}_${Date.now().toString(16).padStart(12, '0')}${randomBytes(18).toString('hex')}`

const INPUT_ROLES = new Set(['user', 'system', 'developer'])

/** Text in an assistant message's content, as Responses outputs carry it. */
export const outputText = (text: string) => ({ type: 'output_text', text, annotations: [], logprobs: [] })

/** The request's `input` (a string or a list of items) as kept items; a malformed item is a 400 naming it. */
export function normalizeInput(input: unknown): Item[] {
  if (typeof input === 'string') return [{ id: newId('msg'), type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_text', text: input }] }]
  if (!Array.isArray(input)) throw badRequest("Invalid type for 'input': expected a string or an array of input items.", 'input', 'invalid_type')
  return input.map((item, i) => normalizeItem(item, `input[${i}]`))
}

function normalizeItem(item: any, param: string): Item {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) throw badRequest(`Invalid type for '${param}': expected an object.`, param, 'invalid_type')
  const type = item.type ?? 'message'
  switch (type) {
    case 'message':
      return normalizeMessage(item, param)
    case 'function_call':
      for (const field of ['call_id', 'name', 'arguments']) {
        if (typeof item[field] !== 'string') throw badRequest(`Missing required parameter: '${param}.${field}'.`, `${param}.${field}`, 'missing_required_parameter')
      }
      return { ...item, id: item.id ?? newId('fc'), status: item.status ?? 'completed' }
    case 'function_call_output': {
      if (typeof item.call_id !== 'string') throw badRequest(`Missing required parameter: '${param}.call_id'.`, `${param}.call_id`, 'missing_required_parameter')
      if (typeof item.output !== 'string' && !Array.isArray(item.output)) {
        throw badRequest(`Invalid type for '${param}.output': expected a string or an array of content parts.`, `${param}.output`, 'invalid_type')
      }
      const output = typeof item.output === 'string' ? item.output : normalizeParts(item.output, `${param}.output`)
      return { ...item, output, id: item.id ?? newId('fco'), status: item.status ?? 'completed' }
    }
    default:
      if (!PROVIDER_ITEMS.has(type)) throw badRequest(`Invalid value for '${param}.type': '${String(type).slice(0, 64)}' is not an input item type.`, `${param}.type`, 'invalid_value')
      // Reasoning and built-in tool items: kept for a native OpenAI target, left out of a translated conversation.
      return item
  }
}

/** Items the Responses API makes for its own tools and reasoning: a native target takes them back as they are. */
const PROVIDER_ITEMS = new Set([
  'reasoning',
  'file_search_call',
  'web_search_call',
  'computer_call',
  'computer_call_output',
  'image_generation_call',
  'code_interpreter_call',
  'local_shell_call',
  'local_shell_call_output',
  'shell_call',
  'shell_call_output',
  'apply_patch_call',
  'apply_patch_call_output',
  'mcp_list_tools',
  'mcp_approval_request',
  'mcp_approval_response',
  'mcp_call',
  'custom_tool_call',
  'custom_tool_call_output',
  'compaction',
])

/** Content parts checked one by one, each malformed one a 400 naming it. */
function normalizeParts(parts: any[], param: string): Item[] {
  return parts.map((part: any, j: number) => {
    const partParam = `${param}[${j}]`
    const text = (field: string) => {
      if (typeof part[field] !== 'string') throw badRequest(`Invalid type for '${partParam}.${field}': expected a string.`, `${partParam}.${field}`, 'invalid_type')
    }
    switch (part?.type) {
      case 'input_text':
        text('text')
        return part
      case 'refusal':
        text('refusal')
        return part
      case 'output_text':
        text('text')
        return { annotations: [], logprobs: [], ...part }
      case 'input_image':
        if (typeof part.image_url !== 'string') throw badRequest(`Only images given by 'image_url' (a URL or a data URL) are supported.`, partParam, 'unsupported_content')
        return { detail: 'auto', ...part }
      case 'input_file':
        if (typeof part.file_data !== 'string') throw badRequest(`Only files given inline by 'file_data' are supported.`, partParam, 'unsupported_content')
        return part
      default:
        throw badRequest(`Invalid content part type '${String(part?.type).slice(0, 64)}'.`, partParam, 'invalid_value')
    }
  })
}

function normalizeMessage(item: any, param: string): Item {
  const role = item.role
  const assistant = role === 'assistant'
  if (!assistant && !INPUT_ROLES.has(role)) {
    throw badRequest(`Invalid value for '${param}.role': expected one of 'user', 'assistant', 'system' or 'developer'.`, `${param}.role`, 'invalid_value')
  }
  let content: any[]
  if (typeof item.content === 'string') content = [assistant ? outputText(item.content) : { type: 'input_text', text: item.content }]
  else if (Array.isArray(item.content)) content = normalizeParts(item.content, `${param}.content`)
  else throw badRequest(`Invalid type for '${param}.content': expected a string or an array of content parts.`, `${param}.content`, 'invalid_type')
  return { id: item.id ?? newId('msg'), type: 'message', role, status: item.status ?? 'completed', content }
}

/** Items as chat messages: consecutive assistant text and function calls make one assistant turn. */
export function itemsToChat(items: Item[]): Record<string, any>[] {
  const messages: Record<string, any>[] = []
  for (const item of items) {
    const last = messages.at(-1)
    switch (item.type) {
      case 'message':
        if (item.role === 'assistant') {
          const text = item.content.map((part: any) => (part.type === 'refusal' ? part.refusal : (part.text ?? ''))).join('')
          messages.push({ role: 'assistant', content: text })
        } else messages.push({ role: item.role === 'developer' ? 'system' : item.role, content: chatContent(item.content) })
        break
      case 'function_call': {
        const call = { id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } }
        if (last?.role === 'assistant') (last.tool_calls ??= []).push(call)
        else messages.push({ role: 'assistant', content: null, tool_calls: [call] })
        break
      }
      case 'function_call_output':
        messages.push({ role: 'tool', tool_call_id: item.call_id, content: typeof item.output === 'string' ? item.output : chatContent(item.output) })
        break
      // Reasoning and built-in tool items are the provider's own: another provider gets the conversation without them.
    }
  }
  return messages
}

/** Input content parts as chat content: plain text stays a string (every adapter takes that). */
function chatContent(parts: any[]): string | Record<string, any>[] {
  if (parts.every((p) => p.type === 'input_text' || p.type === 'output_text')) return parts.map((p) => p.text).join('')
  return parts.map((part) => {
    switch (part.type) {
      case 'input_image':
        return { type: 'image_url', image_url: { url: part.image_url, detail: part.detail } }
      case 'input_file':
        return { type: 'file', file: { file_data: part.file_data, ...(part.filename ? { filename: part.filename } : {}) } }
      default:
        return { type: 'text', text: part.text ?? part.refusal ?? '' }
    }
  })
}

/** Items as a native target's `input`: without the gateway's ids (the provider never saw them). */
export function itemsForNative(items: Item[]): Item[] {
  return items
    .filter((item) => item.type !== 'reasoning')
    .map(({ id: _id, ...item }) => item)
}
