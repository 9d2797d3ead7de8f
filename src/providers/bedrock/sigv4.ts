import { createHash, createHmac } from 'node:crypto'

/**
 * AWS Signature Version 4 for header-signed requests (docs: "Create a signed AWS API request"; checked against
 * the published aws-sig-v4 test suite). Synchronous node:crypto: a signature costs a few microseconds, and
 * the derived signing key is cached per day, region and service.
 */

export interface AwsCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

export interface SignInput {
  method: string
  url: string
  body?: string | Uint8Array
}

export const ALGORITHM = 'AWS4-HMAC-SHA256'

/** RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - . _ ~` (encodeURIComponent also spares `!'()*`). */
export function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/**
 * The canonical URI of a non-S3 service: each segment of the path *as sent* is encoded again, so a model id
 * sent as `…-v1%3A0` is signed as `…-v1%253A0`. Signing the once-encoded path is the classic Bedrock 403.
 */
export function canonicalUri(pathname: string): string {
  if (pathname === '' || pathname === '/') return '/'
  return pathname.split('/').map(uriEncode).join('/')
}

/** Query parameters decoded, re-encoded per RFC 3986 and sorted by name, then value. */
export function canonicalQuery(search: string): string {
  const raw = search.startsWith('?') ? search.slice(1) : search
  if (!raw) return ''
  const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '))
  const pairs = raw
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const at = p.indexOf('=')
      const name = at === -1 ? p : p.slice(0, at)
      const value = at === -1 ? '' : p.slice(at + 1)
      return [uriEncode(decode(name)), uriEncode(decode(value))] as const
    })
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
  return pairs.map(([n, v]) => `${n}=${v}`).join('&')
}

/** `20150830T123600Z` */
export const amzDate = (date: Date) => date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')

const sha256Hex = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex')
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest()

/** kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"). */
export function signingKey(secretAccessKey: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, date), region), service), 'aws4_request')
}

// One key serves a whole UTC day; a handful of entries covers every configured provider.
const keyCache = new Map<string, Buffer>()
function cachedSigningKey(secretAccessKey: string, date: string, region: string, service: string): Buffer {
  const id = `${date}\n${region}\n${service}\n${secretAccessKey}`
  let key = keyCache.get(id)
  if (!key) {
    if (keyCache.size >= 32) keyCache.clear()
    key = signingKey(secretAccessKey, date, region, service)
    keyCache.set(id, key)
  }
  return key
}

export interface Signature {
  /** The headers to add to the request. */
  headers: Record<string, string>
  canonicalRequest: string
  stringToSign: string
}

/**
 * Signs `host`, `x-amz-date` and, with temporary credentials, `x-amz-security-token`: the minimum AWS
 * requires, so headers that proxies or plugins add later cannot break the signature.
 */
export function sign(input: SignInput, credentials: AwsCredentials, region: string, service: string, now: Date = new Date()): Signature {
  const url = new URL(input.url)
  const stamp = amzDate(now)
  const date = stamp.slice(0, 8)
  const signed: [string, string][] = [
    ['host', url.host],
    ['x-amz-date', stamp],
  ]
  if (credentials.sessionToken) signed.push(['x-amz-security-token', credentials.sessionToken])
  const signedHeaders = signed.map(([name]) => name).join(';')
  const canonicalRequest = [
    input.method.toUpperCase(),
    canonicalUri(url.pathname),
    canonicalQuery(url.search),
    signed.map(([name, value]) => `${name}:${value.trim().replace(/\s+/g, ' ')}\n`).join(''),
    signedHeaders,
    sha256Hex(input.body ?? ''),
  ].join('\n')
  const scope = `${date}/${region}/${service}/aws4_request`
  const stringToSign = [ALGORITHM, stamp, scope, sha256Hex(canonicalRequest)].join('\n')
  const signature = createHmac('sha256', cachedSigningKey(credentials.secretAccessKey, date, region, service)).update(stringToSign).digest('hex')
  const headers: Record<string, string> = {
    'x-amz-date': stamp,
    authorization: `${ALGORITHM} Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
  }
  if (credentials.sessionToken) headers['x-amz-security-token'] = credentials.sessionToken
  return { headers, canonicalRequest, stringToSign }
}
