import { GatewayError } from '../plugin-sdk/errors.ts'

/** What readCapped rejects with past its limit; each caller turns it into its own error. Never leaves this module's callers. */
export const OVER_LIMIT = new Error('body over its limit')

/**
 * A request's or response's body as text, refused past `limit` bytes (with OVER_LIMIT) without trusting
 * Content-Length alone (chunked bodies have none): nothing larger is ever held whole in memory. Not async: a
 * declared length is read by Bun natively, without a frame of ours around it. `strict`: bytes that are not UTF-8
 * are a 400 (a client's JSON), rather than replaced by U+FFFD (a provider's answer, relayed as best it can be).
 */
export function readCapped(message: Request | Response, limit: number, strict = false): Promise<string> {
  const declared = Number(message.headers.get('content-length') ?? NaN)
  if (declared > limit) {
    message.body?.cancel().catch(() => {})
    return Promise.reject(OVER_LIMIT)
  }
  if (Number.isFinite(declared) || !message.body) return strict ? message.bytes().then(utf8) : message.text()
  return readChunks(message.body, limit, strict)
}

async function readChunks(body: ReadableStream<Uint8Array>, limit: number, strict: boolean): Promise<string> {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const part of body as unknown as AsyncIterable<Uint8Array>) {
    if ((size += part.byteLength) > limit) throw OVER_LIMIT // leaving the loop cancels the body
    parts.push(part)
  }
  const bytes = Buffer.concat(parts)
  return strict ? utf8(bytes) : bytes.toString('utf8')
}

const UTF8 = new TextDecoder('utf-8', { fatal: true })
/** JSON is UTF-8 (RFC 8259): text with bytes replaced would reach the provider changed. 0.1–0.2 µs a request over text(). */
function utf8(bytes: Uint8Array): string {
  try {
    return UTF8.decode(bytes)
  } catch {
    throw new GatewayError(400, 'The request body is not valid UTF-8. Send JSON encoded in UTF-8.', { code: 'invalid_json' })
  }
}

/**
 * A request body as text, capped, and within a deadline: a client that declares 100 kB and sends 14 bytes must
 * not hold its connection for ever. Every body the gateway reads from a client comes through here.
 */
export async function readBodyText(request: Request, limit: number, timeoutMs: number): Promise<string> {
  refuseEncoded(request)
  let timer: Timer | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut(timeoutMs)), timeoutMs)
  })
  try {
    return await Promise.race([readCapped(request, limit, true), deadline])
  } catch (error) {
    if (error === OVER_LIMIT) throw tooLarge(limit)
    throw cutShort(request, error)
  } finally {
    clearTimeout(timer)
  }
}

/** Bodies are read as sent: a compressed one would be taken for its bytes (and refused as text that is not UTF-8). */
export function refuseEncoded(request: Request) {
  const encoding = request.headers.get('content-encoding')
  if (encoding === null || encoding.toLowerCase() === 'identity') return
  throw new GatewayError(415, `Content-Encoding '${encoding}' is not supported: send the request body uncompressed.`, { code: 'unsupported_content_encoding' })
}

/** The body as JSON; `empty` is what an absent body means to the caller (the admin API: null; /v1: an error). */
export async function readJsonBody(request: Request, limit: number, timeoutMs: number, empty: () => unknown): Promise<unknown> {
  return parseJsonBody(await readBodyText(request, limit, timeoutMs), empty)
}

/** A body read with readBodyText, parsed: `empty` says what no body at all means; invalid JSON is a 400. */
export function parseJsonBody(text: string, empty: () => unknown): unknown {
  if (text.length === 0) return empty()
  try {
    return JSON.parse(text)
  } catch {
    throw new GatewayError(400, 'We could not parse the JSON body of your request. Send valid JSON.', { code: 'invalid_json' })
  }
}

/**
 * What a failed read of a client's body was: the client gone before its body ended (Bun closes the connection, on a
 * reset and on an early FIN alike) is the client's 499, not a gateway error; anything else stays as it was.
 */
export function cutShort(request: Request, error: unknown): unknown {
  if (GatewayError.is(error) || !request.signal.aborted) return error
  return new GatewayError(499, 'The client closed the connection before its request body arrived.', { code: 'client_closed_request' })
}

const tooLarge = (limit: number) => new GatewayError(413, `The request body is larger than the limit of ${limit} bytes.`, { code: 'request_too_large' })

// `connection: close`: the rest of the body may never come, so the connection cannot serve another request.
const timedOut = (ms: number) =>
  new GatewayError(408, `The request body did not arrive within ${ms} ms.`, { code: 'request_timeout', headers: { connection: 'close' } })
