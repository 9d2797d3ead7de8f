import type { AudioAbilities, ProviderConfig } from '../../plugin-sdk/index.ts'

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
