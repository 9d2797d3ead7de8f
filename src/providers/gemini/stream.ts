import { GatewayError, type AttemptContext, type OpenAIChunk, type SseEvent } from '../../plugin-sdk/index.ts'
import { completionId, finishReason, isAnswerText, openAIUsage, toolCall, unixNow, type FinishReason } from './response.ts'
import type { GeminiGenerateContentResponse, GeminiUsageMetadata } from './types.ts'

interface ChoiceState {
  /** Tool calls seen so far: the next call's OpenAI index, and what turns STOP into tool_calls. */
  toolCalls: number
  finished: boolean
}

/**
 * Gemini SSE (`alt=sse`: `data:` lines only, no terminator) → OpenAI `chat.completion.chunk` objects. Every
 * event is a whole GenerateContentResponse holding the next piece of each candidate; function calls arrive
 * whole, never split. The stream just ends, so the usage-only chunk (`choices: []`, stripped by the core when
 * the client did not ask for `include_usage`) goes out when the last expected candidate finishes, with the
 * usageMetadata of that event (Gemini's earlier events carry running counts).
 */
export function createStreamParser(ctx: AttemptContext): (event: SseEvent) => OpenAIChunk[] | null {
  let id: string | null = null
  let model = ''
  const created = unixNow()
  const choices = new Map<number, ChoiceState>()
  const n = typeof ctx.request.body?.n === 'number' && ctx.request.body.n > 1 ? ctx.request.body.n : 1
  let usage: GeminiUsageMetadata | null = null
  let usageSent = false

  const chunk = (index: number, delta: Record<string, unknown>, finish: FinishReason | null = null): OpenAIChunk => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    choices: [{ index, delta, logprobs: null, finish_reason: finish }],
  })

  const open = (index: number, out: OpenAIChunk[]): ChoiceState => {
    let state = choices.get(index)
    if (!state) {
      state = { toolCalls: 0, finished: false }
      choices.set(index, state)
      out.push(chunk(index, { role: 'assistant', content: '' }))
    }
    return state
  }

  return (sse) => {
    let event: GeminiGenerateContentResponse & { error?: any }
    try {
      event = JSON.parse(sse.data)
    } catch {
      throw new GatewayError(502, 'The upstream provider sent a stream event that is not JSON.', { code: 'upstream_bad_response' })
    }
    if (event.error) throw streamError(event.error)
    id ??= completionId(event.responseId)
    if (event.modelVersion) model = event.modelVersion
    if (event.usageMetadata) usage = event.usageMetadata

    const out: OpenAIChunk[] = []
    let finishedNow = false
    for (const candidate of event.candidates ?? []) {
      const index = candidate.index ?? 0
      const state = open(index, out)
      if (state.finished) continue
      let text = ''
      const calls: Record<string, unknown>[] = []
      for (const part of candidate.content?.parts ?? []) {
        if (isAnswerText(part)) text += part.text
        else if (part.functionCall) calls.push({ index: state.toolCalls++, ...toolCall(part) })
      }
      // Gemini often closes with an empty text part: nothing to send for it.
      if (text) out.push(chunk(index, { content: text }))
      for (const call of calls) out.push(chunk(index, { tool_calls: [call] }))
      if (candidate.finishReason) {
        state.finished = true
        finishedNow = true
        out.push(chunk(index, {}, finishReason(candidate.finishReason, state.toolCalls > 0)))
      }
    }
    if (!event.candidates?.length && event.promptFeedback?.blockReason) {
      // The prompt was blocked: one event, no candidates. Close choice 0 as filtered.
      const state = open(0, out)
      if (!state.finished) {
        state.finished = true
        finishedNow = true
        out.push(chunk(0, {}, 'content_filter'))
      }
    }
    const allDone = [...choices.values()].filter((c) => c.finished).length >= n || event.promptFeedback?.blockReason !== undefined
    if (finishedNow && allDone && usage && !usageSent) {
      usageSent = true
      out.push({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: openAIUsage(usage) })
    }
    return out.length > 0 ? out : null
  }
}

/** A `{"error":{code,message,status}}` event: the status line is gone, so the core sends it as an error event. */
function streamError(error: any): GatewayError {
  const code = typeof error?.code === 'number' ? error.code : 0
  const status = code === 429 || code === 503 ? code : 502
  return new GatewayError(status, typeof error?.message === 'string' ? error.message : 'The upstream provider reported an error mid-stream.', {
    type: status === 429 ? 'rate_limit_error' : 'server_error',
    code: typeof error?.status === 'string' ? error.status.toLowerCase() : 'upstream_error',
  })
}
