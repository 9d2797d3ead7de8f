import { GatewayError } from '../plugin-sdk/errors.ts'
import { scrubSecrets } from '../services/known-secrets.ts'
import type { EndpointAdapter, ProviderConfig, UpstreamRequest } from '../plugin-sdk/types.ts'
import { parseOpenAIError } from '../plugin-sdk/openai-compatible.ts'
import { isReachable, providerAnswered } from './reachability.ts'
import { egress } from './egress.ts'
import { http1Fetch } from './http1.ts'

/** fetch honours these (and NO_PROXY); the gateway's own client does not speak to proxies. */
const VIA_PROXY = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'].some((name) => !!process.env[name])

/** A streamed answer to a text or bytes request comes over the gateway's own connections (see http1.ts). */
function ownClient(url: string, body: UpstreamRequest['body']): body is string | Uint8Array | undefined {
  return !VIA_PROXY && (typeof body === 'string' || body === undefined || body instanceof Uint8Array) && (url.startsWith('http://') || url.startsWith('https://'))
}

export interface Timeouts {
  /** To a connection; enforced by probing the provider's host if no response came by then (see reachability.ts). */
  connectMs: number
  /** From sending the request to the response headers (and, for streams, the first body chunk). */
  firstByteMs: number
  /** Longest silence between two chunks of a stream. */
  idleMs: number
}

export function timeoutsFor(provider: ProviderConfig, defaults: Timeouts): Timeouts {
  const own = (provider.options.timeouts ?? {}) as { connect_ms?: number; first_byte_ms?: number; idle_ms?: number }
  return {
    connectMs: own.connect_ms ?? defaults.connectMs,
    firstByteMs: own.first_byte_ms ?? defaults.firstByteMs,
    idleMs: own.idle_ms ?? defaults.idleMs,
  }
}

/** How often in-flight calls are checked for a deadline or a departed client. */
const WATCH_INTERVAL_MS = 25

/**
 * One shared ticker watches every call in flight instead of a timer and an abort listener per request:
 * on the hot path a call costs a Set insert and delete. A client that leaves or a deadline that passes is
 * noticed within one tick (streams also learn of a departed client at once through cancel()).
 */
const watched = new Set<UpstreamCall>()
let ticker: Timer | null = null
function watch(call: UpstreamCall) {
  watched.add(call)
  ticker ??= setInterval(() => {
    const now = performance.now()
    for (const c of watched) c.check(now)
    if (watched.size === 0 && ticker) {
      clearInterval(ticker)
      ticker = null
    }
  }, WATCH_INTERVAL_MS)
}

/** Past the drain: no call starts (a retry after its backoff, say), and a call ended by it is not retried. */
let drained = false

/**
 * The drain is over: every upstream call still running ends now, so that its client gets our error (an SSE
 * error event on a stream, a 503 otherwise) instead of a reset connection.
 */
export function endUpstreamCalls() {
  drained = true
  for (const call of watched) call.expire('shutdown')
}

/** An upstream call in flight: one controller aborts it for a client disconnect or one of our deadlines. */
export class UpstreamCall {
  readonly controller = new AbortController()
  private deadline = Infinity
  /** When to ask whether the provider's host is reachable at all; cleared when the response headers arrive. */
  private connectCheckAt = Infinity
  private connectMs = 0
  private url: string | null = null
  /** Which of our deadlines ended the call, if one did. */
  private expired: 'first byte' | 'connect' | 'shutdown' | null = null

  constructor(
    private readonly clientSignal: AbortSignal,
    private readonly providerName: string,
  ) {
    watch(this)
  }

  /** @internal the watchdog's tick */
  check(now: number) {
    if (this.clientSignal.aborted) this.clientLeft()
    else if (now >= this.deadline) this.expire('first byte')
    else if (now >= this.connectCheckAt) {
      this.connectCheckAt = Infinity
      isReachable(this.providerName, this.url!, now - this.connectMs, this.connectMs).then((reachable) => {
        if (!reachable && this.url !== null && !this.controller.signal.aborted) this.expire('connect')
      })
    }
  }

  /** @internal one of our deadlines passed, or the process is stopping (see endUpstreamCalls). */
  expire(deadline: 'first byte' | 'connect' | 'shutdown') {
    watched.delete(this)
    this.expired = deadline
    this.controller.abort(new DOMException(`upstream ${deadline}`, 'TimeoutError'))
  }

  /** The client went away: stop the upstream call now. */
  clientLeft() {
    watched.delete(this)
    this.controller.abort(new DOMException('client disconnected', 'AbortError'))
  }

  /** (Re)sets the deadline; refreshed on every chunk of a stream. */
  arm(ms: number) {
    this.deadline = performance.now() + ms
  }

  disarm() {
    this.deadline = Infinity
  }

  /** The call is over: stop watching it. */
  release() {
    watched.delete(this)
  }

  /** `streamed`: the answer is read as it comes (a stream), not whole. */
  async fetch(request: UpstreamRequest, timeouts: Timeouts, streamed = false): Promise<Response> {
    if (drained) {
      this.expire('shutdown')
      throw this.failure(null)
    }
    // No connection to a host the egress policy refuses (private, loopback, metadata; see egress.ts).
    const checking = egress.check(request.url) // undefined: this origin was allowed moments ago
    if (checking) {
      await checking.catch((error) => {
        this.release()
        throw error
      })
    }
    this.arm(timeouts.firstByteMs)
    this.url = request.url
    this.connectMs = timeouts.connectMs
    this.connectCheckAt = performance.now() + timeouts.connectMs
    try {
      const body = request.body
      const response = await (streamed && ownClient(request.url, body)
        ? http1Fetch(request.url, { method: request.method ?? 'POST', headers: request.headers, body, signal: this.controller.signal })
        : fetch(request.url, {
            method: request.method ?? 'POST',
            headers: request.headers,
            body,
            signal: this.controller.signal,
            redirect: 'manual',
            // Our own deadlines govern (first byte, idle between chunks); Bun's 5-minute socket idle timer would
            // cut a provider configured to be allowed longer.
            timeout: false,
          } as RequestInit))
      providerAnswered(this.providerName)
      return response
    } catch (error) {
      this.release()
      throw this.failure(error)
    } finally {
      this.connectCheckAt = Infinity
      this.url = null
    }
  }

  /** Translates a transport failure into the error the client should see; `midStream`: after the answer began. */
  failure(error: unknown, midStream = false): GatewayError {
    if (this.expired === 'first byte') {
      return new GatewayError(504, `The upstream provider '${this.providerName}' did not respond in time.`, { code: 'upstream_timeout' })
    }
    if (this.expired === 'shutdown') {
      return new GatewayError(503, 'The gateway is shutting down; the response was ended before it was complete.', { code: 'server_shutting_down' })
    }
    if (this.expired === 'connect') {
      return new GatewayError(502, `Could not connect to the upstream provider '${this.providerName}' within ${this.connectMs} ms.`, {
        code: 'upstream_connect_timeout',
      })
    }
    if (this.clientSignal.aborted) return new GatewayError(499, 'The client closed the request.', { code: 'client_closed_request' })
    // The transport's own words name internal hosts and addresses (getaddrinfo ENOTFOUND …): logs only.
    const failure = midStream
      ? new GatewayError(502, `The connection to the upstream provider '${this.providerName}' broke off mid-answer.`, { code: 'upstream_stream_broken' })
      : new GatewayError(502, `Could not reach the upstream provider '${this.providerName}'.`, { code: 'upstream_unreachable' })
    failure.cause = error instanceof Error ? error.message : String(error)
    return failure
  }
}

/** Reads an upstream error response (always consuming the body) and maps it to our envelope. */
export async function upstreamError(response: Response, adapter: Pick<EndpointAdapter, 'parseError'>, providerName: string): Promise<GatewayError> {
  // A provider may quote our key back in any field of its error ("Incorrect API key provided: …"): gone before it is read.
  const text = scrubSecrets(await response.text().catch(() => ''))
  if (response.status < 400) {
    // Redirects are never followed (a redirect is how an allowed host would point us at a forbidden one).
    return new GatewayError(502, `The upstream provider '${providerName}' answered with a redirect (HTTP ${response.status}), which the gateway does not follow.`, {
      code: 'upstream_redirect',
    })
  }
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {}
  const error = adapter.parseError ? adapter.parseError(response.status, body, response.headers) : parseOpenAIError(response.status, body, providerName)
  const retryAfter = response.headers.get('retry-after')
  if (retryAfter && !error.headers['retry-after']) error.headers['retry-after'] = retryAfter
  return error
}

/** A failure of the target's, which its health counts: not the client's (4xx) nor a plugin's. */
export const targetFailed = (error: GatewayError) => error.status >= 500 && error.code !== 'plugin_failure'

/** Errors worth another target: the upstream failed or was overloaded, not the request. */
export const isRetryable = (error: GatewayError) => (RETRYABLE.has(error.status) || error.status >= 520) && error.code !== 'server_shutting_down'

/**
 * 429 and the gateway-side 5xx (bad gateway, unavailable, timeout; 52x are CDN/origin failures, 529 overloaded).
 * A 500 or 501 is the provider's answer to this request: another attempt would get the same (PR5 d).
 */
const RETRYABLE = new Set([429, 502, 503, 504])
