import type { SentJson } from '../plugin-sdk/json-text.ts'
import type { AttemptContext, Endpoint, FinishedRequest, Logger, Operation, Principal, RequestContext, Target, UpstreamRequest, Usage, VirtualModel } from '../plugin-sdk/types.ts'
import type { GatewayError } from '../plugin-sdk/errors.ts'
import { egress } from './egress.ts'
import { costMicros, microsToUsd } from '../pricing/prices.ts'

let sequence = 0
/** Random per process start, so ids stay unique across workers and restarts. */
const instance = `req_${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`
/** Fixed width, so that one process's ids sort in the order they were made (request records break time ties by id). */
export const newRequestId = () => instance + (sequence++).toString(36).padStart(8, '0')

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/
/**
 * A value that `Headers` accepts and that cannot inject a header: printable ASCII stays as it is; anything else
 * (a model id in another script, an emoji, CR/LF) is percent-encoded, the way RFC 8187 carries non-ASCII.
 */
export const headerValue = (value: string) => (PRINTABLE_ASCII.test(value) ? value : encodeURIComponent(value))

export class RequestCtx implements RequestContext {
  readonly id = newRequestId()
  readonly startedAt = performance.now()
  readonly signal: AbortSignal
  readonly log: Logger
  principal: Principal | null = null
  model: VirtualModel | null = null
  body: Record<string, any> | null = null
  sentJson: SentJson | null = null
  shared: Record<string, unknown> = {}
  /** Response headers added by plugins and the core. */
  readonly headers: Record<string, string> = {}

  // What onLog reports; filled in as the request progresses.
  status = 0
  error: GatewayError | null = null
  usage: Usage | null = null
  target: Target | null = null
  attempts = 0
  costMicros = 0
  stream = false
  firstByteMs: number | null = null
  /** The key whose open-request count this request holds (see Pipeline.holdConnection). */
  heldConnection: string | null = null
  /** Run when the request is over (spooled files to delete); null until something needs it. */
  cleanups: (() => void)[] | null = null
  private pricedListeners: ((costMicros: number, target: Target) => void)[] | null = null
  /** An operation's bill for a request sent but not answered to its client (see OperationCall.abandoned). */
  abandonedUsage: (() => Usage) | null = null
  /** A front-door request (`/v1/responses`, `/v1/messages`) answered by a target speaking the protocol itself. */
  native = false
  private logged = false

  constructor(
    readonly endpoint: Endpoint,
    /** Set once more by a realtime secret's mint, which is admitted as its session's start (see Pipeline.mintRealtime). */
    public operation: Operation | null,
    readonly request: Request,
    log: Logger,
  ) {
    this.signal = request.signal
    this.log = log
  }

  /** A whole answer's cost, from its usage and target, also told to the client in `x-conduit-cost-usd`. */
  priceAnswer() {
    this.costMicros = costMicros(this.target!.price, this.usage!)
    this.headers['x-conduit-cost-usd'] = microsToUsd(this.costMicros)
    if (this.pricedListeners) for (const fn of this.pricedListeners) fn(this.costMicros, this.target!)
  }

  onPriced(fn: (costMicros: number, target: Target) => void) {
    ;(this.pricedListeners ??= []).push(fn)
  }

  onEnd(fn: () => void) {
    ;(this.cleanups ??= []).push(fn)
  }

  setHeader(name: string, value: string) {
    this.headers[name.toLowerCase()] = headerValue(value)
  }

  /** Called exactly once per request; returns the record for onLog or null when already finished. */
  finish(aborted: boolean): FinishedRequest | null {
    if (this.logged) return null
    this.logged = true
    return {
      ctx: this,
      status: this.status,
      error: this.error,
      aborted,
      stream: this.stream,
      usage: this.usage,
      target: this.target,
      attempts: this.attempts,
      costMicros: this.costMicros,
      durationMs: performance.now() - this.startedAt,
      firstByteMs: this.firstByteMs,
    }
  }
}

export class Attempt implements AttemptContext {
  readonly dropped: string[] = []
  constructor(
    readonly request: RequestCtx,
    readonly target: Target,
    readonly attempt: number,
  ) {}

  dropParam(name: string) {
    this.dropped.push(name)
  }

  async fetch(request: UpstreamRequest, signal: AbortSignal): Promise<Response> {
    await egress.check(request.url)
    return fetch(request.url, { method: request.method ?? 'POST', headers: request.headers, body: request.body, signal, redirect: 'manual' })
  }
}
