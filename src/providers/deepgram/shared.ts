import type { AudioAbilities, ProviderConfig } from '../../plugin-sdk/index.ts'

export const DEFAULT_BASE_URL = 'https://api.deepgram.com'

export function baseURL(provider: ProviderConfig): string {
  return (provider.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '').replace(/\/v1$/, '')
}

export function authHeaders(provider: ProviderConfig): Record<string, string> {
  return provider.apiKey ? { authorization: `Token ${provider.apiKey}` } : {}
}

/** Sample rate of the `pcm` (and `wav`) speech asked of Deepgram: its default for linear16, and OpenAI's for pcm. */
export const PCM_SAMPLE_RATE = 24_000

/**
 * OpenAI speech format → Deepgram `/v1/speak` query ("Audio Format Combinations", Deepgram's TTS media output
 * settings): mp3 and aac have a fixed rate and no container; opus travels in Ogg; linear16 in a WAV container or
 * bare (`container=none`) for OpenAI's headerless pcm.
 */
export const OUTPUT_FORMATS: Record<string, Record<string, string>> = {
  mp3: { encoding: 'mp3' },
  opus: { encoding: 'opus', container: 'ogg' },
  aac: { encoding: 'aac' },
  flac: { encoding: 'flac' },
  wav: { encoding: 'linear16', container: 'wav', sample_rate: String(PCM_SAMPLE_RATE) },
  pcm: { encoding: 'linear16', container: 'none', sample_rate: String(PCM_SAMPLE_RATE) },
}

export const ABILITIES: AudioAbilities = {
  // Deepgram "supports over 100 audio formats"; these are the ones the gateway detects.
  inputFormats: ['wav', 'mp3', 'flac', 'ogg', 'webm', 'm4a', 'mp4', 'aac'],
  // Pre-recorded audio: 2 GB at most per file (Deepgram's pre-recorded audio docs, "File size").
  maxUploadBytes: 2 * 1024 ** 3,
  outputFormats: Object.keys(OUTPUT_FORMATS),
  pcmSampleRate: PCM_SAMPLE_RATE,
  transcriptFormats: ['json'],
  streamTranscripts: false,
}

export const abilities = (_provider: ProviderConfig): AudioAbilities => ABILITIES
