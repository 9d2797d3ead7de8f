import { Gate, audioDuration, chunkedBody, headersOf, synthesize, timedWords, type Encoding, type SpeechRecord } from './fake-audio-common.ts'

/**
 * A fake ElevenLabs API speaking its real wire format (shapes from elevenlabs-js and the API reference):
 * - `POST /v1/text-to-speech/{voice_id}/stream?output_format=…` with `{text, model_id, voice_settings, …}` → the
 *   speech as audio bytes (espeak-ng, encoded by ffmpeg in the asked format), sent in chunks with pauses;
 * - `POST /v1/speech-to-text` (multipart: `model_id`, `file`, `language_code`, `timestamps_granularity`, `diarize`, …)
 *   → `{language_code, language_probability, text, words: [{text, start, end, type, speaker_id, logprob}], …}`, the
 *   text being `transcript` (default FAKE_TRANSCRIPT) timed over the upload's real duration (ffprobe).
 * Auth is the `xi-api-key` header. Errors come as ElevenLabs sends them: `{"detail": {type, code, message, status,
 * request_id, param}}`, and FastAPI's 422 `{"detail": [{type, loc, msg, input}]}` for validation.
 *
 * Scripted by the speech text, or the transcription's `language_code`: `fail-429` (concurrency limit), `fail-500`,
 * `fail-503`, `fail-quota` (the 401 quota_exceeded ElevenLabs sends when the characters are used up).
 */

export const FAKE_ELEVENLABS_KEY = 'xi-test-key'
/** Voice ids the fake knows (premade-style 20-character ids). */
export const FAKE_VOICE_IDS = ['21m00Tcm4TlvDq8ikWAM', 'EXAVITQu4vr4xnSDxMaL', 'pNInz6obpgDQGcFmaJgB'] as const
export const FAKE_TRANSCRIPT = 'Hello from fake ElevenLabs. This is the second sentence!'

/** Characters per request, by model (ElevenLabs' model overview). */
const TTS_MODELS: Record<string, number> = {
  eleven_v3: 5_000,
  eleven_multilingual_v2: 10_000,
  eleven_flash_v2_5: 40_000,
  eleven_turbo_v2_5: 40_000,
  eleven_flash_v2: 30_000,
  eleven_turbo_v2: 30_000,
  eleven_monolingual_v1: 10_000,
}
const STT_MODELS = ['scribe_v2', 'scribe_v1']

/** `codec_rate[_bitrate]` → ffmpeg output (enum `TextToSpeechStreamRequestOutputFormat`). */
function encodingOf(format: string): { encoding: Encoding; contentType: string } | null {
  const [codec, rate, bitrate] = format.split('_')
  const allowed = /^(mp3_(22050_32|24000_48|44100_(32|64|96|128|192))|pcm_(8000|16000|22050|24000|32000|44100|48000)|ulaw_8000|alaw_8000|opus_48000_(32|64|96|128|192))$/
  if (!allowed.test(format)) return null
  switch (codec) {
    case 'mp3':
      return { encoding: { muxer: 'mp3', args: ['-ar', rate!, '-b:a', `${bitrate}k`] }, contentType: 'audio/mpeg' }
    case 'opus':
      return { encoding: { muxer: 'ogg', args: ['-c:a', 'libopus', '-ar', rate!, '-b:a', `${bitrate}k`] }, contentType: 'audio/ogg' }
    case 'pcm':
      return { encoding: { muxer: 's16le', args: ['-ar', rate!] }, contentType: 'audio/pcm' }
    case 'ulaw':
      return { encoding: { muxer: 'mulaw', args: ['-ar', rate!] }, contentType: 'audio/basic' }
    default:
      return { encoding: { muxer: 'alaw', args: ['-ar', rate!] }, contentType: 'audio/alaw' }
  }
}

export interface FakeElevenLabsOptions {
  apiKey?: string
  /** What every transcription says. */
  transcript?: string
  /** Pieces each speech is sent in, and the pause between them. Default 6 and 15 ms. */
  chunks?: number
  chunkDelayMs?: number
}

export interface RecordedAudioRequest {
  method: string
  path: string
  query: Record<string, string>
  headers: Record<string, string>
  /** JSON body, or the multipart fields with the file as `{name, type, size}`. */
  body: any
}

export interface FakeElevenLabs {
  url: string
  requests: RecordedAudioRequest[]
  speeches: SpeechRecord[]
  /** Hold every speech before its last chunk until `release()`. */
  gate: Gate
  /** One entry per successful generation: characters spoken, or seconds transcribed. */
  usageLog: { characters?: number; seconds?: number }[]
  stop(): void
}

const requestId = () => crypto.randomUUID().replaceAll('-', '')

export async function startFakeElevenLabs(options: FakeElevenLabsOptions = {}): Promise<FakeElevenLabs> {
  const apiKey = options.apiKey ?? FAKE_ELEVENLABS_KEY
  const transcriptText = options.transcript ?? FAKE_TRANSCRIPT
  const requests: RecordedAudioRequest[] = []
  const speeches: SpeechRecord[] = []
  const usageLog: FakeElevenLabs['usageLog'] = []
  const gate = new Gate()

  const detail = (status: number, code: string, message: string, extra: Record<string, unknown> = {}) =>
    Response.json({ detail: { type: typeOf(status), code, message, status: code, request_id: requestId(), param: null, ...extra } }, { status })
  const invalid = (items: { type: string; loc: (string | number)[]; msg: string; input?: unknown }[]) => Response.json({ detail: items }, { status: 422 })
  const scripted = (trigger: string): Response | null => {
    if (trigger.includes('fail-429')) return detail(429, 'concurrent_limit_exceeded', 'Too many concurrent requests for your subscription.')
    if (trigger.includes('fail-500')) return detail(500, 'internal_server_error', 'An internal error occurred.')
    if (trigger.includes('fail-503')) return detail(503, 'service_unavailable', 'The service is temporarily unavailable.')
    if (trigger.includes('fail-quota')) return detail(401, 'quota_exceeded', 'This request exceeds your quota of 10000. You have 12 credits remaining.')
    return null
  }

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 60,
    async fetch(req) {
      const url = new URL(req.url)
      const record: RecordedAudioRequest = { method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: headersOf(req), body: null }
      requests.push(record)
      const tts = /^\/v1\/text-to-speech\/([^/]+)\/stream$/.exec(url.pathname)
      if (req.method !== 'POST' || (!tts && url.pathname !== '/v1/speech-to-text')) return Response.json({ detail: 'Not Found' }, { status: 404 })

      const key = req.headers.get('xi-api-key')
      if (!key) return detail(401, 'needs_authorization', 'Neither authorization header nor xi-api-key received, please provide one.')
      if (key !== apiKey) return detail(401, 'invalid_api_key', 'Invalid API key')
      return tts ? speech(req, record, decodeURIComponent(tts[1]!), url) : transcription(req, record)
    },
  })

  async function speech(req: Request, record: RecordedAudioRequest, voiceId: string, url: URL): Promise<Response> {
    const text = await req.text()
    let body: any
    try {
      body = JSON.parse(text)
    } catch {
      return invalid([{ type: 'json_invalid', loc: ['body', 0], msg: 'JSON decode error', input: {} }])
    }
    record.body = body
    const format = url.searchParams.get('output_format') ?? 'mp3_44100_128'
    const output = encodingOf(format)
    if (!output) return invalid([{ type: 'enum', loc: ['query', 'output_format'], msg: "Input should be 'mp3_22050_32', 'mp3_44100_128', 'pcm_24000', 'opus_48000_64', … ", input: format }])
    if (!body || typeof body !== 'object' || typeof body.text !== 'string') return invalid([{ type: 'missing', loc: ['body', 'text'], msg: 'Field required', input: body }])
    const speed = body.voice_settings?.speed
    if (speed !== undefined && (typeof speed !== 'number' || speed < 0.7 || speed > 1.2)) {
      return invalid([{ type: speed > 1.2 ? 'less_than_equal' : 'greater_than_equal', loc: ['body', 'voice_settings', 'speed'], msg: `Input should be ${speed > 1.2 ? 'less than or equal to 1.2' : 'greater than or equal to 0.7'}`, input: speed }])
    }
    const model = body.model_id ?? 'eleven_multilingual_v2'
    const limit = TTS_MODELS[model]
    if (limit === undefined) return detail(400, 'model_not_found', `A model with model ID ${model} does not exist.`, { param: 'model_id' })
    if (!(FAKE_VOICE_IDS as readonly string[]).includes(voiceId)) {
      return detail(404, 'voice_not_found', `A voice with voice_id '${voiceId}' was not found.`, { type: 'not_found', param: 'voice_id' })
    }
    if (body.text.length > limit) {
      return detail(400, 'max_character_limit_exceeded', `This request's text has ${body.text.length} characters and exceeds the character limit of ${limit} characters.`)
    }
    const fault = scripted(body.text)
    if (fault) return fault
    if (body.text.trim() === '') return detail(400, 'invalid_parameters', 'Text must not be empty.', { param: 'text' })

    const bytes = await synthesize(body.text, output.encoding)
    const speechRecord: SpeechRecord = { bytes: bytes.length, chunksSent: 0, done: false, aborted: false }
    speeches.push(speechRecord)
    usageLog.push({ characters: body.text.length })
    const stream = chunkedBody(bytes, { chunks: options.chunks ?? 6, delayMs: options.chunkDelayMs ?? 15, beforeLast: () => gate.wait() }, speechRecord)
    return new Response(stream, {
      headers: { 'content-type': output.contentType, 'request-id': requestId(), 'x-character-count': String(body.text.length), 'history-item-id': requestId() },
    })
  }

  async function transcription(req: Request, record: RecordedAudioRequest): Promise<Response> {
    let form: Awaited<ReturnType<Request["formData"]>>
    try {
      form = await req.formData()
    } catch {
      return invalid([{ type: 'missing', loc: ['body', 'model_id'], msg: 'Field required', input: null }])
    }
    const fields: Record<string, unknown> = {}
    form.forEach((value, name) => {
      fields[name] = typeof value === 'string' ? value : { name: (value as File).name, type: (value as File).type, size: (value as File).size }
    })
    record.body = fields
    const model = form.get('model_id')
    if (typeof model !== 'string') return invalid([{ type: 'missing', loc: ['body', 'model_id'], msg: 'Field required', input: null }])
    if (!STT_MODELS.includes(model)) return invalid([{ type: 'enum', loc: ['body', 'model_id'], msg: "Input should be 'scribe_v2' or 'scribe_v1'", input: model }])
    const granularity = form.get('timestamps_granularity')
    if (granularity !== null && !['none', 'word', 'character'].includes(String(granularity))) {
      return invalid([{ type: 'enum', loc: ['body', 'timestamps_granularity'], msg: "Input should be 'none', 'word' or 'character'", input: granularity }])
    }
    for (const name of ['diarize', 'tag_audio_events']) {
      const value = form.get(name)
      if (value !== null && !['true', 'false'].includes(String(value))) return invalid([{ type: 'bool_parsing', loc: ['body', name], msg: 'Input should be a valid boolean', input: value }])
    }
    const temperature = form.get('temperature')
    if (temperature !== null && !(Number(temperature) >= 0 && Number(temperature) <= 2)) {
      return invalid([{ type: 'less_than_equal', loc: ['body', 'temperature'], msg: 'Input should be less than or equal to 2', input: temperature }])
    }
    const language = form.get('language_code')
    const fault = scripted(typeof language === 'string' ? language : '')
    if (fault) return fault
    const file = form.get('file')
    if (!(file instanceof Blob)) {
      return detail(400, 'invalid_parameters', 'Exactly one of the file or cloud_storage_url parameters must be provided.', { type: 'validation_error', param: 'file' })
    }
    const duration = await audioDuration(await file.bytes())
    if (duration === null) return detail(400, 'invalid_content', 'The uploaded file could not be decoded as audio or video.', { type: 'validation_error', param: 'file' })

    const diarize = form.get('diarize') === 'true'
    const timed = timedWords(transcriptText, duration)
    const words: Record<string, unknown>[] = []
    let sentence = 0
    timed.forEach((w, i) => {
      const speaker = diarize ? { speaker_id: `speaker_${sentence % 2}` } : {}
      words.push({ text: w.text, start: w.start, end: w.end, type: 'word', logprob: -0.05, ...speaker })
      if (/[.!?]$/.test(w.text)) sentence++
      const next = timed[i + 1]
      if (next) words.push({ text: ' ', start: w.end, end: next.start, type: 'spacing', logprob: 0, ...(diarize ? { speaker_id: `speaker_${sentence % 2}` } : {}) })
    })
    usageLog.push({ seconds: duration })
    return Response.json({
      language_code: typeof language === 'string' && language ? language : 'eng',
      language_probability: 0.98,
      text: transcriptText,
      words: granularity === 'none' ? [] : words,
      transcription_id: requestId(),
      audio_duration_secs: duration,
    })
  }

  return {
    url: `http://127.0.0.1:${server.port}`,
    requests,
    speeches,
    gate,
    usageLog,
    stop: () => {
      gate.release()
      server.stop(true)
    },
  }
}

function typeOf(status: number): string {
  if (status === 401) return 'authentication_error'
  if (status === 404) return 'not_found'
  if (status === 429) return 'rate_limit_error'
  if (status >= 500) return 'internal_error'
  return 'validation_error'
}
