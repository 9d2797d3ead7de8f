import { GatewayError, multipartBody, type AttemptContext, type MultipartValue, type AudioUpload, type Transcript, type UpstreamRequest, clientFormat, languageName, speakerLabel } from '../../plugin-sdk/index.ts'
import { authHeaders, baseURL } from './shared.ts'

/** Transcription fields translated below or owned by the core; any other one set is dropped and signalled. */
const HANDLED = new Set(['file', 'model', 'language', 'temperature', 'response_format', 'timestamp_granularities', 'stream'])

/**
 * OpenAI transcription request → ElevenLabs `POST /v1/speech-to-text` (multipart). Word timestamps are always asked
 * for: segments, srt and vtt are built from them. `diarized_json` turns on ElevenLabs' diarization.
 * `prompt` has no equivalent (ElevenLabs' `keyterms` are a list of terms, billed extra), nor `include[]`.
 */
export function buildTranscriptionRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model } = ctx.target
  const upload = body.file as AudioUpload
  const parts: [string, MultipartValue][] = [['model_id', model]]
  if (typeof body.language === 'string' && body.language) parts.push(['language_code', body.language])
  if (typeof body.temperature === 'number') parts.push(['temperature', String(body.temperature)])
  parts.push(['timestamps_granularity', 'word'])
  if (clientFormat(body, ctx) === 'diarized_json') parts.push(['diarize', 'true'])
  // The spooled upload, streamed from disk as the request is sent (again on a retry).
  parts.push(['file', { blob: upload.blob, filename: upload.filename, contentType: upload.contentType }])
  const form = multipartBody(parts)

  for (const name in body) {
    const value = body[name]
    if (HANDLED.has(name) || value === undefined || value === null) continue
    // "auto" is what ElevenLabs does anyway with long audio.
    if (name === 'chunking_strategy' && value === 'auto') continue
    ctx.dropParam(name)
  }
  return { url: `${baseURL(provider)}/v1/speech-to-text`, method: 'POST', headers: { ...authHeaders(provider), ...form.headers }, body: form.body }
}

interface ElevenLabsWord {
  text: string
  start?: number | null
  end?: number | null
  type: 'word' | 'spacing' | 'audio_event'
  speaker_id?: string | null
}

/** A pause this long between two words starts a new segment, as does a sentence end or another speaker. */
const PAUSE_SECONDS = 1
const SENTENCE_END = /[.!?…。！？]["'”’)\]]*$/

/**
 * ElevenLabs `SpeechToTextChunkResponseModel` → transcript. Words carry the timing; segments are cut at sentence ends,
 * speaker turns and long pauses so the gateway can render srt and vtt. Spacing items keep the text's own spaces;
 * audio events (`(laughter)`) stay in the text but are not words.
 */
export function parseTranscript(body: any, _ctx: AttemptContext): Transcript {
  // A multichannel answer has one transcript per channel; this adapter never asks for one, but a proxy might.
  const chunk = Array.isArray(body?.transcripts) ? body.transcripts[0] : body
  if (!chunk || typeof chunk !== 'object' || typeof chunk.text !== 'string') {
    throw new GatewayError(502, 'The upstream provider returned a response that is not an ElevenLabs transcript.', { code: 'upstream_bad_response' })
  }
  const items: ElevenLabsWord[] = Array.isArray(chunk.words) ? chunk.words : []
  const words: NonNullable<Transcript['words']> = []
  const segments: NonNullable<Transcript['segments']> = []
  let open: { start: number; end: number; text: string; speaker?: string } | null = null
  let lastEnd = 0

  const close = () => {
    if (open && open.text.trim()) segments.push({ ...open, text: open.text.trim() })
    open = null
  }
  for (const item of items) {
    if (!item || typeof item.text !== 'string') continue
    const start = typeof item.start === 'number' ? item.start : lastEnd
    const end = typeof item.end === 'number' ? item.end : start
    if (item.type === 'spacing') {
      if (open) open.text += item.text
      continue
    }
    const speaker = speakerLabel(item.speaker_id)
    if (open && (open.speaker !== speaker || start - open.end >= PAUSE_SECONDS)) close()
    if (!open) open = speaker === undefined ? { start, end, text: '' } : { start, end, text: '', speaker }
    open.text += item.text
    open.end = Math.max(open.end, end)
    lastEnd = end
    if (item.type === 'word') {
      words.push(speaker === undefined ? { word: item.text, start, end } : { word: item.text, start, end, speaker })
      if (SENTENCE_END.test(item.text)) close()
    }
  }
  close()

  const duration = typeof chunk.audio_duration_secs === 'number' ? chunk.audio_duration_secs : lastEnd || undefined
  const transcript: Transcript = { text: chunk.text.trim(), words, segments }
  const language = languageName(chunk.language_code)
  if (language) transcript.language = language
  if (duration !== undefined) {
    transcript.duration = duration
    // OpenAI's shape for audio billed by time (whisper-1): whole seconds.
    transcript.usage = { type: 'duration', seconds: Math.ceil(duration) }
  }
  return transcript
}
