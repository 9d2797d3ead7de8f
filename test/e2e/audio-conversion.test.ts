import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI, { toFile } from 'openai'
import { ffmpeg, ffprobe, speak } from '../helpers/audio.ts'
import { startFakeOpenAIAudio, type FakeOpenAIAudio } from '../helpers/fake-openai-audio.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

/**
 * The core decides from what a target declares (`options.audio` for OpenAI-compatible servers) what to convert;
 * builtin:audio-transcode (ffmpeg) converts. Every conversion is checked with ffprobe on what the upstream got or
 * the client received. Then the same gateway without ffmpeg: what needs no conversion still works, what does
 * gets a 501 naming the missing program.
 */
let fake: FakeOpenAIAudio
let gw: TestGateway
let client: OpenAI
let wav: Uint8Array

const SENTENCE = 'Audio that a provider cannot take is converted on the way.'

async function setup(gateway: TestGateway) {
  const provider = (name: string, audio: Record<string, unknown>) =>
    gateway.admin('POST', '/providers', { name, type: 'openai-compatible', base_url: fake.url, api_key: 'sk-upstream-test', options: { audio } })
  await provider('pcm-only', { output_formats: ['pcm'], pcm_sample_rate: 24000 })
  await provider('wav16k-only', { input_formats: ['wav'], sample_rates: [16000] })
  await provider('small-uploads', { max_upload_bytes: 150_000 })
  await gateway.admin('POST', '/models', { name: 'pcm-tts', targets: [{ provider: 'pcm-only', model: 'tts-1' }] })
  await gateway.admin('POST', '/models', { name: 'wav-stt', targets: [{ provider: 'wav16k-only', model: 'whisper-1' }] })
  await gateway.admin('POST', '/models', { name: 'small-stt', targets: [{ provider: 'small-uploads', model: 'whisper-1' }] })
  return (await gateway.admin('POST', '/keys', { name: 'k' })).key as string
}

beforeAll(async () => {
  fake = startFakeOpenAIAudio()
  gw = await startGateway()
  client = new OpenAI({ apiKey: await setup(gw), baseURL: gw.baseURL, maxRetries: 0 })
  wav = await speak(SENTENCE)
})

afterAll(async () => {
  await gw.close()
  fake.close()
})

describe('with ffmpeg', () => {
  test('speech in a format the provider cannot make: asked for pcm, converted to mp3 and flac as it streams', async () => {
    fake.gate.hold()
    const response = await client.audio.speech.create({ model: 'pcm-tts', voice: 'alloy', input: SENTENCE, response_format: 'mp3' })
    expect(fake.requests.at(-1)!.json.response_format).toBe('pcm')
    expect(response.headers.get('content-type')).toBe('audio/mpeg')
    const reader = response.body!.getReader()
    const first = await reader.read()
    // Converted audio leaves while the provider is still speaking.
    expect(first.done).toBe(false)
    expect(fake.speeches.at(-1)!.done).toBe(false)
    fake.gate.release()
    const parts = [first.value!]
    for (let next = await reader.read(); !next.done; next = await reader.read()) parts.push(next.value)
    const mp3 = await ffprobe(Buffer.concat(parts))
    expect(mp3.codec).toBe('mp3')
    const flac = await ffprobe(new Uint8Array(await (await client.audio.speech.create({ model: 'pcm-tts', voice: 'alloy', input: SENTENCE, response_format: 'flac' })).arrayBuffer()))
    expect(flac.codec).toBe('flac')
    // Both last as long as the provider's speech, within 5%.
    const source = await ffprobe(await ffmpeg(await speak(SENTENCE), 'wav'))
    for (const probe of [mp3, flac]) expect(Math.abs(probe.durationSeconds - source.durationSeconds) / source.durationSeconds).toBeLessThan(0.05)
  })

  test('an upload the provider cannot take (mp3, 22 kHz) reaches it as 16 kHz mono WAV', async () => {
    const mp3 = await ffmpeg(wav, 'mp3')
    const text = await client.audio.transcriptions.create({ file: await toFile(mp3, 'speech.mp3'), model: 'wav-stt' })
    expect(text.text).toBe(fake.transcript)
    const got = fake.requests.at(-1)!.file!
    expect(got.name).toBe('speech.wav')
    const probe = await ffprobe(got.bytes)
    expect([probe.codec, probe.sampleRate, probe.channels]).toEqual(['pcm_s16le', 16000, 1])
    const original = await ffprobe(wav)
    expect(Math.abs(probe.durationSeconds - original.durationSeconds) / original.durationSeconds).toBeLessThan(0.05)
  })

  test('an upload over the provider’s limit is re-encoded to 16 kHz mono Opus and fits', async () => {
    const long = await ffmpeg(await speak(`${SENTENCE} ${SENTENCE} ${SENTENCE}`), 'wav', ['-ar', '48000', '-ac', '2'])
    expect(long.length).toBeGreaterThan(150_000)
    const { data, response } = await client.audio.transcriptions.create({ file: await toFile(long, 'long.wav'), model: 'small-stt' }).withResponse()
    expect(data.text).toBe(fake.transcript)
    const got = fake.requests.at(-1)!.file!
    expect(got.bytes.length).toBeLessThanOrEqual(150_000)
    expect(got.name).toBe('long.ogg')
    const probe = await ffprobe(got.bytes)
    expect([probe.codec, probe.channels]).toEqual(['opus', 1])
    const seconds = Number(response.headers.get('x-conduit-audio-seconds'))
    expect(Math.abs(probe.durationSeconds - seconds) / seconds).toBeLessThan(0.05)
  })
})

describe('without ffmpeg', () => {
  test('one start-up line; no conversion needed still works; a conversion gets 501 naming ffmpeg', async () => {
    const logs = { level: 'info', lines: [] as string[] }
    const bare = await startGateway(
      { plugins: [{ use: 'builtin:audio-transcode', config: { ffmpeg_path: '/nonexistent/ffmpeg', ffprobe_path: '/nonexistent/ffprobe' } }] },
      logs,
    )
    try {
      const key = await setup(bare)
      await bare.admin('POST', '/providers', { name: 'openai', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
      await bare.admin('POST', '/models', { name: 'tts', targets: [{ provider: 'openai', model: 'tts-1' }] })
      expect(logs.lines.filter((l) => l.includes('ffmpeg not found')).length).toBe(1)
      const c = new OpenAI({ apiKey: key, baseURL: bare.baseURL, maxRetries: 0 })
      const plain = await c.audio.speech.create({ model: 'tts', voice: 'alloy', input: 'Fine without ffmpeg.' })
      expect((await ffprobe(new Uint8Array(await plain.arrayBuffer()))).codec).toBe('mp3')
      const before = fake.requests.length
      const refused = await fetch(`${bare.baseURL}/audio/speech`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'pcm-tts', voice: 'alloy', input: 'Needs mp3.', response_format: 'mp3' }),
      })
      const body = (await refused.json()) as any
      expect(refused.status).toBe(501)
      expect(body.error.code).toBe('transcoding_unavailable')
      expect(body.error.message).toContain('ffmpeg')
      expect(fake.requests.length).toBe(before) // refused before the provider was called
    } finally {
      await bare.close()
    }
  })
})
