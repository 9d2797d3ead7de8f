import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import { AUDIO_MIME, audioInfo, mp3ByteRate, readWavHeader, sniffAudioFormat, type WavHeader } from '../plugin-sdk/audio/index.ts'
import type { AudioAbilities, AudioSpec, AudioUpload, Operation, ProviderConfig, Transcoder, Transcript } from '../plugin-sdk/types.ts'
import type { RequestCtx } from './context.ts'
import { validateRequest } from './request-schemas.ts'
import { readMultipart, spoolStream, type SpoolOptions } from './spool.ts'

/**
 * The audio half of the pipeline, free of any provider and of how conversion happens: what an upload is, what a
 * target can take, what to ask it for and what to convert, and how transcripts and speech reach the client.
 */

/** OpenAI's `pcm`: 16-bit little-endian mono at 24 kHz. */
export const PCM_RATE = 24_000

/** Content types of speech as OpenAI sends them. */
export const SPEECH_MIME: Record<string, string> = {
  mp3: 'audio/mpeg',
  opus: 'audio/opus',
  aac: 'audio/aac',
  flac: 'audio/flac',
  wav: 'audio/wav',
  pcm: 'audio/pcm',
}

// --- Requests ---------------------------------------------------------------------------------------------

/** Multipart fields are strings: the typed ones are converted so the schemas check them like JSON. */
export function formBody(fields: Record<string, string | string[]>): Record<string, any> {
  const body: Record<string, any> = { ...fields }
  for (const name of ['timestamp_granularities', 'include']) {
    if (typeof body[name] === 'string') body[name] = [body[name]]
  }
  if (typeof body.temperature === 'string' && body.temperature.trim() !== '') {
    const n = Number(body.temperature)
    body.temperature = Number.isFinite(n) ? n : body.temperature
  }
  if (typeof body.stream === 'string') {
    body.stream = body.stream === 'true' ? true : body.stream === 'false' ? false : body.stream
  }
  if (typeof body.chunking_strategy === 'string' && body.chunking_strategy.startsWith('{')) {
    try {
      body.chunking_strategy = JSON.parse(body.chunking_strategy)
    } catch {
      throw badRequest("Invalid value for 'chunking_strategy': expected 'auto' or a JSON object.", 'chunking_strategy', 'invalid_value')
    }
  }
  return body
}

const notAudio = () =>
  new GatewayError(400, 'The uploaded file is not audio in a format we recognise (flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav, webm, …).', {
    param: 'file',
    code: 'invalid_audio_file',
  })

/** Names a format goes by (providers judge an upload by its name: OpenAI refuses a `.opus` or an extensionless WAV). */
const EXTENSIONS: Record<string, string[]> = { mp3: ['mp3', 'mpga', 'mpeg'], ogg: ['ogg', 'oga'], m4a: ['m4a', 'mp4'] }

/** The client's file name, with the extension of what its bytes are when its own says otherwise (or nothing). */
function nameFor(filename: string, format: string): string {
  const dot = filename.lastIndexOf('.')
  const ext = dot > 0 ? filename.slice(dot + 1).toLowerCase() : ''
  if ((EXTENSIONS[format] ?? [format]).includes(ext)) return filename
  return `${(dot > 0 ? filename.slice(0, dot) : filename) || 'audio'}.${format}`
}

/** What the bytes are (never the client's file name or type), and how long they last when the headers say. */
export async function describeUpload(
  file: { blob: Blob; filename: string; size: number },
  transcoder: Transcoder | null,
  signal: AbortSignal,
): Promise<AudioUpload> {
  if (file.size === 0) throw new GatewayError(400, 'The uploaded file is empty.', { param: 'file', code: 'invalid_audio_file' })
  const format = sniffAudioFormat(await file.blob.slice(0, 64).bytes())
  if (!format) throw notAudio()
  const upload: AudioUpload = { ...file, filename: nameFor(file.filename, format), contentType: AUDIO_MIME[format] ?? 'application/octet-stream', format, durationSeconds: null }
  const info = await audioInfo(file.blob).catch(() => null)
  if (info) {
    upload.durationSeconds = info.durationSeconds
    if (info.sampleRate) upload.sampleRate = info.sampleRate
    if (info.channels) upload.channels = info.channels
  }
  if (upload.durationSeconds === null && transcoder && !transcoder.unavailable) {
    const probed = await transcoder.probe(file.blob, signal).catch(() => null)
    if (probed) {
      upload.durationSeconds = probed.durationSeconds
      upload.sampleRate ??= probed.sampleRate ?? undefined
      upload.channels ??= probed.channels ?? undefined
    }
  }
  return upload
}

/** A transcription's multipart body: fields checked like a JSON body, the file spooled, identified by its bytes and measured. */
export async function readAudioForm(ctx: RequestCtx, request: Request, operation: Operation, options: SpoolOptions, transcoder: Transcoder | null): Promise<Record<string, any>> {
  const form = await readMultipart(request, options, (fn) => ctx.onEnd(fn))
  const body = formBody(form.fields)
  validateRequest(operation, body)
  if (!form.file) throw badRequest("Missing required parameter: 'file'.", 'file', 'missing_required_parameter')
  const upload = await describeUpload(form.file, transcoder, ctx.signal)
  if (upload.durationSeconds !== null) ctx.headers['x-conduit-audio-seconds'] = upload.durationSeconds.toFixed(3)
  body.file = upload
  return body
}

// --- Choosing what to ask a target for -------------------------------------------------------------------

const convertible = (transcoder: Transcoder | null, why: string): Transcoder => {
  if (!transcoder) throw new GatewayError(501, `${why}, and audio conversion is disabled on this gateway (builtin:audio-transcode).`, { code: 'transcoding_unavailable' })
  if (transcoder.unavailable) throw new GatewayError(501, `${why}, and audio conversion is unavailable: ${transcoder.unavailable}`, { code: 'transcoding_unavailable' })
  return transcoder
}

/** The upload as this target takes it: as it came, or converted (format, rate) and, past its size limit, compacted. */
export async function uploadFor(
  upload: AudioUpload,
  abilities: AudioAbilities,
  provider: ProviderConfig,
  transcoder: Transcoder | null,
  signal: AbortSignal,
  converted: Map<string, AudioUpload>,
  cleanup: (fn: () => void) => void,
): Promise<AudioUpload> {
  const rates = abilities.inputSampleRates
  const formatOK = abilities.inputFormats.includes(upload.format) && (!rates || (upload.sampleRate !== undefined && rates.includes(upload.sampleRate)))
  const tooLarge = upload.size > abilities.maxUploadBytes
  if (formatOK && !tooLarge) return upload
  const rate = rates?.[0] ?? 16_000
  const takes = (f: string) => abilities.inputFormats.includes(f)
  // Compacting favours the smallest encoding the target takes (Opus at 16 kHz mono: an hour is ~10 MB).
  const order = tooLarge ? ['ogg', 'mp3', 'flac', 'wav'] : ['wav', 'flac', 'mp3', 'ogg']
  const format = order.find(takes)
  if (!format) throw new GatewayError(400, `The provider '${provider.name}' takes no audio format the gateway can produce.`, { code: 'unsupported_audio_format' })
  const spec: AudioSpec = { format: format === 'ogg' ? 'opus' : format, sampleRate: rate, channels: 1 }
  const key = `${spec.format}/${rate}`
  const done = converted.get(key)
  if (done) return checkSize(done, abilities, provider)
  const why = tooLarge
    ? `The file (${upload.size} bytes) is over the ${abilities.maxUploadBytes}-byte limit of the provider '${provider.name}' and must be re-encoded`
    : `The provider '${provider.name}' does not take ${upload.format}${upload.sampleRate ? ` at ${upload.sampleRate} Hz` : ''} uploads`
  const transcode = convertible(transcoder, why)
  const output = transcode.convert(upload.blob, { format: upload.format, sampleRate: upload.sampleRate, channels: upload.channels }, spec, signal)
  const spooled = await spoolStream(output, Math.max(abilities.maxUploadBytes, upload.size) * 4, () =>
    new GatewayError(413, 'The converted audio grew past any upload limit.', { param: 'file', code: 'file_too_large' }),
  )
  cleanup(spooled.remove)
  const result: AudioUpload = {
    blob: spooled.blob,
    size: spooled.size,
    filename: nameFor(upload.filename, format),
    format,
    contentType: AUDIO_MIME[format] ?? 'application/octet-stream',
    durationSeconds: upload.durationSeconds,
    sampleRate: rate,
    channels: 1,
  }
  converted.set(key, result)
  return checkSize(result, abilities, provider)
}

function checkSize(upload: AudioUpload, abilities: AudioAbilities, provider: ProviderConfig) {
  if (upload.size <= abilities.maxUploadBytes) return upload
  throw new GatewayError(413, `Even re-encoded as ${upload.format} the audio is ${upload.size} bytes, over the ${abilities.maxUploadBytes}-byte limit of the provider '${provider.name}'.`, {
    param: 'file',
    code: 'file_too_large',
  })
}

export interface SpeechPlan {
  /** What the provider is asked for. */
  source: AudioSpec
  /** What the client gets; equal to `source` when nothing is converted. */
  output: AudioSpec
  convert: boolean
}

/** The format to ask the provider for: the client's, else the best the provider makes, converted on the fly. */
export function planSpeech(wanted: string, abilities: AudioAbilities, provider: ProviderConfig, transcoder: Transcoder | null): SpeechPlan {
  const providerRate = abilities.pcmSampleRate ?? PCM_RATE
  const output: AudioSpec = wanted === 'pcm' ? { format: 'pcm', sampleRate: PCM_RATE, channels: 1 } : { format: wanted }
  const makes = (f: string) => abilities.outputFormats.includes(f)
  if (makes(wanted) && (wanted !== 'pcm' || providerRate === PCM_RATE)) return { source: output, output, convert: false }
  // Raw PCM converts with no decoding and no probing, so the first converted bytes leave soonest.
  const format = ['pcm', 'wav', 'flac', 'mp3', 'opus', 'aac'].find(makes)
  if (!format) throw new GatewayError(400, `The provider '${provider.name}' produces no audio format.`, { code: 'unsupported_audio_format' })
  convertible(transcoder, `The provider '${provider.name}' cannot produce ${wanted === 'pcm' ? `pcm at ${PCM_RATE} Hz` : wanted}`)
  const source: AudioSpec = format === 'pcm' ? { format: 'pcm', sampleRate: providerRate, channels: 1 } : { format }
  return { source, output, convert: true }
}

/** Where a stream's audio starts and its bytes a second, read from its first bytes (a WAV's header, an MP3's frames). */
export type ByteRate = Pick<WavHeader, 'dataOffset' | 'byteRate'>

/** Seconds of audio in `bytes` of a spec whose length follows from its size (PCM; WAV and MP3 given their rate); else null. */
export function secondsOf(spec: AudioSpec, bytes: number, rate?: ByteRate | null): number | null {
  if (spec.format === 'pcm') return bytes / 2 / ((spec.sampleRate ?? PCM_RATE) * (spec.channels ?? 1))
  if (rate && rate.byteRate > 0) return Math.max(0, bytes - rate.dataOffset) / rate.byteRate
  return null
}

/** The byte rate of a WAV or MP3 stream from its first bytes; null for other formats, or when they do not say. */
export function byteRateOf(format: string, first: Uint8Array): ByteRate | null {
  if (format === 'wav') return readWavHeader(first)
  if (format === 'mp3') return mp3ByteRate(first)
  return null
}

// --- Transcripts ----------------------------------------------------------------------------------------

const clock = (seconds: number, separator: string) => {
  const ms = Math.max(0, Math.round(seconds * 1000))
  const pad = (n: number, w = 2) => String(n).padStart(w, '0')
  return `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor(ms / 60_000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}${separator}${pad(ms % 1000, 3)}`
}

/** Cues for subtitles: the transcript's segments, or one cue spanning the audio when it has none. */
const cues = (t: Transcript) => (t.segments?.length ? t.segments : [{ start: 0, end: t.duration ?? 0, text: t.text }])

/** A transcript in the client's `response_format`: a JSON object, or text (text/srt/vtt answer text/plain, as OpenAI does). */
export function renderTranscript(t: Transcript, format: string, operation: Operation): { body: string; contentType: string } {
  const text = (body: string) => ({ body, contentType: 'text/plain; charset=utf-8' })
  const json = (value: unknown) => ({ body: JSON.stringify(value), contentType: 'application/json' })
  switch (format) {
    case 'text':
      return text(`${t.text}\n`)
    case 'srt':
      return text(cues(t).map((c, i) => `${i + 1}\n${clock(c.start, ',')} --> ${clock(c.end, ',')}\n${c.text.trim()}\n\n`).join(''))
    case 'vtt':
      return text(`WEBVTT\n\n${cues(t).map((c) => `${clock(c.start, '.')} --> ${clock(c.end, '.')}\n${c.text.trim()}\n\n`).join('')}`)
    case 'verbose_json':
      return json({
        task: operation === 'translations' ? 'translate' : 'transcribe',
        language: t.language ?? 'unknown',
        duration: t.duration ?? 0,
        text: t.text,
        segments: cues(t).map((c, id) => ({ id, seek: 0, start: c.start, end: c.end, text: c.text, tokens: [], temperature: 0, avg_logprob: 0, compression_ratio: 0, no_speech_prob: 0 })),
        ...(t.words ? { words: t.words.map(({ word, start, end }) => ({ word, start, end })) } : {}),
        ...(t.usage ? { usage: t.usage } : {}),
      })
    case 'diarized_json':
      return json({
        task: 'transcribe',
        duration: t.duration ?? 0,
        text: t.text,
        segments: cues(t).map((c, i) => ({ type: 'transcript.text.segment', id: `seg_${i}`, start: c.start, end: c.end, text: c.text, speaker: (c as { speaker?: string }).speaker ?? 'A' })),
        ...(t.usage ? { usage: t.usage } : {}),
      })
    default:
      return json({ text: t.text, ...(t.usage ? { usage: t.usage } : {}) })
  }
}

/** OpenAI's own transcript JSON, as a Transcript (for rendering a format the upstream was not asked for, or SSE). */
export function transcriptOf(body: any): Transcript {
  return {
    text: typeof body?.text === 'string' ? body.text : '',
    language: body?.language,
    duration: body?.duration,
    segments: Array.isArray(body?.segments) ? body.segments.map((s: any) => ({ start: s.start, end: s.end, text: s.text, speaker: s.speaker })) : undefined,
    words: Array.isArray(body?.words) ? body.words : undefined,
    usage: body?.usage,
  }
}

const encoder = new TextEncoder()
export const sseEvent = (value: unknown) => encoder.encode(`data: ${JSON.stringify(value)}\n\n`)

/**
 * A transcript as the stream a provider that cannot stream would have sent: one delta, then done. The done event
 * carries token usage only (the spec's TranscriptTextUsageTokens); a per-second usage stays in the ledger.
 */
export function transcriptEvents(t: Transcript): Uint8Array[] {
  const usage = t.usage?.type === 'tokens' ? { usage: t.usage } : {}
  return [sseEvent({ type: 'transcript.text.delta', delta: t.text }), sseEvent({ type: 'transcript.text.done', text: t.text, ...usage })]
}
