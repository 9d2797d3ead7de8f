import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PluginHost } from '../../src/plugin-host/host.ts'
import { audioInfo, pcm16FromBytes, pcm16ToBytes } from '../../src/plugin-sdk/audio/index.ts'
import { GatewayError, type Transcoder } from '../../src/plugin-sdk/index.ts'
import { createLogger } from '../../src/services/logger.ts'
import plugin from '../../src/plugins/audio-transcode/index.ts'
import type { FfmpegTranscoder } from '../../src/plugins/audio-transcode/transcoder.ts'
import { decodePcm, dominantFrequency, ffmpeg, ffprobe, speak, tone } from '../helpers/audio.ts'

/** builtin:audio-transcode through the real plugin host and real ffmpeg; verified with ffprobe, not our headers. */

const store = { findKeyByHash: async () => null, spentMicros: async () => 0, onChange: () => () => {} }
const lines: { level: number; msg: string }[] = []
async function start(config: Record<string, unknown> = {}) {
  const log = createLogger('info')
  // Capture what the plugin logs at setup (one line), without printing it.
  const capture = (level: number) => (_obj: unknown, msg?: string) => void lines.push({ level, msg: msg ?? '' })
  const spy = { ...log, info: capture(30), warn: capture(40), error: capture(50), debug: () => {}, child: () => spy } as any
  const host = new PluginHost({ log: spy, store, builtins: {}, baseDir: '.' })
  await host.register(plugin, { config })
  return { host, transcoder: host.transcoder as Transcoder & FfmpegTranscoder }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
const goneWithin = async (pid: number, ms: number) => {
  const t0 = performance.now()
  while (alive(pid) && performance.now() - t0 < ms) await Bun.sleep(10)
  return !alive(pid)
}
const never = () => new AbortController().signal
const bytesOf = (stream: ReadableStream<Uint8Array>) => new Response(stream).bytes()

/** A stream of `bytes` in `chunk`-byte pieces, one every `everyMs`, left open until `close()` when `hold` is set. */
function slowStream(bytes: Uint8Array, chunk: number, everyMs: number, hold = false) {
  let closeIt!: () => void
  const held = new Promise<void>((r) => (closeIt = r))
  const state = { sent: 0, cancelled: false, closed: false }
  const stream = new ReadableStream<Uint8Array>({
    async start(c) {
      for (let i = 0; i < bytes.length && !state.cancelled; i += chunk) {
        c.enqueue(bytes.subarray(i, i + chunk))
        state.sent = Math.min(bytes.length, i + chunk)
        await Bun.sleep(everyMs)
      }
      if (hold) await held
      if (!state.cancelled) {
        state.closed = true
        c.close()
      }
    },
    cancel() {
      state.cancelled = true
    },
  })
  return { stream, state, close: closeIt }
}

let host: PluginHost
let tc: Transcoder & FfmpegTranscoder
let speech: Uint8Array
let speechSeconds: number
beforeAll(async () => {
  ;({ host, transcoder: tc } = await start({ max_processes: 2, max_queued: 2 }))
  speech = await speak('The gateway converts audio on the fly, streaming it through ffmpeg as it arrives.')
  speechSeconds = (await ffprobe(speech)).durationSeconds
})
afterAll(() => host.close())

describe('setup', () => {
  test('ffmpeg found: available, one info line naming its version', () => {
    expect(tc.unavailable).toBeNull()
    expect(lines.filter((l) => /audio transcoding with ffmpeg \d/.test(l.msg))).toHaveLength(1)
  })

  test('ffmpeg missing: unavailable says so, convert and probe fail with 501, nothing crashes', async () => {
    const before = lines.length
    const { host: h, transcoder } = await start({ ffmpeg_path: '/nonexistent/ffmpeg' })
    expect(lines.slice(before)).toEqual([{ level: 40, msg: 'ffmpeg not found: requests that need audio conversion will be refused' }])
    expect(transcoder.unavailable).toBe('ffmpeg is not installed on the gateway host (builtin:audio-transcode)')
    const err = await bytesOf(transcoder.convert(new Blob([speech]), { format: 'wav' }, { format: 'mp3' }, never())).catch((e) => e)
    expect(GatewayError.is(err)).toBe(true)
    expect(err).toMatchObject({ status: 501, code: 'transcoding_unavailable' })
    expect(err.message).toContain('ffmpeg is not installed')
    expect(await transcoder.probe(new Blob([speech]), never()).catch((e) => e)).toMatchObject({ status: 501, code: 'transcoding_unavailable' })
    await h.close()
  })
})

describe('convert: espeak-ng WAV → every output format, checked by ffprobe', () => {
  const outputs: [to: { format: string; sampleRate?: number; channels?: number }, codec: string, rate: number, channels: number][] = [
    [{ format: 'mp3' }, 'mp3', 22050, 1],
    [{ format: 'mp3', sampleRate: 44100, channels: 2 }, 'mp3', 44100, 2],
    [{ format: 'opus' }, 'opus', 48000, 1],
    [{ format: 'opus', sampleRate: 16000 }, 'opus', 48000, 1], // Opus decodes at 48 kHz whatever it was encoded at
    [{ format: 'aac' }, 'aac', 22050, 1],
    [{ format: 'flac', sampleRate: 16000 }, 'flac', 16000, 1],
    [{ format: 'wav', sampleRate: 8000 }, 'pcm_s16le', 8000, 1],
    [{ format: 'webm' }, 'opus', 48000, 1],
    [{ format: 'm4a' }, 'aac', 22050, 1],
  ]
  for (const [to, codec, rate, channels] of outputs) {
    test(`${JSON.stringify(to)} → ${codec} ${rate} Hz × ${channels}`, async () => {
      const out = await bytesOf(tc.convert(new Blob([speech]), { format: 'wav' }, to, never()))
      const p = await ffprobe(out)
      expect(p.codec).toBe(codec)
      expect(p.sampleRate).toBe(rate)
      expect(p.channels).toBe(channels)
      expect(Math.abs(p.durationSeconds - speechSeconds) / speechSeconds).toBeLessThan(0.05)
    })
  }

  test('pcm: raw s16le at the asked rate (default 24000, mono), same speech', async () => {
    for (const rate of [undefined, 16000]) {
      const out = await bytesOf(tc.convert(new Blob([speech]), null, { format: 'pcm', sampleRate: rate }, never()))
      const seconds = out.length / 2 / (rate ?? 24000)
      expect(Math.abs(seconds - speechSeconds) / speechSeconds).toBeLessThan(0.05)
      // It is the same speech: resampled by ffmpeg independently from the original, the signals match.
      const ref = await decodePcm(speech, rate ?? 24000)
      const ours = pcm16FromBytes(out)
      let diff = 0
      let sig = 0
      for (let i = 0; i < Math.min(ours.length, ref.length); i++) {
        diff += (ours[i]! - ref[i]!) ** 2
        sig += ref[i]! ** 2
      }
      expect(diff / sig).toBeLessThan(0.01)
    }
  })

  test('a 1 kHz tone in PCM comes out of MP3 at 1 kHz', async () => {
    const pcm = pcm16ToBytes(tone(1000, 1, 24000))
    const mp3 = await bytesOf(tc.convert(new Blob([pcm]), { format: 'pcm', sampleRate: 24000 }, { format: 'mp3' }, never()))
    expect(dominantFrequency(await decodePcm(mp3, 24000), 24000, 500, 1500)).toBe(1000)
  })

  // Each input format is its own test: together they are 14 ffmpeg runs, past the default timeout on a loaded box.
  const inputs: [string, string[], string][] = [
    ['mp3', [], 'mp3'],
    ['flac', [], 'flac'],
    ['ogg', ['-c:a', 'libopus'], 'ogg'],
    ['caf', [], 'caf'],
  ]
  for (const [muxer, args, format] of inputs) {
    test(`${format} input, as a stream and as a file`, async () => {
      const src = await ffmpeg(speech, muxer, args)
      for (const input of [new Blob([src]), new Blob([src]).stream()]) {
        const out = await bytesOf(tc.convert(input, { format }, { format: 'wav', sampleRate: 16000 }, never()))
        const p = await ffprobe(out)
        expect(Math.abs(p.durationSeconds - speechSeconds) / speechSeconds).toBeLessThan(0.05)
      }
    })
  }

  test('m4a input with its index at the end (as ffmpeg writes a file): the transcoder gives ffmpeg a file to seek in', async () => {
    const path = tc.tempPath('m4a')
    const proc = Bun.spawn(['ffmpeg', '-v', 'error', '-i', 'pipe:0', '-c:a', 'aac', '-f', 'ipod', path], { stdin: new Blob([speech]) })
    expect(await proc.exited).toBe(0)
    const m4a = await Bun.file(path).bytes()
    const out = await bytesOf(tc.convert(new Blob([m4a]), null, { format: 'flac' }, never()))
    expect(Math.abs((await ffprobe(out)).durationSeconds - speechSeconds) / speechSeconds).toBeLessThan(0.05)
  })
})

describe('streaming', () => {
  test('output flows before the input has ended (WAV → Opus, PCM → MP3)', async () => {
    const cases = [
      { input: speech.subarray(0, 44 + 44100), from: { format: 'wav' }, to: { format: 'opus' }, bytesPerSecond: 44100 },
      { input: pcm16ToBytes(tone(440, 1, 24000)), from: { format: 'pcm', sampleRate: 24000 }, to: { format: 'mp3' }, bytesPerSecond: 48000 },
    ]
    for (const c of cases) {
      // 20 ms pieces every 20 ms, and the input is held open until we have seen output.
      const src = slowStream(c.input, c.bytesPerSecond / 50, 20, true)
      const reader = tc.convert(src.stream, c.from, c.to, never()).getReader()
      const first = await reader.read()
      expect(first.done).toBe(false)
      expect(first.value!.length).toBeGreaterThan(0)
      expect(src.state.closed).toBe(false)
      src.close()
      while (!(await reader.read()).done);
      expect(src.state.closed).toBe(true)
    }
  })

  test('a WAV stream is fed to ffmpeg as raw samples: its header may arrive split', async () => {
    // 7-byte pieces: the 44-byte header is read across several chunks before ffmpeg starts.
    const head = speech.subarray(0, 2000)
    const src = slowStream(new Uint8Array([...head, ...speech.subarray(2000)]), 7, 0)
    const out = await bytesOf(tc.convert(src.stream, { format: 'wav' }, { format: 'pcm', sampleRate: 22050 }, never()))
    const original = pcm16FromBytes(speech.subarray(44))
    const back = pcm16FromBytes(out)
    expect(Math.abs(back.length - original.length)).toBeLessThan(50)
    // Same rate, same format: the samples pass through unchanged.
    expect(Array.from(back.subarray(1000, 1100))).toEqual(Array.from(original.subarray(1000, 1100)))
  })
})

describe('processes end with the request', () => {
  test('abort: the process is gone within 1 s, the source is cancelled, the output fails', async () => {
    const src = slowStream(pcm16ToBytes(tone(440, 10, 24000)), 960, 20)
    const ac = new AbortController()
    const reader = tc.convert(src.stream, { format: 'pcm', sampleRate: 24000 }, { format: 'mp3' }, ac.signal).getReader()
    await reader.read()
    const [pid] = tc.pids
    expect(pid).toBeNumber()
    expect(alive(pid!)).toBe(true)
    ac.abort(new Error('client went away'))
    expect(await goneWithin(pid!, 1000)).toBe(true)
    expect(await reader.read().catch((e) => e.message)).toBe('client went away')
    await Bun.sleep(30)
    expect(src.state.cancelled).toBe(true)
    expect(tc.pids).toEqual([])
  })

  test('the reader cancelling the output kills the process', async () => {
    const src = slowStream(pcm16ToBytes(tone(440, 10, 24000)), 960, 20)
    const reader = tc.convert(src.stream, { format: 'pcm', sampleRate: 24000 }, { format: 'opus' }, never()).getReader()
    await reader.read()
    const [pid] = tc.pids
    await reader.cancel()
    expect(await goneWithin(pid!, 1000)).toBe(true)
    expect(src.state.cancelled).toBe(true)
  })

  test('timeout: the process is killed and the output fails with 504', async () => {
    const { host: h, transcoder } = await start({ timeout_ms: 300 })
    const src = slowStream(pcm16ToBytes(tone(440, 10, 24000)), 960, 20)
    const reader = transcoder.convert(src.stream, { format: 'pcm', sampleRate: 24000 }, { format: 'wav' }, never()).getReader()
    // The clock starts when the process does (however slow the machine is to spawn it).
    for (let i = 0; i < 300 && transcoder.pids.length === 0; i++) await Bun.sleep(10)
    const [pid] = transcoder.pids
    let error: any
    while (!error) await reader.read().then((r) => r.done && (error = 'ended'), (e) => (error = e))
    expect(error).toMatchObject({ status: 504, code: 'transcoding_timeout' })
    expect(await goneWithin(pid!, 1000)).toBe(true)
    await h.close()
  })

  test('plugin close (gateway shutdown) kills running conversions and refuses queued ones', async () => {
    const { host: h, transcoder } = await start({ max_processes: 1, max_queued: 1 })
    const running = transcoder.convert(slowStream(pcm16ToBytes(tone(440, 10, 24000)), 960, 20).stream, { format: 'pcm' }, { format: 'mp3' }, never()).getReader()
    await running.read()
    const queued = transcoder.convert(new Blob([speech]), { format: 'wav' }, { format: 'mp3' }, never()).getReader()
    const queuedResult = queued.read().catch((e) => e)
    const [pid] = transcoder.pids
    await h.close()
    expect(alive(pid!)).toBe(false)
    expect(await running.read().catch((e) => e)).toMatchObject({ status: 503, code: 'transcoder_closed' })
    expect(await queuedResult).toMatchObject({ status: 503, code: 'transcoder_closed' })
  })
})

describe('spare processes: the next conversion finds its ffmpeg started', () => {
  const pcm = { format: 'pcm', sampleRate: 24000 }
  const waitFor = async (cond: () => boolean, ms = 3000) => {
    const t0 = performance.now()
    while (!cond() && performance.now() - t0 < ms) await Bun.sleep(10)
    return cond()
  }

  test('a streamed conversion that ended well leaves one spare; the next like it runs in it, and the output is whole', async () => {
    const { host: h, transcoder } = await start()
    try {
      const input = pcm16ToBytes(tone(1000, 1, 24000))
      await bytesOf(transcoder.convert(slowStream(input, 4800, 0).stream, pcm, { format: 'mp3' }, never()))
      expect(await waitFor(() => transcoder.spares.pids.length === 1)).toBe(true)
      const [spare] = transcoder.spares.pids
      expect(alive(spare!)).toBe(true)

      const reader = transcoder.convert(slowStream(input, 4800, 0).stream, pcm, { format: 'mp3' }, never()).getReader()
      const chunks: Uint8Array[] = []
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        chunks.push(r.value)
        if (chunks.length === 1) {
          expect(transcoder.pids).toEqual([spare!])
          expect(transcoder.spares.pids).toEqual([])
        }
      }
      const mp3 = new Uint8Array(Buffer.concat(chunks))
      const p = await ffprobe(mp3)
      expect(p.codec).toBe('mp3')
      expect(Math.abs(p.durationSeconds - 1)).toBeLessThan(0.1)
      expect(dominantFrequency(await decodePcm(mp3, 24000), 24000, 500, 1500)).toBe(1000)
      // Its own spare for the next one: a new process.
      expect(await waitFor(() => transcoder.spares.pids.length === 1)).toBe(true)
      expect(transcoder.spares.pids[0]).not.toBe(spare)
    } finally {
      await h.close()
    }
  })

  test('one spare per command line; none after a failed conversion or a file; an untaken spare stops after spare_idle_ms; 0 starts none', async () => {
    const tenth = () => new Blob([pcm16ToBytes(tone(440, 0.1, 24000))])
    const { host: h, transcoder } = await start()
    try {
      // Undecodable input (ffmpeg exits 1) and a file ffmpeg seeks in: no spare for either command.
      await bytesOf(transcoder.convert(new Blob([new Uint8Array(4096).fill(7)]), { format: 'mp3' }, { format: 'wav' }, never())).catch(() => {})
      const m4aPath = transcoder.tempPath('m4a')
      expect(await Bun.spawn(['ffmpeg', '-v', 'error', '-i', 'pipe:0', '-c:a', 'aac', '-f', 'ipod', m4aPath], { stdin: new Blob([speech]) }).exited).toBe(0)
      await bytesOf(transcoder.convert(new Blob([await Bun.file(m4aPath).bytes()]), null, { format: 'flac' }, never()))
      await Bun.sleep(200)
      expect(transcoder.spares.pids).toEqual([])
      for (const format of ['mp3', 'opus', 'mp3']) await bytesOf(transcoder.convert(tenth(), pcm, { format }, never()))
      expect(await waitFor(() => transcoder.spares.pids.length === 2)).toBe(true)
      await Bun.sleep(200)
      expect(transcoder.spares.pids).toHaveLength(2)
    } finally {
      await h.close()
    }

    const { host: brief, transcoder: briefSpares } = await start({ spare_idle_ms: 300 })
    await bytesOf(briefSpares.convert(tenth(), pcm, { format: 'mp3' }, never()))
    expect(await waitFor(() => briefSpares.spares.pids.length === 1)).toBe(true)
    expect(await goneWithin(briefSpares.spares.pids[0]!, 3000)).toBe(true)
    expect(briefSpares.spares.pids).toEqual([])
    await brief.close()

    const { host: none, transcoder: noSpares } = await start({ spare_idle_ms: 0 })
    await bytesOf(noSpares.convert(tenth(), pcm, { format: 'mp3' }, never()))
    await Bun.sleep(200)
    expect(noSpares.spares.pids).toEqual([])
    await none.close()
  })

  test('shutdown stops the spares; a gateway killed outright leaves none behind (its spare reads the end of its stdin)', async () => {
    const { host: h, transcoder } = await start()
    await bytesOf(transcoder.convert(new Blob([pcm16ToBytes(tone(440, 0.2, 24000))]), pcm, { format: 'mp3' }, never()))
    expect(await waitFor(() => transcoder.spares.pids.length === 1)).toBe(true)
    const [spare] = transcoder.spares.pids
    await h.close()
    expect(await goneWithin(spare!, 1000)).toBe(true)

    const dir = mkdtempSync(join(tmpdir(), 'spare-'))
    const script = join(dir, 'gateway.ts')
    const plugin = join(import.meta.dir, '../../src/plugins/audio-transcode/index.ts')
    const hostModule = join(import.meta.dir, '../../src/plugin-host/host.ts')
    const loggerModule = join(import.meta.dir, '../../src/services/logger.ts')
    await Bun.write(
      script,
      `import plugin from ${JSON.stringify(plugin)}
import { PluginHost } from ${JSON.stringify(hostModule)}
import { createLogger } from ${JSON.stringify(loggerModule)}
const host = new PluginHost({ log: createLogger('silent'), store: {}, builtins: {}, baseDir: '.' })
await host.register(plugin, { config: {} })
const tc = host.transcoder
await new Response(tc.convert(new Blob([new Uint8Array(48000)]), { format: 'pcm', sampleRate: 24000 }, { format: 'mp3' }, new AbortController().signal)).bytes()
while (tc.spares.pids.length === 0) await Bun.sleep(10)
console.log(tc.spares.pids[0])
setInterval(() => {}, 1000)
`,
    )
    const gateway = Bun.spawn(['bun', script], { stdout: 'pipe', stderr: 'inherit' })
    try {
      const reader = gateway.stdout.getReader()
      const orphan = Number(new TextDecoder().decode((await reader.read()).value).trim())
      expect(alive(orphan)).toBe(true)
      gateway.kill('SIGKILL')
      expect(await goneWithin(orphan, 3000)).toBe(true)
    } finally {
      gateway.kill('SIGKILL') // a failed assertion must not leave the gateway (and its spare) running
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('limits and bad input', () => {
  test('past max_processes + max_queued: 503 transcoder_busy; the queue drains as processes end', async () => {
    // tc: 2 processes, 2 queued.
    const slow = () => slowStream(pcm16ToBytes(tone(440, 1, 24000)), 4800, 50)
    const streams = Array.from({ length: 5 }, () => tc.convert(slow().stream, { format: 'pcm', sampleRate: 24000 }, { format: 'mp3' }, never()))
    const results = await Promise.all(streams.map((s) => bytesOf(s).then((b) => b.length, (e) => e)))
    const busy = results.filter((r) => typeof r !== 'number')
    expect(busy).toHaveLength(1)
    expect(busy[0]).toMatchObject({ status: 503, code: 'transcoder_busy' })
    expect(GatewayError.is(busy[0])).toBe(true)
    expect(results.filter((r) => typeof r === 'number' && r > 1000)).toHaveLength(4)
    expect(tc.stats).toEqual({ running: 0, queued: 0 })
  })

  test('an aborted request waiting in the queue leaves it', async () => {
    const { host: h, transcoder } = await start({ max_processes: 1, max_queued: 1 })
    const first = transcoder.convert(slowStream(pcm16ToBytes(tone(440, 10, 24000)), 960, 20).stream, { format: 'pcm' }, { format: 'mp3' }, never()).getReader()
    await first.read()
    const ac = new AbortController()
    const waiting = transcoder.convert(new Blob([speech]), { format: 'wav' }, { format: 'mp3' }, ac.signal).getReader()
    await Bun.sleep(20)
    expect(transcoder.stats).toEqual({ running: 1, queued: 1 })
    ac.abort(new Error('gone'))
    expect(await waiting.read().catch((e) => e.message)).toBe('gone')
    expect(transcoder.stats).toEqual({ running: 1, queued: 0 })
    await h.close()
  })

  test('undecodable input: 400 invalid_audio_file with ffmpeg’s short reason, no path in it', async () => {
    const junk = new TextEncoder().encode('this is not audio at all '.repeat(200))
    for (const [input, from] of [
      [new Blob([junk]), { format: 'mp3' }],
      [new Blob([junk]), null],
      [new Blob([junk]).stream(), { format: 'ogg' }],
      [new Blob([new Uint8Array([...speech.subarray(0, 600), ...junk])]), { format: 'flac' }],
    ] as const) {
      const err = await bytesOf(tc.convert(input, from, { format: 'mp3' }, never())).catch((e) => e)
      expect(err).toMatchObject({ status: 400, code: 'invalid_audio_file', param: 'file' })
      expect(err.message).toStartWith('The audio could not be decoded: ')
      expect(err.message.length).toBeLessThan(300)
      expect(err.message).not.toMatch(/\/tmp|conduit-transcode/)
    }
    expect(tc.stats).toEqual({ running: 0, queued: 0 })
  })

  test('a failing source fails the output with its error and kills the process', async () => {
    let fail!: (e: Error) => void
    const src = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(pcm16ToBytes(tone(440, 0.5, 24000)))
        fail = (e) => c.error(e)
      },
    })
    const reader = tc.convert(src, { format: 'pcm', sampleRate: 24000 }, { format: 'wav' }, never()).getReader()
    await reader.read()
    const [pid] = tc.pids
    fail(new Error('upstream broke off'))
    let error: any
    while (!error) await reader.read().then((r) => r.done && (error = 'ended'), (e) => (error = e))
    expect(error.message).toBe('upstream broke off')
    expect(await goneWithin(pid!, 1000)).toBe(true)
  })

  test('an output format it does not make: 400', async () => {
    expect(await bytesOf(tc.convert(new Blob([speech]), null, { format: 'midi' }, never())).catch((e) => e)).toMatchObject({ status: 400, code: 'unsupported_audio_format' })
  })
})

describe('probe', () => {
  test('format, duration, rate and channels of files the headers do not tell (m4a, webm, adts, piped flac)', async () => {
    for (const [muxer, args, format] of [
      ['webm', ['-c:a', 'libopus'], 'webm'],
      ['adts', ['-c:a', 'aac'], 'aac'],
      ['flac', [], 'flac'], // written to a pipe: no length in STREAMINFO, the packets are counted
      ['mp4', ['-c:a', 'aac', '-movflags', 'frag_keyframe+empty_moov'], 'm4a'],
    ] as const) {
      const bytes = await ffmpeg(speech, muxer, [...args])
      if (muxer === 'flac') expect((await audioInfo(new Blob([bytes])))!.durationSeconds).toBeNull()
      const p = await tc.probe(new Blob([bytes]), never())
      expect(p.format).toBe(format)
      expect(Math.abs(p.durationSeconds! - speechSeconds) / speechSeconds).toBeLessThan(0.05)
      expect(p.channels).toBe(1)
      expect(p.sampleRate).toBeNumber()
    }
  })

  test('not audio: 400 invalid_audio_file', async () => {
    expect(await tc.probe(new Blob(['plain text, not audio']), never()).catch((e) => e)).toMatchObject({ status: 400, code: 'invalid_audio_file' })
  })
})
