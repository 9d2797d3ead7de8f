import { GatewayError, type AttemptContext, type OpenAIChunk, type SseEvent } from '../../plugin-sdk/index.ts'
import { bedrockError, completionId, finishReason, openAIUsage, unixNow, type FinishReason } from './response.ts'
import type { StreamEvents } from './types.ts'

/**
 * ConverseStream events (already cut out of the binary stream by the framer) → OpenAI
 * `chat.completion.chunk` objects. Text and toolUse blocks become content and tool_call deltas;
 * `messageStop` gives the finish reason and `metadata` a usage-only chunk (`choices: []`) that the core strips
 * when the client did not ask for `include_usage`. Exception frames become the stream's error.
 */
export function createStreamParser(ctx: AttemptContext): (event: SseEvent) => OpenAIChunk[] | null {
  const id = completionId()
  const model = ctx.target.model
  const created = unixNow()
  /** Converse contentBlockIndex → OpenAI tool_calls index (0-based count of toolUse blocks). */
  const toolIndex = new Map<number, number>()

  const chunk = (delta: Record<string, unknown>, finish: FinishReason | null = null): OpenAIChunk => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })

  return (sse) => {
    const name = sse.event ?? ''
    let payload: any
    try {
      payload = JSON.parse(sse.data)
    } catch {
      throw new GatewayError(502, `The upstream provider sent a '${name}' stream event that is not JSON.`, { code: 'upstream_bad_response' })
    }
    if (name.startsWith('exception:') || name.startsWith('error:')) {
      const type = name.slice(name.indexOf(':') + 1)
      const message = typeof payload?.message === 'string' && payload.message ? payload.message : 'The upstream provider reported an error mid-stream.'
      throw bedrockError(type, message, 502)
    }
    switch (name as keyof StreamEvents) {
      case 'messageStart':
        return [chunk({ role: 'assistant', content: '' })]
      case 'contentBlockStart': {
        const e = payload as StreamEvents['contentBlockStart']
        const tool = e.start?.toolUse
        if (!tool) return null
        const index = toolIndex.size
        toolIndex.set(e.contentBlockIndex, index)
        return [chunk({ tool_calls: [{ index, id: tool.toolUseId, type: 'function', function: { name: tool.name, arguments: '' } }] })]
      }
      case 'contentBlockDelta': {
        const e = payload as StreamEvents['contentBlockDelta']
        if (typeof e.delta?.text === 'string') return e.delta.text ? [chunk({ content: e.delta.text })] : null
        if (e.delta?.toolUse) {
          const index = toolIndex.get(e.contentBlockIndex)
          if (index === undefined || !e.delta.toolUse.input) return null
          return [chunk({ tool_calls: [{ index, function: { arguments: e.delta.toolUse.input } }] })]
        }
        return null // reasoningContent and citation deltas have no chat-completions equivalent
      }
      case 'messageStop':
        return [chunk({}, finishReason((payload as StreamEvents['messageStop']).stopReason))]
      case 'metadata': {
        const usage = (payload as StreamEvents['metadata']).usage
        return usage ? [{ id, object: 'chat.completion.chunk', created, model, choices: [], usage: openAIUsage(usage) }] : null
      }
      default:
        return null // contentBlockStop and event types added later
    }
  }
}
