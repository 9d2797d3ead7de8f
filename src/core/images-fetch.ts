import { GatewayError } from '../plugin-sdk/errors.ts'
import { egress } from './egress.ts'
import { sniffImage } from './images.ts'

/**
 * Fetching an image a provider answered with a URL, for a client that asked `b64_json`. The URL comes from the
 * provider's response, so it is untrusted input: it is fetched only from the provider's own hosts (its base URL's
 * host and port, or the hosts its adapter declares), over https (http only when the provider itself is reached
 * over http), through the egress policy (no private, loopback or metadata address unless the operator allowed
 * it), redirects followed by hand and each hop checked the same way, within a size cap and a deadline.
 */

export const IMAGE_FETCH_MAX_BYTES = 64 * 1024 * 1024
const MAX_REDIRECTS = 3
const FETCH_TIMEOUT_MS = 60_000

export interface ImageHosts {
  /** The provider's base URL: its origin is always allowed (and decides whether plain http is). */
  baseURL: string
  /** Host names, `*.example.com` for any subdomain, on the default https port. */
  hosts: readonly string[]
}

const refused = (why: string) =>
  new GatewayError(502, `The upstream provider returned an image URL the gateway does not fetch: ${why}.`, { code: 'upstream_image_url_refused' })

/** Whether the gateway may fetch `url` for this provider; the reason when not. */
export function imageURLRefusal(url: URL, allowed: ImageHosts): string | null {
  const base = URL.parse(allowed.baseURL)
  if (url.username || url.password) return 'it carries credentials'
  if (base && url.origin === base.origin) return null
  const host = url.hostname.toLowerCase().replace(/\.$/, '')
  const ok = allowed.hosts.some((h) => (h.startsWith('*.') ? host.endsWith(h.slice(1)) && host.length > h.length - 1 : host === h))
  if (!ok) return `its host '${host}' is not one of the provider's`
  if (url.protocol !== 'https:') return 'it is not https'
  if (url.port !== '') return 'it names a port'
  return null
}

/** The image's bytes, or a 502 saying why not. */
export async function fetchProviderImage(raw: string, allowed: ImageHosts, signal: AbortSignal, maxBytes = IMAGE_FETCH_MAX_BYTES): Promise<Uint8Array> {
  let url = URL.parse(raw)
  if (!url) throw refused('it is not a URL')
  const deadline = AbortSignal.any([signal, AbortSignal.timeout(FETCH_TIMEOUT_MS)])
  for (let hop = 0; ; hop++) {
    const why = imageURLRefusal(url, allowed)
    if (why) throw refused(why)
    await egress.check(url.href)
    let response: Response
    try {
      response = await fetch(url.href, { redirect: 'manual', signal: deadline, headers: { accept: 'image/*' } })
    } catch (error) {
      if (signal.aborted) throw new GatewayError(499, 'The client closed the request.', { code: 'client_closed_request' })
      const failure = new GatewayError(502, 'The gateway could not fetch the image the upstream provider returned.', { code: 'upstream_image_fetch_failed' })
      failure.cause = error instanceof Error ? error.message : String(error) // logs only: it may name internal hosts
      throw failure
    }
    if (response.status >= 300 && response.status < 400) {
      response.body?.cancel().catch(() => {})
      const location = response.headers.get('location')
      if (!location || hop >= MAX_REDIRECTS) throw refused(location ? 'it redirects too many times' : 'it redirects nowhere')
      const next = URL.parse(location, url.href)
      if (!next) throw refused('it redirects to something that is not a URL')
      url = next
      continue
    }
    if (!response.ok) {
      response.body?.cancel().catch(() => {})
      throw new GatewayError(502, `The image URL the upstream provider returned answered HTTP ${response.status}.`, { code: 'upstream_image_fetch_failed' })
    }
    const bytes = await readImage(response, maxBytes)
    if (!sniffImage(bytes)) throw new GatewayError(502, 'The image URL the upstream provider returned does not hold an image.', { code: 'upstream_bad_response' })
    return bytes
  }
}

async function readImage(response: Response, maxBytes: number): Promise<Uint8Array> {
  const tooLarge = () => new GatewayError(502, `The image the upstream provider returned is larger than ${maxBytes} bytes.`, { code: 'upstream_response_too_large' })
  if (Number(response.headers.get('content-length') ?? NaN) > maxBytes) {
    response.body?.cancel().catch(() => {})
    throw tooLarge()
  }
  const parts: Uint8Array[] = []
  let size = 0
  for await (const part of response.body as unknown as AsyncIterable<Uint8Array>) {
    if ((size += part.byteLength) > maxBytes) throw tooLarge() // leaving the loop cancels the body
    parts.push(part)
  }
  return Buffer.concat(parts)
}
