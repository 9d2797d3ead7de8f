import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI, { toFile } from 'openai'
import { recognizeDirect, startAsrServer, wav16kMono, type AsrServer } from '../helpers/asr-server.ts'
import { ffmpeg, ffprobe, speak } from '../helpers/audio.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'

/**
 * A real speech recogniser (PocketSphinx) as an `openai-compatible` upstream that takes 16 kHz mono WAV only, as
 * the admin declares in `options.audio`. Speech made by espeak-ng and uploaded as FLAC, MP3 or 22 kHz WAV is
 * converted on the way; the transcript must be the engine's own on the same audio sent to it directly. (Its accuracy
 * on synthetic speech is poor: the equality is the check.)
 */
const SENTENCE = 'The quick brown fox jumps over the lazy dog near the river bank.'
const KEY = 'asr-upstream-key'
const to16k = (bytes: Uint8Array) => ffmpeg(bytes, 'wav', ['-ar', '16000', '-ac', '1', '-c:a', 'pcm_s16le'])

let asr: AsrServer
let gw: TestGateway
let client: OpenAI
let wav: Uint8Array
let expected: string

beforeAll(async () => {
  asr = await startAsrServer({ apiKey: KEY })
  gw = await startGateway()
  await gw.admin('POST', '/providers', {
    name: 'sphinx',
    type: 'openai-compatible',
    base_url: asr.url,
    api_key: KEY,
    options: { audio: { input_formats: ['wav'], sample_rates: [16000], transcript_formats: ['json', 'text', 'verbose_json'], stream_transcripts: false } },
  })
  await gw.admin('POST', '/models', { name: 'sphinx', targets: [{ provider: 'sphinx', model: 'pocketsphinx-en-us' }] })
  client = new OpenAI({ apiKey: (await gw.admin('POST', '/keys', { name: 'asr' })).key, baseURL: gw.baseURL, maxRetries: 0 })
  wav = await speak(SENTENCE)
  expected = await recognizeDirect(await to16k(wav))
}, 30_000)

afterAll(async () => {
  await gw?.close()
  asr?.stop()
})

describe('the PocketSphinx server itself', () => {
  test('16 kHz mono 16-bit WAV is recognised; anything else is a 400 in OpenAI’s shape, judged by the bytes, not the name', async () => {
    expect(expected.length).toBeGreaterThan(0)
    const post = async (bytes: Uint8Array, name: string) => {
      const form = new FormData()
      form.append('model', 'x')
      form.append('file', new Blob([bytes]), name)
      return fetch(`${asr.url}/audio/transcriptions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body: form })
    }
    const ok = await post(await to16k(wav), 'speech.mp3')
    expect(ok.status).toBe(200)
    expect(((await ok.json()) as any).text).toBe(expected)
    for (const [bytes, name] of [
      [wav, 'speech-16k.wav'], // 22,050 Hz
      [await ffmpeg(wav, 'wav', ['-ar', '16000', '-ac', '2']), 'stereo.wav'],
      [await ffmpeg(wav, 'flac', ['-ar', '16000']), 'speech.wav'],
    ] as const) {
      const res = await post(bytes, name)
      expect(res.status).toBe(400)
      expect(await res.json()).toEqual({ error: { message: 'Unsupported audio: 16 kHz mono WAV only', type: 'invalid_request_error', param: 'file', code: 'unsupported_format' } })
    }
    expect(wav16kMono(await to16k(wav))!.seconds).toBeCloseTo((await ffprobe(wav)).durationSeconds, 1)
  }, 30_000)
})

describe('through the gateway', () => {
  test('a 16 kHz WAV goes as it is: the same bytes reach the engine, the same transcript comes back', async () => {
    const exact = await to16k(wav)
    const data = await client.audio.transcriptions.create({ file: await toFile(exact, 'speech.wav'), model: 'sphinx' })
    expect(data.text).toBe(expected)
    expect(asr.requests.at(-1)!.file!.size).toBe(exact.length)
    expect(asr.requests.at(-1)!.fields.model).toBe('pocketsphinx-en-us')
  }, 30_000)

  for (const [label, make, name] of [
    ['FLAC', (w: Uint8Array) => ffmpeg(w, 'flac'), 'speech.flac'],
    ['MP3', (w: Uint8Array) => ffmpeg(w, 'mp3'), 'speech.mp3'],
    ['22 kHz WAV', async (w: Uint8Array) => w, 'speech.wav'],
  ] as const) {
    test(`${label} is converted to 16 kHz mono WAV on the way; the transcript equals the engine’s own on that audio`, async () => {
      const upload = await make(wav)
      // The engine's own answer on the same audio: the upload decoded and resampled, sent to it directly.
      const direct = label === 'FLAC' || label === '22 kHz WAV' ? expected : await recognizeDirect(await to16k(upload))
      expect(direct.length).toBeGreaterThan(0)
      const data = await client.audio.transcriptions.create({ file: await toFile(upload, name), model: 'sphinx' })
      expect(data.text).toBe(direct)
      // What reached the engine: 16 kHz mono 16-bit WAV (ffprobe says so), as long as the upload.
      const received = asr.requests.at(-1)!.file!
      expect(received.name).toEndWith('.wav')
      const probe = await ffprobe(received.bytes)
      expect([probe.format, probe.codec, probe.sampleRate, probe.channels]).toEqual(['wav', 'pcm_s16le', 16000, 1])
      const length = (await ffprobe(upload)).durationSeconds
      expect(Math.abs(probe.durationSeconds - length) / length).toBeLessThan(0.05)
    }, 60_000)
  }

  test('formats the engine does not make are rendered by the gateway from its verbose transcript', async () => {
    const flac = await ffmpeg(wav, 'flac')
    const verbose = (await client.audio.transcriptions.create({ file: await toFile(flac, 'speech.flac'), model: 'sphinx', response_format: 'verbose_json' })) as any
    validateSchema('CreateTranscriptionResponseVerboseJson', verbose)
    expect(verbose.text).toBe(expected)
    expect(verbose.duration).toBeCloseTo((await ffprobe(wav)).durationSeconds, 1)
    const srt = String(await client.audio.transcriptions.create({ file: await toFile(flac, 'speech.flac'), model: 'sphinx', response_format: 'srt' }))
    expect(srt).toStartWith('1\n00:00:00,000 --> ')
    expect(srt).toContain(expected)
    expect(asr.requests.at(-1)!.fields.response_format).toBe('verbose_json')
  }, 60_000)
})
