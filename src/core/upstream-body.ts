import { GatewayError } from '../plugin-sdk/errors.ts'
import type { Usage } from '../plugin-sdk/types.ts'
import { costMicros } from '../pricing/prices.ts'
import { OVER_LIMIT, readCapped } from './body.ts'
import type { Attempt, RequestCtx } from './context.ts'
import type { AttemptLease } from './router.ts'
import { sseEvent } from './audio.ts'
import { errorEvent } from './stream-relay.ts'
import { DEFAULT_MAX_EVENT_BYTES, SseFrameDecoder, dataOf } from './sse/decoder.ts'
import { targetFailed, type Timeouts, type UpstreamCall } from './upstream.ts'

/**
 * Reading an upstream response, shared by every operation: the whole body (capped) for a JSON answer, the first
 * chunk under the first-byte timer, and a byte relay for streamed bodies with the request's accounting at its end.
 */

export const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' }

/**
 * An attempt of an operation that has its own module (audio, images): the body its adapter builds the upstream
 * request from (the upload and formats chosen for this target), and how the upstream's answer reaches the client.
 */
export interface OperationCall {
  body: Record<string, any>
  respond(response: Response, call: UpstreamCall, lease: AttemptLease, timeouts: Timeouts, started: number): Promise<Response>
  /**
   * What the provider bills for the request it was sent when the client leaves before the answer: the whole of it
   * (the seconds of audio, the characters, the pictures asked for), which it makes and charges anyway. Without it,
   * the prompt's estimate.
   */
  abandoned?(): Usage
}

/** A non-streaming body as text, capped; a transport failure becomes the error the client should see. */
export async function readUpstreamText(response: Response, call: UpstreamCall, cap: number, provider: string): Promise<string> {
  try {
    return await readCapped(response, cap)
  } catch (error) {
    if (error === OVER_LIMIT) {
      throw new GatewayError(502, `The upstream provider '${provider}' sent a response larger than ${cap} bytes.`, { code: 'upstream_response_too_large' })
    }
    throw GatewayError.is(error) ? error : call.failure(error)
  } finally {
    call.release()
  }
}

/** An SSE stream's first bytes are read to the end of its first event, up to this many. */
const FIRST_EVENT_MAX_BYTES = 64 * 1024

/**
 * A streamed answer begins: its first bytes read while the first-byte timer still runs (a silent upstream can still
 * become a 504 and a retry), then the relay's idle timer takes over and the target counts as answering. `events`:
 * an SSE stream, read on to the end of its first event, since relaying the first bytes commits the response (its
 * 200): an upstream that dies within its first event goes to the next target instead of ending the stream at once.
 */
export async function firstBytes(ctx: RequestCtx, body: ReadableStream<Uint8Array>, call: UpstreamCall, lease: AttemptLease, started: number, provider: string, events = false) {
  const reader = body.getReader() as ReadableStreamDefaultReader<Uint8Array>
  let first: Uint8Array | null = null
  try {
    for (;;) {
      const read = await reader.read()
      if (read.done) break
      first = first ? Buffer.concat([first, read.value]) : read.value
      if (!events || first.length >= FIRST_EVENT_MAX_BYTES || hasEventEnd(first)) break
    }
  } catch (error) {
    call.release()
    throw call.failure(error)
  }
  if (!first) {
    call.release()
    throw new GatewayError(502, `The upstream provider '${provider}' returned an empty stream.`, { code: 'upstream_empty_stream' })
  }
  call.disarm()
  ctx.firstByteMs = performance.now() - ctx.startedAt
  lease.succeeded(performance.now() - started)
  return { reader, first }
}

/** A blank line ends an SSE event (LF or CRLF line ends). */
const hasEventEnd = (bytes: Uint8Array) => {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return buffer.indexOf('\n\n') !== -1 || buffer.indexOf('\r\n\r\n') !== -1
}

/** A whole (non-streamed) answer as text, capped: the target counts as answering, and its lease goes back once read. */
export async function wholeText(response: Response, call: UpstreamCall, lease: AttemptLease, started: number, cap: number, provider: string): Promise<string> {
  lease.succeeded(performance.now() - started)
  const text = await readUpstreamText(response, call, cap, provider)
  lease.release()
  return text
}

/**
 * The end of a streamed attempt: the lease back (a failure from the provider counts against its target), the usage
 * and cost as they stand, and the request reported exactly once.
 */
export function streamEnd(
  ctx: RequestCtx,
  attempt: Attempt,
  lease: AttemptLease,
  report: (ctx: RequestCtx, aborted: boolean) => void,
  usage: (aborted: boolean) => Usage,
) {
  return (error: GatewayError | null, aborted: boolean) => {
    lease.release()
    if (error && targetFailed(error)) lease.failed(error)
    ctx.usage = usage(aborted)
    ctx.costMicros = costMicros(attempt.target.price, ctx.usage)
    if (error) {
      ctx.error = error
      ctx.status = error.status
    }
    report(ctx, aborted)
  }
}

/** What is read from a stream of bytes (the upstream's body, a transcoder's output), whichever stream type made it. */
interface ByteReader {
  read(): Promise<{ done: boolean; value?: Uint8Array }>
  cancel(reason?: unknown): Promise<void>
}

interface RelayHooks {
  /** Wrap each chunk as a `speech.audio.delta` event, and end with `speech.audio.done`. */
  sse: boolean
  onBytes?(bytes: Uint8Array): void
  /** Set on the stream the client reads: called once, at the end, a failure or the client leaving. */
  onFinish?(error: GatewayError | null, aborted: boolean): void
  /** The `speech.audio.done` usage, computed at the end. */
  doneUsage?(): Record<string, number>
  /** What a failure mid-way ends the stream with (a protocol's error event) instead of cutting it off. */
  closing?(error: GatewayError): Uint8Array
}

/**
 * Bytes from `reader` as a pull stream (nothing is read while the reader of this stream is not reading), with the
 * upstream's idle deadline armed while waiting (`idleMs` 0: not an upstream), and the relay's end reported once.
 * A failure mid-way cannot change the status any more: an SSE stream gets an error event (its own, or `closing`'s),
 * raw audio is cut off.
 */
export function relayBytes(reader: ByteReader, first: Uint8Array | null, call: UpstreamCall, idleMs: number, hooks: RelayHooks): ReadableStream<Uint8Array> {
  let pending = first
  let finished = false
  const finish = (error: GatewayError | null, aborted: boolean) => {
    if (finished) return
    finished = true
    call.release()
    hooks.onFinish?.(error, aborted)
  }
  const deliver = (controller: ReadableStreamDefaultController<Uint8Array>, bytes: Uint8Array) => {
    hooks.onBytes?.(bytes)
    controller.enqueue(hooks.sse ? sseEvent({ type: 'speech.audio.delta', audio: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') }) : bytes)
  }
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          if (pending) {
            const bytes = pending
            pending = null
            return deliver(controller, bytes)
          }
          if (idleMs) call.arm(idleMs)
          const read = await reader.read()
          if (idleMs) call.disarm()
          if (read.done) {
            if (hooks.sse) controller.enqueue(sseEvent({ type: 'speech.audio.done', usage: hooks.doneUsage?.() ?? {} }))
            controller.close()
            finish(null, false)
            return
          }
          deliver(controller, read.value!)
        } catch (error) {
          reader.cancel().catch(() => {})
          const failure = GatewayError.is(error) ? error : call.failure(error, true)
          if (failure.status === 499) {
            finish(null, true)
            controller.error(failure)
            return
          }
          if (failure.status === 504 && idleMs) Object.assign(failure, { message: `The upstream provider went silent for more than ${idleMs} ms mid-stream.` })
          const closing = hooks.sse ? new TextEncoder().encode(errorEvent(failure)) : hooks.closing?.(failure)
          if (closing) {
            controller.enqueue(closing)
            controller.close()
          } else controller.error(failure)
          finish(failure, false)
        }
      },
      cancel() {
        // The client went away: stop the upstream (and any conversion) now, and still account for the request.
        call.clientLeft()
        reader.cancel().catch(() => {})
        finish(null, true)
      },
    },
    { highWaterMark: 0 },
  )
}

/**
 * Watches a relayed SSE byte stream for the events of one type and hands over each one's JSON (usage, counts); the
 * bytes themselves pass unchanged. An event past `maxEventBytes` is not looked at (the client still gets it).
 */
export function sseEventWatcher(type: string, found: (event: any) => void, maxEventBytes = DEFAULT_MAX_EVENT_BYTES): (bytes: Uint8Array) => void {
  const frames = new SseFrameDecoder(maxEventBytes)
  const quoted = `"${type}"`
  return (bytes) => {
    let decoded
    try {
      decoded = frames.push(bytes)
    } catch {
      return
    }
    for (const frame of decoded) {
      const data = dataOf(frame)
      if (frame.event !== type && !data.includes(quoted)) continue
      try {
        const event = JSON.parse(data)
        if (event?.type === type) found(event)
      } catch {}
    }
  }
}
