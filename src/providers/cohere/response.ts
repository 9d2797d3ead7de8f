import { GatewayError, type AttemptContext } from '../../plugin-sdk/index.ts'
import type { CohereChatResponse, CohereFinishReason, CohereUsage } from './types.ts'

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter'

const FINISH: Record<string, FinishReason> = {
  COMPLETE: 'stop',
  STOP_SEQUENCE: 'stop',
  MAX_TOKENS: 'length',
  TOOL_CALL: 'tool_calls',
  CONTENT_BLOCKED: 'content_filter',
}

/**
 * Cohere finish reason → OpenAI's. ERROR and TIMEOUT are failures, not endings: they throw (502 and 504), so a
 * client never takes a half-generated answer for a complete one. Unknown future reasons read as a normal stop.
 */
export function finishReason(reason: CohereFinishReason | null | undefined, error?: string): FinishReason {
  const upper = typeof reason === 'string' ? reason.toUpperCase() : ''
  if (upper === 'ERROR' || upper === 'ERROR_LIMIT') {
    throw new GatewayError(502, error || 'The upstream provider stopped generating because of an error.', { code: 'upstream_generation_error' })
  }
  if (upper === 'TIMEOUT') throw new GatewayError(504, error || 'The upstream provider timed out while generating.', { code: 'upstream_timeout' })
  return FINISH[upper] ?? 'stop'
}

export const completionId = (id: string) => `chatcmpl-${id}`

export const unixNow = () => Math.floor(Date.now() / 1000)

/**
 * `billed_units` is what Cohere charges for; `tokens` also counts its own prompt template (tens of tokens a request
 * it does not bill), so it is only the fallback.
 */
export function openAIUsage(u: CohereUsage | undefined) {
  const prompt = u?.billed_units?.input_tokens ?? u?.tokens?.input_tokens ?? 0
  const completion = u?.billed_units?.output_tokens ?? u?.tokens?.output_tokens ?? 0
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
}

/**
 * Cohere v2 chat response → OpenAI `chat.completion`. Text blocks are joined (thinking blocks have no chat
 * equivalent); the `tool_plan` a model writes before calling tools is the assistant's content beside its
 * `tool_calls`, as OpenAI models put such text.
 */
export function parseChatResponse(body: CohereChatResponse, ctx: AttemptContext): Record<string, any> {
  if (!body || typeof body !== 'object' || !body.message || typeof body.message !== 'object') {
    throw new GatewayError(502, 'The upstream provider returned a response that is not a Cohere chat response.', { code: 'upstream_bad_response' })
  }
  const finish = finishReason(body.finish_reason, (body as any).error)
  let text: string | null = null
  for (const block of body.message.content ?? []) {
    if (block?.type === 'text' && typeof block.text === 'string') text = (text ?? '') + block.text
  }
  const calls = (body.message.tool_calls ?? []).map((call) => ({
    id: call.id,
    type: 'function',
    function: { name: call.function?.name, arguments: call.function?.arguments || '{}' },
  }))
  if (text === null && calls.length > 0 && body.message.tool_plan) text = body.message.tool_plan
  const message: Record<string, unknown> = { role: 'assistant', content: text, refusal: null }
  if (calls.length > 0) message.tool_calls = calls
  return {
    id: completionId(String(body.id ?? 'cohere')),
    object: 'chat.completion',
    created: unixNow(),
    model: ctx.target.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
    usage: openAIUsage(body.usage),
  }
}

/**
 * Cohere errors are `{"message": "…"}` (some with an `id`). The status is kept, except 499: Cohere uses it for
 * a request cancelled on its side, while to Conduit 499 means our own client left; it becomes a retryable 502.
 */
export function parseError(status: number, body: unknown, _headers: Headers): GatewayError {
  let message: string
  if (body && typeof body === 'object' && typeof (body as any).message === 'string') message = (body as any).message
  else if (typeof body === 'string' && body.length > 0) message = body.slice(0, 500)
  else message = `cohere returned HTTP ${status}`
  if (status === 499) return new GatewayError(502, message, { code: 'upstream_cancelled' })
  return new GatewayError(status, message)
}
