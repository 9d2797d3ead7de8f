import { PcmResampler, alawToPcm16, mulawToPcm16, pcm16FromBytes, pcm16ToAlaw, pcm16ToBytes, pcm16ToMulaw } from '../plugin-sdk/audio/index.ts'
import type { RealtimeAudioFormat } from '../plugin-sdk/types.ts'

/** OpenAI's realtime PCM: 16-bit little-endian mono at 24 kHz. G.711 is 8 kHz, one byte a sample. */
export const PCM16_RATE = 24_000
const G711_RATE = 8_000

/** Bytes of one second of audio in a realtime format: what appended audio is metered by. */
export const bytesPerSecond = (format: RealtimeAudioFormat) => (format === 'pcm16' ? PCM16_RATE * 2 : G711_RATE)

const b64 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')

/**
 * G.711 from a telephony client → pcm16 at 24 kHz for a provider that takes only that. Stateful: the resampler's
 * filter spans frame boundaries, so one instance per session and direction.
 */
export class InboundBridge {
  private readonly decode: (bytes: Uint8Array) => Int16Array
  private readonly resampler = new PcmResampler(G711_RATE, PCM16_RATE)

  constructor(readonly from: 'g711_ulaw' | 'g711_alaw') {
    this.decode = from === 'g711_ulaw' ? mulawToPcm16 : alawToPcm16
  }

  /** One append's base64 G.711 → base64 pcm16 (what is ready; the filter holds a few ms back). */
  convert(audio: string): string {
    return b64(pcm16ToBytes(this.resampler.push(this.decode(Buffer.from(audio, 'base64')))))
  }

  /** The audio the filter still holds (before a commit), then a fresh state. */
  flush(): string {
    return b64(pcm16ToBytes(this.resampler.flush()))
  }
}

/** pcm16 at 24 kHz from the provider → G.711 for the client. */
export class OutboundBridge {
  private readonly encode: (samples: Int16Array) => Uint8Array
  private readonly resampler = new PcmResampler(PCM16_RATE, G711_RATE)
  /** A byte left over when a delta ends in the middle of a sample. */
  private odd: number | null = null

  constructor(readonly to: 'g711_ulaw' | 'g711_alaw') {
    this.encode = to === 'g711_ulaw' ? pcm16ToMulaw : pcm16ToAlaw
  }

  convert(audio: string): string {
    let bytes: Uint8Array = Buffer.from(audio, 'base64')
    if (this.odd !== null) {
      const joined = new Uint8Array(bytes.length + 1)
      joined[0] = this.odd
      joined.set(bytes, 1)
      bytes = joined
      this.odd = null
    }
    if (bytes.length % 2 === 1) {
      this.odd = bytes[bytes.length - 1]!
      bytes = bytes.subarray(0, bytes.length - 1)
    }
    return b64(this.encode(this.resampler.push(pcm16FromBytes(bytes))))
  }

  /** End of one response's audio: what the filter holds, then a fresh state for the next response. */
  flush(): string {
    this.odd = null
    return b64(this.encode(this.resampler.flush()))
  }
}

/** Whether a client format must be converted for a provider, and to what. */
export function bridgeFor(client: RealtimeAudioFormat, provider: readonly RealtimeAudioFormat[]): 'g711_ulaw' | 'g711_alaw' | null {
  if (provider.includes(client) || client === 'pcm16' || !provider.includes('pcm16')) return null
  return client
}
