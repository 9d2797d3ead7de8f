/** WAV (RIFF/WAVE, RF64) headers: read one to find the samples, or write one in front of PCM. */

export interface WavHeader {
  /** `pcm16`, `pcm24`, `pcm32`, `u8`, `float32`, `float64`, `alaw`, `mulaw`, `adpcm_ms`, `adpcm_ima`, `mp3`, or `unknown` */
  format: string
  sampleRate: number
  channels: number
  bitsPerSample: number
  /** Average bytes per second the `fmt ` chunk states. */
  byteRate: number
  blockAlign: number
  /** Offset of the first sample byte. */
  dataOffset: number
  /**
   * Sample bytes the header declares; null when it does not know (a streamed WAV writes 0 or 0xFFFFFFFF: the data
   * runs to the end of the file).
   */
  dataBytes: number | null
}

const FORMAT_CODES: Record<number, string> = { 2: 'adpcm_ms', 6: 'alaw', 7: 'mulaw', 0x11: 'adpcm_ima', 0x55: 'mp3' }

const formatName = (code: number, bits: number): string => {
  if (code === 1) return bits === 8 ? 'u8' : bits === 16 || bits === 24 || bits === 32 ? `pcm${bits}` : 'unknown'
  if (code === 3) return bits === 32 ? 'float32' : bits === 64 ? 'float64' : 'unknown'
  return FORMAT_CODES[code] ?? 'unknown'
}

const tag = (b: Uint8Array, at: number) => String.fromCharCode(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!)

/**
 * The header of a WAV file from its first bytes, walking past chunks it does not need (`LIST`, `fact`, `JUNK`, …).
 * Null when the bytes are not WAV or the `data` chunk starts beyond them.
 */
export function readWavHeader(bytes: Uint8Array): WavHeader | null {
  if (bytes.length < 12) return null
  const riff = tag(bytes, 0)
  if ((riff !== 'RIFF' && riff !== 'RF64' && riff !== 'BW64') || tag(bytes, 8) !== 'WAVE') return null
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let fmt: Omit<WavHeader, 'dataOffset' | 'dataBytes'> | null = null
  let ds64Data: number | null = null
  let at = 12
  while (at + 8 <= bytes.length) {
    const id = tag(bytes, at)
    const size = view.getUint32(at + 4, true)
    const body = at + 8
    if (id === 'ds64' && body + 16 <= bytes.length) {
      ds64Data = view.getUint32(body + 8, true) + view.getUint32(body + 12, true) * 2 ** 32
    } else if (id === 'fmt ' && body + 16 <= bytes.length) {
      let code = view.getUint16(body, true)
      const bitsPerSample = view.getUint16(body + 14, true)
      // WAVE_FORMAT_EXTENSIBLE: the real code is the first two bytes of the sub-format GUID.
      if (code === 0xfffe && size >= 40 && body + 26 <= bytes.length) code = view.getUint16(body + 24, true)
      fmt = {
        format: formatName(code, bitsPerSample),
        channels: view.getUint16(body + 2, true),
        sampleRate: view.getUint32(body + 4, true),
        byteRate: view.getUint32(body + 8, true),
        blockAlign: view.getUint16(body + 12, true),
        bitsPerSample,
      }
    } else if (id === 'data') {
      if (!fmt) return null
      let dataBytes: number | null = size
      if (size === 0xffffffff && ds64Data !== null) dataBytes = ds64Data
      else if (size === 0 || size === 0xffffffff) dataBytes = null
      return { ...fmt, dataOffset: body, dataBytes }
    }
    at = body + size + (size & 1) // chunks are word-aligned
  }
  return null
}

/**
 * A 44-byte PCM WAV header. Without `dataBytes` it is a streaming header, sizes 0xFFFFFFFF as ffmpeg writes to a
 * pipe: readers take the data to run to the end.
 */
export function wavHeader(opts: { sampleRate: number; channels: number; bitsPerSample?: number; dataBytes?: number }): Uint8Array {
  const bits = opts.bitsPerSample ?? 16
  const blockAlign = opts.channels * (bits >> 3)
  const out = new Uint8Array(44)
  const view = new DataView(out.buffer)
  const put = (at: number, text: string) => {
    for (let i = 0; i < 4; i++) out[at + i] = text.charCodeAt(i)
  }
  const data = opts.dataBytes
  put(0, 'RIFF')
  view.setUint32(4, data === undefined ? 0xffffffff : Math.min(0xffffffff, 36 + data), true)
  put(8, 'WAVE')
  put(12, 'fmt ')
  view.setUint32(16, 16, true)
  view.setUint16(20, 1, true) // integer PCM
  view.setUint16(22, opts.channels, true)
  view.setUint32(24, opts.sampleRate, true)
  view.setUint32(28, opts.sampleRate * blockAlign, true)
  view.setUint16(32, blockAlign, true)
  view.setUint16(34, bits, true)
  put(36, 'data')
  view.setUint32(40, data === undefined ? 0xffffffff : Math.min(0xffffffff, data), true)
  return out
}
