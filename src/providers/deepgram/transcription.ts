import { GatewayError, type AttemptContext, type AudioUpload, type Transcript, type UpstreamRequest, clientFormat, languageName, speakerLabel } from '../../plugin-sdk/index.ts'
import { authHeaders, baseURL } from './shared.ts'

const HANDLED = new Set(['file', 'model', 'language', 'response_format', 'timestamp_granularities', 'stream'])

/**
 * OpenAI transcription request → Deepgram `POST /v1/listen` with the audio itself as the body (streamed from the
 * spooled upload, with its detected MIME type). Smart formatting, punctuation and paragraphs give the text and the
 * sentence timings srt and vtt are made of. Without a `language` Deepgram would assume English, so the language is
 * detected, as OpenAI does. `diarized_json` turns on diarization. `prompt` (Deepgram's `keyterm` is a list of terms,
 * not context) and `temperature` have no equivalent.
 */
export function buildTranscriptionRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model } = ctx.target
  const upload = body.file as AudioUpload
  const query = new URLSearchParams({ model, smart_format: 'true', punctuate: 'true', paragraphs: 'true' })
  if (typeof body.language === 'string' && body.language) query.set('language', body.language)
  else query.set('detect_language', 'true')
  if (clientFormat(body, ctx) === 'diarized_json') query.set('diarize', 'true')
  for (const name in body) {
    const value = body[name]
    if (HANDLED.has(name) || value === undefined || value === null) continue
    if (name === 'chunking_strategy' && value === 'auto') continue
    ctx.dropParam(name)
  }
  return {
    url: `${baseURL(provider)}/v1/listen?${query}`,
    method: 'POST',
    headers: { 'content-type': upload.contentType || 'application/octet-stream', ...authHeaders(provider) },
    body: upload.blob,
  }
}

/**
 * Deepgram pre-recorded response → transcript: the first channel's best alternative. Segments are the paragraphs'
 * sentences (or the utterances, or else one segment over every word), each with its speaker when diarized.
 */
export function parseTranscript(body: any, _ctx: AttemptContext): Transcript {
  const channel = body?.results?.channels?.[0]
  const alternative = channel?.alternatives?.[0]
  if (!alternative || typeof alternative !== 'object') {
    throw new GatewayError(502, 'The upstream provider returned a response that is not a Deepgram transcript.', { code: 'upstream_bad_response' })
  }
  const words: NonNullable<Transcript['words']> = []
  for (const w of Array.isArray(alternative.words) ? alternative.words : []) {
    const text = typeof w?.punctuated_word === 'string' ? w.punctuated_word : w?.word
    if (typeof text !== 'string' || typeof w.start !== 'number' || typeof w.end !== 'number') continue
    const speaker = speakerLabel(w.speaker)
    words.push(speaker === undefined ? { word: text, start: w.start, end: w.end } : { word: text, start: w.start, end: w.end, speaker })
  }

  const segments: NonNullable<Transcript['segments']> = []
  const segment = (start: unknown, end: unknown, text: unknown, speaker: unknown) => {
    if (typeof start !== 'number' || typeof end !== 'number' || typeof text !== 'string' || !text.trim()) return
    const label = speakerLabel(speaker)
    segments.push(label === undefined ? { start, end, text: text.trim() } : { start, end, text: text.trim(), speaker: label })
  }
  const paragraphs = alternative.paragraphs?.paragraphs
  const utterances = body.results?.utterances
  if (Array.isArray(paragraphs) && paragraphs.length > 0) {
    for (const p of paragraphs) for (const s of Array.isArray(p?.sentences) ? p.sentences : []) segment(s?.start, s?.end, s?.text, p.speaker)
  } else if (Array.isArray(utterances) && utterances.length > 0) {
    for (const u of utterances) segment(u?.start, u?.end, u?.transcript, u?.speaker)
  } else if (words.length > 0) {
    segment(words[0]!.start, words.at(-1)!.end, alternative.transcript, undefined)
  }

  const transcript: Transcript = { text: typeof alternative.transcript === 'string' ? alternative.transcript.trim() : '', words, segments }
  const language = languageName(channel.detected_language ?? alternative.languages?.[0])
  if (language) transcript.language = language
  const duration = body.metadata?.duration
  if (typeof duration === 'number') {
    transcript.duration = duration
    transcript.usage = { type: 'duration', seconds: Math.ceil(duration) }
  }
  return transcript
}
