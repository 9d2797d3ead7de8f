import { newId, outputText, type Item } from './items.ts'

/** What a translated answer echoes of its request, fixed when the request is read. */
export interface ResponseShell {
  id: string
  /** Seconds, like OpenAI's `created_at`. */
  createdAt: number
  /** The virtual model name the client asked for. */
  model: string
  body: Record<string, any>
}

/** The Response object around `output`: the request's settings echoed as OpenAI echoes them. */
export function responseObject(
  shell: ResponseShell,
  status: 'in_progress' | 'completed' | 'incomplete' | 'failed',
  output: Item[],
  usage: Record<string, any> | null,
  extra: { incompleteReason?: string; error?: { code: string; message: string } } = {},
): Record<string, any> {
  const { body } = shell
  const response: Record<string, any> = {
    id: shell.id,
    object: 'response',
    created_at: shell.createdAt,
    status,
    background: false,
    completed_at: status === 'completed' ? Math.floor(Date.now() / 1000) : null,
    error: extra.error ?? null,
    incomplete_details: extra.incompleteReason ? { reason: extra.incompleteReason } : null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model: shell.model,
    output,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: body.reasoning?.effort ?? null, summary: null },
    store: body.store ?? true,
    temperature: body.temperature ?? 1,
    text: { format: body.text?.format ?? { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: body.top_p ?? 1,
    truncation: 'disabled',
    metadata: body.metadata ?? {},
  }
  if (usage) response.usage = usage
  if (typeof body.user === 'string') response.user = body.user
  return response
}

/** Chat's finish reason as the response's status (and why it is incomplete). */
export function statusOf(finishReason: string | null | undefined): { status: 'completed' | 'incomplete'; incompleteReason?: string } {
  if (finishReason === 'length') return { status: 'incomplete', incompleteReason: 'max_output_tokens' }
  if (finishReason === 'content_filter') return { status: 'incomplete', incompleteReason: 'content_filter' }
  return { status: 'completed' }
}

/** Chat usage in the Responses shape. */
export function responsesUsage(usage: Record<string, any> | null | undefined): Record<string, any> | null {
  if (!usage) return null
  const input = usage.prompt_tokens ?? 0
  const output = usage.completion_tokens ?? 0
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: usage.prompt_tokens_details?.cached_tokens ?? 0, cache_write_tokens: usage.prompt_tokens_details?.cache_write_tokens ?? 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: usage.completion_tokens_details?.reasoning_tokens ?? 0 },
    total_tokens: usage.total_tokens ?? input + output,
  }
}

/** Responses usage in the chat shape the gateway accounts in. */
export function chatUsage(usage: Record<string, any> | null | undefined): Record<string, any> | null {
  if (!usage || typeof usage !== 'object') return null
  return {
    prompt_tokens: usage.input_tokens,
    completion_tokens: usage.output_tokens,
    total_tokens: usage.total_tokens,
    prompt_tokens_details: { cached_tokens: usage.input_tokens_details?.cached_tokens ?? 0, cache_write_tokens: usage.input_tokens_details?.cache_write_tokens ?? 0 },
  }
}

/** A chat completion's first choice as output items: the assistant message, then its function calls. */
export function outputOf(message: Record<string, any> | undefined): Item[] {
  const output: Item[] = []
  const content: Item[] = []
  if (typeof message?.content === 'string' && message.content !== '') content.push(outputText(message.content))
  if (typeof message?.refusal === 'string' && message.refusal !== '') content.push({ type: 'refusal', refusal: message.refusal })
  if (content.length > 0) output.push({ id: newId('msg'), type: 'message', status: 'completed', role: 'assistant', content })
  for (const call of message?.tool_calls ?? []) {
    output.push({ id: newId('fc'), type: 'function_call', status: 'completed', call_id: call.id, name: call.function?.name, arguments: call.function?.arguments ?? '' })
  }
  return output
}
