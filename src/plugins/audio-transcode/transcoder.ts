import type { Subprocess } from 'bun'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readWavHeader, sniffAudioFormat } from '../../plugin-sdk/audio/index.ts'
import { GatewayError } from '../../plugin-sdk/errors.ts'
import type { AudioSpec, Counter, Logger, Transcoder } from '../../plugin-sdk/types.ts'
import { formatFromProbe, inputArgs, outputArgs, RAW_WAV_FORMATS, type EncoderOptions } from './ffmpeg-args.ts'
import { ProcessPool } from './pool.ts'
import { Spares } from './spares.ts'

/** What is read from a stream of bytes (the input's reader, ffmpeg's stdout), whichever stream type made it. */
interface ByteReader {
  read(): Promise<{ done: boolean; value?: Uint8Array }>
  cancel(reason?: unknown): Promise<void>
  releaseLock(): void
}

export interface TranscoderOptions extends EncoderOptions {
  ffmpeg: string | null
  ffprobe: string | null
  ffmpegVersion: string | null
  maxProcesses: number
  maxQueued: number
  timeoutMs: number
  /** How long a started ffmpeg waits for the next conversion with its command line (spares.ts); 0: none waits. */
  spareIdleMs: number
  log: Logger
  counter: Counter | null
}

/** Time a process gets to leave on SIGTERM before SIGKILL. */
const KILL_GRACE_MS = 200
/** Bytes of stderr kept for the error message (the end is where ffmpeg says what went wrong). */
const STDERR_KEEP = 4096
/** Bytes of a WAV stream's head we wait for to read its header; past that ffmpeg parses it itself. */
const WAV_HEAD_MAX = 64 * 1024
/** Containers ffmpeg cannot read from a pipe when their index is at the end (an iPhone's m4a): given as a file. */
const NEEDS_SEEK = new Set(['m4a', 'mp4', 'caf'])

/** Formats whose duration ffprobe estimates from the bit rate instead of reading it. */
const ESTIMATED = new Set(['aac', 'mp3', 'amr'])

const UNAVAILABLE = 'ffmpeg is not installed on the gateway host (builtin:audio-transcode)'

const unavailableError = (what: string) => new GatewayError(501, `Audio conversion is unavailable: ${what}.`, { code: 'transcoding_unavailable' })

/**
 * The reason ffmpeg gave for refusing the input, kept short and free of paths (only ours could appear: the temp
 * file). ffmpeg prints nothing of the request but the audio it was given.
 */
function reasonFrom(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/\/[^\s:'"]*conduit-transcode[^\s:'"]*/g, 'input').replace(/^\[[^\]]*\]\s*/, '').trim())
    .filter((l) => l && !/^(Error while|Conversion failed|Error opening input files?)/.test(l))
  const line = lines.find((l) => /invalid|error|could not|no such|unsupported|not find|failed/i.test(l)) ?? lines[0] ?? 'ffmpeg could not decode it'
  return line.length > 200 ? `${line.slice(0, 200)}…` : line
}

const invalidAudio = (reason: string) => new GatewayError(400, `The audio could not be decoded: ${reason}.`, { param: 'file', code: 'invalid_audio_file' })

/** Audio conversion with ffmpeg: one process per conversion, streamed through its stdin and stdout, never orphaned. */
export class FfmpegTranscoder implements Transcoder {
  readonly unavailable: string | null
  private readonly pool: ProcessPool
  readonly spares: Spares
  private readonly live = new Set<Conversion>()
  private readonly tmp: string
  private tmpFiles = 0
  closed = false

  constructor(readonly o: TranscoderOptions) {
    this.unavailable = o.ffmpeg ? null : UNAVAILABLE
    this.pool = new ProcessPool(o.maxProcesses, o.maxQueued)
    this.spares = new Spares(o.spareIdleMs, killProcess)
    this.tmp = mkdtempSync(join(tmpdir(), 'conduit-transcode-'))
  }

  /** Processes running now (for tests and diagnostics). */
  get pids(): number[] {
    return [...this.live].map((c) => c.pid).filter((p): p is number => p !== null)
  }

  get stats() {
    return { running: this.pool.active, queued: this.pool.queued }
  }

  count(result: string, to: string) {
    this.o.counter?.inc({ result, to })
  }

  tempPath(ext = 'bin') {
    return join(this.tmp, `in-${process.pid}-${this.tmpFiles++}.${ext}`)
  }

  acquire(signal: AbortSignal) {
    return this.pool.acquire(signal)
  }

  track(c: Conversion, on: boolean) {
    if (on) this.live.add(c)
    else this.live.delete(c)
  }

  convert(input: ReadableStream<Uint8Array> | Blob, from: AudioSpec | null, to: AudioSpec, signal: AbortSignal): ReadableStream<Uint8Array> {
    let conversion!: Conversion
    return new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          conversion = new Conversion(this, input, from, to, signal, controller)
          void conversion.run()
        },
        pull: () => conversion.pull(),
        cancel: (reason) => conversion.stop(reason ?? new DOMException('The reader cancelled the stream.', 'AbortError'), 'cancelled'),
      },
      { highWaterMark: 0 },
    )
  }

  async probe(input: Blob, signal: AbortSignal) {
    if (!this.o.ffmpeg) throw unavailableError(UNAVAILABLE)
    if (!this.o.ffprobe) throw unavailableError('ffprobe is not installed on the gateway host (builtin:audio-transcode)')
    const release = await this.pool.acquire(signal)
    const path = this.tempPath()
    try {
      await Bun.write(path, input)
      const json = await this.run([this.o.ffprobe, '-v', 'error', '-show_entries', 'stream=codec_type,sample_rate,channels,duration:format=format_name,duration', '-of', 'json', path], signal)
      if (json.code !== 0) throw invalidAudio(reasonFrom(json.stderr))
      const info = JSON.parse(json.stdout) as { streams?: Record<string, string | number>[]; format?: Record<string, string> }
      const stream = info.streams?.find((s) => s.codec_type === 'audio')
      if (!stream) throw invalidAudio('no audio stream in it')
      const format = formatFromProbe(info.format?.format_name)
      // ADTS, MP3 and AMR durations are ffprobe's guesses from the bit rate: count those, like files without a length.
      let duration = format && ESTIMATED.has(format) ? NaN : Number(info.format?.duration ?? stream.duration)
      if (!Number.isFinite(duration)) {
        // No length in the headers (FLAC or WAV written to a pipe): copy the packets to nowhere and read the clock.
        const copied = await this.run([this.o.ffmpeg, '-nostdin', '-v', 'error', '-i', path, '-vn', '-c:a', 'copy', '-f', 'null', '-progress', 'pipe:1', '-'], signal)
        const times = [...copied.stdout.matchAll(/out_time_us=(\d+)/g)]
        duration = times.length ? Number(times[times.length - 1]![1]) / 1e6 : NaN
      }
      this.count('probed', 'probe')
      return {
        format,
        durationSeconds: Number.isFinite(duration) ? duration : null,
        sampleRate: Number(stream.sample_rate) || null,
        channels: Number(stream.channels) || null,
      }
    } finally {
      release()
      rmSync(path, { force: true })
    }
  }

  /** A short-lived process (probe), killed on abort or timeout like a conversion. */
  private async run(cmd: string[], signal: AbortSignal) {
    const proc = Bun.spawn(cmd, { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
    const kill = () => killProcess(proc)
    signal.addEventListener('abort', kill, { once: true })
    const timer = setTimeout(kill, this.o.timeoutMs)
    try {
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
      if (signal.aborted) throw signal.reason
      return { stdout, stderr, code }
    } finally {
      clearTimeout(timer)
      signal.removeEventListener('abort', kill)
    }
  }

  /** Gateway shutdown: nothing waits, nothing runs, the temp folder goes. */
  async close() {
    this.closed = true
    this.pool.close()
    this.spares.close()
    const closing = new GatewayError(503, 'The gateway is shutting down.', { code: 'transcoder_closed' })
    await Promise.all([...this.live].map((c) => c.stop(closing, 'closed')))
    rmSync(this.tmp, { recursive: true, force: true })
  }
}

/** SIGTERM, then SIGKILL if it is still there after a short grace. Resolves when the process is gone. */
function killProcess(proc: Subprocess): Promise<unknown> {
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.kill('SIGTERM')
    const hard = setTimeout(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    }, KILL_GRACE_MS)
    void proc.exited.then(() => clearTimeout(hard))
  }
  return proc.exited
}

/** One conversion: waits for a slot, spawns ffmpeg, pumps the input in and the output out, ends it on any failure. */
class Conversion {
  private proc: Subprocess<'pipe' | 'ignore', 'pipe', 'pipe'> | null = null
  private stdout: ByteReader | null = null
  private input: ByteReader | null = null
  private stderr = ''
  private failure: unknown = null
  private settled = false
  private tempFile: string | null = null
  private readonly internal = new AbortController()
  private readonly ready: Promise<void>
  private markReady!: () => void
  private readonly onAbort = () => void this.stop(this.signal.reason ?? new DOMException('Aborted', 'AbortError'), 'aborted')

  constructor(
    private readonly owner: FfmpegTranscoder,
    private readonly source: ReadableStream<Uint8Array> | Blob,
    private readonly from: AudioSpec | null,
    private readonly to: AudioSpec,
    private readonly signal: AbortSignal,
    private readonly controller: ReadableStreamDefaultController<Uint8Array>,
  ) {
    this.ready = new Promise((resolve) => (this.markReady = resolve))
  }

  get pid() {
    return this.proc?.pid ?? null
  }

  async run() {
    try {
      const o = this.owner.o
      if (!o.ffmpeg) throw unavailableError(UNAVAILABLE)
      const out = outputArgs(this.to, o)
      if (!out) throw new GatewayError(400, `Audio conversion to '${this.to.format}' is not supported.`, { code: 'unsupported_audio_format' })
      if (this.signal.aborted) throw this.signal.reason
      this.signal.addEventListener('abort', this.onAbort, { once: true })
      const release = await this.owner.acquire(this.internal.signal)
      let released = false
      const releaseOnce = () => {
        if (!released) (released = true), release()
      }
      try {
        await this.spawn(o.ffmpeg, out)
      } catch (error) {
        releaseOnce()
        if (this.tempFile) rmSync(this.tempFile, { force: true })
        throw error
      }
      const proc = this.proc!
      const timer = setTimeout(
        () => void this.stop(new GatewayError(504, `Audio conversion took longer than ${o.timeoutMs} ms.`, { code: 'transcoding_timeout' }), 'timeout'),
        o.timeoutMs,
      )
      void proc.exited.then(() => {
        clearTimeout(timer)
        releaseOnce()
        this.owner.track(this, false)
        this.signal.removeEventListener('abort', this.onAbort)
        // ffmpeg stopped reading (it failed, or it had enough): the source need not go on.
        this.input?.cancel().catch(() => {})
        if (this.tempFile) rmSync(this.tempFile, { force: true })
      })
    } catch (error) {
      this.fail(error, error instanceof GatewayError && error.code === 'transcoder_busy' ? 'busy' : this.failure ? 'aborted' : 'error')
    } finally {
      this.markReady()
    }
  }

  /** Reads what it must of the input to choose ffmpeg's input options, then starts the process. */
  private async spawn(ffmpeg: string, out: string[]) {
    let from = this.from
    let raw: { format: string; sampleRate: number; channels: number } | null = null
    let pending: Uint8Array | null = null
    let path: string | null = null
    if (this.source instanceof Blob) {
      // A whole file: name its format when the caller did not, and give ffmpeg a seekable file when it needs one.
      from ??= { format: sniffAudioFormat(new Uint8Array(await this.source.slice(0, 64).arrayBuffer())) ?? '' }
      if (!from.format || NEEDS_SEEK.has(from.format)) {
        path = this.tempFile = this.owner.tempPath()
        await Bun.write(path, this.source)
        from = from.format ? from : null
      }
    } else {
      this.input = this.source.getReader()
      if (from?.format === 'wav') {
        // ffmpeg holds output back while it probes a piped WAV: read the header here and feed it the raw samples.
        let head: Uint8Array = new Uint8Array(0)
        let header = null
        while (head.length < WAV_HEAD_MAX && !(header = readWavHeader(head))) {
          const { value, done } = await this.input.read()
          if (done || this.failure) break
          const joined = new Uint8Array(head.length + value!.length)
          joined.set(head)
          joined.set(value!, head.length)
          head = joined
        }
        const rawFormat = header && RAW_WAV_FORMATS[header.format]
        if (header && rawFormat) {
          raw = { format: rawFormat, sampleRate: header.sampleRate, channels: header.channels }
          pending = head.subarray(header.dataOffset)
        } else pending = head
      }
    }
    if (this.failure) throw this.failure
    const cmd = [
      ffmpeg, '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'error',
      ...inputArgs(from, raw), '-i', path ?? 'pipe:0',
      '-vn', '-sn', '-dn', '-map_metadata', '-1', '-fflags', '+bitexact', '-flush_packets', '1',
      ...out, 'pipe:1',
    ]
    const proc = (!path && this.owner.spares.take(cmd)) || Bun.spawn(cmd, { stdin: path ? 'ignore' : 'pipe', stdout: 'pipe', stderr: 'pipe' })
    this.proc = proc as Subprocess<'pipe' | 'ignore', 'pipe', 'pipe'>
    // The next conversion like this one finds its process started (a file's path is never the same twice).
    if (!path) void proc.exited.then((code) => code === 0 && this.owner.spares.refill(cmd))
    this.owner.track(this, true)
    this.stdout = proc.stdout.getReader()
    void this.drainStderr(proc.stderr)
    if (!path) void this.pump(pending, proc.stdin as import('bun').FileSink)
  }

  private async drainStderr(stream: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder()
    const reader = stream.getReader()
    try {
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        const chunk = r.value
        this.stderr += decoder.decode(chunk, { stream: true })
        if (this.stderr.length > STDERR_KEEP * 2) this.stderr = this.stderr.slice(-STDERR_KEEP)
      }
    } catch {
      // The process was killed: what it said no longer matters.
    }
  }

  /** Source → ffmpeg's stdin, at the pace ffmpeg takes it. */
  private async pump(pending: Uint8Array | null, sink: import('bun').FileSink) {
    const write = async (bytes: Uint8Array) => {
      sink.write(bytes)
      await sink.flush()
    }
    try {
      if (pending?.length) await write(pending)
      if (this.source instanceof Blob) {
        const reader = this.source.stream().getReader()
        for (let r = await reader.read(); !r.done; r = await reader.read()) {
          if (this.failure) return void reader.cancel().catch(() => {})
          await write(r.value)
        }
      } else {
        const reader = this.input!
        for (;;) {
          let next: Awaited<ReturnType<ByteReader["read"]>>
          try {
            next = await reader.read()
          } catch (error) {
            // The source failed (an upstream that broke off): that is this conversion's error too.
            void this.stop(error, 'error')
            return
          }
          if (next.done || this.failure) break
          await write(next.value!)
        }
      }
      await sink.end()
    } catch {
      // ffmpeg closed its stdin (it exited: its exit code tells why) or was killed.
    }
  }

  async pull() {
    await this.ready
    if (this.settled || !this.stdout) return
    let chunk: Awaited<ReturnType<ByteReader["read"]>>
    try {
      chunk = await this.stdout.read()
    } catch (error) {
      return this.fail(this.failure ?? error, 'error')
    }
    if (this.settled) return
    if (!chunk.done) return this.controller.enqueue(chunk.value)
    const code = await this.proc!.exited
    if (this.failure) return this.fail(this.failure, 'aborted')
    if (this.proc!.signalCode) {
      // Killed by someone else (an operator, the OOM killer): not the audio's fault.
      return this.fail(new GatewayError(500, `Audio conversion was interrupted (ffmpeg got ${this.proc!.signalCode}).`, { code: 'transcoding_failed' }), 'error')
    }
    if (code !== 0) return this.fail(invalidAudio(reasonFrom(this.stderr)), 'invalid')
    this.settled = true
    this.owner.count('ok', this.to.format)
    this.controller.close()
  }

  private fail(error: unknown, result: string) {
    if (this.settled) return
    this.settled = true
    this.failure ??= error
    this.owner.count(result, this.to.format)
    try {
      this.controller.error(error)
    } catch {
      // Already closed by its reader.
    }
  }

  /** Ends the conversion for `reason`: the output fails with it, the source is cancelled, the process is killed. */
  async stop(reason: unknown, result: string) {
    this.failure ??= reason
    this.internal.abort(reason)
    this.fail(reason, result)
    this.input?.cancel(reason).catch(() => {})
    this.stdout?.cancel().catch(() => {})
    if (this.proc) await killProcess(this.proc)
  }
}
