import { Gate, audioDuration, chunkedBody, headersOf, synthesize, timedWords, type Encoding, type SpeechRecord } from './fake-audio-common.ts'
import type { RecordedAudioRequest } from './fake-elevenlabs.ts'

/**
 * A fake Deepgram API speaking its real wire format (shapes from deepgram-js-sdk and Deepgram's API reference):
 * - `POST /v1/listen?model=…&smart_format=…&language=…|detect_language=…` with the audio bytes as the body →
 *   `{metadata: {request_id, sha256, created, duration, channels, models, model_info}, results: {channels: [{
 *   alternatives: [{transcript, confidence, words, paragraphs}], detected_language}]}}`, the text being `transcript`
 *   (default FAKE_DG_TRANSCRIPT) timed over the upload's real duration (ffprobe);
 * - `POST /v1/speak?model=aura-…&encoding=…&container=…&sample_rate=…&speed=…` with `{text}` → the speech as audio
 *   bytes (espeak-ng, encoded by ffmpeg), in chunks with pauses, with `dg-*` headers.
 * Auth is `Authorization: Token <key>`. Errors come in Deepgram's two shapes: `{err_code, err_msg, request_id}` and
 * `{category, message, details, request_id}`; the encoding/container/sample-rate combinations are checked as
 * Deepgram's "Audio Format Combinations" table has them.
 *
 * Scripted by the speech text, or the transcription's `language`: `fail-429`, `fail-500`, `fail-503`, `fail-402`
 * (out of credit).
 */

export const FAKE_DEEPGRAM_KEY = 'dg-test-key'
export const FAKE_DG_TRANSCRIPT = 'Hello from fake Deepgram. This is the second sentence!'
export const SPEAK_MODELS = ['aura-asteria-en', 'aura-luna-en', 'aura-orion-en', 'aura-2-thalia-en', 'aura-2-zeus-en', 'aura-2-andromeda-en']
const LISTEN_MODELS = ['nova-3', 'nova-3-general', 'nova-2', 'nova-2-general', 'nova-2-meeting', 'nova', 'enhanced', 'base', 'whisper-large']
const LANGUAGES = ['en', 'en-US', 'en-GB', 'es', 'fr', 'de', 'it', 'pt', 'nl', 'ja', 'multi']
const BOOLEAN_PARAMS = ['smart_format', 'punctuate', 'paragraphs', 'diarize', 'detect_language', 'utterances', 'filler_words', 'numerals', 'profanity_filter']
/** Characters per `/v1/speak` request. */
const SPEAK_LIMIT = 2000

export interface FakeDeepgramOptions {
  apiKey?: string
  transcript?: string
  chunks?: number
  chunkDelayMs?: number
}

export interface FakeDeepgram {
  url: string
  requests: RecordedAudioRequest[]
  speeches: SpeechRecord[]
  gate: Gate
  usageLog: { characters?: number; seconds?: number }[]
  stop(): void
}

const requestId = () => crypto.randomUUID()

/** The speak query → ffmpeg output and content type, or the reason Deepgram refuses the combination. */
function speakEncoding(q: URLSearchParams): { encoding: Encoding; contentType: string } | string {
  const encoding = q.get('encoding') ?? 'linear16'
  const container = q.get('container')
  const rate = q.get('sample_rate')
  const bitRate = q.get('bit_rate')
  const pick = (allowed: number[], fallback: number) => {
    if (rate === null) return fallback
    return allowed.includes(Number(rate)) ? Number(rate) : null
  }
  switch (encoding) {
    case 'linear16':
    case 'mulaw':
    case 'alaw': {
      const r = encoding === 'linear16' ? pick([8000, 16000, 24000, 32000, 48000], 24000) : pick([8000, 16000], 8000)
      if (r === null) return `Unsupported sample_rate ${rate} for encoding ${encoding}.`
      if (container !== null && container !== 'wav' && container !== 'none') return `Unsupported container ${container} for encoding ${encoding}.`
      const codec = encoding === 'linear16' ? 'pcm_s16le' : encoding === 'mulaw' ? 'pcm_mulaw' : 'pcm_alaw'
      if (container === 'none') {
        const muxer = encoding === 'linear16' ? 's16le' : encoding
        return { encoding: { muxer, args: ['-ar', String(r)] }, contentType: encoding === 'linear16' ? `audio/l16;rate=${r}` : `audio/${encoding === 'mulaw' ? 'basic' : 'x-alaw-basic'}` }
      }
      return { encoding: { muxer: 'wav', args: ['-c:a', codec, '-ar', String(r)] }, contentType: 'audio/wav' }
    }
    case 'mp3':
      if (rate !== null) return 'sample_rate is not applicable for encoding mp3 (it is fixed at 22050).'
      if (container !== null && container !== 'none') return `Unsupported container ${container} for encoding mp3.`
      if (bitRate !== null && !['32000', '48000'].includes(bitRate)) return `Unsupported bit_rate ${bitRate} for encoding mp3.`
      return { encoding: { muxer: 'mp3', args: ['-ar', '22050', '-b:a', `${Number(bitRate ?? 48000) / 1000}k`] }, contentType: 'audio/mpeg' }
    case 'opus':
      if (rate !== null) return 'sample_rate is not applicable for encoding opus (it is fixed at 48000).'
      if (container !== null && container !== 'ogg') return `Unsupported container ${container} for encoding opus.`
      return { encoding: { muxer: 'ogg', args: ['-c:a', 'libopus', '-ar', '48000', '-b:a', '12k'] }, contentType: 'audio/ogg' }
    case 'flac': {
      const r = pick([8000, 16000, 22050, 32000, 48000], 48000)
      if (r === null) return `Unsupported sample_rate ${rate} for encoding flac.`
      if (container !== null && container !== 'none') return `Unsupported container ${container} for encoding flac.`
      return { encoding: { muxer: 'flac', args: ['-ar', String(r)] }, contentType: 'audio/flac' }
    }
    case 'aac':
      if (rate !== null) return 'sample_rate is not applicable for encoding aac (it is fixed at 22050).'
      if (container !== null && container !== 'none') return `Unsupported container ${container} for encoding aac.`
      return { encoding: { muxer: 'adts', args: ['-c:a', 'aac', '-ar', '22050', '-b:a', '48k'] }, contentType: 'audio/aac' }
    default:
      return `Unsupported encoding ${encoding}.`
  }
}

export async function startFakeDeepgram(options: FakeDeepgramOptions = {}): Promise<FakeDeepgram> {
  const apiKey = options.apiKey ?? FAKE_DEEPGRAM_KEY
  const transcriptText = options.transcript ?? FAKE_DG_TRANSCRIPT
  const requests: RecordedAudioRequest[] = []
  const speeches: SpeechRecord[] = []
  const usageLog: FakeDeepgram['usageLog'] = []
  const gate = new Gate()

  const errCode = (status: number, code: string, message: string) => Response.json({ err_code: code, err_msg: message, request_id: requestId() }, { status })
  const category = (status: number, cat: string, message: string, details: string) =>
    Response.json({ category: cat, message, details, request_id: requestId() }, { status })
  const scripted = (trigger: string): Response | null => {
    if (trigger.includes('fail-429')) return errCode(429, 'TOO_MANY_REQUESTS', 'Too many requests. Please try again later.')
    if (trigger.includes('fail-500')) return errCode(500, 'INTERNAL_SERVER_ERROR', 'Internal server error.')
    if (trigger.includes('fail-503')) return errCode(503, 'SERVICE_UNAVAILABLE', 'Service temporarily unavailable.')
    if (trigger.includes('fail-402')) return errCode(402, 'ASR_PAYMENT_REQUIRED', 'Project does not have enough credits for an ASR request and does not have an overage agreement.')
    return null
  }

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 60,
    maxRequestBodySize: 64 * 1024 * 1024,
    async fetch(req) {
      const url = new URL(req.url)
      const record: RecordedAudioRequest = { method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: headersOf(req), body: null }
      requests.push(record)
      if (req.method !== 'POST' || (url.pathname !== '/v1/listen' && url.pathname !== '/v1/speak')) return errCode(404, 'NOT_FOUND', 'Not Found')
      const auth = req.headers.get('authorization')?.match(/^Token\s+(.+)$/i)?.[1]
      if (auth !== apiKey) return errCode(401, 'INVALID_AUTH', 'Invalid credentials.')
      return url.pathname === '/v1/listen' ? listen(req, record, url.searchParams) : speak(req, record, url.searchParams)
    },
  })

  async function listen(req: Request, record: RecordedAudioRequest, q: URLSearchParams): Promise<Response> {
    const bytes = await req.bytes()
    record.body = { size: bytes.length }
    for (const name of BOOLEAN_PARAMS) {
      const value = q.get(name)
      if (value !== null && value !== 'true' && value !== 'false') return errCode(400, 'INVALID_QUERY_PARAMETER', `Invalid value '${value}' for query parameter ${name}: expected a boolean.`)
    }
    const model = q.get('model') ?? 'base'
    const language = q.get('language')
    const fault = scripted(language ?? '')
    if (fault) return fault
    if (!LISTEN_MODELS.includes(model) || (language !== null && !LANGUAGES.includes(language))) {
      return errCode(400, 'Bad Request', 'Bad Request: No such model/language/tier combination found.')
    }
    if ((req.headers.get('content-type') ?? '').startsWith('application/json')) {
      return errCode(400, 'Bad Request', 'Content-type was application/json, but we could not process the JSON payload.')
    }
    const duration = await audioDuration(bytes)
    if (duration === null) return errCode(400, 'Bad Request', 'Bad Request: failed to process audio: corrupt or unsupported data')

    const on = (name: string) => q.get(name) === 'true'
    const punctuated = on('smart_format') || on('punctuate')
    const diarize = on('diarize')
    const text = punctuated ? transcriptText : transcriptText.toLowerCase().replace(/[.,!?]/g, '')
    const timed = timedWords(transcriptText, duration)
    const sentences: { text: string; start: number; end: number; speaker: number }[] = []
    let current: (typeof sentences)[number] | null = null
    const words = timed.map((w) => {
      const speaker = sentences.length % 2
      if (!current) current = { text: '', start: w.start, end: w.end, speaker }
      current.text += (current.text ? ' ' : '') + w.text
      current.end = w.end
      if (/[.!?]$/.test(w.text)) {
        sentences.push(current)
        current = null
      }
      const word: Record<string, unknown> = { word: w.text.toLowerCase().replace(/[.,!?]/g, ''), start: w.start, end: w.end, confidence: 0.97 }
      if (punctuated) word.punctuated_word = w.text
      if (diarize) Object.assign(word, { speaker, speaker_confidence: 0.9 })
      return word
    })
    if (current) sentences.push(current)
    const alternative: Record<string, unknown> = { transcript: text, confidence: 0.97, words }
    if (on('paragraphs') || on('smart_format')) {
      alternative.paragraphs = {
        transcript: `\n${text}`,
        paragraphs: [
          {
            sentences: sentences.map(({ text, start, end }) => ({ text, start, end })),
            num_words: words.length,
            start: sentences[0]?.start ?? 0,
            end: sentences.at(-1)?.end ?? 0,
            ...(diarize ? { speaker: 0 } : {}),
          },
        ],
      }
      if (diarize) {
        // Deepgram opens a new paragraph at every speaker change.
        ;(alternative.paragraphs as any).paragraphs = sentences.map((s) => ({ sentences: [{ text: s.text, start: s.start, end: s.end }], speaker: s.speaker, num_words: s.text.split(' ').length, start: s.start, end: s.end }))
      }
    }
    const channel: Record<string, unknown> = { alternatives: [alternative] }
    if (on('detect_language')) Object.assign(channel, { detected_language: 'en', language_confidence: 0.99 })
    const modelId = crypto.randomUUID()
    usageLog.push({ seconds: duration })
    return Response.json({
      metadata: {
        transaction_key: 'deprecated',
        request_id: requestId(),
        sha256: new Bun.CryptoHasher('sha256').update(bytes).digest('hex'),
        created: new Date().toISOString(),
        duration,
        channels: 1,
        models: [modelId],
        model_info: { [modelId]: { name: `general-${model}`, version: '2024-01-09.29447', arch: model } },
      },
      results: { channels: [channel] },
    })
  }

  async function speak(req: Request, record: RecordedAudioRequest, q: URLSearchParams): Promise<Response> {
    const raw = await req.text()
    let body: any
    try {
      body = JSON.parse(raw)
    } catch {
      return category(400, 'INVALID_JSON', 'Invalid JSON submitted.', 'Json deserialize error: expected value at line 1 column 1')
    }
    record.body = body
    if (!body || typeof body.text !== 'string') return category(400, 'INVALID_JSON', 'Invalid JSON submitted.', 'Json deserialize error: missing field `text` at line 1 column 2')
    const model = q.get('model') ?? 'aura-asteria-en'
    if (!SPEAK_MODELS.includes(model)) return category(400, 'INVALID_QUERY_PARAMETER', 'Failed to process the query parameters.', `No such model: ${model}`)
    const output = speakEncoding(q)
    if (typeof output === 'string') return category(400, 'UNSUPPORTED_AUDIO_FORMAT', 'Unsupported audio format.', output)
    const speed = q.get('speed')
    if (speed !== null && !(Number(speed) >= 0.7 && Number(speed) <= 1.5)) return category(400, 'INVALID_QUERY_PARAMETER', 'Failed to process the query parameters.', 'speed must be between 0.7 and 1.5')
    if (body.text.length > SPEAK_LIMIT) return category(413, 'INPUT_TOO_LONG', 'Text input is too long.', `The text is ${body.text.length} characters; the limit is ${SPEAK_LIMIT}.`)
    if (body.text.trim() === '') return category(400, 'INVALID_INPUT', 'Text input is empty.', 'The text field must contain at least one character.')
    const fault = scripted(body.text)
    if (fault) return fault

    const bytes = await synthesize(body.text, output.encoding)
    const speechRecord: SpeechRecord = { bytes: bytes.length, chunksSent: 0, done: false, aborted: false }
    speeches.push(speechRecord)
    usageLog.push({ characters: body.text.length })
    const stream = chunkedBody(bytes, { chunks: options.chunks ?? 6, delayMs: options.chunkDelayMs ?? 15, beforeLast: () => gate.wait() }, speechRecord)
    return new Response(stream, {
      headers: { 'content-type': output.contentType, 'dg-model-name': model, 'dg-char-count': String(body.text.length), 'dg-request-id': requestId() },
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
