import { GatewayError, estimateTokens, type AttemptContext } from '../../plugin-sdk/index.ts'
import { randomId, toolCallId } from './tool-ids.ts'
import type { GeminiBatchEmbedContentsResponse, GeminiCandidate, GeminiGenerateContentResponse, GeminiPart, GeminiUsageMetadata } from './types.ts'

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter'

const FILTERED = new Set(['SAFETY', 'RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII', 'IMAGE_SAFETY', 'IMAGE_PROHIBITED_CONTENT', 'IMAGE_RECITATION'])

/** Gemini says STOP after function calls too; unknown future reasons read as a normal stop rather than breaking the client. */
export function finishReason(reason: string | null | undefined, hasToolCalls: boolean): FinishReason {
  if (reason === 'MAX_TOKENS') return 'length'
  if (reason && FILTERED.has(reason)) return 'content_filter'
  return hasToolCalls ? 'tool_calls' : 'stop'
}

export const completionId = (responseId: string | undefined) => `chatcmpl-${responseId || randomId('', 24)}`

export const unixNow = () => Math.floor(Date.now() / 1000)

/**
 * Thinking tokens are billed as output, as OpenAI's reasoning tokens are: they count in completion_tokens.
 * Tool-use prompt tokens (built-in tools' results fed back) are billed as input and are part of totalTokenCount,
 * so they count in prompt_tokens: prompt + completion then adds up to the total, as OpenAI's usage does.
 */
export function openAIUsage(u: GeminiUsageMetadata) {
  const prompt = (u.promptTokenCount ?? 0) + (u.toolUsePromptTokenCount ?? 0)
  const thoughts = u.thoughtsTokenCount ?? 0
  const completion = (u.candidatesTokenCount ?? 0) + thoughts
  const usage: Record<string, unknown> = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: u.totalTokenCount ?? prompt + completion }
  if (typeof u.cachedContentTokenCount === 'number') usage.prompt_tokens_details = { cached_tokens: u.cachedContentTokenCount }
  if (typeof u.thoughtsTokenCount === 'number') usage.completion_tokens_details = { reasoning_tokens: thoughts }
  return usage
}

/** Visible text of a candidate's parts; thought summaries are reasoning, not the answer. */
export const isAnswerText = (part: GeminiPart) => typeof part.text === 'string' && part.thought !== true

export function toolCall(part: GeminiPart) {
  const call = part.functionCall!
  return { id: toolCallId(part), type: 'function', function: { name: call.name, arguments: JSON.stringify(call.args ?? {}) } }
}

function choice(candidate: GeminiCandidate) {
  let text: string | null = null
  const toolCalls: Record<string, unknown>[] = []
  for (const part of candidate.content?.parts ?? []) {
    if (isAnswerText(part)) text = (text ?? '') + part.text
    else if (part.functionCall) toolCalls.push(toolCall(part))
    // inlineData (generated images), executable code and thoughts have no chat-completions equivalent.
  }
  const message: Record<string, unknown> = { role: 'assistant', content: text ?? (toolCalls.length > 0 ? null : ''), refusal: null }
  if (toolCalls.length > 0) message.tool_calls = toolCalls
  // Proto3 JSON leaves out zero values: a candidate without `index` is candidate 0.
  return { index: candidate.index ?? 0, message, logprobs: null, finish_reason: finishReason(candidate.finishReason, toolCalls.length > 0) }
}

/** Gemini GenerateContentResponse → OpenAI `chat.completion`. */
export function parseResponse(body: GeminiGenerateContentResponse, _ctx: AttemptContext): Record<string, any> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new GatewayError(502, 'The upstream provider returned a response that is not a Gemini GenerateContentResponse.', { code: 'upstream_bad_response' })
  }
  let choices: Record<string, any>[]
  if (Array.isArray(body.candidates) && body.candidates.length > 0) {
    choices = body.candidates.map((c) => choice(c)).sort((a, b) => a.index - b.index)
  } else if (body.promptFeedback?.blockReason) {
    // The prompt itself was blocked: no candidate at all, which OpenAI expresses as a filtered, empty answer.
    choices = [{ index: 0, message: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: 'content_filter' }]
  } else {
    throw new GatewayError(502, 'The upstream provider returned no candidates.', { code: 'upstream_bad_response' })
  }
  const out: Record<string, any> = { id: completionId(body.responseId), object: 'chat.completion', created: unixNow(), model: body.modelVersion ?? '', choices }
  if (body.usageMetadata) out.usage = openAIUsage(body.usageMetadata)
  return out
}

/** batchEmbedContents → OpenAI's embedding list (floats: the core encodes base64 when the client asked for it). */
export function parseEmbeddingsResponse(body: GeminiBatchEmbedContentsResponse, ctx: AttemptContext): Record<string, any> {
  if (!body || !Array.isArray(body.embeddings)) {
    throw new GatewayError(502, 'The upstream provider returned a response that is not a Gemini embeddings batch.', { code: 'upstream_bad_response' })
  }
  // Gemini reports no token counts for embeddings, and OpenAI's response requires usage: estimate from the input text.
  const input = ctx.request.body?.input
  const texts: string[] = typeof input === 'string' ? [input] : Array.isArray(input) ? input.filter((s): s is string => typeof s === 'string') : []
  const prompt = texts.reduce((sum, t) => sum + estimateTokens(t), 0)
  return {
    object: 'list',
    data: body.embeddings.map((e, index) => ({ object: 'embedding', index, embedding: e?.values ?? [] })),
    model: ctx.target.model,
    usage: { prompt_tokens: prompt, total_tokens: prompt },
  }
}

/** Reasons (google.rpc.ErrorInfo) Gemini gives, with HTTP 400, when the key itself is bad. */
const KEY_REASONS = new Set(['API_KEY_INVALID', 'API_KEY_EXPIRED'])

/**
 * Google error envelope → ours. A bad key is a 400 INVALID_ARGUMENT to Google; we report it as the 401 it is,
 * which the core then turns into a 502 `upstream_auth_failed` (it is the gateway's key, not the client's fault).
 * RetryInfo's `retryDelay` becomes a Retry-After header.
 */
export function parseError(status: number, body: unknown, _headers: Headers): GatewayError {
  // streamGenerateContent without alt=sse answers with a JSON array, errors included.
  const envelope = Array.isArray(body) ? body[0] : body
  const error = (envelope as any)?.error
  let message: string
  if (typeof error?.message === 'string' && error.message) message = error.message
  else if (typeof body === 'string' && body.length > 0) message = body.slice(0, 500)
  else message = `gemini returned HTTP ${status}`
  const details: any[] = Array.isArray(error?.details) ? error.details : []
  const headers: Record<string, string> = {}
  const retryDelay = details.find((d) => typeof d?.['@type'] === 'string' && d['@type'].endsWith('google.rpc.RetryInfo'))?.retryDelay
  const seconds = typeof retryDelay === 'string' ? Number.parseFloat(retryDelay) : NaN
  if (Number.isFinite(seconds) && seconds >= 0) headers['retry-after'] = String(Math.ceil(seconds))
  const code = typeof error?.status === 'string' ? error.status.toLowerCase() : null
  if (details.some((d) => KEY_REASONS.has(d?.reason))) {
    return new GatewayError(401, message, { code: 'invalid_api_key' })
  }
  return new GatewayError(status, message, { code, headers })
}
