import { GatewayError } from '../plugin-sdk/errors.ts'
import type { Store } from '../store/store.ts'
import { IMAGE_CONTENT_TYPE, sniffImage } from './images.ts'

/**
 * Images the gateway serves by URL when a client asks `response_format: "url"` of a provider that only returns
 * base64: kept in the store (every instance answers), at an unguessable id (the id is the capability, as
 * OpenAI's signed URLs are: an `<img src>` carries no key), for an hour like OpenAI's.
 */

export const IMAGE_FILE_TTL_MS = 60 * 60 * 1000
const ID = /^img_[A-Za-z0-9_-]{43}$/
/** Expired rows are swept at most this often per process, on the way of a new file. */
const SWEEP_EVERY_MS = 60_000
let lastSweep = 0

/** Stores a base64 image and returns its URL under `origin`. */
export async function storeImageFile(store: Store, b64: string, origin: string, now = Date.now()): Promise<string> {
  const sniffed = sniffImage(Buffer.from(b64.slice(0, 4096), 'base64'))
  if (!sniffed) throw new GatewayError(502, 'The upstream provider returned an image in a format the gateway does not serve.', { code: 'upstream_bad_response' })
  const id = `img_${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url')}`
  if (now - lastSweep > SWEEP_EVERY_MS) {
    lastSweep = now
    store.deleteExpiredImageFiles(now).catch(() => {}) // the next sweep retries; reads ignore expired rows anyway
  }
  await store.insertImageFile({ id, contentType: IMAGE_CONTENT_TYPE[sniffed.format]!, data: b64, createdAt: now, expiresAt: now + IMAGE_FILE_TTL_MS })
  return `${origin}/v1/images/files/${id}`
}

/** The origin clients reached us at (behind a TLS-terminating proxy, its `X-Forwarded-Proto`). */
export function publicOrigin(request: Request): string {
  const url = new URL(request.url)
  const proto = request.headers.get('x-forwarded-proto')?.split(',')[0]?.trim().toLowerCase()
  return `${proto === 'https' || proto === 'http' ? proto : url.protocol.slice(0, -1)}://${url.host}`
}

const notFound = () =>
  new Response(JSON.stringify(new GatewayError(404, 'No such image, or its URL has expired (images are kept for an hour).', { code: 'image_not_found' }).toJSON()), {
    status: 404,
    headers: { 'content-type': 'application/json' },
  })

/** GET /v1/images/files/{id}: the bytes, cacheable until they expire; never interpreted as anything but an image. */
export async function serveImageFile(store: Store, id: string, now = Date.now()): Promise<Response> {
  if (!ID.test(id)) return notFound()
  const file = await store.getImageFile(id, now)
  if (!file) return notFound()
  return new Response(Buffer.from(file.data, 'base64'), {
    headers: {
      'content-type': file.contentType,
      'cache-control': `private, max-age=${Math.max(0, Math.floor((file.expiresAt - now) / 1000))}`,
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'none'",
    },
  })
}
