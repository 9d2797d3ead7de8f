import jpeg from 'jpeg-js'
import { PNG } from 'pngjs'

/**
 * Real pictures for the image fakes and their checks: PNGs (pngjs) and JPEGs (jpeg-js) of one colour, and a decoder
 * that reads them back pixel by pixel — an image is verified by decoding it, never by its length.
 */

export type RGB = [number, number, number]
export const RED: RGB = [220, 20, 20]
export const GREEN: RGB = [20, 200, 40]
export const BLUE: RGB = [30, 40, 220]

const cache = new Map<string, Buffer>()

/** A PNG of one colour; `alpha` 0 leaves a transparent square in the middle (an OpenAI-style mask). */
export function png(width: number, height: number, rgb: RGB, hole = false): Buffer {
  const key = `png/${width}/${height}/${rgb}/${hole}`
  const hit = cache.get(key)
  if (hit) return hit
  const image = new PNG({ width, height })
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4
      const inHole = hole && x > width / 4 && x < (width * 3) / 4 && y > height / 4 && y < (height * 3) / 4
      image.data[i] = rgb[0]
      image.data[i + 1] = rgb[1]
      image.data[i + 2] = rgb[2]
      image.data[i + 3] = inHole ? 0 : 255
    }
  }
  const bytes = PNG.sync.write(image, { deflateLevel: 1 })
  cache.set(key, bytes)
  return bytes
}

export function jpg(width: number, height: number, rgb: RGB): Buffer {
  const key = `jpeg/${width}/${height}/${rgb}`
  const hit = cache.get(key)
  if (hit) return hit
  const data = Buffer.alloc(width * height * 4)
  for (let i = 0; i < data.length; i += 4) {
    data[i] = rgb[0]
    data[i + 1] = rgb[1]
    data[i + 2] = rgb[2]
    data[i + 3] = 255
  }
  const bytes = Buffer.from(jpeg.encode({ data, width, height }, 90).data)
  cache.set(key, bytes)
  return bytes
}

export interface Decoded {
  format: 'png' | 'jpeg'
  width: number
  height: number
  /** The centre pixel. */
  centre: RGB
}

/** Decodes a PNG or JPEG (throws on anything else or a corrupt file). */
export function decode(bytes: Uint8Array): Decoded {
  const buffer = Buffer.from(bytes)
  if (buffer.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    const image = PNG.sync.read(buffer)
    const i = (Math.floor(image.height / 2) * image.width + Math.floor(image.width / 2)) * 4
    return { format: 'png', width: image.width, height: image.height, centre: [image.data[i]!, image.data[i + 1]!, image.data[i + 2]!] }
  }
  if (buffer[0] === 0xff && buffer[1] === 0xd8) {
    const image = jpeg.decode(buffer, { useTArray: true })
    const i = (Math.floor(image.height / 2) * image.width + Math.floor(image.width / 2)) * 4
    return { format: 'jpeg', width: image.width, height: image.height, centre: [image.data[i]!, image.data[i + 1]!, image.data[i + 2]!] }
  }
  throw new Error(`not a PNG or JPEG (starts ${buffer.subarray(0, 8).toString('hex')})`)
}

/** Whether two colours match within JPEG's rounding. */
export const near = (a: RGB, b: RGB, tolerance = 12) => a.every((v, i) => Math.abs(v - b[i]!) <= tolerance)

/** `1024x1024` → [1024, 1024]; `auto` and anything else → the default. */
export function dims(size: unknown, fallback: [number, number] = [1024, 1024]): [number, number] {
  const m = /^(\d+)x(\d+)$/.exec(String(size ?? ''))
  return m ? [Number(m[1]), Number(m[2])] : fallback
}
