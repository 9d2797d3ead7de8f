import { describe, expect, test } from 'bun:test'
import { alawToPcm16, mulawToPcm16, pcm16FromBytes, pcm16ToAlaw, pcm16ToBytes, pcm16ToMulaw, PcmResampler } from '../../src/plugin-sdk/audio/index.ts'
import { decodePcm, dominantFrequency, speak, tone } from '../helpers/audio.ts'

/** G.711 and resampling checked against ffmpeg and by measuring the signal, not against our own expectations. */

const pcmArgs = (rate: number) => ['-f', 's16le', '-ar', String(rate), '-ac', '1']
const rawFfmpeg = async (input: Uint8Array, inArgs: string[], outFormat: string, outArgs: string[] = []) => {
  const proc = Bun.spawn(['ffmpeg', '-v', 'error', ...inArgs, '-i', 'pipe:0', ...outArgs, '-f', outFormat, 'pipe:1'], { stdin: new Blob([input]), stdout: 'pipe', stderr: 'pipe' })
  const out = await new Response(proc.stdout).bytes()
  if ((await proc.exited) !== 0) throw new Error(await new Response(proc.stderr).text())
  return out
}

/** Every 16-bit value once, then real speech at 8 kHz. */
const everyValue = Int16Array.from({ length: 65536 }, (_, i) => i - 32768)
const speech8k = await decodePcm(await speak('Telephone audio is eight kilohertz G seven one one.'), 8000)

describe('G.711', () => {
  for (const law of ['mulaw', 'alaw'] as const) {
    const encode = law === 'mulaw' ? pcm16ToMulaw : pcm16ToAlaw
    const decode = law === 'mulaw' ? mulawToPcm16 : alawToPcm16

    test(`${law}: decoding equals ffmpeg's for all 256 codes`, async () => {
      const codes = Uint8Array.from({ length: 256 }, (_, i) => i)
      const theirs = pcm16FromBytes(await rawFfmpeg(codes, ['-f', law, '-ar', '8000', '-ac', '1'], 's16le'))
      expect(Array.from(decode(codes))).toEqual(Array.from(theirs))
    })

    test(`${law}: encoding is ffmpeg's byte for byte, or one quantisation step away at a decision boundary`, async () => {
      // Codes ordered by the level they decode to: "one step" is adjacent levels.
      const level = decode(Uint8Array.from({ length: 256 }, (_, i) => i))
      const sorted = [...new Set(level)].sort((a, b) => a - b)
      const rank = (code: number) => sorted.indexOf(level[code]!)
      for (const samples of [everyValue, speech8k]) {
        const ours = encode(samples)
        const theirs = await rawFfmpeg(pcm16ToBytes(samples), pcmArgs(8000), law)
        expect(theirs.length).toBe(ours.length)
        let exact = 0
        let worst = 0
        for (let i = 0; i < ours.length; i++) {
          if (ours[i] === theirs[i]) exact++
          else worst = Math.max(worst, Math.abs(rank(ours[i]!) - rank(theirs[i]!)))
        }
        expect(worst).toBeLessThanOrEqual(1)
        // ffmpeg rounds to the nearest level where G.711 truncates: they differ only in part of each step.
        expect(exact / ours.length).toBeGreaterThan(0.5)
      }
    })

    test(`${law}: round trip error stays within half a quantisation step`, () => {
      const back = decode(encode(speech8k))
      let worst = 0
      for (let i = 0; i < back.length; i++) {
        const err = Math.abs(back[i]! - speech8k[i]!)
        worst = Math.max(worst, err / Math.max(256, Math.abs(speech8k[i]!)))
      }
      expect(worst).toBeLessThan(0.07) // logarithmic: about 3% of the sample (absolute near zero)
    })
  }

  test('known reference codes: silence and full scale', () => {
    expect(Array.from(pcm16ToMulaw(new Int16Array([0, 32767, -32768])))).toEqual([0xff, 0x80, 0x00])
    expect(Array.from(pcm16ToAlaw(new Int16Array([0, 32767, -32768])))).toEqual([0xd5, 0xaa, 0x2a])
  })
})

describe('PCM bytes', () => {
  test('little-endian both ways, at an odd byte offset too', () => {
    const samples = new Int16Array([0, 1, -1, 32767, -32768, 258])
    const bytes = pcm16ToBytes(samples)
    expect(Array.from(bytes.subarray(0, 6))).toEqual([0, 0, 1, 0, 0xff, 0xff])
    const odd = new Uint8Array(bytes.length + 1)
    odd.set(bytes, 1)
    expect(Array.from(pcm16FromBytes(odd.subarray(1)))).toEqual(Array.from(samples))
    expect(pcm16FromBytes(odd.subarray(1, 4)).length).toBe(1) // a trailing odd byte is not a sample
  })
})

/** Feeds the resampler in 20 ms frames, as realtime does. */
function resampleInFrames(samples: Int16Array, from: number, to: number, channels = 1): Int16Array {
  const r = new PcmResampler(from, to, channels)
  const frame = (from / 50) * channels
  const parts: Int16Array[] = []
  for (let i = 0; i < samples.length; i += frame) parts.push(r.push(samples.subarray(i, Math.min(samples.length, i + frame))))
  parts.push(r.flush())
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

const rms = (s: Int16Array, from = 0, to = s.length) => {
  let sum = 0
  for (let i = from; i < to; i++) sum += s[i]! * s[i]!
  return Math.sqrt(sum / (to - from))
}

describe('PcmResampler', () => {
  const pairs: [number, number][] = [
    [24000, 8000],
    [8000, 24000],
    [8000, 16000],
    [16000, 8000],
    [16000, 24000],
    [24000, 16000],
    [48000, 24000],
    [24000, 48000],
    [22050, 16000],
    [44100, 48000],
    [16000, 44100],
  ]
  for (const [from, to] of pairs) {
    test(`${from} → ${to}: a 1 kHz tone keeps its frequency, its level and its length`, () => {
      const input = tone(1000, 1, from)
      const out = resampleInFrames(input, from, to)
      expect(Math.abs(out.length - to)).toBeLessThanOrEqual(1)
      expect(Math.abs(dominantFrequency(out, to, 500, 1500, 5) - 1000)).toBeLessThanOrEqual(5)
      // Level kept (the filter's edges skipped).
      const edge = Math.round(to * 0.01)
      expect(rms(out, edge, out.length - edge) / rms(input)).toBeGreaterThan(0.97)
      expect(rms(out, edge, out.length - edge) / rms(input)).toBeLessThan(1.03)
      // No clicks at the 20 ms frame edges: close to the ideal sine at the new rate everywhere.
      const ideal = tone(1000, 1, to)
      let worst = 0
      for (let i = edge; i < out.length - edge; i++) worst = Math.max(worst, Math.abs(out[i]! - ideal[i]!))
      expect(worst).toBeLessThan(0.02 * 16384)
    })
  }

  test('frame boundaries leave no trace: 20 ms frames give the same samples as one push', () => {
    const input = tone(1000, 1, 24000)
    const whole = new PcmResampler(24000, 8000)
    const once = [...whole.push(input), ...whole.flush()]
    expect(Array.from(resampleInFrames(input, 24000, 8000))).toEqual(once)
    // Odd-sized pushes too (network reads do not respect frames).
    const r = new PcmResampler(22050, 16000)
    const odd: number[] = []
    for (let i = 0, n = 1; i < input.length; i += n, n = ((n * 7 + 3) % 997) + 1) odd.push(...r.push(input.subarray(i, i + n)))
    odd.push(...r.flush())
    const ref = new PcmResampler(22050, 16000)
    expect(odd).toEqual([...ref.push(input), ...ref.flush()])
  })

  test('24k → 8k: a 6 kHz tone (above the 4 kHz Nyquist) is not aliased to 2 kHz', () => {
    const input = tone(6000, 1, 24000)
    const out = resampleInFrames(input, 24000, 8000)
    expect(rms(out) / rms(input)).toBeLessThan(0.01) // at least 40 dB down
    // Naive decimation (every third sample) aliases it at full level: the check can fail.
    const naive = Int16Array.from({ length: 8000 }, (_, i) => input[i * 3]!)
    expect(rms(naive) / rms(input)).toBeGreaterThan(0.5)
    // Just above the Nyquist too (4.5 kHz would alias to 3.5 kHz).
    const near = tone(4500, 1, 24000)
    expect(rms(resampleInFrames(near, 24000, 8000)) / rms(near)).toBeLessThan(0.05)
  })

  test("speech resampled 24k → 16k matches ffmpeg's resampling of it (> 30 dB SNR)", async () => {
    const src = await decodePcm(await speak('Resampling must not change what is said.'), 24000)
    const ours = resampleInFrames(src, 24000, 16000)
    const ref = pcm16FromBytes(await rawFfmpeg(pcm16ToBytes(src), pcmArgs(24000), 's16le', ['-ar', '16000']))
    expect(Math.abs(ours.length - ref.length)).toBeLessThanOrEqual(2)
    let diff = 0
    let sig = 0
    for (let i = 0; i < Math.min(ours.length, ref.length); i++) {
      diff += (ours[i]! - ref[i]!) ** 2
      sig += ref[i]! ** 2
    }
    expect(diff / sig).toBeLessThan(0.001)
  })

  test('stereo: channels stay apart', () => {
    const left = tone(500, 1, 48000)
    const right = tone(1500, 1, 48000)
    const inter = new Int16Array(96000)
    for (let i = 0; i < 48000; i++) {
      inter[2 * i] = left[i]!
      inter[2 * i + 1] = right[i]!
    }
    const out = resampleInFrames(inter, 48000, 16000, 2)
    const l = Int16Array.from({ length: out.length / 2 }, (_, i) => out[2 * i]!)
    const r = Int16Array.from({ length: out.length / 2 }, (_, i) => out[2 * i + 1]!)
    expect(dominantFrequency(l, 16000, 200, 2000, 5)).toBe(500)
    expect(dominantFrequency(r, 16000, 200, 2000, 5)).toBe(1500)
  })

  test('bad arguments are refused', () => {
    expect(() => new PcmResampler(0, 8000)).toThrow(RangeError)
    expect(() => new PcmResampler(8000, 16000, 2).push(new Int16Array(3))).toThrow(RangeError)
  })
})
