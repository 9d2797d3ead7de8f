/**
 * ITU-T G.711 µ-law and A-law, as the reference implementation (Sun's g711.c) computes them: the codecs telephony
 * (Twilio, SIP) and realtime APIs use for 8 kHz audio. Encoding goes through a 64 Ki-entry table built once.
 */

const SEG_AEND = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff]
const SEG_UEND = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff]
const segment = (value: number, ends: number[]) => {
  let seg = 0
  while (seg < 8 && value > ends[seg]!) seg++
  return seg
}

/** One 16-bit sample to A-law. */
export function linearToAlaw(sample: number): number {
  let pcm = sample >> 3 // A-law works on 13 bits
  let mask: number
  if (pcm >= 0) mask = 0xd5
  else {
    mask = 0x55
    pcm = -pcm - 1
  }
  const seg = segment(pcm, SEG_AEND)
  if (seg >= 8) return 0x7f ^ mask
  const aval = (seg << 4) | ((seg < 2 ? pcm >> 1 : pcm >> seg) & 0x0f)
  return aval ^ mask
}

/** One A-law byte to a 16-bit sample. */
export function alawToLinear(byte: number): number {
  const a = byte ^ 0x55
  let t = (a & 0x0f) << 4
  const seg = (a & 0x70) >> 4
  if (seg === 0) t += 8
  else if (seg === 1) t += 0x108
  else t = (t + 0x108) << (seg - 1)
  return a & 0x80 ? t : -t
}

/** One 16-bit sample to µ-law. */
export function linearToMulaw(sample: number): number {
  let pcm = sample >> 2 // µ-law works on 14 bits
  let mask: number
  if (pcm < 0) {
    pcm = -pcm
    mask = 0x7f
  } else mask = 0xff
  if (pcm > 8159) pcm = 8159
  pcm += 0x84 >> 2
  const seg = segment(pcm, SEG_UEND)
  if (seg >= 8) return 0x7f ^ mask
  return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0f)) ^ mask
}

/** One µ-law byte to a 16-bit sample. */
export function mulawToLinear(byte: number): number {
  const u = ~byte & 0xff
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4)
  return u & 0x80 ? 0x84 - t : t - 0x84
}

let alawEnc: Uint8Array | null = null
let mulawEnc: Uint8Array | null = null
let alawDec: Int16Array | null = null
let mulawDec: Int16Array | null = null

const encTable = (fn: (s: number) => number) => {
  const table = new Uint8Array(65536)
  for (let i = 0; i < 65536; i++) table[i] = fn(i - 32768)
  return table
}
const decTable = (fn: (b: number) => number) => Int16Array.from({ length: 256 }, (_, i) => fn(i))

export function pcm16ToMulaw(samples: Int16Array): Uint8Array {
  const table = (mulawEnc ??= encTable(linearToMulaw))
  const out = new Uint8Array(samples.length)
  for (let i = 0; i < samples.length; i++) out[i] = table[samples[i]! + 32768]!
  return out
}

export function mulawToPcm16(bytes: Uint8Array): Int16Array {
  const table = (mulawDec ??= decTable(mulawToLinear))
  const out = new Int16Array(bytes.length)
  for (let i = 0; i < bytes.length; i++) out[i] = table[bytes[i]!]!
  return out
}

export function pcm16ToAlaw(samples: Int16Array): Uint8Array {
  const table = (alawEnc ??= encTable(linearToAlaw))
  const out = new Uint8Array(samples.length)
  for (let i = 0; i < samples.length; i++) out[i] = table[samples[i]! + 32768]!
  return out
}

export function alawToPcm16(bytes: Uint8Array): Int16Array {
  const table = (alawDec ??= decTable(alawToLinear))
  const out = new Int16Array(bytes.length)
  for (let i = 0; i < bytes.length; i++) out[i] = table[bytes[i]!]!
  return out
}
