import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import type { ImageAbilities, ImageOperation, ImageUpload, ProviderConfig } from '../plugin-sdk/types.ts'

/**
 * The images half of the pipeline, free of any provider: what an upload is (read from its bytes), what a target
 * can take (refused before any call, naming the param), and the events a streamed request gets.
 */

/** Largest image the gateway takes in an edit or a variation (OpenAI's limit for the GPT image models). */
export const IMAGE_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
/** Images one edit may carry (OpenAI's limit). */
export const MAX_EDIT_IMAGES = 16
export const IMAGE_MIME: Record<ImageUpload['format'], string> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' }

const ascii = (bytes: Uint8Array, from: number, to: number) => String.fromCharCode(...bytes.subarray(from, to))

/**
 * PNG, JPEG or WebP by their signatures, with the dimensions their headers give (PNG's IHDR, JPEG's first SOF
 * marker within the bytes given, WebP's VP8/VP8L/VP8X chunk). Null for anything else.
 */
export function sniffImage(bytes: Uint8Array): { format: ImageUpload['format'] | 'gif'; width?: number; height?: number } | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.length >= 24 && view.getUint32(0) === 0x89504e47 && view.getUint32(4) === 0x0d0a1a0a) {
    return ascii(bytes, 12, 16) === 'IHDR' ? { format: 'png', width: view.getUint32(16), height: view.getUint32(20) } : { format: 'png' }
  }
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    for (let at = 2; at + 9 < bytes.length; ) {
      if (bytes[at] !== 0xff) break
      const marker = bytes[at + 1]!
      // SOF0-SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { format: 'jpeg', height: view.getUint16(at + 5), width: view.getUint16(at + 7) }
      }
      at += 2 + view.getUint16(at + 2)
    }
    return { format: 'jpeg' }
  }
  if (bytes.length >= 16 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP') {
    const chunk = ascii(bytes, 12, 16)
    if (chunk === 'VP8 ' && bytes.length >= 30) return { format: 'webp', width: view.getUint16(26, true) & 0x3fff, height: view.getUint16(28, true) & 0x3fff }
    if (chunk === 'VP8L' && bytes.length >= 25) {
      const bits = view.getUint32(21, true)
      return { format: 'webp', width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 }
    }
    if (chunk === 'VP8X' && bytes.length >= 30) {
      const u24 = (at: number) => bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16)
      return { format: 'webp', width: u24(24) + 1, height: u24(27) + 1 }
    }
    return { format: 'webp' }
  }
  if (bytes.length >= 6 && (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a')) return { format: 'gif' }
  return null
}

export const IMAGE_CONTENT_TYPE: Record<string, string> = { ...IMAGE_MIME, gif: 'image/gif' }

/** Multipart fields are strings: the typed ones become numbers and booleans so the schemas check them like JSON. */
export function imageFormBody(fields: Record<string, string | string[]>): Record<string, any> {
  const body: Record<string, any> = { ...fields }
  for (const name of ['n', 'partial_images', 'output_compression']) {
    const value = body[name]
    if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) body[name] = Number(value)
  }
  if (typeof body.stream === 'string') body.stream = body.stream === 'true' ? true : body.stream === 'false' ? false : body.stream
  return body
}

/** An uploaded part as an image, or a 400 naming the param: the bytes decide, never the client's name or type. */
export async function describeImage(file: { blob: Blob; filename: string; size: number }, param: string): Promise<ImageUpload> {
  if (file.size === 0) throw new GatewayError(400, `The file in '${param}' is empty.`, { param, code: 'invalid_image_file' })
  // 64 KiB reaches a JPEG's frame header past large EXIF blocks in nearly every file.
  const sniffed = sniffImage(await file.blob.slice(0, 64 * 1024).bytes())
  if (!sniffed || sniffed.format === 'gif') {
    throw new GatewayError(400, `The file in '${param}' is not a PNG, JPEG or WebP image.`, { param, code: 'invalid_image_format' })
  }
  const upload: ImageUpload = { blob: file.blob, filename: file.filename, format: sniffed.format, contentType: IMAGE_MIME[sniffed.format], size: file.size }
  if (sniffed.width) upload.width = sniffed.width
  if (sniffed.height) upload.height = sniffed.height
  return upload
}

export const uploadsOf = (body: Record<string, any>): ImageUpload[] => (Array.isArray(body.image) ? body.image : body.image ? [body.image] : [])

/**
 * What the target cannot do is refused before any call, naming the param: `n` past its maximum, a size it does
 * not make, an upload it does not take (format, size, count) or a mask it cannot use.
 */
export function checkImageRequest(operation: ImageOperation, body: Record<string, any>, abilities: ImageAbilities, provider: ProviderConfig, model: string) {
  const n = body.n ?? 1
  if (n > abilities.maxN) {
    throw badRequest(`Invalid value for 'n': the model '${body.model}' makes at most ${abilities.maxN} image${abilities.maxN === 1 ? '' : 's'} per request.`, 'n', 'invalid_value')
  }
  if (body.size !== undefined && body.size !== null && abilities.sizes && !abilities.sizes.includes(body.size)) {
    throw badRequest(`Invalid value for 'size': the model '${body.model}' makes ${abilities.sizes.join(', ')}; not '${body.size}'.`, 'size', 'invalid_value')
  }
  if (operation === 'images') return
  if (abilities.maxImages === 0 || (operation === 'image_variations' && abilities.variations === false)) {
    throw badRequest(`The model '${body.model}' does not support image ${operation === 'image_edits' ? 'edits' : 'variations'}.`, 'model', 'unsupported_endpoint')
  }
  const uploads = uploadsOf(body)
  if (uploads.length > abilities.maxImages) {
    throw badRequest(`The model '${body.model}' takes at most ${abilities.maxImages} image${abilities.maxImages === 1 ? '' : 's'} per ${operation === 'image_edits' ? 'edit' : 'variation'}.`, 'image', 'invalid_value')
  }
  const all: [string, ImageUpload][] = uploads.map((u) => ['image', u])
  if (body.mask) {
    if (!abilities.mask) throw new GatewayError(400, `The provider '${provider.name}' does not support the 'mask' parameter for '${model}'.`, { param: 'mask', code: 'unsupported_parameter' })
    const mask = body.mask as ImageUpload
    const image = uploads[0]
    // It covers the (first) image pixel for pixel, as OpenAI requires.
    if (image?.width && mask.width && (image.width !== mask.width || image.height !== mask.height)) {
      throw badRequest(`The mask must be the same size as the image (${image.width}x${image.height}); it is ${mask.width}x${mask.height}.`, 'mask', 'invalid_value')
    }
    all.push(['mask', mask])
  }
  for (const [param, upload] of all) {
    if (!abilities.inputFormats.includes(upload.format)) {
      throw new GatewayError(400, `The model '${body.model}' takes ${abilities.inputFormats.join(', ')} images; '${upload.filename}' is ${upload.format}.`, { param, code: 'invalid_image_format' })
    }
    if (upload.size > abilities.maxUploadBytes) {
      throw new GatewayError(413, `The image '${upload.filename}' (${upload.size} bytes) is over the ${abilities.maxUploadBytes}-byte limit of the model '${body.model}'.`, { param, code: 'file_too_large' })
    }
  }
}

// --- Streams ------------------------------------------------------------------------------------------------

/** The event type prefix of each streaming operation. */
export const STREAM_PREFIX: Partial<Record<ImageOperation, string>> = { images: 'image_generation', image_edits: 'image_edit' }

const SPEC_SIZES = new Set(['1024x1024', '1024x1536', '1536x1024', 'auto'])
const SPEC_QUALITIES = new Set(['low', 'medium', 'high', 'auto'])
const SPEC_BACKGROUNDS = new Set(['transparent', 'opaque', 'auto'])

/** One SSE event as OpenAI frames them (`event:` and `data:`). */
export const imageEvent = (event: Record<string, unknown>) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`

/**
 * The completed events a provider that does not stream gets its images sent as: one per image, each with the
 * request's usage, in OpenAI's shape (values outside the spec's enums become `auto`).
 */
export function completedEvents(operation: ImageOperation, body: Record<string, any>, result: { created?: number; data: { b64_json?: string }[]; output_format?: unknown }, usage: Record<string, any>): string[] {
  const pick = (value: unknown, allowed: Set<string>) => (typeof value === 'string' && allowed.has(value) ? value : 'auto')
  const format = typeof result.output_format === 'string' ? result.output_format : (body.output_format ?? 'png')
  const n = result.data.length
  return result.data.map((image, i) =>
    imageEvent({
      type: `${STREAM_PREFIX[operation]}.completed`,
      b64_json: image.b64_json ?? '',
      created_at: result.created ?? Math.floor(Date.now() / 1000),
      size: pick(body.size, SPEC_SIZES),
      quality: pick(body.quality, SPEC_QUALITIES),
      background: pick(body.background, SPEC_BACKGROUNDS),
      output_format: format,
      // The request's usage shared among its images (the last takes the remainder): summed, the events say it once.
      usage: shareOf(usage, i, n),
    }),
  )
}

function shareOf(usage: Record<string, any>, i: number, n: number): Record<string, any> {
  const out: Record<string, any> = {}
  for (const [name, value] of Object.entries(usage)) {
    out[name] = typeof value === 'number' ? Math.floor(value / n) + (i === n - 1 ? value % n : 0) : value && typeof value === 'object' ? shareOf(value, i, n) : value
  }
  return out
}
