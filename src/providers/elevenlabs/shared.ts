import type { AttemptContext, AudioAbilities, ProviderConfig } from '../../plugin-sdk/index.ts'

export const DEFAULT_BASE_URL = 'https://api.elevenlabs.io'

export function baseURL(provider: ProviderConfig): string {
  return (provider.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '').replace(/\/v1$/, '')
}

export function authHeaders(provider: ProviderConfig): Record<string, string> {
  return provider.apiKey ? { 'xi-api-key': provider.apiKey } : {}
}

/**
 * OpenAI speech format → ElevenLabs `output_format` of the streaming endpoint (enum `TextToSpeechStreamRequestOutputFormat`
 * in elevenlabs-js). `opus_*` is Ogg Opus, as OpenAI's `opus`. The stream endpoint offers no WAV, FLAC or AAC: the
 * gateway converts from one of these (pcm to wav needs no ffmpeg).
 */
export const OUTPUT_FORMATS: Record<string, string> = {
  mp3: 'mp3_44100_128',
  opus: 'opus_48000_64',
  pcm: 'pcm_24000',
}

export const ABILITIES: AudioAbilities = {
  // "All major audio and video formats are supported" (speech-to-text reference); these are the ones the gateway detects.
  inputFormats: ['wav', 'mp3', 'flac', 'ogg', 'webm', 'm4a', 'mp4', 'aac'],
  // "The file size must be less than 5.0GB" (BodySpeechToTextV1SpeechToTextPost in elevenlabs-js).
  maxUploadBytes: 5_000_000_000 - 1,
  outputFormats: Object.keys(OUTPUT_FORMATS),
  pcmSampleRate: 24_000,
  transcriptFormats: ['json'],
  streamTranscripts: false,
}

export const abilities = (_provider: ProviderConfig): AudioAbilities => ABILITIES

const LANGUAGES = new Intl.DisplayNames(['en'], { type: 'language' })

/** ISO 639 code (`eng`, `en`, `en-US`) → the lowercase English name OpenAI's verbose transcripts carry (`english`). */
export function languageName(code: unknown): string | undefined {
  if (typeof code !== 'string' || !code) return undefined
  const primary = code.split(/[-_]/)[0]!.toLowerCase()
  try {
    return (LANGUAGES.of(primary) ?? primary).toLowerCase()
  } catch {
    return primary
  }
}

/**
 * A speaker as OpenAI's diarized transcripts name them: `A`, `B`, … for the numbered speakers ElevenLabs
 * (`speaker_0`) and Deepgram (`0`) report; a named one (`agent`) as it is.
 */
export function speakerLabel(speaker: unknown): string | undefined {
  const n = typeof speaker === 'number' ? speaker : typeof speaker === 'string' ? Number(/^speaker_(\d+)$/.exec(speaker)?.[1] ?? NaN) : NaN
  if (Number.isInteger(n) && n >= 0) return n < 26 ? String.fromCharCode(65 + n) : `S${n}`
  return typeof speaker === 'string' && speaker ? speaker : undefined
}

/** The transcript format the client asked for: the core asks a translating adapter for `json` and renders the rest. */
export const clientFormat = (body: Record<string, any>, ctx: AttemptContext): unknown => ctx.request.body?.response_format ?? body.response_format
