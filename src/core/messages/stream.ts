import type { GatewayError } from '../../plugin-sdk/errors.ts'
import { openAIUsage } from '../../providers/anthropic/response.ts'
import { anthropicStreamError } from '../../providers/anthropic/stream.ts'
import type { AnthropicUsage } from '../../providers/anthropic/types.ts'
import type { ChatStreamTranslator, NativeStreamWatcher } from '../front-door.ts'
import { ToolCallOrder, type CallStep } from '../tool-call-order.ts'
import { errorType } from './errors.ts'
import { anthropicUsage, messageId, reasoningOf, stopReason, toolUseId } from './response.ts'

const frame = (data: Record<string, any>) => `event: ${data.type}\ndata: ${JSON.stringify(data)}\n\n`
/** A stream's failure mid-way, as Anthropic reports one: an `error` event. */
const errorFrame = (error: GatewayError) => frame({ type: 'error', error: { type: errorType(error.status, error.code), message: error.message } })

type Block = { kind: 'thinking' | 'text' | 'tool' }

/**
 * Chat chunks → the Messages stream: `message_start` and a `ping` on the first chunk, one content block at a time
 * (thinking, text, each tool call), then `message_delta` with the stop reason and usage, and `message_stop`.
 * Chat reports the prompt's size only at the end, so `message_start` says 0 input tokens and `message_delta`
 * carries the real counts (both SDKs take them from there).
 */
export function chatToMessagesStream(stops: unknown): ChatStreamTranslator {
  let started = false
  let open: Block | null = null
  let blocks = 0
  /** Tool calls one block at a time (see ToolCallOrder). */
  const calls = new ToolCallOrder()
  let finish: unknown = null
  let matched: unknown = null
  let usage: Record<string, any> | null = null

  const start = (chunk: Record<string, any>) => {
    started = true
    const message = { id: messageId(chunk.id), type: 'message', role: 'assistant', model: chunk.model, content: [], stop_reason: null, stop_sequence: null, usage: anthropicUsage(null) }
    return frame({ type: 'message_start', message }) + frame({ type: 'ping' })
  }
  const close = () => {
    if (!open) return ''
    open = null
    return frame({ type: 'content_block_stop', index: blocks - 1 })
  }
  const begin = (block: Block, contentBlock: Record<string, any>) => {
    const out = close() + frame({ type: 'content_block_start', index: blocks, content_block: contentBlock })
    open = block
    blocks++
    return out
  }
  const toolSteps = (steps: CallStep[]) => {
    let out = ''
    for (const step of steps) {
      if (step.type === 'open') out += begin({ kind: 'tool' }, { type: 'tool_use', id: toolUseId(step.id), name: step.name, input: {} })
      else if (step.type === 'args') out += frame({ type: 'content_block_delta', index: blocks - 1, delta: { type: 'input_json_delta', partial_json: step.fragment } })
      else out += close()
    }
    return out
  }

  return {
    chunk(chunk) {
      let out = started ? '' : start(chunk)
      if (chunk.usage) usage = chunk.usage
      const choice = chunk.choices?.[0]
      if (!choice) return out
      const delta = choice.delta ?? {}
      const reasoning = reasoningOf(delta)
      if (reasoning) {
        out += toolSteps(calls.finish())
        if (open?.kind !== 'thinking') out += begin({ kind: 'thinking' }, { type: 'thinking', thinking: '', signature: '' })
        out += frame({ type: 'content_block_delta', index: blocks - 1, delta: { type: 'thinking_delta', thinking: reasoning } })
      }
      if (typeof delta.content === 'string' && delta.content) {
        out += toolSteps(calls.finish())
        if (open?.kind !== 'text') out += begin({ kind: 'text' }, { type: 'text', text: '' })
        out += frame({ type: 'content_block_delta', index: blocks - 1, delta: { type: 'text_delta', text: delta.content } })
      }
      for (const call of delta.tool_calls ?? []) out += toolSteps(calls.delta(call))
      if (choice.finish_reason) {
        finish = choice.finish_reason
        matched = choice.stop_reason
      }
      return out
    },
    end(error: GatewayError | null) {
      if (error) return errorFrame(error)
      let out = started ? '' : start({})
      out += toolSteps(calls.finish()) + close()
      out += frame({ type: 'message_delta', delta: stopReason(finish, matched, stops), usage: anthropicUsage(usage) })
      return out + frame({ type: 'message_stop' })
    },
    // Messages are not stored by the gateway: nothing keeps the final object.
    result: () => null,
  }
}

/** An event the relay passes on as it is: one that is not JSON is the client's to judge, not a reason to cut the stream. */
function parse(data: string): Record<string, any> | null {
  try {
    return JSON.parse(data)
  } catch {
    return null
  }
}

/**
 * Usage of a native Messages stream: `message_start` has the input counts (and an output of 1 or so, not yet the
 * answer's), `message_delta` the cumulative output.
 */
export function watchMessagesStream(): NativeStreamWatcher {
  let usage: AnthropicUsage | null = null
  let outputCounted = false
  let deltas = 0
  let failure: GatewayError | null = null
  const merge = (counts: Partial<AnthropicUsage> | undefined) => {
    if (!counts || !usage) return
    for (const key of ['input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens'] as const) {
      if (typeof counts[key] === 'number') usage[key] = counts[key]
    }
  }
  return {
    event(type, data) {
      if (type === 'content_block_delta') deltas++
      else if (type === 'message_start') {
        usage = { input_tokens: 0, output_tokens: 0 }
        merge(parse(data)?.message?.usage)
      } else if (type === 'message_delta') {
        const counts = parse(data)?.usage
        merge(counts)
        if (typeof counts?.output_tokens === 'number') outputCounted = true
      } else if (type === 'error') failure = anthropicStreamError(parse(data)?.error)
    },
    usage: () => {
      if (!usage) return null
      const counts = openAIUsage(usage)
      if (!outputCounted) delete counts.completion_tokens
      return counts
    },
    deltas: () => deltas,
    failure: () => failure,
    result: () => null,
    failureEvent: errorFrame,
  }
}
