import { GatewayError, badRequest } from '../../plugin-sdk/errors.ts'
import { itemsForNative, itemsToChat, normalizeInput, type Item } from './items.ts'
import type { StoredResponse } from './store.ts'

/** A Responses request read: the chat body, the native body, and what the answer and the store need of it. */
export interface ReadResponses {
  chat: Record<string, any>
  native: Record<string, any>
  /** This request's input items (ids given). */
  input: Item[]
  /** The conversation up to this input: the previous response's context and output, then `input`. */
  context: Item[]
}

/** Fields only a native OpenAI target can honour: refused when the model has none. */
const NATIVE_ONLY: Record<string, (value: any) => boolean> = {
  conversation: (v) => v != null,
  prompt: (v) => v != null,
}

const isObject = (v: unknown): v is Record<string, any> => v !== null && typeof v === 'object' && !Array.isArray(v)

function requireType(ok: boolean, param: string, expected: string) {
  if (!ok) throw badRequest(`Invalid type for '${param}': expected ${expected}.`, param, 'invalid_type')
}

/** Type checks OpenAI makes before anything runs, each a 400 naming the param. */
export function validateResponses(body: Record<string, any>) {
  if (typeof body.model !== 'string' || body.model === '') throw badRequest("Missing required parameter: 'model'.", 'model', 'missing_required_parameter')
  if (body.input === undefined) throw badRequest("Missing required parameter: 'input'.", 'input', 'missing_required_parameter')
  const optional = (name: string, ok: (v: any) => boolean, expected: string) => {
    if (body[name] !== undefined && body[name] !== null) requireType(ok(body[name]), name, expected)
  }
  optional('instructions', (v) => typeof v === 'string', 'a string')
  optional('tools', Array.isArray, 'an array')
  optional('stream', (v) => typeof v === 'boolean', 'a boolean')
  optional('store', (v) => typeof v === 'boolean', 'a boolean')
  optional('parallel_tool_calls', (v) => typeof v === 'boolean', 'a boolean')
  optional('previous_response_id', (v) => typeof v === 'string', 'a string')
  optional('user', (v) => typeof v === 'string', 'a string')
  optional('safety_identifier', (v) => typeof v === 'string', 'a string')
  optional('text', isObject, 'an object')
  optional('reasoning', isObject, 'an object')
  optional('metadata', (v) => isObject(v) && Object.keys(v).length <= 16 && Object.values(v).every((x) => typeof x === 'string'), 'an object of at most 16 string values')
  optional('temperature', (v) => typeof v === 'number' && v >= 0 && v <= 2, 'a number between 0 and 2')
  optional('top_p', (v) => typeof v === 'number' && v >= 0 && v <= 1, 'a number between 0 and 1')
  optional('max_output_tokens', (v) => Number.isInteger(v) && v >= 1, 'a positive integer')
  // A background job finishes after its request has ended: the gateway would neither see its answer nor bill it.
  if (body.background === true) {
    throw badRequest("'background' is not supported through the gateway: its jobs finish after the request, where they could not be billed. Stream the response instead.", 'background', 'unsupported_parameter')
  }
}

/**
 * The client's body as chat completions (what plugins see and translated attempts send) and as a native target
 * gets it: the previous response's conversation folded into `input` and `previous_response_id` removed, so any
 * target, of any provider, continues it from the gateway's store. `native` false: no target of the model speaks
 * the Responses API, so what only OpenAI can do is refused here, naming it. `body` passed `validateResponses`.
 */
export function readResponses(body: Record<string, any>, previous: StoredResponse | null, native: boolean): ReadResponses {
  if (!native) {
    for (const [name, used] of Object.entries(NATIVE_ONLY)) {
      if (used(body[name])) throw badRequest(`'${name}' is only supported on models served by OpenAI; '${body.model}' is not.`, name, 'unsupported_parameter')
    }
  }
  const input = normalizeInput(body.input)
  const earlier = previous ? [...previous.context, ...previous.response.output] : []
  const context = [...earlier, ...input]

  const messages = itemsToChat(context)
  if (typeof body.instructions === 'string' && body.instructions !== '') messages.unshift({ role: 'system', content: body.instructions })
  const chat: Record<string, any> = { model: body.model, messages }
  const tools = chatTools(body.tools ?? [], body.model, native)
  const choice = chatToolChoice(body.tool_choice, tools, body.model, native)
  if (choice.tools.length > 0) chat.tools = choice.tools
  if (choice.toolChoice !== undefined) chat.tool_choice = choice.toolChoice
  if (typeof body.parallel_tool_calls === 'boolean' && choice.tools.length > 0) chat.parallel_tool_calls = body.parallel_tool_calls
  const format = responseFormat(body.text?.format)
  if (format) chat.response_format = format
  if (typeof body.reasoning?.effort === 'string') chat.reasoning_effort = body.reasoning.effort
  if (body.max_output_tokens != null) chat.max_completion_tokens = body.max_output_tokens
  for (const name of ['temperature', 'top_p', 'user', 'safety_identifier'] as const) if (body[name] != null) chat[name] = body[name]
  if (body.stream === true) {
    chat.stream = true
    chat.stream_options = { include_usage: true }
  }

  const nativeBody = { ...body }
  if (previous) {
    delete nativeBody.previous_response_id
    const given = typeof body.input === 'string' ? itemsForNative(input) : body.input
    nativeBody.input = [...itemsForNative(earlier), ...given]
  }
  return { chat, native: nativeBody, input, context }
}

/** Function tools as chat tools; any other (built-in) tool needs a native target, or it is a 400 naming it. */
function chatTools(tools: any[], model: string, native: boolean): Record<string, any>[] {
  const out: Record<string, any>[] = []
  tools.forEach((tool, i) => {
    if (tool?.type === 'function') {
      if (typeof tool.name !== 'string') throw badRequest(`Missing required parameter: 'tools[${i}].name'.`, `tools[${i}].name`, 'missing_required_parameter')
      const fn: Record<string, any> = { name: tool.name }
      if (tool.description != null) fn.description = tool.description
      if (tool.parameters != null) fn.parameters = tool.parameters
      if (typeof tool.strict === 'boolean') fn.strict = tool.strict
      out.push({ type: 'function', function: fn })
    } else if (!native) {
      throw new GatewayError(400, `The tool '${tool?.type}' is only available on models served by OpenAI; '${model}' is not.`, {
        param: `tools[${i}]`,
        code: 'unsupported_tool',
      })
    }
  })
  return out
}

/** `tool_choice` in chat's shape; `allowed_tools` narrows the function tools sent instead. */
function chatToolChoice(choice: any, tools: Record<string, any>[], model: string, native: boolean): { tools: Record<string, any>[]; toolChoice: unknown } {
  if (choice === undefined || choice === null) return { tools, toolChoice: undefined }
  if (choice === 'auto' || choice === 'none' || choice === 'required') return { tools, toolChoice: tools.length > 0 ? choice : undefined }
  if (choice?.type === 'function' && typeof choice.name === 'string') return { tools, toolChoice: { type: 'function', function: { name: choice.name } } }
  if (choice?.type === 'allowed_tools' && Array.isArray(choice.tools)) {
    const allowed = new Set(choice.tools.filter((t: any) => t?.type === 'function').map((t: any) => t.name))
    return { tools: tools.filter((t) => allowed.has(t.function.name)), toolChoice: choice.mode === 'required' ? 'required' : 'auto' }
  }
  if (typeof choice?.type === 'string' && native) return { tools, toolChoice: undefined }
  throw badRequest(`Invalid value for 'tool_choice'${native ? '' : ` (built-in tools are only available on models served by OpenAI; '${model}' is not)`}.`, 'tool_choice', 'invalid_value')
}

/** `text.format` as chat's `response_format`; plain text is chat's default. */
function responseFormat(format: any): Record<string, any> | null {
  if (format === undefined || format === null || format.type === 'text') return null
  if (format.type === 'json_object') return { type: 'json_object' }
  if (format.type === 'json_schema') {
    if (typeof format.name !== 'string' || !isObject(format.schema)) {
      throw badRequest("A 'json_schema' format needs a 'name' and a 'schema' object.", 'text.format', 'invalid_value')
    }
    const schema: Record<string, any> = { name: format.name, schema: format.schema }
    if (typeof format.strict === 'boolean') schema.strict = format.strict
    if (typeof format.description === 'string') schema.description = format.description
    return { type: 'json_schema', json_schema: schema }
  }
  throw badRequest(`Invalid value for 'text.format.type': expected 'text', 'json_object' or 'json_schema'.`, 'text.format.type', 'invalid_value')
}
