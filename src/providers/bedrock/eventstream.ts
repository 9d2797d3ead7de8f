import { crc32 } from 'node:zlib'
import { GatewayError, type SseEvent, type StreamFramer } from '../../plugin-sdk/index.ts'

/**
 * `application/vnd.amazon.eventstream` decoding. A message is
 *
 *   total length u32 BE | headers length u32 BE | prelude CRC32 (of the 8 bytes before it)
 *   headers: name length u8, name, value type u8, value (type 7, string: length u16 BE + UTF-8)
 *   payload | message CRC32 (of every byte before it)
 *
 * (AWS event stream encoding docs; the prelude and message CRCs are the gzip CRC32.)
 */

export const PRELUDE_BYTES = 12
/** Prelude plus message CRC: the size of a message with no headers and no payload. */
export const OVERHEAD_BYTES = 16
/** Bedrock frames are a few hundred bytes; a length past this is a corrupt stream, not a frame to buffer. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024

export type HeaderValue = string | number | bigint | boolean | Uint8Array | Date

export interface EventStreamMessage {
  headers: Record<string, HeaderValue>
  payload: Uint8Array
}

const utf8 = new TextDecoder('utf-8', { fatal: false })

const corrupt = (detail: string) =>
  new GatewayError(502, `The upstream provider sent a corrupt event stream: ${detail}.`, { code: 'upstream_bad_response' })

/** Decodes one complete message, checking both CRCs. */
export function decodeMessage(frame: Uint8Array): EventStreamMessage {
  if (frame.length < OVERHEAD_BYTES) throw corrupt(`a message of ${frame.length} bytes is shorter than its framing`)
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  checkPrelude(view, frame)
  const total = view.getUint32(0)
  if (total !== frame.length) throw corrupt(`the prelude announces ${total} bytes, the message has ${frame.length}`)
  const headersLength = view.getUint32(4)
  if (crc32(frame.subarray(0, total - 4)) !== view.getUint32(total - 4)) throw corrupt('message CRC mismatch')
  return {
    headers: decodeHeaders(frame.subarray(PRELUDE_BYTES, PRELUDE_BYTES + headersLength)),
    payload: frame.subarray(PRELUDE_BYTES + headersLength, total - 4),
  }
}

/** Validates the prelude (the first 12 bytes) before its lengths are trusted for buffering. */
function checkPrelude(view: DataView, bytes: Uint8Array): number {
  if (crc32(bytes.subarray(0, 8)) !== view.getUint32(8)) throw corrupt('prelude CRC mismatch')
  const total = view.getUint32(0)
  const headersLength = view.getUint32(4)
  if (total < OVERHEAD_BYTES || total > MAX_MESSAGE_BYTES) throw corrupt(`impossible message length ${total}`)
  if (headersLength > total - OVERHEAD_BYTES) throw corrupt(`headers length ${headersLength} exceeds the message`)
  return total
}

export function decodeHeaders(bytes: Uint8Array): Record<string, HeaderValue> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const headers: Record<string, HeaderValue> = {}
  let at = 0
  const need = (n: number) => {
    if (at + n > bytes.length) throw corrupt('a header runs past the headers section')
  }
  while (at < bytes.length) {
    need(1)
    const nameLength = view.getUint8(at++)
    need(nameLength + 1)
    const name = utf8.decode(bytes.subarray(at, at + nameLength))
    at += nameLength
    const type = view.getUint8(at++)
    let value: HeaderValue
    switch (type) {
      case 0:
      case 1:
        value = type === 0
        break
      case 2:
        need(1)
        value = view.getInt8(at)
        at += 1
        break
      case 3:
        need(2)
        value = view.getInt16(at)
        at += 2
        break
      case 4:
        need(4)
        value = view.getInt32(at)
        at += 4
        break
      case 5:
        need(8)
        value = view.getBigInt64(at)
        at += 8
        break
      case 6:
      case 7: {
        need(2)
        const length = view.getUint16(at)
        at += 2
        need(length)
        const raw = bytes.subarray(at, at + length)
        value = type === 7 ? utf8.decode(raw) : raw
        at += length
        break
      }
      case 8:
        need(8)
        value = new Date(Number(view.getBigInt64(at)))
        at += 8
        break
      case 9:
        need(16)
        value = bytes.subarray(at, at + 16)
        at += 16
        break
      default:
        throw corrupt(`unknown header value type ${type}`)
    }
    headers[name] = value
  }
  return headers
}

/**
 * The event a message becomes for the stream parser: `event` is the `:event-type` of an event,
 * `exception:<:exception-type>` for a modelled exception and `error:<:error-code>` for a protocol error;
 * `data` is the payload text (never empty, so the relay does not skip an exception without a body).
 */
export function messageToEvent(message: EventStreamMessage): SseEvent {
  const h = message.headers
  const payload = message.payload.length > 0 ? utf8.decode(message.payload) : ''
  switch (h[':message-type']) {
    case 'exception':
      return { event: `exception:${String(h[':exception-type'] ?? 'unknown')}`, data: payload || '{}' }
    case 'error':
      return { event: `error:${String(h[':error-code'] ?? 'unknown')}`, data: JSON.stringify({ message: String(h[':error-message'] ?? '') }) }
    default:
      return { event: typeof h[':event-type'] === 'string' ? (h[':event-type'] as string) : null, data: payload }
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
        const prelude = this.peek(PRELUDE_BYTES)
        this.expected = checkPrelude(new DataView(prelude.buffer, prelude.byteOffset, PRELUDE_BYTES), prelude)
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
