import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { AudioUpload, UpstreamRequest } from '../../src/plugin-sdk/index.ts'
import { parseError } from '../../src/providers/elevenlabs/errors.ts'
import plugin from '../../src/providers/elevenlabs/index.ts'
import { languageName, speakerLabel } from '../../src/plugin-sdk/index.ts'
import { ABILITIES } from '../../src/providers/elevenlabs/shared.ts'
import { buildSpeechRequest } from '../../src/providers/elevenlabs/speech.ts'
import { buildTranscriptionRequest, parseTranscript } from '../../src/providers/elevenlabs/transcription.ts'
import { upstreamError as readUpstreamError } from '../../src/core/upstream.ts'
import { attemptFor, expectGatewayError, registeredAdapter, sendUpstream } from '../helpers/adapter.ts'
import { ffmpeg, ffprobe, speak } from '../helpers/audio.ts'
import { FAKE_ELEVENLABS_KEY, FAKE_TRANSCRIPT, FAKE_VOICE_IDS, startFakeElevenLabs, type FakeElevenLabs } from '../helpers/fake-elevenlabs.ts'

const VOICES = { alloy: FAKE_VOICE_IDS[0], nova: FAKE_VOICE_IDS[1] }
const attempt = (provider: Record<string, any> = {}, model = 'eleven_flash_v2_5') =>
  attemptFor({ name: 'el', type: 'elevenlabs', apiKey: 'xi-k', options: { voices: VOICES }, ...provider }, model)

const speech = (extra: Record<string, any> = {}) => ({ model: 'virtual-tts', input: 'Hello there.', voice: 'alloy', response_format: 'mp3', ...extra })

function translateSpeech(body: Record<string, any>, provider: Record<string, any> = {}) {
  const ctx = attempt(provider)
  const upstream = buildSpeechRequest(body, ctx)
  return { upstream, url: new URL(upstream.url), json: JSON.parse(upstream.body as string), dropped: ctx.dropped }
}

function upload(bytes: Uint8Array, format = 'wav', filename = 'speech.wav'): AudioUpload {
  const contentType = format === 'wav' ? 'audio/wav' : format === 'mp3' ? 'audio/mpeg' : `audio/${format}`
  return { blob: new Blob([bytes], { type: contentType }), filename, format, contentType, size: bytes.length, durationSeconds: null }
}


/** The multipart body an adapter built, read back as a form (whatever it is built as: a stream with its boundary header, or FormData). */
async function formOf(upstream: UpstreamRequest) {
  const type = upstream.headers['content-type']
  return new Response(upstream.body as any, type ? { headers: { 'content-type': type } } : undefined).formData()
}

/** The provider's error answer as the core reads it (its own reader, with this adapter's parseError). */
const upstreamError = (response: Response) => readUpstreamError(response, { parseError }, 'elevenlabs')

describe('plugin', () => {
  test('registers elevenlabs with speech and transcriptions only', async () => {
    const adapter = await registeredAdapter(plugin)
    expect(plugin.name).toBe('provider-elevenlabs')
    expect(adapter.id).toBe('elevenlabs')
    expect(adapter.defaultBaseURL).toBe('https://api.elevenlabs.io')
    expect(adapter.speech).toBeDefined()
    expect(adapter.transcriptions?.parseTranscript).toBeDefined()
    expect(adapter.translations).toBeUndefined()
    expect(adapter.chat).toBeUndefined()
  })

  test('abilities: mp3, Ogg Opus and 24 kHz pcm out (the rest converted by the gateway); json transcripts, not streamed', async () => {
    const adapter = await registeredAdapter(plugin)
    const abilities = adapter.speech!.abilities(attempt().target.provider)
    expect([...abilities.outputFormats].sort()).toEqual(['mp3', 'opus', 'pcm'])
    expect(abilities.pcmSampleRate).toBe(24000)
    expect(abilities.transcriptFormats).toEqual(['json'])
    expect(abilities.streamTranscripts).toBe(false)
    expect(abilities.inputFormats).toContain('m4a')
    expect(abilities.maxUploadBytes).toBeGreaterThan(1e9)
    expect(adapter.transcriptions!.abilities(attempt().target.provider)).toEqual(ABILITIES)
  })
})

describe('speech request', () => {
  test('URL with the mapped voice id and output_format, xi-api-key, JSON body with model_id', () => {
    const { upstream, url, json, dropped } = translateSpeech(speech())
    expect(url.origin + url.pathname).toBe(`https://api.elevenlabs.io/v1/text-to-speech/${VOICES.alloy}/stream`)
    expect(url.searchParams.get('output_format')).toBe('mp3_44100_128')
    expect(upstream.method).toBe('POST')
    expect(upstream.headers).toEqual({ 'content-type': 'application/json', 'xi-api-key': 'xi-k' })
    expect(json).toEqual({ text: 'Hello there.', model_id: 'eleven_flash_v2_5' })
    expect(dropped).toEqual([])
  })

  test('formats: opus → Ogg Opus 48 kHz, pcm → 24 kHz; others refused (the core converts before asking)', () => {
    expect(translateSpeech(speech({ response_format: 'opus' })).url.searchParams.get('output_format')).toBe('opus_48000_64')
    expect(translateSpeech(speech({ response_format: 'pcm' })).url.searchParams.get('output_format')).toBe('pcm_24000')
    expect(translateSpeech(speech({ response_format: undefined })).url.searchParams.get('output_format')).toBe('mp3_44100_128')
    for (const format of ['wav', 'flac', 'aac']) expectGatewayError(() => translateSpeech(speech({ response_format: format })), 400, 'response_format')
  })

  test('voices: a mapped name, {id}, any other string as the id; an unmapped OpenAI name refused before anything is sent', () => {
    expect(translateSpeech(speech({ voice: 'nova' })).url.pathname).toBe(`/v1/text-to-speech/${VOICES.nova}/stream`)
    expect(translateSpeech(speech({ voice: { id: 'customVoice123' } })).url.pathname).toBe('/v1/text-to-speech/customVoice123/stream')
    expect(translateSpeech(speech({ voice: 'pNInz6obpgDQGcFmaJgB' })).url.pathname).toBe('/v1/text-to-speech/pNInz6obpgDQGcFmaJgB/stream')
    // Path-unsafe characters in an id are escaped, not interpreted.
    expect(translateSpeech(speech({ voice: 'a/../b?x' })).url.pathname).toBe('/v1/text-to-speech/a%2F..%2Fb%3Fx/stream')
    const refused = expectGatewayError(() => translateSpeech(speech({ voice: 'shimmer' })), 400, 'voice', 'unsupported_value')
    expect(refused.message).toContain('options.voices')
    expectGatewayError(() => translateSpeech(speech({ voice: 42 })), 400, 'voice')
  })

  test('speed → voice_settings.speed, kept within 0.7–1.2; options.voice_settings merged; instructions dropped', () => {
    expect(translateSpeech(speech({ speed: 1.1 })).json.voice_settings).toEqual({ speed: 1.1 })
    expect(translateSpeech(speech({ speed: 4 })).json.voice_settings).toEqual({ speed: 1.2 })
    expect(translateSpeech(speech({ speed: 0.25 })).json.voice_settings).toEqual({ speed: 0.7 })
    expect(translateSpeech(speech({ speed: 1 })).json.voice_settings).toBeUndefined()
    const withSettings = translateSpeech(speech({ speed: 0.9 }), { options: { voices: VOICES, voice_settings: { stability: 0.4, similarity_boost: 0.8 } } })
    expect(withSettings.json.voice_settings).toEqual({ stability: 0.4, similarity_boost: 0.8, speed: 0.9 })
    const { json, dropped } = translateSpeech(speech({ instructions: 'Speak like a pirate.', stream_format: 'sse' }))
    expect(json.instructions).toBeUndefined()
    expect(dropped).toEqual(['instructions'])
  })

  test('base URL: custom, with or without /v1 and trailing slashes; no key → no header', () => {
    expect(translateSpeech(speech(), { baseURL: 'https://eu.residency.elevenlabs.io/v1/' }).url.origin + '/').toBe('https://eu.residency.elevenlabs.io/')
    expect(translateSpeech(speech(), { baseURL: 'https://proxy.example/el/v1' }).url.pathname).toStartWith('/el/v1/text-to-speech/')
    expect(translateSpeech(speech(), { apiKey: null }).upstream.headers).toEqual({ 'content-type': 'application/json' })
  })
})

describe('transcription request', () => {
  test('multipart: model_id, the upload with its name, word timestamps; language and temperature translated', async () => {
    const ctx = attempt({}, 'scribe_v1')
    const file = upload(new Uint8Array([1, 2, 3]), 'wav', 'meeting.wav')
    const upstream = buildTranscriptionRequest({ model: 'virtual-stt', file, language: 'fr', temperature: 0.2, response_format: 'json', stream: true }, ctx)
    expect(upstream.url).toBe('https://api.elevenlabs.io/v1/speech-to-text')
    expect(upstream.headers['xi-api-key']).toBe('xi-k')
    const form = await formOf(upstream)
    expect(form.get('model_id')).toBe('scribe_v1')
    expect(form.get('language_code')).toBe('fr')
    expect(form.get('temperature')).toBe('0.2')
    expect(form.get('timestamps_granularity')).toBe('word')
    expect(form.get('diarize')).toBeNull()
    const sent = form.get('file') as File
    expect(sent.name).toBe('meeting.wav')
    expect([...(await sent.bytes())]).toEqual([1, 2, 3])
    expect(ctx.dropped).toEqual([])
  })

  test('diarized_json (asked by the client; the core asks the adapter for json) turns diarization on; prompt, include and a chunking strategy other than auto are dropped', async () => {
    const client = { model: 'v', response_format: 'diarized_json', prompt: 'Names: Anna.', include: ['logprobs'], chunking_strategy: 'auto' }
    const ctx = attemptFor({ name: 'el', type: 'elevenlabs', apiKey: 'k' }, 'scribe_v1', client)
    const upstream = buildTranscriptionRequest({ ...client, file: upload(new Uint8Array(4)), response_format: 'json' }, ctx)
    expect((await formOf(upstream)).get('diarize')).toBe('true')
    expect(ctx.dropped.sort()).toEqual(['include', 'prompt'])
    const other = attempt({}, 'scribe_v1')
    buildTranscriptionRequest({ model: 'v', file: upload(new Uint8Array(4)), chunking_strategy: { type: 'server_vad' } }, other)
    expect(other.dropped).toEqual(['chunking_strategy'])
  })
})

describe('transcript', () => {
  const words = (items: [string, number, number, string?, string?][]) =>
    items.map(([text, start, end, type = 'word', speaker]) => ({ text, start, end, type, logprob: -0.1, ...(speaker ? { speaker_id: speaker } : {}) }))

  test('segments cut at sentence ends; spacing kept in the text, not in words; language as OpenAI names it; usage in seconds', () => {
    const t = parseTranscript(
      {
        language_code: 'eng',
        language_probability: 0.99,
        text: 'Hi there. How are you?',
        words: words([
          ['Hi', 0, 0.3], [' ', 0.3, 0.35, 'spacing'], ['there.', 0.35, 0.8], [' ', 0.8, 1.0, 'spacing'],
          ['How', 1.0, 1.2], [' ', 1.2, 1.25, 'spacing'], ['are', 1.25, 1.4], [' ', 1.4, 1.45, 'spacing'], ['you?', 1.45, 1.9],
        ]),
        audio_duration_secs: 2.04,
      },
      attempt(),
    )
    expect(t.text).toBe('Hi there. How are you?')
    expect(t.language).toBe('english')
    expect(t.duration).toBe(2.04)
    expect(t.usage).toEqual({ type: 'duration', seconds: 3 })
    expect(t.segments).toEqual([
      { start: 0, end: 0.8, text: 'Hi there.' },
      { start: 1.0, end: 1.9, text: 'How are you?' },
    ])
    expect(t.words!.map((w) => w.word)).toEqual(['Hi', 'there.', 'How', 'are', 'you?'])
    expect(t.words![4]).toEqual({ word: 'you?', start: 1.45, end: 1.9 })
  })

  test('speaker turns and long pauses start segments; audio events stay in the text only', () => {
    const t = parseTranscript(
      {
        language_code: 'spa',
        text: 'hola que tal (laughter) bien',
        words: words([
          ['hola', 0, 0.4, 'word', 'speaker_0'], [' ', 0.4, 0.5, 'spacing', 'speaker_0'], ['que', 0.5, 0.7, 'word', 'speaker_0'],
          [' ', 0.7, 0.8, 'spacing', 'speaker_0'], ['tal', 0.8, 1.0, 'word', 'speaker_0'], [' ', 1.0, 1.1, 'spacing', 'speaker_1'],
          ['(laughter)', 1.1, 1.6, 'audio_event', 'speaker_1'], [' ', 1.6, 3.5, 'spacing', 'speaker_1'], ['bien', 3.5, 3.9, 'word', 'speaker_1'],
        ]),
      },
      attempt(),
    )
    expect(t.language).toBe('spanish')
    expect(t.segments).toEqual([
      { start: 0, end: 1.0, text: 'hola que tal', speaker: 'A' },
      { start: 1.1, end: 1.6, text: '(laughter)', speaker: 'B' },
      { start: 3.5, end: 3.9, text: 'bien', speaker: 'B' },
    ])
    expect(t.words!.map((w) => w.word)).toEqual(['hola', 'que', 'tal', 'bien'])
    expect(t.words![3]!.speaker).toBe('B')
    // No duration reported: the last word's end.
    expect(t.duration).toBe(3.9)
  })

  test('a multichannel answer uses its first channel; anything else is an upstream error', () => {
    expect(parseTranscript({ transcripts: [{ text: 'one', words: [], language_code: 'en' }, { text: 'two', words: [] }] }, attempt()).text).toBe('one')
    expectGatewayError(() => parseTranscript({ message: 'queued' }, attempt()), 502, null, 'upstream_bad_response')
  })

  test('speakers named as OpenAI names them: A, B, …; named roles kept', () => {
    expect([speakerLabel('speaker_0'), speakerLabel(2), speakerLabel('speaker_30'), speakerLabel('agent'), speakerLabel(null)]).toEqual(['A', 'C', 'S30', 'agent', undefined])
  })

  test('language names: ISO 639-1 and -3, regions; unknown codes as they are', () => {
    expect(languageName('en-US')).toBe('english')
    expect(languageName('deu')).toBe('german')
    expect(languageName('zho')).toBe('chinese')
    expect(languageName('xx')).toBe('xx')
    expect(languageName(null)).toBeUndefined()
  })
})

describe('errors', () => {
  const h = new Headers()

  test('detail object (current and legacy): message, code, the param named as OpenAI does', () => {
    const current = parseError(400, { detail: { type: 'validation_error', code: 'invalid_parameters', message: "The 'keyterms' parameter is only supported with scribe_v2.", status: 'invalid_parameters', request_id: 'r', param: 'model_id' } }, h)
    expect(current.toJSON()).toEqual({ error: { message: "The 'keyterms' parameter is only supported with scribe_v2.", type: 'invalid_request_error', param: 'model', code: 'invalid_parameters' } })
    const legacy = parseError(400, { detail: { status: 'max_character_limit_exceeded', message: 'This request exceeds the limit.' } }, h)
    expect([legacy.status, legacy.code, legacy.message]).toEqual([400, 'max_character_limit_exceeded', 'This request exceeds the limit.'])
    const voice = parseError(404, { detail: { status: 'voice_not_found', message: 'Voice not found' } }, h)
    expect([voice.status, voice.param, voice.code]).toEqual([404, 'voice', 'voice_not_found'])
    const busy = parseError(429, { detail: { status: 'system_busy' } }, h)
    expect([busy.status, busy.message, busy.type]).toEqual([429, 'system_busy', 'rate_limit_error'])
  })

  test('422 validation list → 400 with every message and the first field as param', () => {
    const e = parseError(422, { detail: [{ type: 'missing', loc: ['body', 'text'], msg: 'Field required' }, { type: 'enum', loc: ['query', 'output_format'], msg: 'Input should be mp3_44100_128' }] }, h)
    expect(e.status).toBe(400)
    expect(e.param).toBe('input')
    expect(e.message).toBe('text: Field required; output_format: Input should be mp3_44100_128')
    expect(parseError(422, { detail: [{ loc: ['body', 'voice_settings', 'speed'], msg: 'too fast' }] }, h).param).toBe('speed')
  })

  test('a bad key stays a 401 (the core reports it as upstream_auth_failed); a used-up quota is a 429 insufficient_quota', () => {
    const key = parseError(401, { detail: { status: 'invalid_api_key', message: 'Invalid API key' } }, h)
    expect([key.status, key.code]).toEqual([401, 'invalid_api_key'])
    const quota = parseError(401, { detail: { status: 'quota_exceeded', message: 'This request exceeds your quota.' } }, h)
    expect([quota.status, quota.type, quota.code]).toEqual([429, 'insufficient_quota', 'quota_exceeded'])
  })

  test('bodies that are not ElevenLabs JSON', () => {
    expect(parseError(502, '<html>Bad gateway</html>', h).message).toBe('<html>Bad gateway</html>')
    expect(parseError(500, '', h).message).toBe('elevenlabs returned HTTP 500')
    expect(parseError(404, { detail: 'Not Found' }, h).message).toBe('Not Found')
  })
})

describe('against the fake ElevenLabs', () => {
  let fake: FakeElevenLabs
  const live = (model = 'eleven_flash_v2_5', apiKey = FAKE_ELEVENLABS_KEY) =>
    attemptFor({ name: 'el', type: 'elevenlabs', apiKey, baseURL: fake.url, options: { voices: VOICES } }, model)

  beforeAll(async () => {
    fake = await startFakeElevenLabs()
  })
  afterAll(() => fake.stop())

  test('speech in each native format is real audio of that format', async () => {
    const expected: Record<string, { format: string; codec: string; rate: number }> = {
      mp3: { format: 'mp3', codec: 'mp3', rate: 44100 },
      opus: { format: 'ogg', codec: 'opus', rate: 48000 },
    }
    for (const [format, want] of Object.entries(expected)) {
      const res = await sendUpstream(buildSpeechRequest(speech({ response_format: format, input: 'Testing one two three.' }), live()))
      expect(res.status).toBe(200)
      const probe = await ffprobe(await res.bytes())
      expect([probe.format, probe.codec, probe.sampleRate, probe.channels]).toEqual([want.format, want.codec, want.rate, 1])
      expect(probe.durationSeconds).toBeGreaterThan(0.5)
    }
    const pcm = await sendUpstream(buildSpeechRequest(speech({ response_format: 'pcm', input: 'Testing one two three.' }), live()))
    const bytes = await pcm.bytes()
    // Raw 16-bit mono at 24 kHz: about as long as the mp3 above.
    expect(bytes.length % 2).toBe(0)
    expect(bytes.length / 48000).toBeGreaterThan(0.5)
    const request = fake.requests.at(-1)!
    expect(request.path).toBe(`/v1/text-to-speech/${VOICES.alloy}/stream`)
    expect(request.query).toEqual({ output_format: 'pcm_24000' })
    expect(request.headers['xi-api-key']).toBe(FAKE_ELEVENLABS_KEY)
    expect(request.body).toEqual({ text: 'Testing one two three.', model_id: 'eleven_flash_v2_5' })
  })

  test('transcription of real speech: the text, words timed within the audio, duration within 5% of ffprobe', async () => {
    const wav = await speak('The quick brown fox jumps over the lazy dog.')
    const mp3 = await ffmpeg(wav, 'mp3')
    const truth = (await ffprobe(mp3)).durationSeconds
    const ctx = live('scribe_v1')
    const res = await sendUpstream(buildTranscriptionRequest({ model: 'v', file: upload(mp3, 'mp3', 'fox.mp3'), response_format: 'json' }, ctx))
    expect(res.status).toBe(200)
    const t = parseTranscript(await res.json(), ctx)
    expect(t.text).toBe(FAKE_TRANSCRIPT)
    expect(Math.abs(t.duration! - truth) / truth).toBeLessThan(0.05)
    expect(t.segments!.map((s) => s.text)).toEqual(['Hello from fake ElevenLabs.', 'This is the second sentence!'])
    expect(t.words!.at(-1)!.end).toBeLessThanOrEqual(truth)
    const recorded = fake.requests.at(-1)!.body
    expect(recorded.model_id).toBe('scribe_v1')
    expect(recorded.file).toEqual({ name: 'fox.mp3', type: 'audio/mpeg', size: mp3.length })
  })

  test('the fake’s errors through the adapter: wrong key, unknown model, unknown voice, bad speed, not audio, no file', async () => {
    const wrongKey = await upstreamError(await sendUpstream(buildSpeechRequest(speech(), live('eleven_flash_v2_5', 'nope'))))
    expect([wrongKey.status, wrongKey.code]).toEqual([401, 'invalid_api_key'])

    const model = await upstreamError(await sendUpstream(buildTranscriptionRequest({ model: 'v', file: upload(await speak('hi')) }, live('whisper-1'))))
    expect([model.status, model.param]).toEqual([400, 'model'])

    const voice = await upstreamError(await sendUpstream(buildSpeechRequest(speech({ voice: { id: 'NoSuchVoice' } }), live())))
    expect([voice.status, voice.param, voice.code]).toEqual([404, 'voice', 'voice_not_found'])

    // The adapter keeps speed in range; a request built otherwise meets the fake's own check.
    const fast = buildSpeechRequest(speech(), live())
    const tooFast = await upstreamError(await sendUpstream({ ...fast, body: JSON.stringify({ text: 'hi', model_id: 'eleven_flash_v2_5', voice_settings: { speed: 2 } }) }))
    expect([tooFast.status, tooFast.param]).toEqual([400, 'speed'])

    const notAudio = await upstreamError(await sendUpstream(buildTranscriptionRequest({ model: 'v', file: upload(new TextEncoder().encode('not audio at all')) }, live('scribe_v1'))))
    expect([notAudio.status, notAudio.param]).toEqual([400, 'file'])

    const built = buildTranscriptionRequest({ model: 'v', file: upload(new Uint8Array(1)) }, live('scribe_v1'))
    const withoutFile = await formOf(built)
    withoutFile.delete('file')
    const missing = await upstreamError(await fetch(built.url, { method: 'POST', headers: { 'xi-api-key': FAKE_ELEVENLABS_KEY }, body: withoutFile as any }))
    expect([missing.status, missing.param]).toEqual([400, 'file'])

    const quota = await upstreamError(await sendUpstream(buildSpeechRequest(speech({ input: 'fail-quota' }), live())))
    expect([quota.status, quota.type]).toEqual([429, 'insufficient_quota'])
  })
})
