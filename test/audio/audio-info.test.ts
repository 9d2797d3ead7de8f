import { describe, expect, test } from 'bun:test'
import { mkdtempSync, truncateSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AUDIO_MIME, audioInfo, readWavHeader, sniffAudioFormat, wavHeader } from '../../src/plugin-sdk/audio/index.ts'
import { ffmpeg, ffmpegFile, ffprobe, speak } from '../helpers/audio.ts'

const encodeFile = ffmpegFile

/** Durations and formats read from headers, checked against ffprobe on files ffmpeg made from real speech. */

const speech = await speak(
  'Conduit measures the duration of uploaded audio from its headers, without decoding it, so that budgets can be reserved before a provider is asked. This sentence is long enough to make a few seconds of speech.',
)

/** A blob that counts the bytes read through it, to prove a file is not read whole. */
function counting(blob: Blob) {
  const stats = { bytes: 0, reads: 0 }
  const wrap = (b: Blob): Blob =>
    new Proxy(b, {
      get(target, prop) {
        if (prop === 'slice') return (s?: number, e?: number, c?: string) => {
          const part = target.slice(s, e, c)
          stats.bytes += part.size
          stats.reads++
          return part
        }
        if (prop === 'arrayBuffer' || prop === 'stream' || prop === 'bytes' || prop === 'text') throw new Error(`read whole via ${String(prop)}`)
        const value = (target as any)[prop]
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
  return { blob: wrap(blob), stats }
}

const cases: [name: string, muxer: string, args: string[], format: string][] = [
  ['wav', 'wav', [], 'wav'],
  ['wav, 48 kHz stereo float', 'wav', ['-ar', '48000', '-ac', '2', '-c:a', 'pcm_f32le'], 'wav'],
  ['wav with a LIST chunk before data', 'wav', ['-metadata', 'title=A title that makes a LIST INFO chunk', '-write_bext', '1'], 'wav'],
  ['mp3 CBR with an Info header', 'mp3', ['-b:a', '64k'], 'mp3'],
  ['mp3 CBR without a Xing header, ID3v2 tagged', 'mp3', ['-b:a', '48k', '-write_xing', '0', '-metadata', 'title=x'], 'mp3'],
  ['mp3 VBR (Xing)', 'mp3', ['-q:a', '5'], 'mp3'],
  ['mp3 MPEG-1 stereo 44.1 kHz', 'mp3', ['-ar', '44100', '-ac', '2', '-b:a', '128k'], 'mp3'],
  ['flac', 'flac', [], 'flac'],
  ['ogg opus', 'ogg', ['-c:a', 'libopus', '-b:a', '24k'], 'ogg'],
  ['ogg vorbis', 'ogg', ['-c:a', 'libvorbis'], 'ogg'],
]

describe('audioInfo: durations without decoding, within 1% of ffprobe', () => {
  for (const [name, muxer, args, format] of cases) {
    test(name, async () => {
      const bytes = await encodeFile(speech, muxer, args)
      const truth = await ffprobe(bytes)
      const { blob, stats } = counting(new Blob([bytes]))
      const info = await audioInfo(blob)
      expect(info?.format).toBe(format)
      expect(info!.durationSeconds).not.toBeNull()
      expect(Math.abs(info!.durationSeconds! - truth.durationSeconds) / truth.durationSeconds).toBeLessThan(0.01)
      expect(info!.sampleRate).toBe(truth.sampleRate)
      expect(info!.channels).toBe(truth.channels)
      // Head and tail only, never the whole file (these files are small, so bound the reads, not the ratio); MP3's
      // frames are counted through it once.
      expect(stats.bytes).toBeLessThanOrEqual(64 * 1024 + (format === 'mp3' ? bytes.length : 67 * 1024))
    })
  }

  test('streamed WAV (sizes 0xFFFFFFFF, as ffmpeg writes to a pipe): the data runs to the end', async () => {
    const bytes = await ffmpeg(speech, 'wav', ['-ar', '16000'])
    const h = readWavHeader(bytes)!
    expect(h.dataBytes).toBeNull() // ffmpeg writing to a pipe cannot seek back to fill in the sizes
    const truth = await ffprobe(bytes)
    const info = (await audioInfo(new Blob([bytes])))!
    expect(Math.abs(info.durationSeconds! - truth.durationSeconds) / truth.durationSeconds).toBeLessThan(0.01)
    // And a header that says 0 bytes (some recorders) means the same.
    const zero = bytes.slice()
    new DataView(zero.buffer).setUint32(h.dataOffset - 4, 0, true)
    expect((await audioInfo(new Blob([zero])))!.durationSeconds).toBeCloseTo(info.durationSeconds!, 6)
  })

  test('a 100 MB WAV on disk is measured from two small reads', async () => {
    const path = join(tmpdir(), `conduit-big-${process.pid}.wav`)
    const dataBytes = 100 * 1024 * 1024
    await Bun.write(path, wavHeader({ sampleRate: 16000, channels: 1, dataBytes }))
    truncateSync(path, 44 + dataBytes) // sparse: silence
    const { blob, stats } = counting(Bun.file(path))
    const info = (await audioInfo(blob))!
    expect(info.durationSeconds).toBeCloseTo(dataBytes / 32000, 6)
    expect(stats.bytes).toBeLessThanOrEqual(64 * 1024)
    await Bun.file(path).delete()
  })

  test('a data chunk beyond the first 64 KiB (a large JUNK chunk) is found by walking the chunks', async () => {
    const pcm = new Uint8Array(32000) // one second of 16 kHz silence
    const junk = 100_000
    const head = wavHeader({ sampleRate: 16000, channels: 1, dataBytes: pcm.length })
    const file = new Uint8Array(44 + 8 + junk + pcm.length)
    file.set(head.subarray(0, 36)) // RIFF + fmt
    const view = new DataView(file.buffer)
    file.set(new TextEncoder().encode('JUNK'), 36)
    view.setUint32(40, junk, true)
    file.set(head.subarray(36), 44 + junk)
    view.setUint32(4, file.length - 8, true)
    expect((await ffprobe(file)).durationSeconds).toBeCloseTo(1, 2)
    const info = (await audioInfo(new Blob([file])))!
    expect(info).toEqual({ format: 'wav', durationSeconds: 1, sampleRate: 16000, channels: 1 })
  })

  test('formats without a header duration: known format, duration null (left to the transcoder probe)', async () => {
    for (const [muxer, args, format] of [
      ['ipod', ['-c:a', 'aac', '-movflags', 'frag_keyframe+empty_moov'], 'm4a'],
      ['adts', ['-c:a', 'aac'], 'aac'],
      ['webm', ['-c:a', 'libopus'], 'webm'],
    ] as const) {
      const info = await audioInfo(new Blob([(await ffmpeg(speech, muxer, [...args]))]))
      expect(info).toEqual({ format, durationSeconds: null, sampleRate: null, channels: null })
    }
  })

  test('written to a pipe (no lengths): FLAC duration unknown; MP3 without a VBR header estimated from the bit rate', async () => {
    const flac = (await audioInfo(new Blob([await ffmpeg(speech, 'flac')])))!
    expect(flac).toEqual({ format: 'flac', durationSeconds: null, sampleRate: 22050, channels: 1 })
    const cbr = await ffmpeg(speech, 'mp3', ['-b:a', '32k'])
    const truth = await ffprobe(await encodeFile(speech, 'mp3', ['-b:a', '32k']))
    expect(Math.abs((await audioInfo(new Blob([cbr])))!.durationSeconds! - truth.durationSeconds) / truth.durationSeconds).toBeLessThan(0.01)
  })

  test('a duration the file states shorter than its audio (a client editing the header to pay less) is not believed', async () => {
    const decoded = async (bytes: Uint8Array) => (await ffmpeg(bytes, 's16le', ['-ac', '1', '-ar', '16000'])).length / 32000
    const find = (bytes: Uint8Array, text: string) => Buffer.from(bytes).indexOf(text)
    // MP3: the Xing header's frame count set to 3; the frames are counted instead (and a cut-short file is measured so).
    const mp3 = await encodeFile(speech, 'mp3', ['-q:a', '5'])
    const xing = find(mp3, 'Xing')
    expect(xing).toBeGreaterThan(0)
    new DataView(mp3.buffer, mp3.byteOffset).setUint32(xing + 8, 3)
    expect((await ffprobe(mp3)).durationSeconds).toBeLessThan(0.1) // what a reader of headers sees
    const truth = await decoded(mp3)
    expect(Math.abs((await audioInfo(new Blob([mp3])))!.durationSeconds! - truth) / truth).toBeLessThan(0.01)
    const cut = mp3.subarray(0, Math.floor(mp3.length / 2))
    expect(Math.abs((await audioInfo(new Blob([cut])))!.durationSeconds! - (await decoded(cut))) / truth).toBeLessThan(0.01)
    // FLAC: STREAMINFO's sample count set to 100; at least its bytes as uncompressed PCM at the stream's rate.
    const flac = await encodeFile(speech, 'flac', [])
    const info = new DataView(flac.buffer, flac.byteOffset + 8)
    info.setUint8(13, info.getUint8(13) & 0xf0)
    info.setUint32(14, 100)
    const { sampleRate, channels } = (await audioInfo(new Blob([flac])))!
    expect((await audioInfo(new Blob([flac])))!.durationSeconds).toBeCloseTo(flac.length / (sampleRate! * channels! * 2), 6)
    // Ogg Opus: the last page's granule position set to 960 samples (20 ms); at least its bytes at 510 kbit/s.
    const opus = await encodeFile(speech, 'ogg', ['-c:a', 'libopus', '-b:a', '24k'])
    const last = Buffer.from(opus).lastIndexOf('OggS')
    new DataView(opus.buffer, opus.byteOffset).setUint32(last + 6, 960 + 312, true)
    expect((await audioInfo(new Blob([opus])))!.durationSeconds).toBeCloseTo(opus.length / (510_000 / 8), 6)
  })

  test('not audio: null', async () => {
    expect(await audioInfo(new Blob(['hello, this is text and not audio at all']))).toBeNull()
    expect(await audioInfo(new Blob([]))).toBeNull()
  })
})

describe('sniffAudioFormat', () => {
  const muxed: [muxer: string, args: string[], format: string][] = [
    ['wav', [], 'wav'],
    ['mp3', [], 'mp3'],
    ['mp3', ['-write_id3v2', '0', '-write_xing', '0'], 'mp3'], // a bare frame sync
    ['flac', [], 'flac'],
    ['ogg', ['-c:a', 'libopus'], 'ogg'],
    ['ogg', ['-c:a', 'libvorbis'], 'ogg'],
    ['opus', [], 'ogg'],
    ['webm', ['-c:a', 'libopus'], 'webm'],
    ['matroska', ['-c:a', 'flac'], 'webm'], // Matroska audio shares WebM's EBML magic
    ['ipod', ['-c:a', 'aac', '-movflags', 'frag_keyframe+empty_moov'], 'm4a'],
    ['mp4', ['-c:a', 'aac', '-movflags', 'frag_keyframe+empty_moov'], 'm4a'],
    ['adts', ['-c:a', 'aac'], 'aac'],
    ['caf', [], 'caf'],
  ]
  for (const [muxer, args, format] of muxed) {
    test(`${muxer} ${args.join(' ')} → ${format}`, async () => {
      const bytes = await ffmpeg(speech, muxer, args)
      expect(sniffAudioFormat(bytes.subarray(0, 4096))).toBe(format)
      expect(AUDIO_MIME[format]).toStartWith('audio/')
    })
  }

  test('amr (ffmpeg here has no AMR encoder: a hand-made file that ffprobe accepts)', async () => {
    // "#!AMR\n" then AMR-NB frames; 0x7C is a NO_DATA frame header (one byte).
    const amr = new Uint8Array([...new TextEncoder().encode('#!AMR\n'), ...new Array(50).fill(0x7c)])
    expect((await ffprobe(amr)).codec).toBe('amr_nb')
    expect(sniffAudioFormat(amr)).toBe('amr')
  })

  test('non-audio: PNG, JPEG, PDF, text, JSON, empty → null', () => {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52])
    const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46])
    const enc = (s: string) => new TextEncoder().encode(s)
    for (const bytes of [png, jpeg, enc('%PDF-1.7\n'), enc('hello world'), enc('{"a":1}'), new Uint8Array(0), new Uint8Array(3)]) {
      expect(sniffAudioFormat(bytes)).toBeNull()
    }
  })

  test('MIME types as OpenAI answers them', () => {
    expect(AUDIO_MIME).toMatchObject({ mp3: 'audio/mpeg', opus: 'audio/ogg', aac: 'audio/aac', flac: 'audio/flac', wav: 'audio/wav', pcm: 'audio/pcm', m4a: 'audio/mp4', webm: 'audio/webm' })
  })
})

describe('WAV headers', () => {
  test('wavHeader + PCM is a file ffprobe reads as such; readWavHeader reads it back', async () => {
    const pcm = new Uint8Array(48000 * 2 * 2) // one second, 48 kHz stereo
    const file = new Uint8Array([...wavHeader({ sampleRate: 48000, channels: 2, dataBytes: pcm.length }), ...pcm])
    const p = await ffprobe(file)
    expect(p).toMatchObject({ codec: 'pcm_s16le', sampleRate: 48000, channels: 2 })
    expect(p.durationSeconds).toBeCloseTo(1, 3)
    expect(readWavHeader(file)).toMatchObject({ format: 'pcm16', sampleRate: 48000, channels: 2, bitsPerSample: 16, dataOffset: 44, dataBytes: pcm.length })
    // Streaming form: sizes unknown, as ffmpeg writes them.
    const streaming = wavHeader({ sampleRate: 24000, channels: 1 })
    expect(new DataView(streaming.buffer).getUint32(40, true)).toBe(0xffffffff)
    const fromPipe = await ffmpeg(new Uint8Array([...streaming, ...new Uint8Array(24000)]), 'wav')
    expect(readWavHeader(fromPipe)).toMatchObject({ format: 'pcm16', sampleRate: 24000, channels: 1, dataBytes: null })
    expect((await ffprobe(new Uint8Array([...streaming, ...new Uint8Array(24000)]))).durationSeconds).toBeCloseTo(0.5, 2)
  })

  test('formats of ffmpeg-written WAVs: float32, alaw, mulaw, 24-bit (extensible), u8', async () => {
    const expectFmt = async (args: string[], format: string, bits: number) => {
      const h = readWavHeader(await ffmpeg(speech, 'wav', args))
      expect(h).toMatchObject({ format, bitsPerSample: bits })
    }
    await expectFmt(['-c:a', 'pcm_f32le'], 'float32', 32)
    await expectFmt(['-c:a', 'pcm_alaw'], 'alaw', 8)
    await expectFmt(['-c:a', 'pcm_mulaw'], 'mulaw', 8)
    await expectFmt(['-c:a', 'pcm_s24le', '-ac', '3'], 'pcm24', 24) // > 2 channels: WAVE_FORMAT_EXTENSIBLE
    await expectFmt(['-c:a', 'pcm_u8'], 'u8', 8)
    expect(readWavHeader(new TextEncoder().encode('RIFF....AVI LIST'))).toBeNull()
  })
})
