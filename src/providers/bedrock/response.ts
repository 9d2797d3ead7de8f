import { GatewayError, promptCacheUsage, type AttemptContext } from '../../plugin-sdk/index.ts'
import type { ConverseResponse, StopReason, TokenUsage } from './types.ts'

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter'

const FINISH: Record<StopReason, FinishReason> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  guardrail_intervened: 'content_filter',
  content_filtered: 'content_filter',
  malformed_model_output: 'stop',
  malformed_tool_use: 'stop',
}

/** Unknown future stop reasons read as a normal stop rather than breaking the client. */
export const finishReason = (reason: string | null | undefined): FinishReason => FINISH[reason as StopReason] ?? 'stop'

export const unixNow = () => Math.floor(Date.now() / 1000)

/** Bedrock returns no response id in the body; clients only need one that is unique. */
export const completionId = () => `chatcmpl-${crypto.randomUUID().replaceAll('-', '')}`

/** Bedrock counts cache reads and writes apart from `inputTokens`; OpenAI's prompt_tokens includes them. */
export function openAIUsage(u: Partial<TokenUsage>) {
  return promptCacheUsage(u.inputTokens, u.cacheReadInputTokens, u.cacheWriteInputTokens, u.outputTokens)
}

/** Converse response → OpenAI `chat.completion`. */
export function parseResponse(body: ConverseResponse, ctx: AttemptContext): Record<string, any> {
  const content = body?.output?.message?.content
  if (!Array.isArray(content)) {
    throw new GatewayError(502, 'The upstream provider returned a response that is not a Converse response.', { code: 'upstream_bad_response' })
  }
  let text: string | null = null
  const toolCalls: Record<string, unknown>[] = []
  for (const block of content) {
    if (typeof block.text === 'string') text = (text ?? '') + block.text
    else if (block.toolUse) {
      const { toolUseId, name, input } = block.toolUse
      toolCalls.push({ id: toolUseId, type: 'function', function: { name, arguments: JSON.stringify(input ?? {}) } })
    }
    // reasoningContent, citations and guardContent have no chat-completions equivalent.
  }
  const message: Record<string, unknown> = { role: 'assistant', content: text, refusal: null }
  if (toolCalls.length > 0) message.tool_calls = toolCalls
  const out: Record<string, any> = {
    id: completionId(),
    object: 'chat.completion',
    created: unixNow(),
    model: ctx.target.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason(body.stopReason) }],
  }
  if (body.usage) out.usage = openAIUsage(body.usage)
  return out
}

interface ErrorClass {
  status: number
  type?: string
}

/**
 * Bedrock exceptions (HTTP `x-amzn-ErrorType`, and the lowerCamel `:exception-type` of stream frames, looked
 * up lowercased) → our status. Model failures become 5xx so that a fallback target is tried: 424 and 408 are
 * statuses OpenAI clients do not expect.
 */
const ERRORS: Record<string, ErrorClass> = {
  validationexception: { status: 400 },
  serializationexception: { status: 400 },
  conflictexception: { status: 400 },
  accessdeniedexception: { status: 403 },
  unrecognizedclientexception: { status: 403 },
  invalidsignatureexception: { status: 403 },
  incompletesignatureexception: { status: 403 },
  missingauthenticationtokenexception: { status: 403 },
  expiredtokenexception: { status: 403 },
  resourcenotfoundexception: { status: 404 },
  throttlingexception: { status: 429 },
  servicequotaexceededexception: { status: 429, type: 'insufficient_quota' },
  modelnotreadyexception: { status: 503 },
  modeltimeoutexception: { status: 504 },
  modelerrorexception: { status: 502 },
  modelstreamerrorexception: { status: 502 },
  internalserverexception: { status: 500 },
  serviceunavailableexception: { status: 503 },
}

/** `ValidationException:http://internal.amazon.com/coral/…` or `com.amazon.coral.service#ValidationException` → `ValidationException`. */
export function errorTypeName(raw: unknown): string | null {
  if (typeof raw !== 'string' || !raw) return null
  const name = raw.split(':')[0]!.split('#').pop()!.trim()
  return name || null
}

/** A Bedrock exception by name, with the message it carried, as our error. */
export function bedrockError(name: string | null, message: string, fallbackStatus: number): GatewayError {
  const known = name ? ERRORS[name.toLowerCase()] : undefined
  let status = known?.status ?? fallbackStatus
  if (!known && status === 424) status = 502
  if (!known && status === 408) status = 504
  // Stream exceptions are lowerCamel; report the name as the HTTP API spells it.
  const code = name ? name[0]!.toUpperCase() + name.slice(1) : null
  return new GatewayError(status, message, { type: known?.type, code })
}

/** Bedrock error response (`{"message"}` plus the `x-amzn-ErrorType` header) → our envelope. */
export function parseError(status: number, body: unknown, headers: Headers): GatewayError {
  const b = body as any
  const name = errorTypeName(headers.get('x-amzn-errortype')) ?? errorTypeName(b?.__type) ?? errorTypeName(b?.code)
  let message: string
  if (typeof b?.message === 'string' && b.message) message = b.message
  else if (typeof b?.Message === 'string' && b.Message) message = b.Message
  else if (typeof body === 'string' && body.length > 0) message = body.slice(0, 500)
  else message = `bedrock returned HTTP ${status}${name ? ` (${name})` : ''}`
  return bedrockError(name, message, status)
}
