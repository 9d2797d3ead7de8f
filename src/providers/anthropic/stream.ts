import { GatewayError, type AttemptContext, type OpenAIChunk, type SseEvent } from '../../plugin-sdk/index.ts'
import { completionId, finishReason, openAIUsage, unixNow, type FinishReason } from './response.ts'
import type { AnthropicStreamEvent, AnthropicUsage } from './types.ts'

/**
 * Anthropic SSE events → OpenAI `chat.completion.chunk` objects. Text and tool_use blocks become content and
 * tool_call deltas; the final `message_stop` yields a usage-only chunk (`choices: []`) that the core strips
 * when the client did not ask for `include_usage`.
 */
export function createStreamParser(_ctx: AttemptContext): (event: SseEvent) => OpenAIChunk[] | null {
  let id = 'chatcmpl-anthropic'
  let model = ''
  const created = unixNow()
  const usage: AnthropicUsage = { input_tokens: 0, output_tokens: 0 }
  /** Anthropic content-block index → OpenAI tool_calls index (0-based count of tool blocks). */
  const toolIndex = new Map<number, number>()

  const chunk = (delta: Record<string, unknown>, finish: FinishReason | null = null): OpenAIChunk => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })

  return (sse) => {
    let event: AnthropicStreamEvent
    try {
      event = JSON.parse(sse.data)
    } catch {
      throw new GatewayError(502, 'The upstream provider sent a stream event that is not JSON.', { code: 'upstream_bad_response' })
    }
    switch (event.type) {
      case 'message_start': {
        id = completionId(event.message.id)
        model = event.message.model
        mergeUsage(usage, event.message.usage)
        return [chunk({ role: 'assistant', content: '' })]
      }
      case 'content_block_start': {
        const block = event.content_block
        if (block.type === 'tool_use') {
          const index = toolIndex.size
          toolIndex.set(event.index, index)
          return [chunk({ tool_calls: [{ index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } }] })]
        }
        // A text block starts empty; its text arrives in deltas.
        if (block.type === 'text' && typeof block.text === 'string' && block.text) return [chunk({ content: block.text })]
        return null
      }
      case 'content_block_delta': {
        const delta = event.delta
        if (delta.type === 'text_delta') return delta.text ? [chunk({ content: delta.text })] : null
        if (delta.type === 'input_json_delta') {
          const index = toolIndex.get(event.index)
          if (index === undefined || !delta.partial_json) return null
          return [chunk({ tool_calls: [{ index, function: { arguments: delta.partial_json } }] })]
        }
        return null // thinking, signature and citations deltas have no chat-completions equivalent
      }
      case 'message_delta': {
        // message_delta usage is cumulative; newer API versions may restate input and cache counts here too.
        mergeUsage(usage, event.usage)
        return event.delta.stop_reason ? [chunk({}, finishReason(event.delta.stop_reason))] : null
      }
      case 'message_stop':
        return [{ id, object: 'chat.completion.chunk', created, model, choices: [], usage: openAIUsage(usage) }]
      case 'error':
        throw anthropicStreamError(event.error)
      default:
        return null // ping, content_block_stop and event types added later
    }
  }
}

/** Copies the token counts that are present (null or missing counts keep the earlier value). */
function mergeUsage(target: AnthropicUsage, source: Partial<AnthropicUsage> | undefined) {
  if (!source) return
  for (const key of ['input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens'] as const) {
    const value = source[key]
    if (typeof value === 'number') target[key] = value
  }
}

/** Anthropic's `error` event in a stream it had begun: overloaded is a 503 (retried elsewhere), anything else a 502. */
export function anthropicStreamError(error: { type?: unknown; message?: unknown } | undefined): GatewayError {
  const type = typeof error?.type === 'string' ? error.type : 'api_error'
  const message = typeof error?.message === 'string' ? error.message : 'The upstream provider reported an error mid-stream.'
  return new GatewayError(type === 'overloaded_error' ? 503 : 502, message, { type: 'server_error', code: type })
}
