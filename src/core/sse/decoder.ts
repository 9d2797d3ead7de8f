import type { SseEvent } from '../../plugin-sdk/types.ts'

/** A decoded event plus its exact source text, so passthrough can forward it unchanged. */
export interface RawSseEvent extends SseEvent {
  raw: string
}

/**
 * Incremental text/event-stream parser (WHATWG rules: `\n`, `\r\n` or `\r` line ends, `:` comments,
 * multi-line `data`). Feed it decoded text; bytes→text decoding with `{ stream: true }` is the caller's job,
 * so a character split across network chunks survives.
 */
export class SseDecoder {
  private buffer = ''
  private scanFrom = 0
  private eventStart = 0
  private data: string[] = []
  private event: string | null = null

  push(text: string): RawSseEvent[] {
    this.buffer = this.buffer.length === 0 ? text : this.buffer + text
    const out: RawSseEvent[] = []
    const buf = this.buffer
    let pos = this.scanFrom
    while (pos < buf.length) {
      let end = pos
      while (end < buf.length) {
        const c = buf.charCodeAt(end)
        if (c === 10 || c === 13) break
        end++
      }
      if (end === buf.length) break
      // A lone `\r` at the end of what we have may be the first half of `\r\n`: wait for more.
      if (buf.charCodeAt(end) === 13 && end + 1 === buf.length) break
      const next = buf.charCodeAt(end) === 13 && buf.charCodeAt(end + 1) === 10 ? end + 2 : end + 1
      if (end === pos) {
        const raw = buf.slice(this.eventStart, next)
        if (this.data.length > 0 || this.event !== null) {
          out.push({ event: this.event, data: this.data.join('\n'), raw })
        } else if (raw.length > next - pos) {
          out.push({ event: null, data: '', raw }) // comment-only block: forwarded as is, ignored by parsers
        }
        this.data = []
        this.event = null
        this.eventStart = next
      } else {
        this.field(buf, pos, end)
      }
      pos = next
    }
    this.buffer = buf.slice(this.eventStart)
    this.scanFrom = pos - this.eventStart
    this.eventStart = 0
    return out
  }

  /** End of stream: an event without its trailing blank line is still dispatched. */
  flush(): RawSseEvent[] {
    const rest = this.buffer.slice(this.scanFrom)
    let raw = this.buffer
    // A lone pending '\r' is the blank line that ends the event (it could not be told from '\r\n' until now).
    if (rest !== '\r') {
      if (rest.length > 0 && !/^[\r\n]*$/.test(rest)) this.field(rest, 0, rest.replace(/[\r\n]+$/, '').length)
      raw = raw.replace(/[\r\n]*$/, '\n\n')
    }
    this.buffer = ''
    this.scanFrom = 0
    if (this.data.length === 0 && this.event === null) return []
    const event = { event: this.event, data: this.data.join('\n'), raw }
    this.data = []
    this.event = null
    return [event]
  }

  private field(buf: string, start: number, end: number) {
    if (buf.charCodeAt(start) === 58) return // ':' comment
    const colon = buf.indexOf(':', start)
    let name: string
    let value: string
    if (colon === -1 || colon > end) {
      name = buf.slice(start, end)
      value = ''
    } else {
      name = buf.slice(start, colon)
      const valueStart = buf.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1
      value = buf.slice(valueStart, end)
    }
    if (name === 'data') this.data.push(value)
    else if (name === 'event') this.event = value
  }
}

export const encodeSseData = (json: string) => `data: ${json}\n\n`
export const SSE_DONE = 'data: [DONE]\n\n'
