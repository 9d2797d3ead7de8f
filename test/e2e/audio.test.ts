import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI, { toFile } from 'openai'
import { ffmpeg, ffmpegFile, ffprobe, speak } from '../helpers/audio.ts'
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
  // A server that answers transcripts in JSON only: other formats are the gateway's to render.
  await gw.admin('POST', '/providers', { name: 'json-only', type: 'openai-compatible', base_url: fake.url, api_key: 'sk-upstream-test', options: { audio: { transcript_formats: ['json'] } } })
  await gw.admin('POST', '/models', { name: 'json-whisper', targets: [{ provider: 'json-only', model: 'whisper-1' }] })
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
  test('json through OpenAI: the transcript, the measured seconds; billed the seconds whisper-1 reports, per minute', async () => {
    const { data, response } = await client.audio.transcriptions.create({ file: await toFile(wav, 'speech.wav'), model: 'whisper' }).withResponse()
    expect(data.text).toBe(fake.transcript)
    validateSchema('CreateTranscriptionResponseJson', data)
    const seconds = Number(response.headers.get('x-conduit-audio-seconds'))
    expect(seconds).toBeCloseTo((await ffprobe(wav)).durationSeconds, 1)
    const upstream = fake.requests.at(-1)!
    expect(upstream.fields.model).toBe('whisper-1')
    expect(upstream.file!.bytes).toEqual(wav)
    const row = await ledger(response.headers.get('x-request-id')!)
    // What the provider decoded and bills (whole seconds), not what the file's headers say.
    const billed = Math.ceil((await ffmpeg(wav, 's16le', ['-ac', '1', '-ar', '16000'])).length / 32000)
    expect(Number(row.audio_ms)).toBe(billed * 1000)
    // whisper-1: $0.006 a minute.
    expect(Number(row.cost_micros)).toBe(Math.ceil((billed * 0.36 * 1e6) / 3600 - 1e-9))
  })

  test('an MP3 whose header states 3 frames (a client editing it to pay less) is billed its audio', async () => {
    const forged = await ffmpegFile(wav, 'mp3', ['-q:a', '5'])
    const xing = Buffer.from(forged).indexOf('Xing')
    new DataView(forged.buffer, forged.byteOffset).setUint32(xing + 8, 3)
    expect((await ffprobe(forged)).durationSeconds).toBeLessThan(0.1)
    const decoded = (await ffmpeg(forged, 's16le', ['-ac', '1', '-ar', '16000'])).length / 32000
    // Answered by the provider: the seconds it reports. Rendered by the provider as srt (no usage): the frames counted.
    for (const response_format of ['json', 'srt'] as const) {
      const { response } = await client.audio.transcriptions.create({ file: await toFile(forged, 'forged.mp3'), model: 'whisper', response_format }).withResponse()
      // Frames counted include the encoder's delay and padding, which a decoder trims (about 50 ms here).
      const measured = Number(response.headers.get('x-conduit-audio-seconds'))
      expect(Math.abs(measured - decoded)).toBeLessThan(0.1)
      const row = await ledger(response.headers.get('x-request-id')!)
      expect(Number(row.audio_ms)).toBe(response_format === 'json' ? Math.ceil(decoded) * 1000 : Math.round(measured * 1000))
    }
  })
})

const post = (path: string, form: FormData | string, headers: Record<string, string> = {}, apiKey = key) =>
  fetch(`${gw.baseURL}${path}`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}`, ...headers }, body: form })
const form = (fields: Record<string, string>, file?: { bytes: Uint8Array; name: string }) => {
  const f = new FormData()
  for (const [k, v] of Object.entries(fields)) f.append(k, v)
  if (file) f.append('file', new Blob([file.bytes]), file.name)
  return f
}

describe('transcriptions: every response_format, as OpenAI answers it', () => {
  test('text, srt and vtt are text/plain; verbose_json is spec-valid', async () => {
    const file = async () => toFile(mp3, 'speech.mp3')
    const text = await client.audio.transcriptions.create({ file: await file(), model: 'whisper', response_format: 'text' })
    expect(text as unknown as string).toBe(`${fake.transcript}\n`)
    const srt = await client.audio.transcriptions.create({ file: await file(), model: 'whisper', response_format: 'srt' })
    expect(srt as unknown as string).toMatch(/^1\n00:00:00,000 --> 00:00:0\d,\d{3}\nthe quick brown fox/)
    const vtt = await client.audio.transcriptions.create({ file: await file(), model: 'whisper', response_format: 'vtt' })
    expect(vtt as unknown as string).toStartWith('WEBVTT\n\n00:00:00.000 --> ')
    const raw = await post('/audio/transcriptions', form({ model: 'whisper', response_format: 'srt' }, { bytes: mp3, name: 'a.mp3' }))
    expect(raw.headers.get('content-type')).toStartWith('text/plain')
    const verbose = await client.audio.transcriptions.create({ file: await file(), model: 'whisper', response_format: 'verbose_json', timestamp_granularities: ['word'] })
    validateSchema('CreateTranscriptionResponseVerboseJson', verbose)
    expect(verbose.words!.length).toBe(fake.transcript.split(' ').length)
    // The SDK sends arrays as name[]; the upstream got it the same way.
    expect(fake.requests.at(-1)!.fields['timestamp_granularities[]']).toBe('word')
  })

  test('the file goes upstream named for what its bytes are: a WAV without an extension, Opus named .opus, MP3 named .wav', async () => {
    const opus = await ffmpeg(wav, 'ogg', ['-c:a', 'libopus'])
    for (const [bytes, name, sent] of [[wav, 'recording', 'recording.wav'], [opus, 'note.opus', 'note.ogg'], [mp3, 'a.wav', 'a.mp3'], [mp3, 'b.mpga', 'b.mpga']] as const) {
      const res = await post('/audio/transcriptions', form({ model: 'whisper' }, { bytes, name }))
      expect(res.status).toBe(200)
      expect(fake.requests.at(-1)!.file!.name).toBe(sent)
    }
  })

  test('rendered by the gateway from a provider that answers JSON only: cues and duration span the measured audio', async () => {
    const ask = async (fields: Record<string, string>) => {
      const res = await post('/audio/transcriptions', form({ model: 'json-whisper', ...fields }, { bytes: mp3, name: 'a.mp3' }))
      expect(res.status).toBe(200)
      return { res, seconds: Number(res.headers.get('x-conduit-audio-seconds')) }
    }
    const srt = await ask({ response_format: 'srt' })
    const end = (await srt.res.text()).split('\n')[1]!.split(' --> ')[1]!
    const [h, m, rest] = end.split(':')
    expect(Number(h) * 3600 + Number(m) * 60 + Number(rest!.replace(',', '.'))).toBeCloseTo(srt.seconds, 2)
    expect(srt.seconds).toBeGreaterThan(1)
    const vtt = await ask({ response_format: 'vtt' })
    expect(await vtt.res.text()).toContain(` --> 00:00:0${Math.floor(vtt.seconds)}.`)
    const verbose = await ask({ response_format: 'verbose_json', 'timestamp_granularities[]': 'word', language: 'en' })
    const body = (await verbose.res.json()) as any
    validateSchema('CreateTranscriptionResponseVerboseJson', body)
    expect(body.duration).toBeCloseTo(verbose.seconds, 3)
    expect(body.segments[0].end).toBeCloseTo(verbose.seconds, 3)
    expect(body.language).toBe('en') // the one the client named, not one made up
    // No words from this provider: said so, not left out silently.
    expect(body.words).toBeUndefined()
    expect(verbose.res.headers.get('x-conduit-dropped-params')).toContain('timestamp_granularities')
  })

  test('stream: true relays the provider’s transcript.text events; usage in tokens is billed at the audio price', async () => {
    const stream = await client.audio.transcriptions.create({ file: await toFile(wav, 'speech.wav'), model: 'transcribe', stream: true })
    const events: any[] = []
    for await (const event of stream) events.push(event)
    expect(events.at(-1)!.type).toBe('transcript.text.done')
    expect(events.slice(0, -1).every((e) => e.type === 'transcript.text.delta')).toBe(true)
    for (const e of events) validateSchema(e.type === 'transcript.text.done' ? 'TranscriptTextDoneEvent' : 'TranscriptTextDeltaEvent', e)
    expect(events.slice(0, -1).map((e) => e.delta).join('')).toBe(fake.transcript)
    const usage = events.at(-1)!.usage
    await gw.gateway.ledger.flush()
    const [row] = await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE model = 'transcribe' ORDER BY created_at DESC LIMIT 1`
    expect(Number(row.prompt_tokens)).toBe(usage.input_tokens)
    expect(Number(row.completion_tokens)).toBe(usage.output_tokens)
    // gpt-4o-transcribe: text in $2.5/M, audio in $6/M, out $10/M.
    const audio = usage.input_token_details.audio_tokens
    expect(Number(row.cost_micros)).toBe(Math.ceil((usage.input_tokens - audio) * 2.5 + audio * 6 + usage.output_tokens * 10 - 1e-9))
  })

  test('text is rendered from the provider’s JSON, whose usage is billed: a text answer carries none', async () => {
    const text = await client.audio.transcriptions.create({ file: await toFile(wav, 'speech.wav'), model: 'transcribe', response_format: 'text' })
    expect(text as unknown as string).toBe(`${fake.transcript}\n`)
    expect(fake.requests.at(-1)!.fields.response_format).toBe('json')
    await gw.gateway.ledger.flush()
    const [row] = await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE model = 'transcribe' ORDER BY created_at DESC LIMIT 1`
    // The fake's count: 10 audio tokens a second and 3 of text in, the words and 2 out.
    expect(Number(row.estimated)).toBe(0)
    expect(Number(row.completion_tokens)).toBe(fake.transcript.split(' ').length + 2)
  })

  test('stream: true on a model that cannot stream (whisper-1) gets one delta and the done event', async () => {
    const stream = await client.audio.transcriptions.create({ file: await toFile(wav, 'speech.wav'), model: 'whisper', stream: true })
    const events: any[] = []
    for await (const event of stream) events.push(event)
    expect(events.map((e) => e.type)).toEqual(['transcript.text.delta', 'transcript.text.done'])
    expect(events[0].delta).toBe(fake.transcript)
    expect(events[1].text).toBe(fake.transcript)
  })

  test('translations through OpenAI and Azure (deployment path, api-key, api-version)', async () => {
    const translated = await client.audio.translations.create({ file: await toFile(wav, 'speech.wav'), model: 'whisper', response_format: 'verbose_json' })
    expect(translated.text).toBe(fake.transcript)
    expect((translated as any).task).toBe('translate')
    const viaAzure = await client.audio.translations.create({ file: await toFile(wav, 'speech.wav'), model: 'azure-whisper' })
    expect(viaAzure.text).toBe(fake.transcript)
    const upstream = fake.requests.at(-1)!
    expect(upstream.path).toBe('/openai/deployments/my-whisper/audio/translations?api-version=2024-10-21')
    expect(upstream.headers['api-key']).toBe('sk-upstream-test')
    expect(upstream.headers.authorization).toBeUndefined()
  })

  test('Azure transcription in srt', async () => {
    const srt = await client.audio.transcriptions.create({ file: await toFile(mp3, 'speech.mp3'), model: 'azure-whisper', response_format: 'srt' })
    expect(srt as unknown as string).toContain(fake.transcript)
  })
})

describe('bad input: a clear error in our envelope, nothing sent upstream', () => {
  const expectError = async (res: Response, status: number, param: string | null, code?: string) => {
    const body = (await res.json()) as any
    expect(res.status).toBe(status)
    expect(body.error.param ?? null).toBe(param)
    if (code) expect(body.error.code).toBe(code)
    return body
  }

  test('no file, not audio, unknown response_format, bad temperature, not multipart', async () => {
    const before = fake.requests.length
    await expectError(await post('/audio/transcriptions', form({ model: 'whisper' })), 400, 'file', 'missing_required_parameter')
    await expectError(await post('/audio/transcriptions', form({}, { bytes: wav, name: 'a.wav' })), 400, 'model', 'missing_required_parameter')
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...new Array(200).fill(7)])
    const notAudio = await expectError(await post('/audio/transcriptions', form({ model: 'whisper' }, { bytes: png, name: 'speech.mp3' })), 400, 'file', 'invalid_audio_file')
    expect(notAudio.error.message).toContain('not audio')
    await expectError(await post('/audio/transcriptions', form({ model: 'whisper', response_format: 'docx' }, { bytes: wav, name: 'a.wav' })), 400, 'response_format')
    await expectError(await post('/audio/transcriptions', form({ model: 'whisper', temperature: '7' }, { bytes: wav, name: 'a.wav' })), 400, 'temperature')
    await expectError(await post('/audio/transcriptions', JSON.stringify({ model: 'whisper' }), { 'content-type': 'application/json' }), 400, null, 'invalid_content_type')
    await expectError(await post('/audio/transcriptions', form({ model: 'nope' }, { bytes: wav, name: 'a.wav' })), 404, 'model', 'model_not_found')
    expect(fake.requests.length).toBe(before)
  })

  test('speed out of range, empty or too long input, unknown format, voice missing', async () => {
    const before = fake.requests.length
    const speech = (body: Record<string, unknown>) => post('/audio/speech', JSON.stringify({ model: 'tts', voice: 'alloy', input: 'hi', ...body }), { 'content-type': 'application/json' })
    await expectError(await speech({ speed: 5 }), 400, 'speed')
    await expectError(await speech({ speed: 0.1 }), 400, 'speed')
    await expectError(await speech({ input: '' }), 400, 'input')
    await expectError(await speech({ input: 'x'.repeat(4097) }), 400, 'input')
    await expectError(await speech({ input: '😀'.repeat(4097) }), 400, 'input')
    await expectError(await speech({ input: 'x'.repeat(8193) }), 400, 'input')
    await expectError(await speech({ response_format: 'ogg' }), 400, 'response_format')
    await expectError(await speech({ voice: undefined }), 400, 'voice', 'missing_required_parameter')
    expect(fake.requests.length).toBe(before)
    // 4,096 characters, as OpenAI counts them: emoji are one each (two UTF-16 units).
    const emoji = await speech({ input: '😀'.repeat(4096) })
    expect(emoji.status).toBe(200)
    await emoji.arrayBuffer()
  })

  test('an upload over the limit is a 413, read no further', async () => {
    const small = await startGateway({ audioMaxUploadBytes: 64 * 1024 })
    try {
      await small.admin('POST', '/providers', { name: 'p', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
      await small.admin('POST', '/models', { name: 'whisper', targets: [{ provider: 'p', model: 'whisper-1' }] })
      const k = (await small.admin('POST', '/keys', { name: 'k' })).key
      const big = new Uint8Array(200 * 1024)
      big.set(wav.subarray(0, 44))
      const res = await fetch(`${small.baseURL}/audio/transcriptions`, { method: 'POST', headers: { authorization: `Bearer ${k}` }, body: form({ model: 'whisper' }, { bytes: big, name: 'a.wav' }) })
      expect(res.status).toBe(413)
      expect(((await res.json()) as any).error.code).toBe('file_too_large')
    } finally {
      await small.close()
    }
  })

  test('a key without the audio endpoint is refused; with it, allowed', async () => {
    const chatOnly = (await gw.admin('POST', '/keys', { name: 'chat-only', allowed_endpoints: ['chat'] })).key
    await expectError(await post('/audio/transcriptions', form({ model: 'whisper' }, { bytes: wav, name: 'a.wav' }), {}, chatOnly), 403, null, 'endpoint_not_allowed')
    const audioKey = (await gw.admin('POST', '/keys', { name: 'audio-only', allowed_endpoints: ['audio'] })).key
    expect((await post('/audio/transcriptions', form({ model: 'whisper' }, { bytes: wav, name: 'a.wav' }), {}, audioKey)).status).toBe(200)
  })

  test('upstream errors: our credentials refused → 502; a 429 → 429 in our envelope', async () => {
    await gw.admin('POST', '/providers', { name: 'bad-key', type: 'openai', base_url: fake.url, api_key: 'sk-wrong' })
    await gw.admin('POST', '/models', { name: 'bad-whisper', targets: [{ provider: 'bad-key', model: 'whisper-1' }] })
    const refused = await expectError(await post('/audio/transcriptions', form({ model: 'bad-whisper' }, { bytes: wav, name: 'a.wav' })), 502, null, 'upstream_auth_failed')
    expect(refused.error.message).not.toContain('sk-wrong')
    fake.failNext(400, 'Invalid language code.')
    await expectError(await post('/audio/transcriptions', form({ model: 'whisper', language: 'xx' }, { bytes: wav, name: 'a.wav' })), 400, null)
  })
})

describe('routing: the upload is replayable', () => {
  test('a 503 from the first target falls back to the second with the same bytes', async () => {
    await gw.admin('POST', '/models', {
      name: 'whisper-ha',
      targets: [
        { provider: 'openai-audio', model: 'whisper-1', priority: 1 },
        { provider: 'azure-audio', model: 'my-whisper', priority: 0 },
      ],
    })
    const big = await ffmpeg(await speak(`${SENTENCE} ${SENTENCE} ${SENTENCE} ${SENTENCE}`), 'wav', ['-ar', '48000', '-ac', '2'])
    expect(big.length).toBeGreaterThan(1024 * 1024) // past the in-memory threshold: spooled to disk
    fake.failNext(503)
    const before = fake.requests.length
    const { data, response } = await client.audio.transcriptions.create({ file: await toFile(big, 'long.wav'), model: 'whisper-ha' }).withResponse()
    expect(data.text).toBe(fake.transcript)
    expect(response.headers.get('x-conduit-attempts')).toBe('2')
    const [first, second] = fake.requests.slice(before)
    expect(first!.path).toStartWith('/v1/audio/transcriptions')
    expect(second!.path).toStartWith('/openai/deployments/my-whisper/')
    expect(second!.file!.bytes).toEqual(big)
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

  test('every format the provider makes, verified by ffprobe; pcm says its rate', async () => {
    const codecs: Record<string, string> = { mp3: 'mp3', opus: 'opus', aac: 'aac', flac: 'flac', wav: 'pcm_s16le' }
    for (const [format, codec] of Object.entries(codecs)) {
      const res = await client.audio.speech.create({ model: 'tts', voice: 'nova', input: SENTENCE, response_format: format as any })
      const probe = await ffprobe(new Uint8Array(await res.arrayBuffer()))
      expect(probe.codec, format).toBe(codec)
      expect(probe.durationSeconds, format).toBeGreaterThan(1)
    }
    const pcm = await client.audio.speech.create({ model: 'tts', voice: 'nova', input: SENTENCE, response_format: 'pcm' })
    expect(pcm.headers.get('content-type')).toBe('audio/pcm')
    expect(pcm.headers.get('x-conduit-audio-sample-rate')).toBe('24000')
    const bytes = new Uint8Array(await pcm.arrayBuffer())
    // Raw PCM has no header: ffmpeg reads it as 24 kHz mono s16le and must find the same speech as in mp3.
    const asWav = await ffprobe(await ffmpeg(bytes, 'wav', [], ['-f', 's16le', '-ar', '24000', '-ac', '1']))
    const asMp3 = await ffprobe(new Uint8Array(await (await client.audio.speech.create({ model: 'tts', voice: 'nova', input: SENTENCE })).arrayBuffer()))
    expect(Math.abs(asWav.durationSeconds - asMp3.durationSeconds) / asMp3.durationSeconds).toBeLessThan(0.05)
  }, 20_000)

  test('stream_format sse: speech.audio.delta events then done with usage; the deltas decode to the audio', async () => {
    const res = await client.audio.speech.create({ model: 'mini-tts', voice: 'coral', input: SENTENCE, response_format: 'wav', stream_format: 'sse' })
    expect(res.headers.get('content-type')).toStartWith('text/event-stream')
    const text = await res.text()
    const events = text.split('\n\n').filter(Boolean).map((block) => JSON.parse(block.replace(/^data: /, '')))
    for (const e of events) validateSchema(e.type === 'speech.audio.done' ? 'SpeechAudioDoneEvent' : 'SpeechAudioDeltaEvent', e)
    expect(events.at(-1)!.type).toBe('speech.audio.done')
    expect(events.at(-1)!.usage.input_tokens).toBeGreaterThan(0)
    const audio = Buffer.concat(events.slice(0, -1).map((e) => Buffer.from(e.audio, 'base64')))
    expect((await ffprobe(audio)).codec).toBe('pcm_s16le')
  })

  test('WAV and MP3 speech is measured, not guessed from its characters: the tokens follow the audio’s length', async () => {
    for (const format of ['wav', 'mp3'] as const) {
      const res = await client.audio.speech.create({ model: 'mini-tts', voice: 'coral', input: SENTENCE, response_format: format })
      const seconds = (await ffprobe(new Uint8Array(await res.arrayBuffer()))).durationSeconds
      const row = await ledger(res.headers.get('x-request-id')!)
      // gpt-4o-mini-tts: about 1,250 audio tokens a minute (SPEECH_TOKENS_PER_SECOND).
      expect([format, Math.abs(Number(row.completion_tokens) - (seconds * 1250) / 60) <= 1]).toEqual([format, true])
    }
  })

  test('/v1/audio/speech/stream: bytes by default, SSE when the client accepts text/event-stream', async () => {
    const body = JSON.stringify({ model: 'tts', voice: 'alloy', input: 'Hello there.', response_format: 'mp3' })
    const bytes = await post('/audio/speech/stream', body, { 'content-type': 'application/json' })
    expect(bytes.headers.get('content-type')).toBe('audio/mpeg')
    expect((await ffprobe(new Uint8Array(await bytes.arrayBuffer()))).codec).toBe('mp3')
    const sse = await post('/audio/speech/stream', body, { 'content-type': 'application/json', accept: 'text/event-stream' })
    expect(sse.headers.get('content-type')).toStartWith('text/event-stream')
    expect(await sse.text()).toContain('"type":"speech.audio.done"')
  })

  test('Azure speech: deployment path, api-key', async () => {
    const res = await client.audio.speech.create({ model: 'azure-tts', voice: 'alloy', input: 'Hello.' })
    expect((await ffprobe(new Uint8Array(await res.arrayBuffer()))).codec).toBe('mp3')
    expect(fake.requests.at(-1)!.path).toBe('/openai/deployments/my-tts/audio/speech?api-version=2024-10-21')
  })

  test('a client that leaves mid-speech stops the upstream within a second; its characters are billed', async () => {
    fake.gate.hold()
    const controller = new AbortController()
    const input = 'This sentence is cut off before the end.'
    const res = await fetch(`${gw.baseURL}/audio/speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts', voice: 'alloy', input }),
      signal: controller.signal,
    })
    const requestId = res.headers.get('x-request-id')!
    await res.body!.getReader().read()
    const record = fake.speeches.at(-1)!
    controller.abort()
    const deadline = Date.now() + 1000
    while (!record.aborted && Date.now() < deadline) await Bun.sleep(20)
    fake.gate.release()
    expect(record.aborted).toBe(true)
    expect(record.done).toBe(false)
    let row: any
    for (let i = 0; i < 50 && !row; i++) row = await ledger(requestId).catch(() => null)
    expect(Number(row.aborted)).toBe(1)
    expect(Number(row.characters)).toBe(input.length)
    expect(Number(row.cost_micros)).toBe(input.length * 15) // tts-1: $15 per million characters
  })
})

describe('money and limits', () => {
  test('a client that leaves before the answer is billed the whole request: its upload\'s seconds, its speech\'s characters', async () => {
    const { id, key: leaving } = await gw.admin('POST', '/keys', { name: 'leaves-early' })
    const rows = async () => {
      await gw.gateway.ledger.flush()
      return (await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE key_id = ${id} ORDER BY created_at`) as any[]
    }
    const leave = async (path: string, body: FormData | string, headers: Record<string, string> = {}) => {
      fake.headersGate.hold()
      const before = fake.requests.length
      const controller = new AbortController()
      const sent = fetch(`${gw.baseURL}${path}`, { method: 'POST', headers: { authorization: `Bearer ${leaving}`, ...headers }, body, signal: controller.signal }).catch(() => null)
      // The provider has the request, and is still working on it.
      while (fake.requests.length === before) await Bun.sleep(10)
      controller.abort()
      await sent
      const count = (await rows()).length
      for (let i = 0; i < 50 && (await rows()).length === count; i++) await Bun.sleep(20)
      fake.headersGate.release()
      return (await rows()).at(-1)
    }
    const answered = await post('/audio/transcriptions', form({ model: 'whisper' }, { bytes: wav, name: 'a.wav' }), {}, leaving)
    expect(answered.status).toBe(200)
    const whole = (await rows()).at(-1)
    const left = await leave('/audio/transcriptions', form({ model: 'whisper' }, { bytes: wav, name: 'a.wav' }))
    // Not answered, so not the provider's count: the seconds measured.
    const measured = Number(answered.headers.get('x-conduit-audio-seconds'))
    expect(left).toMatchObject({ status: 499, aborted: 1, audio_ms: Math.round(measured * 1000), cost_micros: Math.ceil((measured * 0.36 * 1e6) / 3600 - 1e-9) })
    expect(Number(whole.audio_ms)).toBe(Math.ceil(measured) * 1000)
    // The provider's seconds are its usage, not an estimate; a request left before its answer is estimated.
    expect([Number(whole.estimated), Number(left.estimated)]).toEqual([0, 1])
    expect(Number(left.cost_micros)).toBeGreaterThan(0)
    const input = 'Nobody stayed to hear this sentence.'
    const unheard = await leave('/audio/speech', JSON.stringify({ model: 'tts', voice: 'alloy', input }), { 'content-type': 'application/json' })
    expect(unheard).toMatchObject({ status: 499, aborted: 1, characters: input.length, cost_micros: input.length * 15 })
  })

  test('a budget reserves the worst case in seconds and characters: refused before the provider is called, allowed within it', async () => {
    const seconds = (await ffprobe(wav)).durationSeconds
    // whisper-1 at $0.36 an hour: this file costs about $0.0002; tts-1 at $15 per million characters.
    const poor = (await gw.admin('POST', '/keys', { name: 'poor', budget: { usd: 0.0001, period: 'total' } })).key
    const before = fake.requests.length
    const refused = await post('/audio/transcriptions', form({ model: 'whisper' }, { bytes: wav, name: 'a.wav' }), {}, poor)
    const body = (await refused.json()) as any
    expect(refused.status).toBe(429)
    expect(body.error.code).toBe('insufficient_quota')
    // The worst case: whole seconds rounded up, as whisper-1 bills them, and one more for a provider's decoding.
    expect(body.error.message).toContain(`$${(((Math.ceil(seconds) + 1) * 0.36) / 3600).toFixed(6)}`)
    const speech = await post('/audio/speech', JSON.stringify({ model: 'tts', voice: 'alloy', input: 'x'.repeat(100) }), { 'content-type': 'application/json' }, poor)
    expect(speech.status).toBe(429) // 100 characters: $0.0015
    expect(fake.requests.length).toBe(before)
    const rich = (await gw.admin('POST', '/keys', { name: 'rich', budget: { usd: 1, period: 'total' } })).key
    expect((await post('/audio/transcriptions', form({ model: 'whisper' }, { bytes: wav, name: 'a.wav' }), {}, rich)).status).toBe(200)
    await gw.gateway.ledger.flush()
    const usage = await (await fetch(`${gw.baseURL}/conduit/usage`, { headers: { authorization: `Bearer ${rich}` } })).json() as any
    expect(usage.total.requests).toBe(1)
    expect(usage.total.audio_seconds).toBe(Math.ceil(seconds)) // as whisper-1 reports it
  })

  test('concurrent transcriptions cannot overspend a budget by the seconds the provider rounds up', async () => {
    const seconds = (await ffprobe(wav)).durationSeconds
    expect(Number.isInteger(seconds)).toBe(false)
    // Room for two requests at the seconds measured, for fewer at the whole seconds whisper-1 bills ($0.36 an hour: 100 µ$ a second).
    const budget = (Math.ceil(2 * seconds * 100) + 2) / 1e6
    const { id, key } = await gw.admin('POST', '/keys', { name: 'rounding', budget: { usd: budget, period: 'total' } })
    const answers = await Promise.all(Array.from({ length: 4 }, () => post('/audio/transcriptions', form({ model: 'whisper' }, { bytes: wav, name: 'a.wav' }), {}, key)))
    expect(answers.some((r) => r.status === 200)).toBe(true)
    await gw.gateway.ledger.flush()
    const { total } = await gw.admin('GET', `/usage?key=${id}`)
    expect(Number(total.cost_usd)).toBeLessThanOrEqual(budget)
  })

  test('a price with nothing for what the request used is flagged unpriced, not recorded as a silent $0', async () => {
    // whisper-1 is sold by the hour of transcribed audio: speech from it (a compatible server may make some) costs
    // nothing by that price; tts-1 is sold by the character.
    const speak = (model: string) => post('/audio/speech', JSON.stringify({ model, voice: 'alloy', input: 'Priced or not.' }), { 'content-type': 'application/json' })
    for (const [model, unpriced] of [['whisper', 1], ['tts', 0]] as const) {
      const res = await speak(model)
      await res.arrayBuffer()
      expect(res.status).toBe(200)
      const row = await ledger(res.headers.get('x-request-id')!)
      expect(row).toMatchObject({ unpriced })
      expect(Number(row.cost_micros) > 0).toBe(!unpriced)
    }
  })

  test('rpm and max_parallel count audio requests like any other', async () => {
    const limited = (await gw.admin('POST', '/keys', { name: 'rpm-1', rpm: 1 })).key
    const speak1 = () => post('/audio/speech', JSON.stringify({ model: 'tts', voice: 'alloy', input: 'One.' }), { 'content-type': 'application/json' }, limited)
    const first = await speak1()
    await first.arrayBuffer()
    expect(first.status).toBe(200)
    const second = await speak1()
    expect(second.status).toBe(429)
    expect(second.headers.get('retry-after')).not.toBeNull()
  })
})
