import type { EventStreamCodec, Message } from '@smithy/core/event-streams'
import { GatewayError, type SseEvent, type StreamFramer } from '../../plugin-sdk/index.ts'

/**
 * `application/vnd.amazon.eventstream` for the relay. Messages are decoded (both CRCs, every header type) by
 * the AWS SDK's own codec; what stays here is what the SDK only does over an async iterable: cutting the
 * bytes the network hands the core's synchronous framer into whole messages, and mapping a message to the
 * event the stream parser reads.
 */

const PRELUDE_BYTES = 12
/** Prelude plus message CRC: the size of a message with no headers and no payload. */
const OVERHEAD_BYTES = 16
/** Bedrock frames are a few hundred bytes; a length past this is a corrupt stream, not a frame to buffer. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024

/**
 * Stateless for decode(): one codec serves every stream. Loaded with the first message (synchronously: the framer
 * is), so a gateway that never streams from Bedrock never holds the SDK's code.
 */
let codec: EventStreamCodec | null = null
function eventStreamCodec(): EventStreamCodec {
  if (codec) return codec
  const { EventStreamCodec } = require('@smithy/core/event-streams') as typeof import('@smithy/core/event-streams')
  const { fromUtf8, toUtf8 } = require('@smithy/core/serde') as typeof import('@smithy/core/serde')
  return (codec = new EventStreamCodec(toUtf8, fromUtf8))
}
const utf8 = new TextDecoder('utf-8', { fatal: false })

const corrupt = (detail: string) =>
  new GatewayError(502, `The upstream provider sent a corrupt event stream: ${detail}.`, { code: 'upstream_bad_response' })

/** Decodes one complete message; a bad CRC or header is a 502 with the codec's words. */
export function decodeMessage(frame: Uint8Array): Message {
  try {
    return eventStreamCodec().decode(frame)
  } catch (error) {
    throw corrupt(error instanceof Error ? error.message : String(error))
  }
}

/**
 * The length a prelude announces, once its CRC checked out: a corrupt length must not make the framer wait
 * for (and buffer) gigabytes before the codec gets to see the message.
 */
function messageLength(prelude: Uint8Array): number {
  const view = new DataView(prelude.buffer, prelude.byteOffset, PRELUDE_BYTES)
  if (Bun.hash.crc32(prelude.subarray(0, 8)) !== view.getUint32(8)) throw corrupt('prelude CRC mismatch')
  const total = view.getUint32(0)
  if (total < OVERHEAD_BYTES || total > MAX_MESSAGE_BYTES) throw corrupt(`impossible message length ${total}`)
  if (view.getUint32(4) > total - OVERHEAD_BYTES) throw corrupt(`headers length ${view.getUint32(4)} exceeds the message`)
  return total
}

const text = (message: Message, name: string): string | undefined => {
  const header = message.headers[name]
  return header?.type === 'string' ? header.value : undefined
}

/**
 * The event a message becomes for the stream parser: `event` is the `:event-type` of an event,
 * `exception:<:exception-type>` for a modelled exception and `error:<:error-code>` for a protocol error;
 * `data` is the payload text (never empty, so the relay does not skip an exception without a body).
 */
export function messageToEvent(message: Message): SseEvent {
  const payload = message.body.length > 0 ? utf8.decode(message.body) : ''
  switch (text(message, ':message-type')) {
    case 'exception':
      return { event: `exception:${text(message, ':exception-type') ?? 'unknown'}`, data: payload || '{}' }
    case 'error':
      return { event: `error:${text(message, ':error-code') ?? 'unknown'}`, data: JSON.stringify({ message: text(message, ':error-message') ?? '' }) }
    default:
      return { event: text(message, ':event-type') ?? null, data: payload }
  }
}

/**
 * Cuts a byte stream into messages, whatever the network did to it: bytes are kept as the pieces they
 * arrived in and copied once, when a whole prelude or message is there (linear even for 1-byte pieces).
 */
export class EventStreamFramer implements StreamFramer {
  private pieces: Uint8Array[] = []
  private buffered = 0
  /** Length of the message being assembled, known once its prelude checked out; 0 before. */
  private expected = 0

  push(bytes: Uint8Array): SseEvent[] {
    const out: SseEvent[] = []
    if (bytes.length > 0) {
      this.pieces.push(bytes)
      this.buffered += bytes.length
    }
    for (;;) {
      if (this.expected === 0) {
        if (this.buffered < PRELUDE_BYTES) break
        this.expected = messageLength(this.peek(PRELUDE_BYTES))
      }
      if (this.buffered < this.expected) break
      const frame = this.take(this.expected)
      this.expected = 0
      out.push(messageToEvent(decodeMessage(frame)))
    }
    return out
  }

  flush(): SseEvent[] {
    if (this.buffered > 0) {
      throw new GatewayError(502, `The upstream provider's event stream ended inside a message (${this.buffered} bytes left over).`, {
        code: 'upstream_stream_truncated',
      })
    }
    return []
  }

  /** The first `n` buffered bytes (n ≤ buffered), without consuming them. */
  private peek(n: number): Uint8Array {
    const first = this.pieces[0]!
    if (first.length >= n) return first.subarray(0, n)
    return this.copy(n, false)
  }

  /** Removes and returns the first `n` buffered bytes (n ≤ buffered). */
  private take(n: number): Uint8Array {
    const first = this.pieces[0]!
    if (first.length >= n) {
      if (first.length === n) this.pieces.shift()
      else this.pieces[0] = first.subarray(n)
      this.buffered -= n
      return first.subarray(0, n)
    }
    return this.copy(n, true)
  }

  private copy(n: number, consume: boolean): Uint8Array {
    const out = new Uint8Array(n)
    let filled = 0
    let i = 0
    while (filled < n) {
      const piece = this.pieces[i]!
      const used = Math.min(piece.length, n - filled)
      out.set(piece.subarray(0, used), filled)
      filled += used
      if (consume) {
        if (used === piece.length) this.pieces.shift()
        else this.pieces[0] = piece.subarray(used)
      } else {
        i++
      }
    }
    if (consume) this.buffered -= n
    return out
  }
}
