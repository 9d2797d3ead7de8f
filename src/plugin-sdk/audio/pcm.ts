/** 16-bit PCM: bytes ↔ samples, and a streaming sample-rate converter for per-frame (realtime) use. */

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** Little-endian 16-bit samples from bytes at any offset (a trailing odd byte is ignored). */
export function pcm16FromBytes(bytes: Uint8Array): Int16Array {
  const n = bytes.length >> 1
  // A view is free when the offset is aligned; otherwise (a slice at an odd offset) copy.
  if (LITTLE_ENDIAN && (bytes.byteOffset & 1) === 0) return new Int16Array(bytes.buffer, bytes.byteOffset, n)
  const out = new Int16Array(n)
  for (let i = 0; i < n; i++) out[i] = (bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) << 16 >> 16
  return out
}

/** The samples as little-endian bytes (a view when the platform is little-endian). */
export function pcm16ToBytes(samples: Int16Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength)
  const out = new Uint8Array(samples.length * 2)
  for (let i = 0; i < samples.length; i++) {
    out[2 * i] = samples[i]! & 0xff
    out[2 * i + 1] = (samples[i]! >> 8) & 0xff
  }
  return out
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b))

/** Zero crossings of the sinc on each side: 12 gives > 60 dB stop-band with a Blackman window at modest cost. */
const ZERO_CROSSINGS = 12
/** Cut-off as a fraction of the lower Nyquist: the transition band sits just below it, so it does not alias. */
const ROLLOFF = 0.9
/** Above this many phases the table would be large (odd ratios such as 8000→44101): taps are computed per sample. */
const MAX_TABLE_PHASES = 2048

/**
 * Streaming sample-rate conversion of interleaved 16-bit PCM by windowed-sinc interpolation (polyphase), with the
 * low-pass at the lower rate's Nyquist so downsampling does not alias. State is kept across `push` calls: a stream cut
 * into 20 ms frames comes out as if converted whole, with no clicks at frame edges. `flush` ends the stream.
 * Latency: half the filter, about 12 input samples upsampling, 12 × ratio downsampling (≈ 1.5 ms at 24k→8k).
 */
export class PcmResampler {
  readonly fromRate: number
  readonly toRate: number
  readonly channels: number
  /** Output samples are at input positions n·step/phases: an integer part and one of `phases` fractions. */
  private readonly phases: number
  private readonly step: number
  /** Taps per output sample, and the filter's (half-width - 1) in input samples. */
  private readonly taps: number
  private readonly half: number
  private readonly cutoff: number
  private readonly table: Float32Array | null
  /** Pending input frames (interleaved), float; `buf` index 0 is absolute input frame `base`. */
  private buf: Float32Array
  private frames = 0
  private base = 0
  /** Next output: at absolute input frame `pos` plus `phase`/`phases`. */
  private pos = 0
  private phase = 0
  private inputFrames = 0
  private outputFrames = 0

  constructor(fromRate: number, toRate: number, channels = 1) {
    if (!(fromRate > 0 && toRate > 0 && Number.isInteger(fromRate) && Number.isInteger(toRate))) throw new RangeError('sample rates must be positive integers')
    if (!(channels >= 1 && Number.isInteger(channels))) throw new RangeError('channels must be a positive integer')
    this.fromRate = fromRate
    this.toRate = toRate
    this.channels = channels
    const g = gcd(fromRate, toRate)
    this.phases = toRate / g
    this.step = fromRate / g
    // Normalised cut-off (1 = input Nyquist): the lower of the two Nyquists, a little below it.
    this.cutoff = Math.min(1, toRate / fromRate) * ROLLOFF
    this.half = Math.ceil(ZERO_CROSSINGS / this.cutoff)
    this.taps = 2 * this.half
    this.table = this.phases <= MAX_TABLE_PHASES ? this.buildTable() : null
    this.buf = new Float32Array(0)
    this.reset()
  }

  /** Weight of input frame at distance `t` (input samples) from the output position. */
  private kernel(t: number): number {
    const x = t * this.cutoff
    const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x)
    const w = t / (this.half + 1) // Blackman window over the filter's width
    if (w <= -1 || w >= 1) return 0
    const a = Math.PI * (w + 1)
    return sinc * (0.42 - 0.5 * Math.cos(a) + 0.08 * Math.cos(2 * a))
  }

  /** Taps for one phase, normalised to unit DC gain so silence stays silence and a DC offset is kept. */
  private fill(out: Float32Array, at: number, phase: number) {
    const frac = phase / this.phases
    let sum = 0
    for (let j = 0; j < this.taps; j++) {
      // Tap j reads input frame (pos - half + 1 + j); the output sits at pos + frac.
      const v = this.kernel(frac + this.half - 1 - j)
      out[at + j] = v
      sum += v
    }
    for (let j = 0; j < this.taps; j++) out[at + j]! /= sum
  }

  private buildTable(): Float32Array {
    const table = new Float32Array(this.phases * this.taps)
    for (let p = 0; p < this.phases; p++) this.fill(table, p * this.taps, p)
    return table
  }

  private reset() {
    // The filter's left context at the start of the stream is silence.
    this.frames = this.half - 1
    this.buf = new Float32Array(Math.max(this.frames, 1) * this.channels)
    this.base = -(this.half - 1)
    this.pos = 0
    this.phase = 0
    this.inputFrames = 0
    this.outputFrames = 0
  }

  private append(samples: Int16Array | null, zeros: number) {
    const ch = this.channels
    const add = samples ? Math.floor(samples.length / ch) : zeros
    const need = (this.frames + add) * ch
    if (need > this.buf.length) {
      const grown = new Float32Array(Math.max(need, this.buf.length * 2))
      grown.set(this.buf.subarray(0, this.frames * ch))
      this.buf = grown
    }
    if (samples) {
      const at = this.frames * ch
      for (let i = 0; i < add * ch; i++) this.buf[at + i] = samples[i]!
    } else this.buf.fill(0, this.frames * ch, need)
    this.frames += add
  }

  /** Produces every output whose filter window is in the buffer, up to `limit` outputs in all. */
  private produce(limit: number): Int16Array {
    const ch = this.channels
    const taps = this.taps
    const table = this.table
    const scratch = table ? null : new Float32Array(taps)
    // Output at pos needs frames pos-half+1 … pos+half.
    const lastFrame = this.base + this.frames - 1
    let count = 0
    {
      // Count first, to allocate once.
      let pos = this.pos
      let phase = this.phase
      while (pos + this.half <= lastFrame && this.outputFrames + count < limit) {
        count++
        phase += this.step
        pos += Math.floor(phase / this.phases)
        phase %= this.phases
      }
    }
    const out = new Int16Array(count * ch)
    const buf = this.buf
    for (let n = 0; n < count; n++) {
      let coeffs: Float32Array
      let c0 = 0
      if (table) {
        coeffs = table
        c0 = this.phase * taps
      } else {
        coeffs = scratch!
        this.fill(coeffs, 0, this.phase)
      }
      const start = (this.pos - this.half + 1 - this.base) * ch
      for (let c = 0; c < ch; c++) {
        let acc = 0
        for (let j = 0, k = start + c; j < taps; j++, k += ch) acc += buf[k]! * coeffs[c0 + j]!
        const s = Math.round(acc)
        out[n * ch + c] = s > 32767 ? 32767 : s < -32768 ? -32768 : s
      }
      this.phase += this.step
      this.pos += Math.floor(this.phase / this.phases)
      this.phase %= this.phases
    }
    this.outputFrames += count
    // Drop frames no future output reads.
    const keepFrom = this.pos - this.half + 1
    const drop = Math.min(this.frames, Math.max(0, keepFrom - this.base))
    if (drop > 0) {
      this.buf.copyWithin(0, drop * ch, this.frames * ch)
      this.frames -= drop
      this.base += drop
    }
    return out
  }

  /** Converts the next samples (interleaved when several channels); returns what is ready, possibly nothing. */
  push(samples: Int16Array): Int16Array {
    if (samples.length % this.channels !== 0) throw new RangeError(`samples must be whole frames of ${this.channels} channels`)
    this.append(samples, 0)
    this.inputFrames += samples.length / this.channels
    return this.produce(Number.MAX_SAFE_INTEGER)
  }

  /** Ends the stream: the remaining outputs (the filter's tail over silence), then a fresh state for reuse. */
  flush(): Int16Array {
    const total = Math.ceil((this.inputFrames * this.toRate) / this.fromRate)
    this.append(null, this.half + 1)
    const out = this.produce(total)
    this.reset()
    return out
  }
}
