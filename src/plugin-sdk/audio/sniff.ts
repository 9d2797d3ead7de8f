/**
 * Audio format detection from the first bytes of a file, never from a client's file name or MIME claim.
 * Names are the ones `AudioUpload.format` uses.
 */

/** Format → MIME type, as OpenAI answers them (speech `opus` travels in Ogg; `pcm` is raw 16-bit LE). */
export const AUDIO_MIME: Record<string, string> = {
  wav: 'audio/wav',
  mp3: 'audio/mpeg',
  flac: 'audio/flac',
  ogg: 'audio/ogg',
  opus: 'audio/ogg',
  webm: 'audio/webm',
  m4a: 'audio/mp4',
  mp4: 'audio/mp4',
  aac: 'audio/aac',
  caf: 'audio/x-caf',
  amr: 'audio/amr',
  pcm: 'audio/pcm',
}

const ascii = (b: Uint8Array, at: number, text: string): boolean => {
  if (b.length < at + text.length) return false
  for (let i = 0; i < text.length; i++) if (b[at + i] !== text.charCodeAt(i)) return false
  return true
}

/** An MPEG audio frame header (layer I–III) at `at`, with its fields checked so random 0xFF bytes do not pass. */
export const isMpegFrame = (b: Uint8Array, at: number): boolean => {
  if (b.length < at + 4) return false
  const b1 = b[at + 1]!
  const b2 = b[at + 2]!
  return (
    b[at] === 0xff &&
    (b1 & 0xe0) === 0xe0 &&
    ((b1 >> 3) & 3) !== 1 && // reserved version
    ((b1 >> 1) & 3) !== 0 && // layer 0 is ADTS's, not MPEG audio's
    b2 >> 4 !== 15 && // bad bitrate index
    ((b2 >> 2) & 3) !== 3 // reserved sample rate
  )
}

/** An ADTS (raw AAC) frame header at `at`. */
export const isAdtsFrame = (b: Uint8Array, at: number): boolean =>
  b.length >= at + 7 && b[at] === 0xff && (b[at + 1]! & 0xf6) === 0xf0 && ((b[at + 2]! >> 2) & 0xf) < 13

/** Bytes an ID3v2 tag at the start takes (header, body and optional footer); 0 when there is none. */
export const id3v2Size = (b: Uint8Array): number => {
  if (!ascii(b, 0, 'ID3') || b.length < 10) return 0
  const size = ((b[6]! & 0x7f) << 21) | ((b[7]! & 0x7f) << 14) | ((b[8]! & 0x7f) << 7) | (b[9]! & 0x7f)
  return 10 + size + (b[5]! & 0x10 ? 10 : 0)
}

/**
 * The container or stream format of an audio file from its first bytes (a few KiB are plenty; an ID3 tag in front
 * is looked behind when the head holds it): `wav`, `mp3`, `flac`, `ogg` (Opus and Vorbis), `webm`, `m4a`, `aac`,
 * `caf`, `amr`; null for anything else.
 */
export function sniffAudioFormat(head: Uint8Array): string | null {
  const b = head
  if ((ascii(b, 0, 'RIFF') || ascii(b, 0, 'RF64') || ascii(b, 0, 'BW64')) && ascii(b, 8, 'WAVE')) return 'wav'
  if (ascii(b, 0, 'fLaC')) return 'flac'
  if (ascii(b, 0, 'OggS')) return 'ogg'
  if (b.length >= 4 && b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3) return 'webm'
  if (ascii(b, 4, 'ftyp')) return 'm4a'
  if (ascii(b, 0, 'caff')) return 'caf'
  if (ascii(b, 0, '#!AMR')) return 'amr'
  if (ascii(b, 0, 'ADIF')) return 'aac'
  if (ascii(b, 0, 'ID3')) {
    // Tagged files are mostly MP3, but FLAC and AAC can carry ID3v2 too: look behind the tag when we have it.
    const behind = id3v2Size(b)
    if (behind + 4 <= b.length) {
      if (ascii(b, behind, 'fLaC')) return 'flac'
      if (isAdtsFrame(b, behind)) return 'aac'
    }
    return 'mp3'
  }
  if (isAdtsFrame(b, 0)) return 'aac'
  if (isMpegFrame(b, 0)) return 'mp3'
  return null
}
