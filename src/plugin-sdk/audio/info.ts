import { id3v2Size, isMpegFrame, sniffAudioFormat } from './sniff.ts'
import { readWavHeader } from './wav.ts'

/**
 * What the gateway can tell about an audio file without decoding it: format, and for WAV, FLAC, MP3 and Ogg (Opus,
 * Vorbis) the duration. WAV, FLAC and Ogg read only the head and the tail of the blob (`blob.slice`), so a 100 MB
 * upload spooled to disk costs two small reads; MP3 counts its frames through the whole file (a few ms for 25 MB).
 *
 * A duration a file states (FLAC's sample count, an MP3's VBR frame count, Ogg's last granule) is the client's to
 * write, and transcription is billed by it: a stated duration shorter than the audio bytes can hold at the format's
 * highest rate (FLAC's uncompressed PCM, Opus's 510 kbit/s) is raised to that, and MP3 is measured from its frames.
 *
 * Written here rather than taken from `music-metadata`: that library measured as exact for WAV/MP3/FLAC, but it reads
 * an Ogg file page by page to its end for the duration (all 2 MB of a 3-minute Opus file, 524 reads).
 */
export interface AudioInfo {
  format: string
  durationSeconds: number | null
  sampleRate: number | null
  channels: number | null
}

const HEAD = 64 * 1024
/** An Ogg page is at most 27 + 255 + 255·255 bytes: the last one starts within this many bytes of the end. */
const TAIL = 65_307 + 1024

const bytesOf = async (blob: Blob, start: number, end: number) => new Uint8Array(await blob.slice(start, end).arrayBuffer())
const ascii = (b: Uint8Array, at: number, text: string): boolean => {
  if (b.length < at + text.length) return false
  for (let i = 0; i < text.length; i++) if (b[at + i] !== text.charCodeAt(i)) return false
  return true
}
const viewOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength)

export async function audioInfo(blob: Blob): Promise<AudioInfo | null> {
  let head = await bytesOf(blob, 0, HEAD)
  // A large ID3v2 tag (cover art) in front: read again from behind it.
  const tagSize = id3v2Size(head)
  let headOffset = 0
  if (tagSize > 0 && tagSize + 16 > head.length && tagSize < blob.size) {
    headOffset = tagSize
    head = await bytesOf(blob, tagSize, tagSize + HEAD)
  }
  const format = headOffset > 0 ? sniffAudioFormat(head) ?? 'mp3' : sniffAudioFormat(head)
  if (!format) return null
  const unknown: AudioInfo = { format, durationSeconds: null, sampleRate: null, channels: null }
  try {
    switch (format) {
      case 'wav':
        return (await wavInfo(blob, head)) ?? unknown
      case 'flac':
        return flacInfo(head, headOffset > 0 ? 0 : id3v2Size(head), blob.size - headOffset) ?? unknown
      case 'mp3':
        return (await mp3Info(blob, head, headOffset)) ?? unknown
      case 'ogg':
        return (await oggInfo(blob, head)) ?? unknown
      default:
        return unknown
    }
  } catch {
    // Malformed headers: the format stands, the duration is left to the transcoder's probe.
    return unknown
  }
}

async function wavInfo(blob: Blob, head: Uint8Array): Promise<AudioInfo | null> {
  let h = readWavHeader(head)
  if (!h) {
    // The data chunk lies past the head (a huge LIST or JUNK chunk): walk the chunk headers with small reads.
    let at = 12
    let fmtEnd = 0
    for (let i = 0; i < 64 && at + 8 <= blob.size; i++) {
      const chunk = at + 8 <= head.length ? head.subarray(at, at + 8) : await bytesOf(blob, at, at + 8)
      const id = String.fromCharCode(...chunk.subarray(0, 4))
      if (id === 'fmt ') fmtEnd = at + 8 + viewOf(chunk).getUint32(4, true)
      if (id === 'data') {
        if (fmtEnd === 0 || fmtEnd > head.length) return null
        // Rebuild a small header: the head up to the end of fmt, then this data chunk.
        const joined = new Uint8Array(fmtEnd + 8)
        joined.set(head.subarray(0, fmtEnd))
        joined.set(chunk, fmtEnd)
        const found = readWavHeader(joined)
        if (!found) return null
        h = { ...found, dataOffset: at + 8 }
        break
      }
      at += 8 + viewOf(chunk).getUint32(4, true)
      at += at & 1
    }
    if (!h) return null
  }
  const available = Math.max(0, blob.size - h.dataOffset)
  const dataBytes = h.dataBytes === null || h.dataBytes > available ? available : h.dataBytes
  const durationSeconds = h.byteRate > 0 ? dataBytes / h.byteRate : null
  return { format: 'wav', durationSeconds, sampleRate: h.sampleRate, channels: h.channels }
}

function flacInfo(head: Uint8Array, at: number, size: number): AudioInfo | null {
  // "fLaC", then the STREAMINFO block (always first): 4-byte block header, 34-byte body.
  if (!ascii(head, at, 'fLaC') || head.length < at + 8 + 18) return null
  const b = head.subarray(at + 8)
  const sampleRate = (b[10]! << 12) | (b[11]! << 4) | (b[12]! >> 4)
  const channels = ((b[12]! >> 1) & 7) + 1
  const bitsPerSample = (((b[12]! & 1) << 4) | (b[13]! >> 4)) + 1
  const totalSamples = (b[13]! & 0x0f) * 2 ** 32 + viewOf(b).getUint32(14)
  const stated = totalSamples > 0 && sampleRate > 0 ? totalSamples / sampleRate : null
  // Never longer than its bytes as uncompressed PCM at the stream's own rate, which its frames are decoded at.
  const least = sampleRate > 0 ? (size - at) / ((sampleRate * channels * bitsPerSample) / 8) : 0
  return { format: 'flac', durationSeconds: stated === null ? null : Math.max(stated, least), sampleRate: sampleRate || null, channels }
}

const MP3_BITRATES: Record<string, number[]> = {
  // kbit/s by [version][layer], index 1..14
  '1-1': [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  '1-2': [32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  '1-3': [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  '2-1': [32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  '2-2': [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
}
const MP3_RATES = [44100, 48000, 32000]

interface MpegFrame {
  mpeg1: boolean
  layer: number
  bitrate: number
  sampleRate: number
  channels: number
  samplesPerFrame: number
  frameBytes: number
}

function mpegFrame(b: Uint8Array, at: number): MpegFrame | null {
  if (!isMpegFrame(b, at)) return null
  const b1 = b[at + 1]!
  const b2 = b[at + 2]!
  const b3 = b[at + 3]!
  const version = (b1 >> 3) & 3 // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
  const mpeg1 = version === 3
  const layer = 4 - ((b1 >> 1) & 3)
  const bitrateIndex = b2 >> 4
  if (bitrateIndex === 0) return null // free format: no fixed frame size
  const table = mpeg1 ? MP3_BITRATES[`1-${layer}`]! : MP3_BITRATES[layer === 1 ? '2-1' : '2-2']!
  const bitrate = table[bitrateIndex - 1]! * 1000
  const sampleRate = MP3_RATES[(b2 >> 2) & 3]! / (mpeg1 ? 1 : version === 2 ? 2 : 4)
  const padding = (b2 >> 1) & 1
  const samplesPerFrame = layer === 1 ? 384 : layer === 2 || mpeg1 ? 1152 : 576
  const frameBytes = layer === 1 ? (Math.floor((12 * bitrate) / sampleRate) + padding) * 4 : Math.floor((samplesPerFrame / 8) * bitrate / sampleRate) + padding
  return { mpeg1, layer, bitrate, sampleRate, channels: b3 >> 6 === 3 ? 1 : 2, samplesPerFrame, frameBytes }
}

/** The first frame from `at`: confirmed by the frame that follows it (sync bytes occur by chance). */
function firstFrame(head: Uint8Array, from: number): { at: number; frame: MpegFrame } | null {
  for (let at = from; at + 4 <= head.length; at++) {
    const frame = mpegFrame(head, at)
    if (frame && (at + frame.frameBytes + 4 > head.length || mpegFrame(head, at + frame.frameBytes))) return { at, frame }
  }
  return null
}

/** Bytes a second over the whole frames from `at` in the head: exact for CBR, an estimate for VBR. */
function averageByteRate(head: Uint8Array, at: number, frame: MpegFrame): number {
  let bytes = 0
  let seconds = 0
  for (let f = at, fr: MpegFrame | null = frame; fr && f + fr.frameBytes <= head.length; f += fr.frameBytes, fr = mpegFrame(head, f)) {
    bytes += fr.frameBytes
    seconds += fr.samplesPerFrame / fr.sampleRate
  }
  return bytes > 0 && seconds > 0 ? bytes / seconds : frame.bitrate / 8
}

/**
 * Where an MP3 stream's audio starts in its first bytes, and its byte rate: the length of what follows is its size
 * over that rate (as a WAV's follows from its header). Null when the head holds no frame.
 */
export function mp3ByteRate(head: Uint8Array): { dataOffset: number; byteRate: number } | null {
  const found = firstFrame(head, id3v2Size(head))
  return found && { dataOffset: found.at, byteRate: averageByteRate(head, found.at, found.frame) }
}

async function mp3Info(blob: Blob, head: Uint8Array, headOffset: number): Promise<AudioInfo | null> {
  const found = firstFrame(head, headOffset > 0 ? 0 : id3v2Size(head))
  if (!found) return null
  const { at, frame } = found
  // A VBR header (Xing, Info, VBRI) is a frame of silence that states the others' count: skipped, and not believed.
  const xing = at + 4 + (frame.mpeg1 ? (frame.channels === 1 ? 17 : 32) : frame.channels === 1 ? 9 : 17)
  const tagged = ascii(head, xing, 'Xing') || ascii(head, xing, 'Info') || ascii(head, at + 36, 'VBRI')
  const seconds = await mpegSeconds(blob, headOffset + at + (tagged ? frame.frameBytes : 0))
  return { format: 'mp3', durationSeconds: seconds > 0 ? seconds : null, sampleRate: frame.sampleRate, channels: frame.channels }
}

/** Bytes of the file read at a time while its frames are counted; and past this many bytes without a frame, the rest is not MPEG audio. */
const WALK_WINDOW = 1024 * 1024

/**
 * Seconds of MPEG audio from `from` to the end, frame by frame as a decoder finds them: a frame's header gives its
 * length, so only the headers are looked at. Bytes between frames (a tag, damage) are skipped to the next frame that
 * the one after it confirms, as `firstFrame` finds the first.
 */
async function mpegSeconds(blob: Blob, from: number): Promise<number> {
  let seconds = 0
  let window = new Uint8Array(0)
  let windowAt = from
  let at = from
  let synced = true
  let lost = 0 // bytes since the last frame
  while (at + 4 <= blob.size && lost < WALK_WINDOW) {
    if (at + 4 > windowAt + window.length) {
      windowAt = at
      window = await bytesOf(blob, at, at + WALK_WINDOW)
    }
    const frame = mpegFrame(window, at - windowAt)
    if (frame && !synced) {
      // Confirmed by the next header, read across the window's end if need be.
      const next = at + frame.frameBytes
      const ahead = next + 4 <= windowAt + window.length ? window.subarray(next - windowAt) : await bytesOf(blob, next, next + 4)
      if (ahead.length >= 4 && !mpegFrame(ahead, 0)) {
        at++
        lost++
        continue
      }
    }
    if (!frame) {
      synced = false
      at++
      lost++
      continue
    }
    synced = true
    lost = 0
    // A frame cut short by the end of the file is not audio a decoder can play.
    if (at + frame.frameBytes > blob.size) break
    seconds += frame.samplesPerFrame / frame.sampleRate
    at += frame.frameBytes
  }
  return seconds
}

/** Opus's highest bit rate (RFC 6716), in bytes a second. */
const OPUS_MAX_BYTE_RATE = 510_000 / 8

async function oggInfo(blob: Blob, head: Uint8Array): Promise<AudioInfo | null> {
  // The first page of the audio stream carries its identification header.
  const view = viewOf(head)
  if (head.length < 28) return null
  const serial = view.getUint32(14, true)
  const segments = head[26]!
  const body = 27 + segments
  let rate: number
  let preSkip = 0
  let channels: number
  let maxBitrate = 0
  if (ascii(head, body, 'OpusHead')) {
    channels = head[body + 9]!
    preSkip = view.getUint16(body + 10, true)
    rate = 48000 // Opus granule positions always count 48 kHz samples
  } else if (head[body] === 1 && ascii(head, body + 1, 'vorbis')) {
    channels = head[body + 11]!
    rate = view.getUint32(body + 12, true)
    maxBitrate = Math.max(0, view.getInt32(body + 16, true))
  } else return { format: 'ogg', durationSeconds: null, sampleRate: null, channels: null }
  const start = Math.max(0, blob.size - TAIL)
  const tail = start === 0 ? await bytesOf(blob, 0, blob.size) : await bytesOf(blob, start, blob.size)
  const tv = viewOf(tail)
  // The last page of this stream that parses whole and has a granule position.
  for (let i = tail.length - 27; i >= 0; i--) {
    if (tail[i] !== 0x4f || !ascii(tail, i, 'OggS') || tail[i + 4] !== 0) continue
    const n = tail[i + 26]!
    if (i + 27 + n > tail.length) continue
    let size = 27 + n
    for (let s = 0; s < n; s++) size += tail[i + 27 + s]!
    if (i + size > tail.length || tv.getUint32(i + 14, true) !== serial) continue
    const lo = tv.getUint32(i + 6, true)
    const hi = tv.getInt32(i + 10, true)
    if (hi === -1 && lo === 0xffffffff) continue // no packet ends on this page
    const granule = hi * 2 ** 32 + lo
    const samples = granule - preSkip
    // Never longer than its bytes at the codecs' highest rate (Opus's 510 kbit/s; Vorbis's stated maximum, if larger).
    const least = blob.size / (Math.max(OPUS_MAX_BYTE_RATE, maxBitrate / 8))
    return { format: 'ogg', durationSeconds: Math.max(samples > 0 ? samples / rate : 0, least), sampleRate: rate, channels }
  }
  return { format: 'ogg', durationSeconds: null, sampleRate: rate, channels }
}
