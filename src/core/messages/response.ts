/** Chat completion pieces in the Messages API's terms: ids, stop reasons, usage, the whole message. */

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const randomId = (prefix: string) => prefix + Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => BASE62[b % 62]).join('')

/** `chatcmpl-X` → `msg_X` (the Anthropic adapter's inverse), so one answer keeps one id across protocols. */
export const messageId = (chatId: unknown) => (typeof chatId === 'string' && chatId ? `msg_${chatId.replace(/^(chatcmpl-|msg_)/, '')}` : randomId('msg_'))

/** A tool call keeps the id the chat answer gave it (a later tool_result must name it); one without gets a `toolu_` id. */
export const toolUseId = (id: unknown) => (typeof id === 'string' && id ? id : randomId('toolu_'))

export interface StopReason {
  stop_reason: string
  stop_sequence: string | null
}

/**
 * Chat's finish_reason → stop_reason. Chat does not say which stop sequence ended the text, except servers that
 * put it in the choice's `stop_reason` (vLLM): that one, when the client asked for it, is `stop_sequence`.
 */
export function stopReason(finish: unknown, matched: unknown, stops: unknown): StopReason {
  if (finish === 'length') return { stop_reason: 'max_tokens', stop_sequence: null }
  if (finish === 'tool_calls' || finish === 'function_call') return { stop_reason: 'tool_use', stop_sequence: null }
  if (finish === 'content_filter') return { stop_reason: 'refusal', stop_sequence: null }
  if (typeof matched === 'string' && Array.isArray(stops) && stops.includes(matched)) return { stop_reason: 'stop_sequence', stop_sequence: matched }
  return { stop_reason: 'end_turn', stop_sequence: null }
}

/** Chat usage → Anthropic's: `input_tokens` excludes the prompt tokens read from and written to cache, counted apart. */
export function anthropicUsage(usage: Record<string, any> | null | undefined) {
  const prompt = count(usage?.prompt_tokens)
  const cached = Math.min(count(usage?.prompt_tokens_details?.cached_tokens), prompt)
  const written = Math.min(count(usage?.prompt_tokens_details?.cache_write_tokens), prompt - cached)
  return { input_tokens: prompt - cached - written, output_tokens: count(usage?.completion_tokens), cache_creation_input_tokens: written, cache_read_input_tokens: cached }
}

const count = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.round(value) : 0)

/** What reasoning servers (DeepSeek, vLLM, OpenRouter) put beside the content: `reasoning_content` or `reasoning`. */
export const reasoningOf = (part: Record<string, any> | undefined): string | null => {
  const text = part?.reasoning_content ?? part?.reasoning
  return typeof text === 'string' && text ? text : null
}

/** A chat completion (model already the virtual name) as an Anthropic `Message`. */
export function messageFromChat(completion: Record<string, any>, stops: unknown): Record<string, any> {
  const choice = completion.choices?.[0] ?? {}
  const message = choice.message ?? {}
  const content: Record<string, any>[] = []
  const reasoning = reasoningOf(message)
  // Chat carries no thinking signature: the block is readable but cannot be sent back to Claude verbatim.
  if (reasoning) content.push({ type: 'thinking', thinking: reasoning, signature: '' })
  const text = typeof message.content === 'string' ? message.content : Array.isArray(message.content) ? message.content.map((p: any) => p?.text ?? '').join('') : ''
  if (text) content.push({ type: 'text', text })
  else if (typeof message.refusal === 'string' && message.refusal) content.push({ type: 'text', text: message.refusal })
  for (const call of message.tool_calls ?? []) {
    content.push({ type: 'tool_use', id: toolUseId(call.id), name: call.function?.name, input: parseInput(call.function?.arguments) })
  }
  return {
    id: messageId(completion.id),
    type: 'message',
    role: 'assistant',
    model: completion.model,
    content,
    ...stopReason(choice.finish_reason, choice.stop_reason, stops),
    usage: anthropicUsage(completion.usage),
  }
}

/** Tool arguments as the object Anthropic's `input` is; text that is not a JSON object is kept under `raw`. */
function parseInput(args: unknown): Record<string, unknown> {
  if (typeof args !== 'string' || args.trim() === '') return {}
  try {
    const input = JSON.parse(args)
    return input && typeof input === 'object' && !Array.isArray(input) ? input : { raw: args }
  } catch {
    return { raw: args }
  }
}
