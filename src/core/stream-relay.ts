import { GatewayError } from '../plugin-sdk/errors.ts'
import type { OpenAIChunk, SseEvent, StreamFramer, Usage } from '../plugin-sdk/types.ts'
import type { PluginHost } from '../plugin-host/host.ts'
import type { Attempt } from './context.ts'
import { ByteWriter, Finder, bytesOf, startsWith, stringValueAt } from './sse/bytes.ts'
import { DEFAULT_MAX_EVENT_BYTES, SSE_DONE, SseFrameDecoder, dataOf, encodeSseData, eventOf, type SseFrame } from './sse/decoder.ts'
import type { UpstreamCall } from './upstream.ts'
import { scrubSecrets } from '../services/known-secrets.ts'

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
  /** The largest upstream event accepted, in bytes (default 4 MiB): a larger one ends the stream with a 502. */
  maxEventBytes?: number
  onFinish(outcome: StreamOutcome): void
}

const DONE = bytesOf('[DONE]')
const ERROR_START = bytesOf('{"error"')
const USAGE_OBJECT = bytesOf('"usage":{')
const FINISH_REASON = bytesOf('"finish_reason":"')
/** The same, as servers that write JSON with a space after each colon (Python's json.dumps) send them. */
const SPACED_USAGE_OBJECT = bytesOf('"usage": {')
const SPACED_FINISH_REASON = bytesOf('"finish_reason": "')
const COLON_SPACE = bytesOf('": ')
const USAGE_NULL = bytesOf(',"usage":null')
/** In OpenAI chunks the first unescaped `"model"` key is the chunk's own (nested content is JSON-escaped). */
const MODEL_KEY = bytesOf('"model"')
/** The most one pull copies and enqueues (see pull). */
const RELAY_SLICE_BYTES = 64 * 1024

/** An error that leaves for the client, scrubbed of our secrets: an upstream may quote our key in its message. */
export const errorEvent = (error: GatewayError) => encodeSseData(scrubSecrets(JSON.stringify(error.toJSON())))

/**
 * Relays an upstream SSE stream to the client with backpressure: pull-based, so nothing is read from the
 * upstream while the client's socket is full (Bun pulls a response stream only when it can write). OpenAI-
 * compatible events are forwarded as bytes with only the `model` value spliced in; an event is decoded and
 * parsed only when it carries usage or an error, or when an `onChunk` plugin needs objects. Translating
 * adapters get each event as text.
 */
export function relayStream({ first, ...o }: RelayOptions): ReadableStream<Uint8Array> {
  // `first` is left out of what the closures keep: it can be most of a megabyte (all the upstream sent before
  // we read), and it would otherwise stay alive as long as the stream.
  let pending: Uint8Array | null = first
  const frames = new SseFrameDecoder(o.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES)
  const modelBytes = bytesOf(JSON.stringify(o.virtualModel))
  const parseEveryChunk = o.host.hasChunkHooks
  const out = new ByteWriter()
  const usageObject = new Finder(USAGE_OBJECT)
  const finishReason = new Finder(FINISH_REASON)
  const usageNullField = new Finder(USAGE_NULL)
  const modelKey = new Finder(MODEL_KEY)
  const spacedUsage = new Finder(SPACED_USAGE_OBJECT)
  const spacedFinish = new Finder(SPACED_FINISH_REASON)
  const finders = [usageObject, finishReason, usageNullField, modelKey, spacedUsage, spacedFinish]
  /** Whether the upstream writes `": "` (told by its first event): only then are the spaced forms looked for. */
  let spaced: boolean | null = null
  let usage: Usage | null = null
  /** A usage chunk the client is owed before the stream's end (see emit). */
  let owedUsage: OpenAIChunk | null = null
  const payUsage = () => {
    if (owedUsage) emit(owedUsage)
  }
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

  /** Writes one OpenAI chunk object, applying usage bookkeeping and onChunk hooks (which may drop it). */
  const emit = (chunk: OpenAIChunk) => {
    if (chunk.error) throw upstreamStreamError(chunk.error)
    const choices: any[] | undefined = chunk.choices
    if (chunk.usage) {
      usage = chunk.usage
      const alone = !choices || choices.length === 0
      if (!o.includeUsage) {
        if (alone) return
        delete chunk.usage
      } else if (alone) {
        owedUsage = null
      } else {
        // OpenAI's usage comes alone, in a last chunk without choices, and that is what the client asked for; a
        // provider that puts it on a content chunk (Mistral, on its finish chunk) has it moved there.
        owedUsage = { id: chunk.id, object: 'chat.completion.chunk', created: chunk.created, model: chunk.model, choices: [], usage: chunk.usage }
        chunk.usage = null
      }
    }
    if (choices && choices.length > 0) {
      chunks++
      if (!sawFinish) for (const c of choices) if (c.finish_reason) sawFinish = true
    }
    chunk.model = o.virtualModel
    const relayed = parseEveryChunk ? o.host.chunk(o.attempt, chunk) : chunk
    if (relayed) out.text(encodeSseData(JSON.stringify(relayed)))
  }

  /** Writes `bytes[at, cutStart)` and then `replacement` in place of the cut; returns where the cut ends. */
  const upToCut = (bytes: Uint8Array, at: number, cutStart: number, cutEnd: number, replacement: Uint8Array | null) => {
    out.bytes(bytes, at, cutStart)
    if (replacement) out.bytes(replacement)
    return cutEnd
  }

  /** An OpenAI-compatible event: its bytes go on unchanged but for the model name (and `usage: null`). */
  const forward = (frame: SseFrame) => {
    const { bytes, start, end, data } = frame
    if (data.length === 0) return out.bytes(bytes, start, end) // comments keep the client's connection warm; forward them
    const from = data[0]!
    const to = data[data.length - 1]!
    if (data.length === 2 && startsWith(bytes, from, to, DONE, true)) {
      sawDone = true
      payUsage()
      return out.bytes(bytes, start, end)
    }
    if (from === to && data.length === 2) return out.bytes(bytes, start, end)
    // An error event of a server that names it (`event: error`) rather than writing OpenAI's `{"error":…}`.
    if (frame.event === 'error') throw upstreamStreamError(errorOf(dataOf(frame)))
    spaced ??= new Finder(COLON_SPACE).in(bytes, from, to) !== -1
    const carriesUsage = usageObject.in(bytes, from, to) !== -1 || (spaced && spacedUsage.in(bytes, from, to) !== -1)
    if (parseEveryChunk || startsWith(bytes, from, to, ERROR_START) || carriesUsage) return emit(JSON.parse(dataOf(frame)))
    chunks++
    if (!sawFinish && (finishReason.in(bytes, from, to) !== -1 || (spaced && spacedFinish.in(bytes, from, to) !== -1))) sawFinish = true
    const key = modelKey.in(bytes, from, to)
    const model = key === -1 ? null : stringValueAt(bytes, key + MODEL_KEY.length, to)
    const rename = model !== null && !startsWith(bytes, model.start, model.end, modelBytes, true)
    // We asked the upstream for usage; a client that did not ask gets the chunks it would get direct.
    const usageNull = o.includeUsage ? -1 : usageNullField.in(bytes, from, to)
    const usageNullFirst = usageNull !== -1 && rename && usageNull < model.start
    let at = start
    if (usageNullFirst) at = upToCut(bytes, at, usageNull, usageNull + USAGE_NULL.length, null)
    if (rename) at = upToCut(bytes, at, model.start, model.end, modelBytes)
    if (usageNull !== -1 && !usageNullFirst) at = upToCut(bytes, at, usageNull, usageNull + USAGE_NULL.length, null)
    out.bytes(bytes, at, end)
  }

  const translate = (event: SseEvent) => {
    if (!event.data) return
    for (const chunk of o.parser!(event) ?? []) emit(chunk)
  }

  /** A failure found mid-read: raised only after what came before it in the same read was sent. */
  let failure: unknown = null

  /** Decodes one upstream read (null: the end) and writes what the client gets for it. */
  const relay = (value: Uint8Array | null) => {
    const decoded: (SseFrame | SseEvent)[] = []
    try {
      if (o.framer) decoded.push(...(value ? o.framer.push(value) : o.framer.flush()))
      else if (value) frames.push(value, decoded as SseFrame[])
      else frames.flush(decoded as SseFrame[])
    } catch (error) {
      failure = error
    }
    if (!o.parser) {
      // Room for all of it at once: each event grows by the model name at most.
      let size = 0
      for (const frame of decoded as SseFrame[]) size += frame.end - frame.start + modelBytes.length
      out.reserve(size)
    }
    for (const item of decoded) {
      if (sawDone) break
      try {
        if (!o.parser) forward(item as SseFrame)
        else translate(o.framer ? (item as SseEvent) : eventOf(item as SseFrame))
      } catch (error) {
        failure = error
        break
      }
    }
    for (const finder of finders) finder.forget()
  }

  /** Queues what the relays since the last call wrote for the client; true if there was something. */
  const send = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    const bytes = out.take()
    if (bytes) controller.enqueue(bytes)
    return bytes !== null
  }

  /** Closes the stream when the last relay met the upstream's [DONE] (true), or raises the failure it met. */
  const ended = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    if (failure) throw failure
    if (!sawDone) return false
    o.reader.cancel().catch(() => {})
    controller.close()
    finish(null, false)
    return true
  }

  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        // The first read's events are queued before Bun starts on the body, so they can leave with the response's
        // head; relayed by the first pull, they left a turn later (in a bare Bun proxy, 0.03 ms of time to first
        // token at c=1). Ending the stream, or failing it, waits for that pull: a request is not reported before
        // its response exists.
        if (!pending || pending.length > RELAY_SLICE_BYTES) return
        relay(pending)
        pending = null
        send(controller)
      },
      async pull(controller) {
        try {
          // Loop until something can be sent: a network chunk may hold only part of an event, and a pull
          // that enqueues nothing is not always called again.
          for (;;) {
            if (ended(controller)) return
            let value: Uint8Array
            if (pending) {
              value = pending
              pending = null
            } else {
              o.call.arm(o.idleMs)
              const read = await o.reader.read()
              o.call.disarm() // a slow client reading us is not a silent upstream
              if (read.done) {
                relay(null)
                if (!failure && !sawDone) {
                  if (!sawFinish) failure = new GatewayError(502, 'The upstream provider closed the stream before it was complete.', { code: 'upstream_stream_truncated' })
                  else {
                    payUsage()
                    out.text(SSE_DONE)
                  }
                }
                send(controller)
                if (failure) throw failure
                controller.close()
                finish(null, false)
                return
              }
              value = read.value
            }
            // One pull relays at most a slice of a large read: what we enqueue is a copy that waits in the socket's
            // buffer while a client does not read, so a slice, not the whole read, is what an unread stream costs.
            if (value.length > RELAY_SLICE_BYTES) {
              pending = value.subarray(RELAY_SLICE_BYTES)
              value = value.subarray(0, RELAY_SLICE_BYTES)
            }
            relay(value)
            const relayed = send(controller)
            if (ended(controller) || relayed) return
          }
        } catch (error) {
          o.reader.cancel().catch(() => {})
          const failure = GatewayError.is(error) ? error : o.call.failure(error, true)
          if (failure.status === 499) {
            finish(null, true)
            controller.error(error)
            return
          }
          if (failure.status === 504) {
            Object.assign(failure, { message: `The upstream provider went silent for more than ${o.idleMs} ms mid-stream.` })
          }
          // The status line is long gone: the error travels as an event the OpenAI SDKs raise as APIError.
          controller.enqueue(bytesOf(errorEvent(failure)))
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

/**
 * A provider's own error event in a stream it had begun (OpenAI's `{"error":…}`, `response.failed`'s error); the
 * error may be a bare string (`{"error":"…"}`, as Hugging Face's TGI writes it).
 */
export function upstreamStreamError(error: any): GatewayError {
  const message = typeof error === 'string' ? error : typeof error?.message === 'string' ? error.message : 'The upstream provider reported an error mid-stream.'
  return new GatewayError(502, message.slice(0, 1_000), {
    type: typeof error?.type === 'string' ? error.type : 'server_error',
    code: typeof error?.code === 'string' ? error.code : 'upstream_error',
  })
}

/** What an `event: error` carries: `{"error":…}`, the error object itself, or plain text. */
function errorOf(data: string): unknown {
  try {
    const parsed = JSON.parse(data)
    return parsed?.error ?? parsed
  } catch {
    return data
  }
}
