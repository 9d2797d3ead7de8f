import { GatewayError } from '../plugin-sdk/errors.ts'
import type { OpenAIChunk, SseEvent, StreamFramer, Usage } from '../plugin-sdk/types.ts'
import type { PluginHost } from '../plugin-host/host.ts'
import type { Attempt } from './context.ts'
import { SSE_DONE, SseDecoder, encodeSseData, type RawSseEvent } from './sse/decoder.ts'
import type { UpstreamCall } from './upstream.ts'
import { spliceModel } from './wire.ts'

export interface StreamOutcome {
  usage: Usage | null
  /** Content chunks relayed: roughly one token each, the basis of an estimate when usage is missing. */
  chunks: number
  error: GatewayError | null
  aborted: boolean
}

export interface RelayOptions {
  call: UpstreamCall
  reader: ReadableStreamDefaultReader<Uint8Array>
  /** Read before the response was committed, so failures up to here could still become a status code. */
  first: Uint8Array
  idleMs: number
  attempt: Attempt
  /** Translating adapters turn each upstream event into OpenAI chunks; null forwards OpenAI bytes. */
  parser: ((event: SseEvent) => OpenAIChunk[] | null) | null
  /** Frames a non-SSE upstream stream into events for the parser; null for SSE. */
  framer?: StreamFramer | null
  host: PluginHost
  virtualModel: string
  /** The client asked for `stream_options.include_usage`; otherwise the usage-only chunk is removed. */
  includeUsage: boolean
  onFinish(outcome: StreamOutcome): void
}

const encoder = new TextEncoder()
const USAGE_NULL = ',"usage":null'
export const errorEvent = (error: GatewayError) => encodeSseData(JSON.stringify(error.toJSON()))

/**
 * Relays an upstream SSE stream to the client with backpressure (pull-based). OpenAI-compatible events are
 * forwarded byte for byte with only the `model` value spliced; a chunk is parsed only when it carries usage
 * or an error, or when an `onChunk` plugin needs objects.
 */
export function relayStream(o: RelayOptions): ReadableStream<Uint8Array> {
  const decoder = new TextDecoder()
  const events = new SseDecoder()
  const encodedModel = JSON.stringify(o.virtualModel)
  const parseEveryChunk = o.host.hasChunkHooks
  let pending: Uint8Array | null = o.first
  let usage: Usage | null = null
  let chunks = 0
  let sawDone = false
  let sawFinish = false
  let finished = false

  const finish = (error: GatewayError | null, aborted: boolean) => {
    if (finished) return
    finished = true
    o.call.release()
    o.onFinish({ usage, chunks, error, aborted })
  }

  /** Serialises one OpenAI chunk object, applying usage bookkeeping and onChunk hooks; '' drops it. */
  const emit = (chunk: OpenAIChunk): string => {
    if (chunk.error) throw upstreamStreamError(chunk.error)
    const choices: any[] | undefined = chunk.choices
    if (chunk.usage) {
      usage = chunk.usage
      if (!o.includeUsage) {
        if (!choices || choices.length === 0) return ''
        delete chunk.usage
      }
    }
    if (choices && choices.length > 0) {
      chunks++
      if (!sawFinish) for (const c of choices) if (c.finish_reason) sawFinish = true
    }
    chunk.model = o.virtualModel
    const out = parseEveryChunk ? o.host.chunk(o.attempt, chunk) : chunk
    return out ? encodeSseData(JSON.stringify(out)) : ''
  }

  /** A failure found mid-batch: raised only after what came before it in the same read was sent. */
  let failure: unknown = null

  const transform = (batch: (RawSseEvent | SseEvent)[]): string => {
    let out = ''
    for (const event of batch) {
      if (sawDone || failure) break
      try {
        out += translate(event)
      } catch (error) {
        failure = error
      }
    }
    return out
  }

  const translate = (event: RawSseEvent | SseEvent): string => {
    if (o.parser) {
      if (!event.data) return ''
      let out = ''
      for (const chunk of o.parser(event) ?? []) out += emit(chunk)
      return out
    }
    const data = event.data
    if (data === '[DONE]') {
      sawDone = true
      return (event as RawSseEvent).raw
    }
    if (!data) return (event as RawSseEvent).raw // comments keep the client's connection warm; forward them
    if (parseEveryChunk || data.includes('"usage":{') || data.startsWith('{"error"')) return emit(JSON.parse(data))
    chunks++
    if (!sawFinish && data.includes('"finish_reason":"')) sawFinish = true
    const raw = spliceModel((event as RawSseEvent).raw, o.virtualModel, encodedModel)
    // We asked the upstream for usage; a client that did not ask gets the chunks it would get direct.
    return o.includeUsage ? raw : raw.replace(USAGE_NULL, '')
  }

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          // Loop until something can be sent: a network chunk may hold only part of an event, and a pull
          // that enqueues nothing is not always called again.
          for (;;) {
            let value: Uint8Array
            if (pending) {
              value = pending
              pending = null
            } else {
              o.call.arm(o.idleMs)
              const read = await o.reader.read()
              o.call.disarm() // a slow client reading us is not a silent upstream
              if (read.done) {
                let out = o.framer ? transform(o.framer.flush()) : transform(events.push(decoder.decode())) + transform(events.flush())
                if (failure) {
                  if (out) controller.enqueue(encoder.encode(out))
                  throw failure
                }
                if (!sawDone) {
                  if (!sawFinish) throw new GatewayError(502, 'The upstream provider closed the stream before it was complete.', { code: 'upstream_stream_truncated' })
                  out += SSE_DONE
                }
                if (out) controller.enqueue(encoder.encode(out))
                controller.close()
                finish(null, false)
                return
              }
              value = read.value
            }
            const out = transform(o.framer ? o.framer.push(value) : events.push(decoder.decode(value, { stream: true })))
            if (out) controller.enqueue(encoder.encode(out))
            if (failure) throw failure
            if (sawDone) {
              o.reader.cancel().catch(() => {})
              controller.close()
              finish(null, false)
              return
            }
            if (out) return
          }
        } catch (error) {
          o.reader.cancel().catch(() => {})
          const failure = GatewayError.is(error) ? error : o.call.failure(error)
          if (failure.status === 499) {
            finish(null, true)
            controller.error(error)
            return
          }
          if (failure.status === 504) {
            Object.assign(failure, { message: `The upstream provider went silent for more than ${o.idleMs} ms mid-stream.` })
          }
          // The status line is long gone: the error travels as an event the OpenAI SDKs raise as APIError.
          controller.enqueue(encoder.encode(errorEvent(failure)))
          controller.close()
          finish(failure, false)
        }
      },
      cancel() {
        // The client went away: stop the upstream now, and still account for what was produced.
        o.call.clientLeft()
        o.reader.cancel().catch(() => {})
        finish(null, true)
      },
    },
    { highWaterMark: 0 },
  )
}

function upstreamStreamError(error: any): GatewayError {
  const message = typeof error?.message === 'string' ? error.message : 'The upstream provider reported an error mid-stream.'
  return new GatewayError(502, message, { type: typeof error?.type === 'string' ? error.type : 'server_error', code: typeof error?.code === 'string' ? error.code : 'upstream_error' })
}
