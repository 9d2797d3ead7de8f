import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { AudioUpload, UpstreamRequest } from '../../src/plugin-sdk/index.ts'
import { parseError } from '../../src/providers/deepgram/errors.ts'
import plugin from '../../src/providers/deepgram/index.ts'
import { buildSpeechRequest } from '../../src/providers/deepgram/speech.ts'
import { buildTranscriptionRequest, parseTranscript } from '../../src/providers/deepgram/transcription.ts'
import { upstreamError as readUpstreamError } from '../../src/core/upstream.ts'
import { attemptFor, expectGatewayError, registeredAdapter, sendUpstream } from '../helpers/adapter.ts'
import { ffmpeg, ffprobe, speak } from '../helpers/audio.ts'
import { FAKE_DEEPGRAM_KEY, FAKE_DG_TRANSCRIPT, startFakeDeepgram, type FakeDeepgram } from '../helpers/fake-deepgram.ts'

const attempt = (provider: Record<string, any> = {}, model = 'aura-2-thalia-en') =>
  attemptFor({ name: 'dg', type: 'deepgram', apiKey: 'dg-k', options: { voices: { alloy: 'aura-2-zeus-en' } }, ...provider }, model)

const speech = (extra: Record<string, any> = {}) => ({ model: 'virtual-tts', input: 'Hello there.', voice: 'alloy', response_format: 'mp3', ...extra })

function translateSpeech(body: Record<string, any>, provider: Record<string, any> = {}, model?: string) {
  const ctx = attempt(provider, model)
  const upstream = buildSpeechRequest(body, ctx)
  const url = new URL(upstream.url)
  return { upstream, url, query: Object.fromEntries(url.searchParams), json: JSON.parse(upstream.body as string), dropped: ctx.dropped }
}

function upload(bytes: Uint8Array, format = 'wav', contentType = 'audio/wav'): AudioUpload {
  return { blob: new Blob([bytes], { type: contentType }), filename: `audio.${format}`, format, contentType, size: bytes.length, durationSeconds: null }
}


/** The provider's error answer as the core reads it (its own reader, with this adapter's parseError). */
const upstreamError = (response: Response) => readUpstreamError(response, { parseError }, 'deepgram')

describe('plugin', () => {
  test('registers deepgram with speech and transcriptions only; every OpenAI speech format native', async () => {
    const adapter = await registeredAdapter(plugin)
    expect(plugin.name).toBe('provider-deepgram')
    expect(adapter.id).toBe('deepgram')
    expect(adapter.defaultBaseURL).toBe('https://api.deepgram.com')
    expect(adapter.translations).toBeUndefined()
    expect(adapter.chat).toBeUndefined()
    const abilities = adapter.speech!.abilities(attempt().target.provider)
    expect([...abilities.outputFormats].sort()).toEqual(['aac', 'flac', 'mp3', 'opus', 'pcm', 'wav'])
    expect(abilities.pcmSampleRate).toBe(24000)
    expect(adapter.transcriptions!.abilities(attempt().target.provider).transcriptFormats).toEqual(['json'])
    expect(adapter.transcriptions!.abilities(attempt().target.provider).maxUploadBytes).toBe(2 * 1024 ** 3)
  })
})

describe('speech request', () => {
  test('URL, Token auth, {text} body; the voice mapped to an Aura model', () => {
    const { upstream, url, query, json, dropped } = translateSpeech(speech())
    expect(url.origin + url.pathname).toBe('https://api.deepgram.com/v1/speak')
    expect(query).toEqual({ model: 'aura-2-zeus-en', encoding: 'mp3' })
    expect(upstream.headers).toEqual({ 'content-type': 'application/json', authorization: 'Token dg-k' })
    expect(json).toEqual({ text: 'Hello there.' })
    expect(dropped).toEqual([])
  })

  test('voices: mapped, an Aura model named directly, {id}; otherwise the target model', () => {
    expect(translateSpeech(speech({ voice: 'aura-2-andromeda-en' })).query.model).toBe('aura-2-andromeda-en')
    expect(translateSpeech(speech({ voice: { id: 'aura-luna-en' } })).query.model).toBe('aura-luna-en')
    expect(translateSpeech(speech({ voice: 'nova' })).query.model).toBe('aura-2-thalia-en')
    expect(translateSpeech(speech({ voice: 'alloy' }), { options: {} }, 'aura-orion-en').query.model).toBe('aura-orion-en')
  })

  test('formats → encoding, container and sample rate as Deepgram combines them', () => {
    const q = (format: string) => {
      const { model: _, ...rest } = translateSpeech(speech({ response_format: format })).query
      return rest
    }
    expect(q('mp3')).toEqual({ encoding: 'mp3' })
    expect(q('opus')).toEqual({ encoding: 'opus', container: 'ogg' })
    expect(q('aac')).toEqual({ encoding: 'aac' })
    expect(q('flac')).toEqual({ encoding: 'flac' })
    expect(q('wav')).toEqual({ encoding: 'linear16', container: 'wav', sample_rate: '24000' })
    expect(q('pcm')).toEqual({ encoding: 'linear16', container: 'none', sample_rate: '24000' })
    expectGatewayError(() => translateSpeech(speech({ response_format: 'ogg_vorbis' })), 400, 'response_format')
  })

  test('speed as a query parameter kept within 0.7–1.5; instructions dropped; base URL with /v1 accepted', () => {
    expect(translateSpeech(speech({ speed: 1.25 })).query.speed).toBe('1.25')
    expect(translateSpeech(speech({ speed: 4 })).query.speed).toBe('1.5')
    expect(translateSpeech(speech({ speed: 0.25 })).query.speed).toBe('0.7')
    expect(translateSpeech(speech({ speed: 1 })).query.speed).toBeUndefined()
    expect(translateSpeech(speech({ instructions: 'Whisper.' })).dropped).toEqual(['instructions'])
    expect(translateSpeech(speech(), { baseURL: 'https://dg.internal/v1/' }).upstream.url).toStartWith('https://dg.internal/v1/speak?')
  })
})

describe('transcription request', () => {
  test('the raw upload as the body with its MIME type; model, smart formatting, paragraphs; language detected unless given', async () => {
    const ctx = attempt({}, 'nova-3')
    const file = upload(new Uint8Array([9, 8, 7]), 'mp3', 'audio/mpeg')
    const upstream = buildTranscriptionRequest({ model: 'v', file, response_format: 'json', stream: true, prompt: 'Acme', temperature: 0 }, ctx)
    const url = new URL(upstream.url)
    expect(url.origin + url.pathname).toBe('https://api.deepgram.com/v1/listen')
    expect(Object.fromEntries(url.searchParams)).toEqual({ model: 'nova-3', smart_format: 'true', punctuate: 'true', paragraphs: 'true', detect_language: 'true' })
    expect(upstream.headers).toEqual({ 'content-type': 'audio/mpeg', authorization: 'Token dg-k' })
    // The spooled Blob itself: fetch streams it from disk.
    expect(upstream.body).toBe(file.blob)
    expect(ctx.dropped.sort()).toEqual(['prompt', 'temperature'])

    const diarized = attemptFor({ name: 'dg', type: 'deepgram', apiKey: 'k' }, 'nova-3', { model: 'v', language: 'de', response_format: 'diarized_json' })
    const withLanguage = new URL(buildTranscriptionRequest({ model: 'v', file, language: 'de', response_format: 'json' }, diarized).url)
    expect(withLanguage.searchParams.get('language')).toBe('de')
    expect(withLanguage.searchParams.get('detect_language')).toBeNull()
    expect(withLanguage.searchParams.get('diarize')).toBe('true')
  })
})

describe('transcript', () => {
  const response = (alternative: Record<string, any>, extra: Record<string, any> = {}) => ({
    metadata: { request_id: 'r', sha256: 'x', created: '2026-01-01T00:00:00Z', duration: 4.2, channels: 1, models: ['m'], model_info: {} },
    results: { channels: [{ alternatives: [alternative], detected_language: 'en', language_confidence: 0.99 }], ...extra },
  })
  const words = [
    { word: 'hello', start: 0.1, end: 0.5, confidence: 0.9, punctuated_word: 'Hello.', speaker: 0 },
    { word: 'bye', start: 2.0, end: 2.4, confidence: 0.9, punctuated_word: 'Bye!', speaker: 1 },
  ]

  test('segments from paragraph sentences with speakers; punctuated words; language, duration and usage', () => {
    const t = parseTranscript(
      response({
        transcript: 'Hello. Bye!',
        confidence: 0.9,
        words,
        paragraphs: {
          transcript: '\nSpeaker 0: Hello.\n\nSpeaker 1: Bye!',
          paragraphs: [
            { sentences: [{ text: 'Hello.', start: 0.1, end: 0.5 }], speaker: 0, num_words: 1, start: 0.1, end: 0.5 },
            { sentences: [{ text: 'Bye!', start: 2.0, end: 2.4 }], speaker: 1, num_words: 1, start: 2.0, end: 2.4 },
          ],
        },
      }),
      attempt(),
    )
    expect(t).toEqual({
      text: 'Hello. Bye!',
      language: 'english',
      duration: 4.2,
      usage: { type: 'duration', seconds: 5 },
      words: [
        { word: 'Hello.', start: 0.1, end: 0.5, speaker: 'A' },
        { word: 'Bye!', start: 2.0, end: 2.4, speaker: 'B' },
      ],
      segments: [
        { start: 0.1, end: 0.5, text: 'Hello.', speaker: 'A' },
        { start: 2.0, end: 2.4, text: 'Bye!', speaker: 'B' },
      ],
    })
  })

  test('without paragraphs: utterances, else one segment over the words', () => {
    const plain = words.map(({ speaker: _, punctuated_word: __, ...w }) => w)
    const fromUtterances = parseTranscript(response({ transcript: 'hello bye', words: plain }, { utterances: [{ start: 0.1, end: 2.4, transcript: 'hello bye', speaker: 3, channel: 0 }] }), attempt())
    expect(fromUtterances.segments).toEqual([{ start: 0.1, end: 2.4, text: 'hello bye', speaker: 'D' }])
    const fromWords = parseTranscript(response({ transcript: 'hello bye', words: plain }), attempt())
    expect(fromWords.segments).toEqual([{ start: 0.1, end: 2.4, text: 'hello bye' }])
    expect(fromWords.words![0]).toEqual({ word: 'hello', start: 0.1, end: 0.5 })
    const silent = parseTranscript(response({ transcript: '', words: [] }), attempt())
    expect([silent.text, silent.segments]).toEqual(['', []])
  })

  test('a body without a channel alternative is an upstream error', () => {
    expectGatewayError(() => parseTranscript({ request_id: 'queued' }, attempt()), 502, null, 'upstream_bad_response')
  })
})

describe('errors', () => {
  const h = new Headers()
  test('{err_code, err_msg}: the message and a snake_case code; a bad key stays 401', () => {
    const auth = parseError(401, { err_code: 'INVALID_AUTH', err_msg: 'Invalid credentials.', request_id: 'u' }, h)
    expect(auth.toJSON()).toEqual({ error: { message: 'Invalid credentials.', type: 'authentication_error', param: null, code: 'invalid_auth' } })
    const model = parseError(400, { err_code: 'Bad Request', err_msg: 'Bad Request: No such model/language/tier combination found.', request_id: 'u' }, h)
    expect([model.status, model.code, model.param]).toEqual([400, 'bad_request', 'model'])
    const audio = parseError(400, { err_code: 'Bad Request', err_msg: 'Bad Request: failed to process audio: corrupt or unsupported data', request_id: 'u' }, h)
    expect([audio.status, audio.code, audio.param]).toEqual([400, 'invalid_audio_file', 'file'])
  })

  test('{category, message, details}: message with details', () => {
    const e = parseError(400, { category: 'INVALID_JSON', message: 'Invalid JSON submitted.', details: 'Json deserialize error: missing field `text`', request_id: 'u' }, h)
    expect([e.status, e.code, e.message, e.param]).toEqual([400, 'invalid_json', 'Invalid JSON submitted. Json deserialize error: missing field `text`', 'input'])
  })

  test('out of credit (402) → 429 insufficient_quota; rate limits and server errors keep their status', () => {
    const credit = parseError(402, { err_code: 'ASR_PAYMENT_REQUIRED', err_msg: 'Project does not have enough credits.' }, h)
    expect([credit.status, credit.type, credit.code]).toEqual([429, 'insufficient_quota', 'asr_payment_required'])
    expect(parseError(429, { err_code: 'TOO_MANY_REQUESTS', err_msg: 'Slow down.' }, h).status).toBe(429)
    expect(parseError(503, 'upstream connect error', h).message).toBe('upstream connect error')
    expect(parseError(500, null, h).message).toBe('deepgram returned HTTP 500')
  })
})

describe('against the fake Deepgram', () => {
  let fake: FakeDeepgram
  const live = (model = 'aura-2-thalia-en', apiKey = FAKE_DEEPGRAM_KEY) => attemptFor({ name: 'dg', type: 'deepgram', apiKey, baseURL: fake.url, options: {} }, model)

  beforeAll(async () => {
    fake = await startFakeDeepgram()
  })
  afterAll(() => fake.stop())

  test('speech in every format the adapter asks for is real audio of that format', async () => {
    const expected: Record<string, { format: string; codec: string; rate: number }> = {
      mp3: { format: 'mp3', codec: 'mp3', rate: 22050 },
      opus: { format: 'ogg', codec: 'opus', rate: 48000 },
      aac: { format: 'aac', codec: 'aac', rate: 22050 },
      flac: { format: 'flac', codec: 'flac', rate: 48000 },
      wav: { format: 'wav', codec: 'pcm_s16le', rate: 24000 },
    }
    for (const [format, want] of Object.entries(expected)) {
      const res = await sendUpstream(buildSpeechRequest(speech({ voice: 'x', response_format: format, input: 'Testing one two three.' }), live()))
      expect(res.status).toBe(200)
      const probe = await ffprobe(await res.bytes())
      expect([probe.format, probe.codec, probe.sampleRate, probe.channels]).toEqual([want.format, want.codec, want.rate, 1])
    }
    const pcm = await sendUpstream(buildSpeechRequest(speech({ voice: 'x', response_format: 'pcm', input: 'Testing one two three.' }), live()))
    expect(pcm.headers.get('content-type')).toBe('audio/l16;rate=24000')
    const raw = await pcm.bytes()
    // No RIFF header: bare samples.
    expect(new TextDecoder().decode(raw.subarray(0, 4))).not.toBe('RIFF')
    expect(raw.length / 48000).toBeGreaterThan(0.5)
    expect(fake.requests.at(-1)!.query).toEqual({ model: 'aura-2-thalia-en', encoding: 'linear16', container: 'none', sample_rate: '24000' })
  })

  test('transcription of real speech sent as raw bytes: the text, sentence segments, duration within 5% of ffprobe', async () => {
    const flac = await ffmpeg(await speak('The quick brown fox jumps over the lazy dog.'), 'flac')
    const truth = (await ffprobe(flac)).durationSeconds
    const ctx = live('nova-3')
    const res = await sendUpstream(buildTranscriptionRequest({ model: 'v', file: upload(flac, 'flac', 'audio/flac') }, ctx))
    expect(res.status).toBe(200)
    const t = parseTranscript(await res.json(), ctx)
    expect(t.text).toBe(FAKE_DG_TRANSCRIPT)
    expect(t.language).toBe('english')
    expect(Math.abs(t.duration! - truth) / truth).toBeLessThan(0.05)
    expect(t.segments!.map((s) => s.text)).toEqual(['Hello from fake Deepgram.', 'This is the second sentence!'])
    const recorded = fake.requests.at(-1)!
    expect(recorded.headers['content-type']).toBe('audio/flac')
    expect(recorded.body).toEqual({ size: flac.length })
  })

  test('the fake’s errors through the adapter: wrong key, unknown model, not audio, unknown voice, too long, out of credit', async () => {
    const wav = await speak('hi')
    const key = await upstreamError(await sendUpstream(buildTranscriptionRequest({ model: 'v', file: upload(wav) }, live('nova-3', 'wrong'))))
    expect([key.status, key.code]).toEqual([401, 'invalid_auth'])
    const model = await upstreamError(await sendUpstream(buildTranscriptionRequest({ model: 'v', file: upload(wav) }, live('whisper-1'))))
    expect([model.status, model.param]).toEqual([400, 'model'])
    const garbage = await upstreamError(await sendUpstream(buildTranscriptionRequest({ model: 'v', file: upload(new TextEncoder().encode('no sound here')) }, live('nova-3'))))
    expect([garbage.status, garbage.code, garbage.param]).toEqual([400, 'invalid_audio_file', 'file'])
    const voice = await upstreamError(await sendUpstream(buildSpeechRequest(speech({ voice: 'x' }), live('aura-9-nobody-en'))))
    expect([voice.status, voice.code]).toEqual([400, 'invalid_query_parameter'])
    const long = await upstreamError(await sendUpstream(buildSpeechRequest(speech({ voice: 'x', input: 'a'.repeat(2001) }), live())))
    expect(long.status).toBe(413)
    const credit = await upstreamError(await sendUpstream(buildSpeechRequest(speech({ voice: 'x', input: 'fail-402' }), live())))
    expect([credit.status, credit.type]).toEqual([429, 'insufficient_quota'])
  })
})
