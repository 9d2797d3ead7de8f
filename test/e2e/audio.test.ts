import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI, { toFile } from 'openai'
import { ffmpeg, ffprobe, speak } from '../helpers/audio.ts'
import { startFakeOpenAIAudio, type FakeOpenAIAudio } from '../helpers/fake-openai-audio.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'

/**
 * Audio through the gateway with the official `openai` SDK, in front of a fake that speaks OpenAI's (and Azure's)
 * audio wire formats. Media is checked with ffprobe, never by our own headers.
 */
let fake: FakeOpenAIAudio
let gw: TestGateway
let client: OpenAI
let key: string
let wav: Uint8Array
let mp3: Uint8Array

const SENTENCE = 'Conduit relays audio as it is produced.'

beforeAll(async () => {
  fake = startFakeOpenAIAudio()
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'openai-audio', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'azure-audio', type: 'azure', base_url: fake.origin, api_key: 'sk-upstream-test', options: { api_version: '2024-10-21' } })
  await gw.admin('POST', '/models', { name: 'whisper', targets: [{ provider: 'openai-audio', model: 'whisper-1' }] })
  await gw.admin('POST', '/models', { name: 'transcribe', targets: [{ provider: 'openai-audio', model: 'gpt-4o-transcribe' }] })
  await gw.admin('POST', '/models', { name: 'tts', targets: [{ provider: 'openai-audio', model: 'tts-1' }] })
  await gw.admin('POST', '/models', { name: 'mini-tts', targets: [{ provider: 'openai-audio', model: 'gpt-4o-mini-tts' }] })
  await gw.admin('POST', '/models', { name: 'azure-whisper', targets: [{ provider: 'azure-audio', model: 'my-whisper' }] })
  await gw.admin('POST', '/models', { name: 'azure-tts', targets: [{ provider: 'azure-audio', model: 'my-tts' }] })
  key = (await gw.admin('POST', '/keys', { name: 'audio' })).key
  client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
  wav = await speak(SENTENCE)
  mp3 = await ffmpeg(wav, 'mp3')
})

afterAll(async () => {
  await gw.close()
  fake.close()
})

const ledger = async (requestId: string) => {
  await gw.gateway.ledger.flush()
  const rows = await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE request_id = ${requestId}`
  return rows[0]
}

describe('transcriptions', () => {
  test('json through OpenAI: the transcript, the measured seconds, billed per minute', async () => {
    const { data, response } = await client.audio.transcriptions.create({ file: await toFile(wav, 'speech.wav'), model: 'whisper' }).withResponse()
    expect(data.text).toBe(fake.transcript)
    validateSchema('CreateTranscriptionResponseJson', data)
    const seconds = Number(response.headers.get('x-conduit-audio-seconds'))
    expect(seconds).toBeCloseTo((await ffprobe(wav)).durationSeconds, 1)
    const upstream = fake.requests.at(-1)!
    expect(upstream.fields.model).toBe('whisper-1')
    expect(upstream.file!.bytes).toEqual(wav)
    const row = await ledger(response.headers.get('x-request-id')!)
    expect(Number(row.audio_ms)).toBe(Math.round(seconds * 1000))
    // whisper-1: $0.006 a minute.
    expect(Number(row.cost_micros)).toBe(Math.ceil((seconds * 0.36 * 1e6) / 3600 - 1e-9))
  })
})

describe('speech', () => {
  test('mp3 streamed as produced: bytes arrive before the upstream has finished', async () => {
    fake.gate.hold()
    const response = await client.audio.speech.create({ model: 'tts', voice: 'alloy', input: SENTENCE })
    expect(response.headers.get('content-type')).toBe('audio/mpeg')
    const reader = response.body!.getReader()
    const first = await reader.read()
    expect(first.done).toBe(false)
    expect(fake.speeches.at(-1)!.done).toBe(false)
    fake.gate.release()
    const parts = [first.value!]
    for (;;) {
      const next = await reader.read()
      if (next.done) break
      parts.push(next.value)
    }
    const probe = await ffprobe(Buffer.concat(parts))
    expect(probe.codec).toBe('mp3')
  })
})
