import { id3v2Size, isMpegFrame, sniffAudioFormat } from './sniff.ts'
import { readWavHeader } from './wav.ts'

/**
 * What the gateway can tell about an audio file from its headers alone: format, and for WAV, FLAC, MP3 and Ogg
 * (Opus, Vorbis) the duration, without decoding. Only the head and the tail of the blob are read (`blob.slice`), so a
 * 100 MB upload spooled to disk costs two small reads.
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
        return flacInfo(head, headOffset > 0 ? 0 : id3v2Size(head)) ?? unknown
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

function flacInfo(head: Uint8Array, at: number): AudioInfo | null {
  // "fLaC", then the STREAMINFO block (always first): 4-byte block header, 34-byte body.
  if (!ascii(head, at, 'fLaC') || head.length < at + 8 + 18) return null
  const b = head.subarray(at + 8)
  const sampleRate = (b[10]! << 12) | (b[11]! << 4) | (b[12]! >> 4)
  const channels = ((b[12]! >> 1) & 7) + 1
  const totalSamples = (b[13]! & 0x0f) * 2 ** 32 + viewOf(b).getUint32(14)
  return { format: 'flac', durationSeconds: totalSamples > 0 && sampleRate > 0 ? totalSamples / sampleRate : null, sampleRate: sampleRate || null, channels }
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
  const info = (durationSeconds: number | null): AudioInfo => ({ format: 'mp3', durationSeconds, sampleRate: frame.sampleRate, channels: frame.channels })
  const view = viewOf(head)
  // Xing/Info (LAME, ffmpeg) sits after the side information; VBRI (Fraunhofer) 32 bytes after the header.
  const xing = at + 4 + (frame.mpeg1 ? (frame.channels === 1 ? 17 : 32) : frame.channels === 1 ? 9 : 17)
  if ((ascii(head, xing, 'Xing') || ascii(head, xing, 'Info')) && head.length >= xing + 12) {
    const flags = view.getUint32(xing + 4)
    const frames = flags & 1 ? view.getUint32(xing + 8) : 0
    if (frames > 0) return info((frames * frame.samplesPerFrame) / frame.sampleRate)
  }
  if (ascii(head, at + 36, 'VBRI') && head.length >= at + 36 + 18) {
    const frames = view.getUint32(at + 36 + 14)
    if (frames > 0) return info((frames * frame.samplesPerFrame) / frame.sampleRate)
  }
  // No VBR header (or one with no frame count, as ffmpeg leaves it when writing to a pipe): the audio bytes over the
  // byte rate of the frames in the head.
  const byteRate = averageByteRate(head, at, frame)
  // An ID3v1 tag at the end is not audio.
  const tail = await bytesOf(blob, Math.max(0, blob.size - 128), blob.size)
  const end = blob.size - (tail.length === 128 && ascii(tail, 0, 'TAG') ? 128 : 0)
  const audioBytes = end - (headOffset + at)
  return info(audioBytes > 0 ? audioBytes / byteRate : null)
}

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
  if (ascii(head, body, 'OpusHead')) {
    channels = head[body + 9]!
    preSkip = view.getUint16(body + 10, true)
    rate = 48000 // Opus granule positions always count 48 kHz samples
  } else if (head[body] === 1 && ascii(head, body + 1, 'vorbis')) {
    channels = head[body + 11]!
    rate = view.getUint32(body + 12, true)
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
    return { format: 'ogg', durationSeconds: samples > 0 ? samples / rate : 0, sampleRate: rate, channels }
  }
  return { format: 'ogg', durationSeconds: null, sampleRate: rate, channels }
}
