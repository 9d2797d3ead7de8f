import { ffmpeg, ffprobe, speak } from './audio.ts'

/**
 * What the audio fakes (fake-elevenlabs, fake-deepgram) share: real speech made by espeak-ng and encoded by ffmpeg,
 * sent in several chunks with pauses (optionally held before the last one, so a test can see audio arrive while
 * the fake is still "speaking"), and uploads checked with ffprobe, as a real provider decodes them.
 */

/** An ffmpeg output: muxer and codec arguments. */
export interface Encoding {
  muxer: string
  args: string[]
}

const cache = new Map<string, Promise<Uint8Array>>()

/** `text` spoken by espeak-ng, encoded as `encoding`; cached, so a suite pays for each sentence and format once. */
export function synthesize(text: string, encoding: Encoding): Promise<Uint8Array> {
  const key = `${encoding.muxer} ${encoding.args.join(' ')}\n${text}`
  let bytes = cache.get(key)
  if (!bytes) {
    bytes = speak(text).then((wav) => ffmpeg(wav, encoding.muxer, ['-ac', '1', ...encoding.args]))
    cache.set(key, bytes)
    bytes.catch(() => cache.delete(key))
  }
  return bytes
}

/** One speech the fake is sending, for tests to watch. */
export interface SpeechRecord {
  bytes: number
  chunksSent: number
  /** The last chunk has been sent. */
  done: boolean
  /** The client went away before the end. */
  aborted: boolean
}

export interface ChunkOptions {
  chunks: number
  delayMs: number
  /** Awaited before the last chunk is sent. */
  beforeLast?: () => Promise<void>
}

/** `bytes` as a response body in `chunks` pieces with `delayMs` between them; `record` follows its progress. */
export function chunkedBody(bytes: Uint8Array, options: ChunkOptions, record: SpeechRecord): ReadableStream<Uint8Array> {
  const size = Math.ceil(bytes.length / Math.max(1, options.chunks))
  let offset = 0
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (offset > 0) await Bun.sleep(options.delayMs)
      if (offset + size >= bytes.length && options.beforeLast) await options.beforeLast()
      if (record.aborted) return
      const piece = bytes.subarray(offset, Math.min(bytes.length, offset + size))
      offset += piece.length
      record.chunksSent++
      controller.enqueue(piece)
      if (offset >= bytes.length) {
        record.done = true
        controller.close()
      }
    },
    cancel() {
      record.aborted = true
    },
  })
}

/** A latch tests close to hold every speech before its last chunk, and open to let them finish. */
export class Gate {
  private waiters: (() => void)[] = []
  private closed = false
  hold() {
    this.closed = true
  }
  release() {
    this.closed = false
    for (const wake of this.waiters.splice(0)) wake()
  }
  wait(): Promise<void> {
    return this.closed ? new Promise((resolve) => this.waiters.push(resolve)) : Promise.resolve()
  }
}

/**
 * Duration of an upload as a provider's decoder sees it, or null when it is not audio at all: decoded whole and its
 * samples counted, as a provider bills, not read from headers (a client can write a file's headers as it likes).
 */
export async function audioDuration(bytes: Uint8Array): Promise<number | null> {
  if (bytes.length === 0) return null
  try {
    await ffprobe(bytes) // audio at all
    const pcm = await ffmpeg(bytes, 's16le', ['-ac', '1', '-ar', '16000'])
    return pcm.length / 2 / 16000
  } catch {
    return null
  }
}

/** `text` split into words timed evenly over `duration` seconds (a fake's transcript has no real alignment). */
export function timedWords(text: string, duration: number): { text: string; start: number; end: number }[] {
  const words = text.split(/\s+/).filter(Boolean)
  const step = duration / Math.max(1, words.length)
  return words.map((word, i) => ({ text: word, start: round(i * step), end: round((i + 0.9) * step) }))
}

const round = (n: number) => Math.round(n * 1000) / 1000

/** Header names lowercased, as the fakes record them. */
export function headersOf(req: Request): Record<string, string> {
  const out: Record<string, string> = {}
  req.headers.forEach((value, name) => (out[name] = value))
  return out
}
