import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Real audio for tests: speech from espeak-ng, conversions by ffmpeg, and facts about a file from ffprobe — never
 * from our own headers. All three are Debian packages that `.ci/run` installs.
 */

const dir = mkdtempSync(join(tmpdir(), 'conduit-audio-'))
let n = 0

async function run(cmd: string[], stdin?: Uint8Array): Promise<Uint8Array> {
  const proc = Bun.spawn(cmd, { stdin: stdin ? new Blob([stdin]) : 'ignore', stdout: 'pipe', stderr: 'pipe' })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).bytes(), new Response(proc.stderr).text(), proc.exited])
  if (code !== 0) throw new Error(`${cmd[0]} exited ${code}: ${err.slice(0, 500)}`)
  return out
}

/** A sentence spoken by espeak-ng: 22,050 Hz mono 16-bit WAV. */
export async function speak(text: string): Promise<Uint8Array> {
  const path = join(dir, `speech-${n++}.wav`)
  // On stdin: a text starting with '-' would be read as an option.
  await run(['espeak-ng', '-w', path, '--stdin'], new TextEncoder().encode(text))
  return Bun.file(path).bytes()
}

/**
 * `input` converted by ffmpeg to `format` (a muxer name: wav, mp3, flac, ogg, adts, ipod for m4a, …) with extra
 * output args; `inputArgs` describe a raw input (`['-f', 's16le', '-ar', '24000', '-ac', '1']`).
 */
export async function ffmpeg(input: Uint8Array, format: string, args: string[] = [], inputArgs: string[] = []): Promise<Uint8Array> {
  return run(['ffmpeg', '-v', 'error', ...inputArgs, '-i', 'pipe:0', ...args, '-f', format, 'pipe:1'], input)
}

/** The same, written to a file as a recorder or a client's encoder does: it seeks back to fill in lengths and VBR headers. */
export async function ffmpegFile(input: Uint8Array, format: string, args: string[] = []): Promise<Uint8Array> {
  const src = join(dir, `in-${n++}`)
  const out = join(dir, `out-${n++}`)
  await Bun.write(src, input)
  await run(['ffmpeg', '-v', 'error', '-i', src, ...args, '-f', format, out])
  return Bun.file(out).bytes()
}

/** A sine tone as 16-bit little-endian mono PCM. */
export function tone(frequency: number, seconds: number, sampleRate: number, amplitude = 0.5): Int16Array {
  const samples = new Int16Array(Math.round(seconds * sampleRate))
  for (let i = 0; i < samples.length; i++) samples[i] = Math.round(Math.sin((2 * Math.PI * frequency * i) / sampleRate) * amplitude * 32767)
  return samples
}

export interface Probe {
  format: string
  codec: string
  sampleRate: number
  channels: number
  durationSeconds: number
}

/** What ffprobe says a file is. A file ffprobe cannot read throws. */
export async function ffprobe(bytes: Uint8Array): Promise<Probe> {
  const path = join(dir, `probe-${n++}`)
  await Bun.write(path, bytes)
  const out = await run(['ffprobe', '-v', 'error', '-show_entries', 'stream=codec_name,sample_rate,channels,duration:format=format_name,duration', '-of', 'json', path])
  const info = JSON.parse(new TextDecoder().decode(out))
  const stream = info.streams?.[0]
  if (!stream) throw new Error('ffprobe found no audio stream')
  let duration = Number(info.format?.duration ?? stream.duration)
  if (!Number.isFinite(duration)) {
    // A stream written without a length (WAV piped from ffmpeg): decode it to count.
    const pcm = await run(['ffmpeg', '-v', 'error', '-i', path, '-f', 's16le', '-ac', '1', '-ar', String(stream.sample_rate), 'pipe:1'])
    duration = pcm.length / 2 / Number(stream.sample_rate)
  }
  return { format: info.format.format_name, codec: stream.codec_name, sampleRate: Number(stream.sample_rate), channels: stream.channels, durationSeconds: duration }
}

/** Decodes any file ffmpeg reads to mono 16-bit PCM at `sampleRate`. */
export async function decodePcm(bytes: Uint8Array, sampleRate: number): Promise<Int16Array> {
  const pcm = await ffmpeg(bytes, 's16le', ['-ac', '1', '-ar', String(sampleRate)])
  return new Int16Array(pcm.buffer, pcm.byteOffset, pcm.byteLength >> 1)
}

/** The strongest frequency in a PCM signal (Hz), by a plain DFT over the candidate band: enough to check a tone survived. */
export function dominantFrequency(samples: Int16Array, sampleRate: number, from = 50, to = 4000, step = 5): number {
  const window = samples.subarray(0, Math.min(samples.length, sampleRate)) // one second is plenty
  let best = 0
  let bestPower = -1
  for (let f = from; f <= to; f += step) {
    let re = 0
    let im = 0
    for (let i = 0; i < window.length; i++) {
      const phase = (2 * Math.PI * f * i) / sampleRate
      re += window[i]! * Math.cos(phase)
      im -= window[i]! * Math.sin(phase)
    }
    const power = re * re + im * im
    if (power > bestPower) {
      bestPower = power
      best = f
    }
  }
  return best
}

export const hasTool = (name: string) => Bun.which(name) !== null
