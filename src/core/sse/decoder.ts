import { GatewayError } from '../../plugin-sdk/errors.ts'
import type { SseEvent } from '../../plugin-sdk/types.ts'
import { bytesOf, startsWith } from './bytes.ts'

/**
 * One text/event-stream event as the upstream sent it, its text left undecoded: passthrough forwards its bytes
 * and looks only at those it needs; translating adapters get text through `eventOf`.
 */
export interface SseFrame {
  /**
   * Holds the event's exact bytes at `[start, end)`, through the blank line that ends it (re-terminated with
   * `\n\n` when the stream ended first). Often the chunk the event arrived in: frames of one push share it.
   */
  bytes: Uint8Array
  start: number
  end: number
  /** The `event` field, or null. */
  event: string | null
  /** Where each `data` line's value lies in `bytes`: start, end, start, end… (empty for a comment-only block). */
  data: number[]
}

/** A decoded event plus its exact source text. */
export interface RawSseEvent extends SseEvent {
  raw: string
}

/** One event bigger than this ends the stream: an upstream that never sends a blank line must not grow us. */
export const DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024

const LF = 10
const CR = 13
const COLON = 58
const SPACE = 32
const DATA = bytesOf('data')
const EVENT = bytesOf('event')
const BOM = bytesOf('\ufeff')
const TERMINATOR = bytesOf('\n\n')
const NOTHING: Uint8Array = new Uint8Array(0)
/** Keeps a BOM inside a value: only the one that starts the stream is not text (it is skipped as a field name). */
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true })

/**
 * Incremental text/event-stream parser over bytes (WHATWG rules: `\n`, `\r\n` or `\r` line ends, `:` comments,
 * multi-line `data`). Line ends are ASCII, so cutting events out of bytes never splits a UTF-8 character, and
 * nothing is decoded that the caller does not ask for. An event that lies inside one pushed chunk is a view of
 * it (no copy); only an event that spans pushes is gathered, and past `maxEventBytes` that is an error.
 */
export class SseFrameDecoder {
  /** The event in progress, when it began in an earlier push: its bytes so far (`held[0, heldLength)`). */
  private held: Uint8Array = new Uint8Array(0)
  private heldLength = 0
  /**
   * During a push, positions count from the chunk's first byte; held bytes sit just before it, at negative
   * positions. `start` is where the event in progress begins.
   */
  private chunk = NOTHING
  private start = 0
  /** Counted from the event's start: where the current line starts, and how far it was searched for its end. */
  private lineStart = 0
  private scanned = 0
  private data: number[] = []
  private event: string | null = null
  private firstLine = true

  constructor(private readonly maxEventBytes = DEFAULT_MAX_EVENT_BYTES) {}

  /**
   * Adds the events `bytes` completes to `out`, which keeps them if this throws because the next one is too
   * large (the decoder is spent then).
   */
  push(bytes: Uint8Array, out: SseFrame[] = []): SseFrame[] {
    this.begin(bytes)
    let i = this.start + this.scanned
    let cr = -2 // where the next '\r' is, searched for once it may be needed (most streams have none)
    while (i < bytes.length) {
      let c: number
      if (i >= 0) {
        // Finding line ends is the hot loop: native searches, not a byte-by-byte walk.
        const lf = bytes.indexOf(LF, i)
        if (cr !== -1 && cr < i) cr = bytes.indexOf(CR, i)
        const end = cr === -1 || (lf !== -1 && lf < cr) ? lf : cr
        if (end === -1) {
          i = bytes.length
          break
        }
        i = end
        c = bytes[i]!
      } else {
        c = this.held[i - this.start]! // only a pending '\r' is held
      }
      if (c === CR && i + 1 === bytes.length) break // a '\r' last may be half of "\r\n": wait for the next byte
      const next = c === CR && bytes[i + 1] === LF ? i + 2 : i + 1
      this.line(i, next, out)
      i = next
    }
    this.scanned = i - this.start
    this.keep()
    this.chunk = NOTHING // what is left of it is held: the chunk itself can go
    return out
  }

  /** End of stream: an event without its trailing blank line is still dispatched, re-terminated with `\n\n`. */
  flush(out: SseFrame[] = []): SseFrame[] {
    this.begin(NOTHING)
    // A pending '\r' is a line end after all; a last line without one ends here.
    if (this.scanned < this.heldLength) this.line(this.start + this.scanned, 0, out)
    else if (this.lineStart < this.heldLength) this.line(0, 0, out)
    if (this.data.length > 0 || this.event !== null) {
      let content = this.heldLength
      while (content > 0 && (this.held[content - 1] === LF || this.held[content - 1] === CR)) content--
      const raw = new Uint8Array(content + TERMINATOR.length)
      raw.set(this.held.subarray(0, content))
      raw.set(TERMINATOR, content)
      this.check(raw.length)
      out.push({ bytes: raw, start: 0, end: raw.length, event: this.event, data: this.data })
    }
    this.next(0)
    this.heldLength = 0
    this.scanned = 0
    this.firstLine = true
    return out
  }

  private begin(chunk: Uint8Array) {
    this.chunk = chunk
    this.start = -this.heldLength
  }

  /**
   * The current line ended at `end` (its line end runs to `next`), both chunk positions: a field, or with a
   * blank line the end of the event.
   */
  private line(end: number, next: number, out: SseFrame[]) {
    const lineStart = this.lineStart
    const lineEnd = end - this.start
    const length = next - this.start
    this.lineStart = length
    const first = this.firstLine
    this.firstLine = false
    if (lineEnd > lineStart) {
      const { buf, offset } = this.bytesTo(length)
      this.field(buf, offset + lineStart, offset + lineEnd, offset, first)
      return
    }
    // A blank line: dispatch what came before it. A comment-only block is passed on too (it keeps the
    // client's connection warm), with no data; a blank line alone is nothing.
    if (this.data.length > 0 || this.event !== null || lineStart > 0) {
      this.check(length)
      const { buf, offset } = this.bytesTo(length)
      const data = this.data
      for (let k = 0; k < data.length; k++) data[k]! += offset
      out.push({ bytes: buf, start: offset, end: offset + length, event: this.event, data })
      if (buf === this.held) this.held = new Uint8Array(0) // the frame owns those bytes now
    }
    this.next(next)
  }

  /** The event's first `length` bytes, contiguous: a view of the chunk, or the held bytes topped up from it. */
  private bytesTo(length: number): { buf: Uint8Array; offset: number } {
    if (this.start >= 0) return { buf: this.chunk, offset: this.start }
    if (length > this.heldLength) this.hold(this.chunk.subarray(this.start + this.heldLength, this.start + length))
    return { buf: this.held, offset: 0 }
  }

  /** The next event starts at chunk position `at`. */
  private next(at: number) {
    this.data = []
    this.event = null
    this.start = at
    this.lineStart = 0
    if (at >= 0) this.heldLength = 0
  }

  private field(buf: Uint8Array, at: number, stop: number, offset: number, first: boolean) {
    if (first && startsWith(buf, at, stop, BOM)) at += BOM.length
    if (buf[at] === COLON) return // a comment
    let name: Uint8Array
    if (startsWith(buf, at, stop, DATA)) name = DATA
    else if (startsWith(buf, at, stop, EVENT)) name = EVENT
    else return // another field (id, retry, unknown): of no use to a relay
    at += name.length
    if (at < stop && buf[at] !== COLON) return // a longer name
    if (at < stop) at++
    if (at < stop && buf[at] === SPACE) at++
    if (name === DATA) this.data.push(at - offset, stop - offset)
    else this.event = utf8.decode(buf.subarray(at, stop))
  }

  /** After a push: what has come of the event in progress is kept for the next one. */
  private keep() {
    const length = this.chunk.length - this.start
    if (length <= 0) return
    this.check(length)
    if (this.start >= 0) {
      this.heldLength = 0
      this.hold(this.chunk.subarray(this.start))
    } else if (length > this.heldLength) {
      this.hold(this.chunk.subarray(this.start + this.heldLength))
    }
  }

  /** Appends to the held bytes, doubling their room when needed so that a long event is not copied over and over. */
  private hold(bytes: Uint8Array) {
    const length = this.heldLength + bytes.length
    if (length > this.held.length) {
      const grown = new Uint8Array(Math.max(length, Math.min(this.held.length * 2, this.maxEventBytes + 1), 1024))
      grown.set(this.held.subarray(0, this.heldLength))
      this.held = grown
    }
    this.held.set(bytes, this.heldLength)
    this.heldLength = length
  }

  private check(eventBytes: number) {
    if (eventBytes > this.maxEventBytes) {
      throw new GatewayError(502, `The upstream provider sent a stream event larger than ${this.maxEventBytes} bytes.`, { code: 'upstream_event_too_large' })
    }
  }
}

/** The text of a frame's `data` lines, joined with `\n` as the spec says. */
export function dataOf(frame: SseFrame): string {
  const { bytes, data } = frame
  if (data.length === 2) return utf8.decode(bytes.subarray(data[0], data[1]))
  const lines: string[] = []
  for (let k = 0; k < data.length; k += 2) lines.push(utf8.decode(bytes.subarray(data[k], data[k + 1])))
  return lines.join('\n')
}

export const eventOf = (frame: SseFrame): SseEvent => ({ event: frame.event, data: dataOf(frame) })

/**
 * The same parser for text already decoded (tests, tools): events come with their exact source text. Fed
 * bytes, it needs no TextDecoder of its own.
 */
export class SseDecoder {
  private readonly frames = new SseFrameDecoder(Infinity)
  private readonly encoder = new TextEncoder()

  push(input: string | Uint8Array): RawSseEvent[] {
    return this.frames.push(typeof input === 'string' ? this.encoder.encode(input) : input).map(rawEventOf)
  }

  flush(): RawSseEvent[] {
    return this.frames.flush().map(rawEventOf)
  }
}

const rawEventOf = (frame: SseFrame): RawSseEvent => ({ event: frame.event, data: dataOf(frame), raw: utf8.decode(frame.bytes.subarray(frame.start, frame.end)) })

export const encodeSseData = (json: string) => `data: ${json}\n\n`
export const SSE_DONE = 'data: [DONE]\n\n'
