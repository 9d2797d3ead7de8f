import { GatewayError, type AttemptContext, type OpenAIChunk, type SseEvent } from '../../plugin-sdk/index.ts'
import { completionId, finishReason, openAIUsage, unixNow, type FinishReason } from './response.ts'
import type { CohereStreamEvent } from './types.ts'

/**
 * Cohere v2 chat stream events → OpenAI `chat.completion.chunk` objects. Text and tool-plan deltas become
 * content deltas, tool-call events tool_call deltas; `message-end` yields the finish chunk and a usage-only
 * chunk (`choices: []`) that the core strips when the client did not ask for `include_usage`. A `message-end`
 * with finish reason ERROR or TIMEOUT is Cohere's mid-stream error: it throws, and the relay sends an error
 * event instead of a finish.
 */
export function createStreamParser(ctx: AttemptContext): (event: SseEvent) => OpenAIChunk[] | null {
  let id = 'chatcmpl-cohere'
  const created = unixNow()
  const model = ctx.target.model
  /** Cohere tool-call index → OpenAI tool_calls index, counted from 0 in order of appearance. */
  const toolIndex = new Map<number, number>()

  const chunk = (delta: Record<string, unknown>, finish: FinishReason | null = null): OpenAIChunk => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })
  const text = (value: unknown) => (typeof value === 'string' && value ? [chunk({ content: value })] : null)

  return (sse) => {
    let event: CohereStreamEvent
    try {
      event = JSON.parse(sse.data)
    } catch {
      throw new GatewayError(502, 'The upstream provider sent a stream event that is not JSON.', { code: 'upstream_bad_response' })
    }
    switch (event?.type) {
      case 'message-start':
        if (event.id) id = completionId(event.id)
        return [chunk({ role: 'assistant', content: '' })]
      case 'content-start':
        // A text block usually opens empty; thinking blocks have no chat-completions equivalent.
        return event.delta?.message?.content?.type === 'thinking' ? null : text(event.delta?.message?.content?.text)
      case 'content-delta':
        return text(event.delta?.message?.content?.text)
      case 'tool-plan-delta':
        return text(event.delta?.message?.tool_plan)
      case 'tool-call-start': {
        const call = event.delta?.message?.tool_calls
        if (!call) return null
        const index = toolIndex.size
        toolIndex.set(event.index ?? index, index)
        return [
          chunk({
            tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function?.name, arguments: call.function?.arguments ?? '' } }],
          }),
        ]
      }
      case 'tool-call-delta': {
        const index = toolIndex.get(event.index ?? toolIndex.size - 1)
        const args = event.delta?.message?.tool_calls?.function?.arguments
        if (index === undefined || !args) return null
        return [chunk({ tool_calls: [{ index, function: { arguments: args } }] })]
      }
      case 'message-end': {
        const finish = finishReason(event.delta?.finish_reason, event.delta?.error)
        return [chunk({}, finish), { id, object: 'chat.completion.chunk', created, model, choices: [], usage: openAIUsage(event.delta?.usage) }]
      }
      default:
        return null // content-end, tool-call-end, citations, debug and event types added later
    }
  }
}
