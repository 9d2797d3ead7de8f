/** Byte-level helpers for relaying UTF-8 JSON events without decoding them to strings. */

/** What a ByteWriter holds between reads: a Buffer of no bytes, shared, so a read makes none. */
const NOTHING = Buffer.alloc(0)

/** The UTF-8 bytes of `text`. */
export const bytesOf = (text: string): Uint8Array => Buffer.from(text)

/** Whether `buf[at, end)` starts with `word` (`exact`: is `word`). */
export function startsWith(buf: Uint8Array, at: number, end: number, word: Uint8Array, exact = false): boolean {
  if (end - at < word.length || (exact && end - at !== word.length)) return false
  for (let k = 0; k < word.length; k++) if (buf[at + k] !== word[k]) return false
  return true
}

/**
 * Finds one byte string in successive ranges of the same bytes (the events of one read, in order): a native
 * search serves every range up to the next occurrence, rather than one search, or a walk, per range.
 * `forget()` after each read, so the read's bytes are not kept.
 */
export class Finder {
  private bytes: Uint8Array | null = null
  /** Where the last search started, and what it found (-1: nothing from there on). */
  private from = 0
  private at = -1

  constructor(readonly needle: Uint8Array) {}

  /** The first occurrence inside `bytes[from, to)`, or -1. */
  in(bytes: Uint8Array, from: number, to: number): number {
    if (bytes !== this.bytes || from < this.from || (this.at !== -1 && this.at < from)) {
      this.bytes = bytes
      this.from = from
      this.at = indexOf.call(bytes, this.needle, from)
    }
    return this.at !== -1 && this.at + this.needle.length <= to ? this.at : -1
  }

  forget() {
    this.bytes = null
  }
}

/**
 * Where the JSON string value after a key ending at `i` lies (`: "…"`, quotes included), or null when the value
 * is not a string: the byte twin of `stringValueAfter` (plugin-sdk/json-text.ts).
 */
export function stringValueAt(buf: Uint8Array, i: number, to: number): { start: number; end: number } | null {
  while (i < to && buf[i] === 32) i++
  if (buf[i] !== 58) return null // ':'
  i++
  while (i < to && buf[i] === 32) i++
  if (buf[i] !== 34) return null // not a string value
  const start = i
  for (i++; i < to; i++) {
    const c = buf[i]
    if (c === 92) i++ // backslash escape
    else if (c === 34) return { start, end: i + 1 }
  }
  return null
}

/**
 * Below this many bytes, what a read made is copied out rather than handed on as a view of a larger buffer: a view
 * makes JSC give the typed array under it an ArrayBuffer object of its own, which costs more than a small copy (for
 * 256 bytes 144 against 60 ns, about even at 1 KiB; `subarray` was a fifth of the relay's CPU in bench/relay-cost.ts).
 */
const COPY_NOT_VIEW = 1024

/** Below this many bytes a loop copies faster than a native call. */
const SMALL_COPY = 32

/**
 * Buffer's native search and copy, called on any Uint8Array (a fetch body's chunks are not Buffers): a Buffer view
 * made to call them cost an allocation for each Finder and the writer on every read (the relay's CPU a chunk 1,940
 * → 1,568 ns without them, in bench/relay-cost.ts).
 */
const indexOf = Buffer.prototype.indexOf as (this: Uint8Array, value: Uint8Array, byteOffset: number) => number
const copy = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number

/**
 * Gathers what one read sends the client in one buffer: ranges of upstream bytes and encoded text, copied once.
 * `take()` hands the bytes over and starts a new buffer, as the client's socket may keep them a while.
 */
export class ByteWriter {
  private buf = NOTHING
  private length = 0

  /**
   * Makes room for `more` bytes: exactly that much on an empty buffer (the relay reserves a whole read's worth
   * first), doubling after. A 4 KiB minimum here made a 4 KiB buffer for each read of a ~200-byte event.
   */
  reserve(more: number) {
    if (this.length + more <= this.buf.length) return
    const grown = Buffer.allocUnsafe(Math.max(this.length + more, this.buf.length * 2))
    this.buf.copy(grown, 0, 0, this.length)
    this.buf = grown
  }

  bytes(src: Uint8Array, start = 0, end = src.length) {
    const n = end - start
    if (n <= 0) return
    this.reserve(n)
    if (n < SMALL_COPY) {
      for (let k = 0; k < n; k++) this.buf[this.length + k] = src[start + k]!
    } else {
      copy.call(src, this.buf, this.length, start, end)
    }
    this.length += n
  }

  text(text: string) {
    if (!text) return
    this.reserve(text.length * 3)
    this.length += this.buf.write(text, this.length)
  }

  /** What was written since the last take, or null if nothing. */
  take(): Uint8Array | null {
    if (this.length === 0) return null
    let out = this.buf
    if (this.length < out.length) {
      if (this.length < COPY_NOT_VIEW) {
        out = Buffer.allocUnsafe(this.length)
        this.buf.copy(out, 0, 0, this.length)
      } else {
        out = this.buf.subarray(0, this.length)
      }
    }
    this.buf = NOTHING
    this.length = 0
    return out
  }
}
