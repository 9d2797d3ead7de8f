import { GatewayError, promptCacheUsage, type AttemptContext } from '../../plugin-sdk/index.ts'
import type { AnthropicMessage, AnthropicStopReason, AnthropicUsage } from './types.ts'

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter'

const FINISH: Record<AnthropicStopReason, FinishReason> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
}

/** Unknown future stop reasons read as a normal stop rather than breaking the client. */
export const finishReason = (reason: string | null | undefined): FinishReason => FINISH[reason as AnthropicStopReason] ?? 'stop'

export const completionId = (messageId: string) => `chatcmpl-${messageId.replace(/^msg_/, '')}`

export const unixNow = () => Math.floor(Date.now() / 1000)

/**
 * Anthropic counts the prompt tokens read from and written to its cache apart from `input_tokens`; OpenAI's
 * prompt_tokens includes them, and names them in `prompt_tokens_details` (writes are billed at their own price).
 */
export function openAIUsage(u: AnthropicUsage) {
  return promptCacheUsage(u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens)
}

/** Anthropic Message → OpenAI `chat.completion`. */
export function parseResponse(body: AnthropicMessage, _ctx: AttemptContext): Record<string, any> {
  if (!body || typeof body !== 'object' || !Array.isArray(body.content)) {
    throw new GatewayError(502, 'The upstream provider returned a response that is not an Anthropic message.', { code: 'upstream_bad_response' })
  }
  let text: string | null = null
  const toolCalls: Record<string, unknown>[] = []
  for (const block of body.content) {
    if (block.type === 'text') text = (text ?? '') + (block.text as string)
    else if (block.type === 'tool_use') {
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } })
    }
    // thinking, redacted_thinking and server-tool blocks have no OpenAI chat equivalent.
  }
  const message: Record<string, unknown> = { role: 'assistant', content: text, refusal: null }
  if (toolCalls.length > 0) message.tool_calls = toolCalls
  const out: Record<string, any> = {
    id: completionId(String(body.id ?? 'msg_unknown')),
    object: 'chat.completion',
    created: unixNow(),
    model: body.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason(body.stop_reason) }],
  }
  if (body.usage) out.usage = openAIUsage(body.usage)
  return out
}

const ERROR_TYPES: Record<string, string> = {
  invalid_request_error: 'invalid_request_error',
  not_found_error: 'invalid_request_error',
  request_too_large: 'invalid_request_error',
  authentication_error: 'authentication_error',
  permission_error: 'permission_error',
  billing_error: 'insufficient_quota',
  rate_limit_error: 'rate_limit_error',
  api_error: 'server_error',
  overloaded_error: 'server_error',
  timeout_error: 'server_error',
}

/** Anthropic error body → our envelope; 529 (overloaded) becomes a 503 clients and retries understand. */
export function parseError(status: number, body: unknown, _headers: Headers): GatewayError {
  const error = (body as any)?.type === 'error' ? (body as any).error : (body as any)?.error
  const anthropicType = typeof error?.type === 'string' ? (error.type as string) : null
  let message: string
  if (typeof error?.message === 'string') message = error.message
  else if (typeof body === 'string' && body.length > 0) message = body.slice(0, 500)
  else message = `anthropic returned HTTP ${status}`
  return new GatewayError(status === 529 ? 503 : status, message, {
    type: anthropicType ? ERROR_TYPES[anthropicType] : undefined,
    code: anthropicType,
  })
}
