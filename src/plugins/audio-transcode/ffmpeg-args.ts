import type { AudioSpec } from '../../plugin-sdk/types.ts'

/** ffmpeg's names for the raw sample formats a WAV header can announce (we feed the samples, not the header). */
export const RAW_WAV_FORMATS: Record<string, string> = {
  pcm16: 's16le',
  pcm24: 's24le',
  pcm32: 's32le',
  u8: 'u8',
  float32: 'f32le',
  float64: 'f64le',
  alaw: 'alaw',
  mulaw: 'mulaw',
}

/** Demuxers by our format names, so ffmpeg does not have to guess (guessing reads ahead and delays output). */
const DEMUXERS: Record<string, string> = {
  wav: 'wav',
  mp3: 'mp3',
  flac: 'flac',
  ogg: 'ogg',
  opus: 'ogg',
  webm: 'matroska',
  m4a: 'mov',
  mp4: 'mov',
  aac: 'aac',
  caf: 'caf',
  amr: 'amr',
}

export interface EncoderOptions {
  mp3Bitrate: string
  opusBitrate: string
  aacBitrate: string
}

/** Sample rates libopus encodes; ffmpeg refuses others, so a request for 22050 gets the next one up. */
const OPUS_RATES = [8000, 12000, 16000, 24000, 48000]

/** Input options for a known source: raw PCM spelled out, a container named; both with minimal probing. */
export function inputArgs(from: AudioSpec | null, raw: { format: string; sampleRate: number; channels: number } | null): string[] {
  // Probing a pipe holds output back until ffmpeg has seen enough: tell it what comes and let it look at little.
  // Not '-fflags +nobuffer': it drops the packets read while probing (measured: the start of the audio goes missing).
  const fast = ['-probesize', '32', '-analyzeduration', '0']
  if (raw) return ['-f', raw.format, '-ar', String(raw.sampleRate), '-ac', String(raw.channels), ...fast]
  if (!from) return []
  if (from.format === 'pcm') return ['-f', 's16le', '-ar', String(from.sampleRate ?? 24000), '-ac', String(from.channels ?? 1), ...fast]
  if (from.format === 'mulaw' || from.format === 'alaw') return ['-f', from.format, '-ar', String(from.sampleRate ?? 8000), '-ac', String(from.channels ?? 1), ...fast]
  const demuxer = DEMUXERS[from.format]
  return demuxer ? ['-f', demuxer, ...fast] : []
}

/** Output options for `to`, or null for a format this plugin does not produce. */
export function outputArgs(to: AudioSpec, enc: EncoderOptions): string[] | null {
  const rate = to.sampleRate
  const shape = (defaultRate?: number) => [
    ...(rate || defaultRate ? ['-ar', String(rate ?? defaultRate)] : []),
    ...(to.channels ? ['-ac', String(to.channels)] : []),
  ]
  switch (to.format) {
    case 'mp3':
      // No Xing header: on a pipe ffmpeg cannot go back to fill it in, and an empty one misleads players.
      return [...shape(), '-c:a', 'libmp3lame', '-b:a', enc.mp3Bitrate, '-write_xing', '0', '-id3v2_version', '0', '-f', 'mp3']
    case 'opus':
    case 'ogg': {
      const opusRate = rate ? (OPUS_RATES.find((r) => r >= rate) ?? 48000) : undefined
      // One Ogg page per 20 ms Opus packet: the muxer otherwise holds a second of audio per page.
      return [
        ...(opusRate ? ['-ar', String(opusRate)] : []),
        ...(to.channels ? ['-ac', String(to.channels)] : []),
        '-c:a', 'libopus', '-b:a', enc.opusBitrate, '-application', 'audio', '-frame_duration', '20',
        '-page_duration', '20000', '-f', 'ogg',
      ]
    }
    case 'webm':
      return [...shape(), '-c:a', 'libopus', '-b:a', enc.opusBitrate, '-cluster_time_limit', '100', '-live', '1', '-f', 'webm']
    case 'aac':
      return [...shape(), '-c:a', 'aac', '-b:a', enc.aacBitrate, '-f', 'adts']
    case 'm4a':
    case 'mp4':
      // Fragmented MP4: a pipe cannot take a moov atom written at the end.
      return [...shape(), '-c:a', 'aac', '-b:a', enc.aacBitrate, '-movflags', 'frag_keyframe+empty_moov+default_base_moof', '-frag_duration', '100000', '-f', 'mp4']
    case 'flac':
      return [...shape(), '-c:a', 'flac', '-f', 'flac']
    case 'wav':
      return [...shape(), '-c:a', 'pcm_s16le', '-f', 'wav']
    case 'pcm':
      return ['-ar', String(rate ?? 24000), '-ac', String(to.channels ?? 1), '-c:a', 'pcm_s16le', '-f', 's16le']
    case 'mulaw':
    case 'alaw':
      return ['-ar', String(rate ?? 8000), '-ac', String(to.channels ?? 1), '-c:a', `pcm_${to.format}`, '-f', to.format]
    default:
      return null
  }
}

/** ffprobe's format names → ours (`AudioUpload.format`). */
export function formatFromProbe(name: string | undefined): string | null {
  if (!name) return null
  const first = name.split(',')
  if (first.includes('webm') || first.includes('matroska')) return 'webm'
  if (first.includes('mov') || first.includes('mp4') || first.includes('m4a')) return 'm4a'
  const known = ['wav', 'mp3', 'flac', 'ogg', 'aac', 'caf', 'amr']
  return first.find((f) => known.includes(f)) ?? first[0] ?? null
}
