import { randomBytes } from 'node:crypto'
import type { ServerWebSocket, WebSocketHandler } from 'bun'
import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import type { Logger, MaybePromise, Principal, RealtimeAdapter, RealtimeProtocol, Target, UpstreamRequest } from '../plugin-sdk/types.ts'
import type { PluginHost } from '../plugin-host/host.ts'
import type { Metrics } from '../services/metrics.ts'
import type { SpendLedger } from '../store/ledger.ts'
import type { RealtimeSessionRow, Store } from '../store/store.ts'
import { base62, sha256 } from '../store/crypto.ts'
import type { Attempt, RequestCtx } from '../core/context.ts'
import { egress } from '../core/egress.ts'
import type { AttemptLease } from '../core/router.ts'
import { timeoutsFor, type Timeouts } from '../core/upstream.ts'
import { allowedBy } from '../core/glob.ts'
import { RealtimeSession, type EndReason, type SessionDeps } from './session.ts'
import { betaSessionObject, gaSecretObject, readSessionRequest, sessionIn, type StoredSettings } from './settings.ts'

export interface RealtimeOptions {
  maxBufferedBytes?: number
  idleTimeoutS?: number
  maxSessionS?: number
  secretTtlS?: number
}

export const DEFAULTS = { maxBufferedBytes: 4 * 1024 * 1024, idleTimeoutS: 300, maxSessionS: 3600, secretTtlS: 60 }

/** What the HTTP edge lends a WebSocket request: Bun's upgrade, and whether it happened. */
export interface UpgradeTransport {
  upgrade(data: { session: RealtimeSession }, headers: Record<string, string>): boolean
  upgraded: boolean
}

/** The WebSocket routes' parameters: the session of `/v1/realtime/sessions/{id}/ws`, the model of `/v1/realtime?model=`. */
export interface RealtimeParams {
  sessionId?: string
  transport: UpgradeTransport
}

interface Pending {
  protocol: RealtimeProtocol
  transport?: UpgradeTransport
  /** The subprotocol answered: `realtime` when offered (browsers drop a handshake whose offer gets no answer). */
  answer: string | null
  /** The session made ahead, when the connection opens one (claimed: no other connection can). */
  row: RealtimeSessionRow | null
  upgraded: boolean
}

const EPHEMERAL_PREFIX = 'ek_'
const KEY_SUBPROTOCOL = 'openai-insecure-api-key.'
const BETA_SUBPROTOCOL = 'openai-beta.realtime-v1'
/** Stands for "the connection was upgraded": never sent (the edge returns nothing to Bun after an upgrade). */
const UPGRADED = new Response(null, { status: 204 })
const TICK_MS = 200
/** A client told to close that does not read its close frame is cut off after this. */
const CLOSE_GRACE_MS = 5_000

const subprotocols = (request: Request) =>
  (request.headers.get('sec-websocket-protocol') ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)

/** The key a WebSocket request carries: `Authorization: Bearer`, else the subprotocol browsers use for it. */
function credentialOf(request: Request): string | null {
  const bearer = /^Bearer\s+(.+)$/i.exec(request.headers.get('authorization') ?? '')?.[1]?.trim()
  if (bearer) return bearer
  const offered = subprotocols(request).find((p) => p.startsWith(KEY_SUBPROTOCOL))
  return offered ? offered.slice(KEY_SUBPROTOCOL.length) : null
}

/** A handshake the provider refused, by the status Bun reports ("Expected 101 status code: 401"). */
function handshakeFailure(message: string, provider: string): GatewayError {
  const status = Number(/Expected 101 status code: (\d{3})/.exec(message)?.[1] ?? 0)
  if (status === 401 || status === 403) return new GatewayError(502, `The provider '${provider}' rejected the gateway's credentials (HTTP ${status}).`, { code: 'upstream_auth_failed' })
  if (status === 429) return new GatewayError(429, `The provider '${provider}' is rate limiting realtime sessions.`, { code: 'upstream_rate_limited' })
  if (status) return new GatewayError(502, `The provider '${provider}' refused the realtime session (HTTP ${status}).`, { code: 'upstream_error' })
  return new GatewayError(502, `The provider '${provider}' could not be reached.`, { code: 'upstream_unreachable' })
}

/** The provider's socket, open; or a GatewayError the pipeline can retry elsewhere (502 refused, 504 too slow). */
function openSocket(upstream: UpstreamRequest & { protocols?: string[] }, timeoutMs: number, provider: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    // Bun's client takes headers (browsers' does not): the provider's key travels in them, never in the URL.
    const socket = new WebSocket(upstream.url, { headers: upstream.headers, protocols: upstream.protocols } as any)
    const timer = setTimeout(() => {
      socket.onopen = socket.onerror = socket.onclose = null
      socket.close()
      reject(new GatewayError(504, `The provider '${provider}' did not open the realtime session within ${timeoutMs} ms.`, { code: 'upstream_connect_timeout' }))
    }, timeoutMs)
    socket.onopen = () => {
      clearTimeout(timer)
      socket.onopen = socket.onerror = socket.onclose = null
      resolve(socket)
    }
    socket.onerror = (event) => {
      clearTimeout(timer)
      socket.onopen = socket.onerror = socket.onclose = null
      reject(handshakeFailure((event as ErrorEvent).message ?? '', provider))
    }
  })
}

export interface RealtimeDeps {
  store: Store
  host: PluginHost
  ledger: SpendLedger
  metrics: Metrics
  log: Logger
  timeouts: Timeouts
  /** The pipeline's accounting of a request that ends (a session, when it closes). */
  report(ctx: RequestCtx, aborted: boolean): void
  options?: RealtimeOptions
}

/**
 * Realtime for the pipeline: secrets minted ahead (POST /v1/realtime/sessions, /client_secrets), the WebSocket's
 * authentication and session lookup before the pipeline admits it like any request, the provider's socket opened
 * before the client's upgrade is accepted, and the open sessions: their timeouts, the keys revoked under them,
 * their metrics. Bun's WebSocket handlers (`websocket`) hand each client frame straight to its session.
 */
export class RealtimeService {
  private readonly sessions = new Set<RealtimeSession>()
  private readonly byKey = new Map<string, Set<RealtimeSession>>()
  private readonly pending = new WeakMap<RequestCtx, Pending>()
  /** Clients told to close, cut off if they have not gone after CLOSE_GRACE_MS. */
  private readonly closing = new Map<ServerWebSocket<unknown>, number>()
  private ticker: Timer | null = null
  private readonly options: typeof DEFAULTS
  private readonly sessionDeps: SessionDeps
  private readonly unsubscribe: () => void

  readonly websocket: WebSocketHandler<{ session: RealtimeSession }>

  constructor(private readonly deps: RealtimeDeps) {
    this.options = { ...DEFAULTS, ...Object.fromEntries(Object.entries(deps.options ?? {}).filter(([, v]) => v !== undefined)) }
    this.sessionDeps = {
      host: deps.host,
      ledger: deps.ledger,
      metrics: deps.metrics,
      log: deps.log,
      report: deps.report,
      ended: (session) => this.forget(session),
    }
    this.websocket = {
      open: (ws) => ws.data.session.opened(ws),
      message: (ws, message) => ws.data.session.fromClient(message),
      close: (ws, code, reason) => {
        this.closing.delete(ws)
        ws.data.session.clientClosed(code, reason)
      },
      // Our own bound (maxBufferedBytes per session) ends a slow client first; Bun's is the backstop, and never drops.
      backpressureLimit: 64 * 1024 * 1024,
      closeOnBackpressureLimit: false,
      // OpenAI takes events up to 15 MiB (a long audio append).
      maxPayloadLength: 16 * 1024 * 1024,
      // Pings keep a quiet but live socket open; our own idle timer decides when a session has been silent too long.
      idleTimeout: 960,
      sendPings: true,
      perMessageDeflate: false,
    }
    // A key disabled or deleted (here, or on another instance through the change bus) ends its sessions.
    this.unsubscribe = deps.store.onChange((change) => {
      if (change.kind !== 'key') return
      if (change.id === '*') for (const id of this.byKey.keys()) void this.recheckKey(id)
      else if (this.byKey.has(change.id)) void this.recheckKey(change.id)
    })
  }

  get open() {
    return this.sessions.size
  }

  /**
   * The request the pipeline sees: a key sent in the subprotocol (browsers cannot set headers) becomes the
   * Authorization header the auth plugins read. The original request is the one upgraded.
   */
  prepare(request: Request): Request {
    if (request.headers.has('authorization')) return request
    const key = credentialOf(request)
    if (!key) return request
    const headers = new Headers(request.headers)
    headers.set('authorization', `Bearer ${key}`)
    return new Request(request.url, { method: request.method, headers })
  }

  /**
   * An ephemeral secret (`ek_…`) authenticates as the key it was minted by, for its one session (claimed now, so a
   * second connection with it is refused); anything else goes to the auth plugins.
   */
  async authenticate(ctx: RequestCtx, plugins: () => MaybePromise<Principal | Response | undefined>): Promise<Principal | Response | undefined> {
    const credential = ctx.operation === 'realtime' ? credentialOf(ctx.request) : null
    if (!credential?.startsWith(EPHEMERAL_PREFIX)) return plugins()
    const now = Date.now()
    const row = await this.deps.store.claimRealtimeSession({ secretHash: sha256(credential) }, now)
    if (!row) {
      throw new GatewayError(401, 'This ephemeral key is unknown, expired or already used. Create a new session.', { code: 'invalid_api_key' })
    }
    const key = (await this.deps.store.findKeys(row.key_id)).find((k) => k.id === row.key_id)
    const usable = key && key.enabled && (key.expiresAt === null || key.expiresAt > now)
    if (!usable) {
      await this.deps.store.releaseRealtimeSession(row.id)
      throw new GatewayError(401, 'The API key this ephemeral key was made with is disabled, expired or deleted.', { code: 'invalid_api_key' })
    }
    this.remember(ctx, row)
    return { keyId: key.id, name: key.name, allowedModels: key.allowedModels, allowedEndpoints: key.allowedEndpoints, limits: key.limits, metadata: key.metadata }
  }

  private remember(ctx: RequestCtx, row: RealtimeSessionRow | null): Pending {
    let pending = this.pending.get(ctx)
    if (!pending) {
      const offered = subprotocols(ctx.request)
      pending = {
        protocol: /realtime=v1/.test(ctx.request.headers.get('openai-beta') ?? '') || offered.includes(BETA_SUBPROTOCOL) ? 'beta' : 'ga',
        answer: offered.includes('realtime') ? 'realtime' : null,
        row: null,
        upgraded: false,
      }
      this.pending.set(ctx, pending)
      // A session claimed but never opened (refused by a limit, the provider unreachable) can be connected again.
      ctx.onEnd(() => {
        if (!pending!.upgraded && pending!.row) void this.deps.store.releaseRealtimeSession(pending!.row.id).catch(() => {})
      })
    }
    if (row) pending.row = row
    return pending
  }

  /**
   * The WebSocket request's body, as the pipeline admits it: the model, from the query or the session made ahead.
   * 426 when it is not a WebSocket handshake; 404 for a session this key does not have.
   */
  async sessionBody(ctx: RequestCtx, url: URL, params: RealtimeParams): Promise<Record<string, any>> {
    if (ctx.request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
      throw new GatewayError(426, 'This endpoint takes a WebSocket connection (Upgrade: websocket).', { code: 'websocket_required', headers: { upgrade: 'websocket' } })
    }
    let pending = this.pending.get(ctx)
    if (params.sessionId !== undefined) {
      if (!pending?.row) {
        const row = await this.deps.store.claimRealtimeSession({ id: params.sessionId }, Date.now())
        if (row && row.key_id !== ctx.principal!.keyId) await this.deps.store.releaseRealtimeSession(row.id)
        if (!row || row.key_id !== ctx.principal!.keyId) throw unknownSession(params.sessionId)
        pending = this.remember(ctx, row)
      } else if (pending.row.id !== params.sessionId) throw unknownSession(params.sessionId)
    } else pending ??= this.remember(ctx, null)
    pending.transport = params.transport
    const asked = url.searchParams.get('model')
    if (pending.row) {
      if (asked && asked !== pending.row.model) {
        throw badRequest(`This session was created for the model '${pending.row.model}', not '${asked}'.`, 'model', 'model_mismatch')
      }
      return { model: pending.row.model }
    }
    if (!asked) throw badRequest("Missing required parameter: 'model' (wss://…/v1/realtime?model=<model>).", 'model', 'missing_required_parameter')
    return { model: asked }
  }

  /** Whether a target can serve this connection: a provider that speaks the client's vocabulary. */
  serves(ctx: RequestCtx, target: Target, adapter: RealtimeAdapter): boolean {
    const protocol = this.pending.get(ctx)?.protocol ?? 'ga'
    return adapter.protocols(target.provider).includes(protocol)
  }

  /**
   * One attempt: the provider's socket is opened first (a refusal or a timeout is an HTTP error the pipeline may
   * retry on the next target), then the client's upgrade is accepted and the session relays.
   */
  async connect(ctx: RequestCtx, attempt: Attempt, adapter: RealtimeAdapter, lease: AttemptLease): Promise<Response> {
    const pending = this.pending.get(ctx)!
    const provider = attempt.target.provider
    const upstream = await adapter.connect(attempt, pending.protocol)
    await this.deps.host.upstreamRequest(attempt, upstream as UpstreamRequest)
    // The egress policy speaks http(s): a wss:// upstream is checked as the https:// origin it connects to.
    await egress.check(upstream.url.replace(/^ws/, 'http'))
    const started = performance.now()
    // The handshake is the connection and the response's first byte: the provider's connect timeout bounds both.
    const socket = await openSocket(upstream, timeoutsFor(provider, this.deps.timeouts).connectMs, provider.name)
    const metadata = ctx.principal!.metadata
    const seconds = (name: string, fallback: number) => {
      const value = metadata[name]
      return typeof value === 'number' && value > 0 ? value * 1000 : fallback * 1000
    }
    const initial = pending.row ? sessionIn(JSON.parse(pending.row.settings) as StoredSettings, pending.protocol) : null
    const session = new RealtimeSession(
      ctx,
      attempt.target,
      socket,
      pending.protocol,
      adapter.audioFormats(provider),
      lease,
      this.sessionDeps,
      {
        maxBufferedBytes: this.options.maxBufferedBytes,
        idleMs: seconds('realtime_idle_timeout_s', this.options.idleTimeoutS),
        maxLengthMs: seconds('realtime_max_session_s', this.options.maxSessionS),
      },
      initial,
    )
    const headers: Record<string, string> = { 'x-request-id': ctx.id }
    if (pending.answer) headers['sec-websocket-protocol'] = pending.answer
    if (!pending.transport!.upgrade({ session }, headers)) {
      socket.close(1000)
      throw new GatewayError(400, 'The WebSocket handshake could not be completed.', { code: 'websocket_required' })
    }
    pending.upgraded = true
    pending.transport!.upgraded = true
    lease.succeeded(performance.now() - started)
    ctx.firstByteMs = performance.now() - ctx.startedAt
    this.track(session)
    return UPGRADED
  }

  /** `POST /v1/realtime/sessions` (beta shape) and `/client_secrets` (GA): a session made ahead, and its secret. */
  async mint(
    ctx: RequestCtx,
    body: Record<string, any>,
    ga: boolean,
    resolveModel: (name: string) => void,
    realtimeCapable: () => boolean,
    admit: () => MaybePromise<Response | undefined>,
  ): Promise<Response> {
    const request = readSessionRequest(body, ga)
    resolveModel(request.model)
    if (!realtimeCapable()) {
      throw new GatewayError(400, `The model '${request.model}' does not support realtime sessions.`, { param: 'model', code: 'unsupported_endpoint' })
    }
    const refused = await admit()
    if (refused) return refused
    const now = Date.now()
    const ttl = (request.ttlSeconds ?? this.options.secretTtlS) * 1000
    const secret = `${EPHEMERAL_PREFIX}${base62(randomBytes(32))}`
    const id = `sess_${base62(randomBytes(16))}`
    await this.deps.store.insertRealtimeSession({
      id,
      secret_hash: sha256(secret),
      key_id: ctx.principal!.keyId,
      model: request.model,
      settings: JSON.stringify(request.settings),
      created_at: now,
      expires_at: now + ttl,
      connected_at: null,
    })
    const clientSecret = { value: secret, expires_at: Math.floor((now + ttl) / 1000) }
    const out = ga ? gaSecretObject(id, request.model, request.settings, clientSecret) : betaSessionObject(id, request.model, request.settings, clientSecret)
    ctx.status = 200
    return new Response(JSON.stringify(out), { status: 200, headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-request-id': ctx.id, ...ctx.headers } })
  }

  // Open sessions -------------------------------------------------------------------------------------------------

  private track(session: RealtimeSession) {
    this.sessions.add(session)
    let mine = this.byKey.get(session.keyId)
    if (!mine) this.byKey.set(session.keyId, (mine = new Set()))
    mine.add(session)
    this.deps.metrics.realtimeOpen = this.sessions.size
    this.ticker ??= setInterval(() => this.tick(), TICK_MS)
  }

  private forget(session: RealtimeSession) {
    this.flush(session)
    this.sessions.delete(session)
    const mine = this.byKey.get(session.keyId)
    mine?.delete(session)
    if (mine?.size === 0) this.byKey.delete(session.keyId)
    this.deps.metrics.realtimeOpen = this.sessions.size
    const ws = session.clientSocket
    if (ws && ws.readyState !== 3) this.closing.set(ws, performance.now() + CLOSE_GRACE_MS)
  }

  private flush(session: RealtimeSession) {
    if (session.framesUp) this.deps.metrics.realtimeTraffic('client_to_provider', session.framesUp, session.bytesUp)
    if (session.framesDown) this.deps.metrics.realtimeTraffic('provider_to_client', session.framesDown, session.bytesDown)
    session.framesUp = session.bytesUp = session.framesDown = session.bytesDown = 0
  }

  /** Timeouts, traffic counters, and clients that never acknowledged their close. */
  private tick() {
    const now = performance.now()
    for (const session of this.sessions) {
      this.flush(session)
      if (now - session.startedAt >= session.options.maxLengthMs) session.end('max_length')
      else if (now - session.lastActivity >= session.options.idleMs) session.end('idle')
    }
    for (const [ws, deadline] of this.closing) {
      if (ws.readyState === 3) this.closing.delete(ws)
      else if (now >= deadline) {
        this.closing.delete(ws)
        ws.terminate()
      }
    }
    if (this.sessions.size === 0 && this.closing.size === 0 && this.ticker) {
      clearInterval(this.ticker)
      this.ticker = null
    }
  }

  /** After a change to a key with open sessions: still enabled, unexpired, allowed realtime and each session's model? */
  private async recheckKey(keyId: string) {
    let key
    try {
      key = (await this.deps.store.findKeys(keyId)).find((k) => k.id === keyId) ?? null
    } catch (err) {
      this.deps.log.warn({ err, keyId }, 'realtime: could not check a changed key; its sessions go on')
      return
    }
    const alive = key && key.enabled && (key.expiresAt === null || key.expiresAt > Date.now()) && (!key.allowedEndpoints || key.allowedEndpoints.includes('realtime'))
    for (const session of [...(this.byKey.get(keyId) ?? [])]) {
      if (!alive || !allowedBy(session.ctx.model!.name, key!.allowedModels)) session.end('key_revoked')
    }
  }

  /** Ends every session (tests, and a shutdown that cannot wait for Bun's own close). */
  endAll(reason: EndReason = 'shutdown') {
    for (const session of [...this.sessions]) session.end(reason)
  }

  close() {
    this.unsubscribe()
    if (this.ticker) clearInterval(this.ticker)
    this.ticker = null
  }
}

const unknownSession = (id: string) => new GatewayError(404, `No realtime session '${id}' is waiting for this key (unknown, expired or already connected).`, { code: 'session_not_found' })
