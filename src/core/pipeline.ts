import { GatewayError } from '../plugin-sdk/errors.ts'
import type { Counter, Endpoint, EndpointAdapter, FinishedRequest, ImageOperation, ImagesAdapter, Logger, MaybePromise, Operation, Principal, SpeechAdapter, TranscriptionAdapter, Usage } from '../plugin-sdk/types.ts'
import type { PluginHost } from '../plugin-host/host.ts'
import { costMicros } from '../pricing/prices.ts'
import type { Metrics } from '../services/metrics.ts'
import type { SpendLedger } from '../store/ledger.ts'
import { beforeFlush } from '../store/batch-writer.ts'
import { storeUnavailable, type Store } from '../store/store.ts'
import { usageRange, usageReport } from './usage.ts'
import type { Catalog } from './catalog.ts'
import { backoffMs, targetId, type AttemptLease, type Router } from './router.ts'
import { Attempt, RequestCtx, headerValue } from './context.ts'
import { parseJsonBody, readBodyText, readJsonBody } from './body.ts'
import { SSE_HEADERS, firstBytes, wholeText, type OperationCall } from './upstream-body.ts'
import { allowedBy } from './glob.ts'
import { refuseUpstreamOverrides, validateRequest } from './request-schemas.ts'
import { relayStream, type StreamOutcome } from './stream-relay.ts'
import { UpstreamCall, isRetryable, targetFailed, timeoutsFor, upstreamError, type Timeouts } from './upstream.ts'
import { estimatePromptTokens, estimateTokens } from '../plugin-sdk/tokens.ts'
import { scrubSecrets } from '../services/known-secrets.ts'
import { extractUsage, floatsToBase64, spliceModel } from './wire.ts'
import { readAudioForm } from './audio.ts'
import { prepareAudioCall, type AudioCallDeps } from './audio-call.ts'
import { prepareImagesCall, readImageForm, type ImagesCallDeps } from './images-call.ts'
import type { RealtimeAdapter } from '../plugin-sdk/types.ts'
import { RealtimeService, type RealtimeOptions, type RealtimeParams } from '../realtime/service.ts'
import { prepareNativeCall, renderFrontDoor, type FrontDoor, type FrontDoorDeps, type FrontDoorOperation } from './front-door.ts'

export interface PipelineOptions {
  host: PluginHost
  catalog: Catalog
  router: Router
  store: Store
  metrics: Metrics
  /** Every finished request that reached a provider becomes one row. */
  ledger: SpendLedger
  log: Logger
  /** Largest accepted JSON body, in bytes. */
  maxBodyBytes: number
  /** How long a client may take to send its body once its key is known (a trickled body holds a connection). */
  bodyTimeoutMs: number
  /** Requests in flight past which new ones are refused at once with 503 instead of queueing without bound. */
  maxInflight: number
  /** Largest non-streaming upstream response read into memory. */
  maxUpstreamBodyBytes: number
  /** Largest audio upload (transcriptions, translations), spooled to disk past a small size. */
  audioMaxUploadBytes?: number
  timeouts: Timeouts
  /** Realtime sessions' limits. */
  realtime?: RealtimeOptions
  /** The Responses and Messages protocols, served over chat (src/core/front-door.ts). */
  frontDoors?: Partial<Record<FrontDoorOperation, FrontDoor>>
}

/** Transport hooks the HTTP layer lends the pipeline without the core knowing the framework. */
export interface Transport {
  /** Lift the server's idle timeout for this request: LLM calls may be silent for minutes. */
  disableIdleTimeout?(): void
}

/** What a route asks of the pipeline: an operation a provider performs, or one the gateway answers itself. */
export type Route = Operation | 'models' | 'usage' | 'realtime_sessions' | 'responses_stored' | 'messages_count_tokens'

const ENDPOINT_OF: Record<Route, Endpoint> = {
  chat: 'chat',
  completions: 'completions',
  embeddings: 'embeddings',
  transcriptions: 'audio',
  translations: 'audio',
  speech: 'audio',
  images: 'images',
  image_edits: 'images',
  image_variations: 'images',
  models: 'models',
  usage: 'usage',
  realtime: 'realtime',
  realtime_sessions: 'realtime',
  responses: 'responses',
  responses_stored: 'responses',
  messages: 'messages',
  messages_count_tokens: 'messages',
}
/** Routes the gateway answers itself, without a provider operation. */
const ANSWERED = new Set<Route>(['models', 'usage', 'realtime_sessions', 'responses_stored', 'messages_count_tokens'])
/** The front door whose protocol a route speaks (its errors too). */
const DOOR_OF: Partial<Record<Route, FrontDoorOperation>> = {
  responses: 'responses',
  responses_stored: 'responses',
  messages: 'messages',
  messages_count_tokens: 'messages',
}
/** Operations whose body is a multipart upload rather than JSON. */
const UPLOADS = new Set<Operation | null>(['transcriptions', 'translations'])
const IMAGE_UPLOADS = new Set<Operation | null>(['image_edits', 'image_variations'])
const STREAMABLE = new Set<Operation | null>(['chat', 'completions', 'transcriptions', 'images', 'image_edits', 'responses', 'messages'])
/** Uploads up to this size stay in memory; larger ones go to disk as they arrive (50 at once hold 12.5 MB). */
const SPOOL_MEMORY_BYTES = 256 * 1024
const DEFAULT_AUDIO_MAX_UPLOAD_BYTES = 100 * 1024 * 1024

type AnyAdapter = EndpointAdapter | TranscriptionAdapter | SpeechAdapter | ImagesAdapter

const emptyBody = () => {
  throw new GatewayError(400, 'The request body is empty; send a JSON object.', { code: 'invalid_json' })
}

/** Failures that another attempt at the same target would only repeat (or wait out again). */
const NOT_AGAIN = new Set(['upstream_timeout', 'upstream_connect_timeout', 'upstream_not_allowed', 'upstream_redirect'])

/** Extra attempts a model gets unless its routing says otherwise. */
const DEFAULT_RETRIES = 2

const JSON_TYPE = 'application/json'
const OVERLOADED = JSON.stringify(
  new GatewayError(503, 'The gateway is at capacity. Retry shortly.', { code: 'server_overloaded' }).toJSON(),
)

/**
 * One request, end to end: onRequest → onAuth → body → model → onAccess → onRequestBody → attempts
 * (onUpstreamRequest, fetch, onResponse | onChunk) → onLog. Framework-free: takes a Request, returns a Response.
 */
export class Pipeline {
  /** Requests per key from the moment the key is known, so a key's max_parallel also bounds slow uploads. */
  private readonly openPerKey = new Map<string, number>()

  /** Operations whose attempts their own module prepares and answers (audio, images, front doors going native); the rest are chat-shaped. */
  private readonly calls: Partial<Record<Operation, (ctx: RequestCtx, attempt: Attempt, adapter: AnyAdapter) => OperationCall | null | Promise<OperationCall>>>
  /** Realtime sessions: minted secrets, WebSocket admission and the open sessions (src/realtime). */
  readonly realtime: RealtimeService

  /** Every failed upstream attempt, the ones another attempt made good included (requests count only the last). */
  private readonly attemptFailures: Counter

  constructor(private readonly o: PipelineOptions) {
    this.attemptFailures = o.metrics.counter({
      name: 'conduit_upstream_attempt_failures_total',
      help: 'Upstream attempts that failed, whether or not another attempt then answered, by provider and error code.',
      labelNames: ['provider', 'code'],
    })
    const host = o.host
    this.realtime = new RealtimeService({ ...o, options: o.realtime, report: (ctx, aborted) => this.report(ctx, aborted) })
    const audioDeps: AudioCallDeps = {
      get transcoder() {
        return host.transcoder // registered by a plugin as the host loads
      },
      maxUpstreamBodyBytes: o.maxUpstreamBodyBytes,
      settle: (ctx, response) => this.settle(ctx, response),
      report: (ctx, aborted) => this.report(ctx, aborted),
    }
    const imagesDeps: ImagesCallDeps = {
      store: o.store,
      maxUpstreamBodyBytes: o.maxUpstreamBodyBytes,
      settle: (ctx, response) => this.settle(ctx, response),
      report: (ctx, aborted) => this.report(ctx, aborted),
      response: (attempt, body) => host.response(attempt, body),
    }
    const audio = (ctx: RequestCtx, attempt: Attempt, adapter: AnyAdapter) => prepareAudioCall(ctx, attempt, adapter as TranscriptionAdapter | SpeechAdapter, audioDeps)
    const images = (ctx: RequestCtx, attempt: Attempt, adapter: AnyAdapter) => prepareImagesCall(ctx, attempt, adapter as ImagesAdapter, imagesDeps)
    const frontDoorDeps: FrontDoorDeps = {
      maxUpstreamBodyBytes: o.maxUpstreamBodyBytes,
      settle: (ctx, response) => this.settle(ctx, response),
      report: (ctx, aborted) => this.report(ctx, aborted),
      usage: (ctx, raw, chunks) => this.usageFrom(ctx, raw, chunks),
    }
    // A target whose provider speaks the client's protocol gets the client's body; any other, the chat path.
    const frontDoor = (ctx: RequestCtx, attempt: Attempt, adapter: AnyAdapter) => {
      const operation = ctx.operation as FrontDoorOperation
      const native = this.o.host.providers.get(attempt.target.provider.type)?.[operation] === adapter
      return native ? prepareNativeCall(ctx, attempt, o.frontDoors![operation]!, this.nativeBodies.get(ctx)!, frontDoorDeps) : null
    }
    this.calls = { transcriptions: audio, translations: audio, speech: audio, images, image_edits: images, image_variations: images, responses: frontDoor, messages: frontDoor }
  }

  /** A request for a route's path that never reached the route (a method it does not take), in the route's envelope. */
  refusal(route: Route, error: GatewayError): Response {
    const door = DOOR_OF[route] && this.o.frontDoors?.[DOOR_OF[route]!]
    const rendered = door?.renderError?.(error.status, error.toJSON().error)
    return rendered ? json(rendered.status, rendered.body, {}) : json(error.status, error.toJSON(), error.headers)
  }

  /** Per front-door request: the client's body as a native target gets it (the chat body is `ctx.body`). */
  private readonly nativeBodies = new WeakMap<RequestCtx, Record<string, any>>()

  async handle(route: Route, request: Request, transport: Transport = {}, params: HandleParams = {}): Promise<Response> {
    if (this.o.metrics.inflight >= this.o.maxInflight) {
      // Shed before any work: under overload a quick 503 beats a queue that only grows.
      this.o.metrics.shed++
      return new Response(OVERLOADED, { status: 503, headers: { 'content-type': JSON_TYPE, 'retry-after': '1' } })
    }
    const endpoint = ENDPOINT_OF[route]
    const operation = ANSWERED.has(route) ? null : (route as Operation)
    const ctx = new RequestCtx(endpoint, operation, request, this.o.log)
    this.o.metrics.inflight++
    const doorName = DOOR_OF[route]
    if (doorName) {
      const door = this.o.frontDoors?.[doorName]
      if (!door) return this.fail(ctx, new GatewayError(404, `Unknown request URL: ${request.method} ${new URL(request.url).pathname}.`, { code: 'unknown_url' }))
      return renderFrontDoor(ctx, door, await this.run(route, ctx, request, transport, params, door))
    }
    return this.run(route, ctx, request, transport, params)
  }

  private async run(route: Route, ctx: RequestCtx, request: Request, transport: Transport, params: HandleParams, door?: FrontDoor): Promise<Response> {
    const { endpoint, operation } = ctx
    try {
      // Hooks that answer at once are not awaited: each await of a plain value costs a turn of the microtask queue.
      let early = this.o.host.run('onRequest', ctx)
      if (early instanceof Promise) early = await early
      early ??= this.authenticate(ctx)
      if (early instanceof Promise) early = await early
      if (early) return this.settle(ctx, early)
      this.holdConnection(ctx)
      if (endpoint === 'models') return this.settle(ctx, await this.models(ctx, params.model))
      if (endpoint === 'usage') {
        const range = usageRange(new URL(request.url).searchParams)
        return this.settle(ctx, json(200, await usageReport(this.o.store, range, ctx.principal!.keyId, ['model', 'day', 'user']), ctx.headers))
      }
      const endpoints = ctx.principal!.allowedEndpoints
      if (endpoints && !endpoints.includes(endpoint)) {
        throw new GatewayError(403, `This key may not call the ${endpoint} endpoint.`, { code: 'endpoint_not_allowed' })
      }
      if (route === 'realtime_sessions') return this.settle(ctx, await this.mintRealtime(ctx, request, params.gaShape === true))
      if (route === 'responses_stored') return this.settle(ctx, await door!.stored!(ctx, request.method, params.id!, params.part ?? null, new URL(request.url).searchParams))
      if (route === 'messages_count_tokens') return this.settle(ctx, await this.countTokens(ctx, request, door!))
      if (operation === 'realtime') return await this.openRealtime(ctx, request, params.realtime!)
      let body: Record<string, any>
      const upload = { idleMs: this.o.bodyTimeoutMs, memoryBytes: SPOOL_MEMORY_BYTES }
      if (UPLOADS.has(operation)) {
        const maxFileBytes = this.o.audioMaxUploadBytes ?? DEFAULT_AUDIO_MAX_UPLOAD_BYTES
        body = await readAudioForm(ctx, request, operation!, { ...upload, maxFileBytes }, this.o.host.transcoder)
      } else if (IMAGE_UPLOADS.has(operation)) {
        body = await readImageForm(ctx, request, operation as ImageOperation, upload)
      } else {
        const text = await readBodyText(request, this.o.maxBodyBytes, this.o.bodyTimeoutMs)
        body = parseJsonBody(text, emptyBody) as Record<string, any>
        validateRequest(operation!, body) // a front door's own fields are its read's to check: here, only that it is an object
        // Adapters splice what they change into the client's text (jsonText), at a front door for a native target.
        if (!this.o.host.hasBodyHooks) ctx.sentJson = { text, body }
      }
      // The client's own body: at a front door, what a native target is sent as it is.
      refuseUpstreamOverrides(body)
      if (door) {
        // Plugins and translated attempts see chat; a native target gets the client's own body.
        const read = await door.read(ctx, body)
        this.nativeBodies.set(ctx, read.native)
        body = read.chat
      }
      // Only now: a client trickling its body stays under the server's idle timer as well as our deadline.
      transport.disableIdleTimeout?.()
      if (params.speechStream && body.stream_format === undefined && request.headers.get('accept')?.includes('text/event-stream')) body = { ...body, stream_format: 'sse' }
      ctx.body = body
      ctx.stream = operation === 'speech' || (body.stream === true && STREAMABLE.has(operation))
      const loading = this.o.catalog.ready()
      if (loading) await loading
      ctx.model = this.resolveModel(ctx, body.model)
      let refused = this.access(ctx)
      if (refused instanceof Promise) refused = await refused
      if (refused) return this.settle(ctx, refused)
      if (this.o.host.hasBodyHooks && (ctx.body === null || typeof ctx.body !== 'object' || Array.isArray(ctx.body))) {
        throw new GatewayError(503, 'An onRequestBody hook left the request body not an object; the request was not processed.', { code: 'plugin_failure' })
      }
      return await this.proxy(ctx, operation!)
    } catch (error) {
      return this.fail(ctx, error)
    }
  }

  /** onAccess, then onRequestBody: the first Response refuses the request. A promise only when a hook answers with one. */
  private access(ctx: RequestCtx): MaybePromise<Response | undefined> {
    const refused = this.o.host.run('onAccess', ctx)
    if (refused instanceof Promise) return refused.then((r) => r ?? this.o.host.run('onRequestBody', ctx))
    return refused ?? this.o.host.run('onRequestBody', ctx)
  }

  /** The key's principal onto the context, or the Response a hook answered with; a promise only when the hook's is. */
  private authenticate(ctx: RequestCtx): MaybePromise<Response | undefined> {
    const result = ctx.operation === 'realtime' ? this.realtime.authenticate(ctx, () => this.o.host.authenticate(ctx)) : this.o.host.authenticate(ctx)
    return result instanceof Promise ? result.then((r) => this.authenticated(ctx, r)) : this.authenticated(ctx, result)
  }

  private authenticated(ctx: RequestCtx, result: Principal | Response | undefined): Response | undefined {
    if (result instanceof Response) return result
    if (!result) {
      throw new GatewayError(401, 'You didn\'t provide an API key. Send your Conduit key as "Authorization: Bearer condt_…".', {
        code: 'missing_api_key',
      })
    }
    // A plugin's principal may leave out what it does not restrict: absent is none (null), as the auth plugin's are.
    ctx.principal =
      result.name !== undefined && result.allowedModels !== undefined && result.allowedEndpoints !== undefined && result.limits !== undefined && result.metadata !== undefined
        ? result
        : { ...result, name: result.name ?? result.keyId, allowedModels: result.allowedModels ?? null, allowedEndpoints: result.allowedEndpoints ?? null, limits: result.limits ?? null, metadata: result.metadata ?? null }
    return undefined
  }

  /** Counts the request against its key's max_parallel before the body is read; released in report(). */
  private holdConnection(ctx: RequestCtx) {
    const max = ctx.principal?.limits?.max_parallel
    if (!max) return
    const keyId = ctx.principal!.keyId
    const open = this.openPerKey.get(keyId) ?? 0
    if (open >= max) {
      throw new GatewayError(429, `This key already has ${max} requests in flight (max_parallel).`, {
        code: 'rate_limit_exceeded',
        headers: { 'retry-after': '1' },
      })
    }
    this.openPerKey.set(keyId, open + 1)
    ctx.heldConnection = keyId
  }

  private releaseConnection(keyId: string) {
    const open = this.openPerKey.get(keyId)! - 1
    if (open > 0) this.openPerKey.set(keyId, open)
    else this.openPerKey.delete(keyId)
  }

  private resolveModel(ctx: RequestCtx, name: string) {
    const model = this.o.catalog.model(name)
    if (!model) {
      throw new GatewayError(404, `The model '${name}' does not exist or you do not have access to it.`, { param: 'model', code: 'model_not_found' })
    }
    if (!allowedBy(name, ctx.principal!.allowedModels)) {
      throw new GatewayError(403, `This key is not allowed to use the model '${name}'.`, { param: 'model', code: 'model_not_allowed' })
    }
    return model
  }

  private async models(ctx: RequestCtx, id?: string): Promise<Response> {
    await this.o.catalog.ready()
    const allowed = ctx.principal!.allowedModels
    const describe = (m: { name: string; createdAt: number; targets: { provider: string }[] }) => ({
      id: m.name,
      object: 'model',
      created: Math.floor(m.createdAt / 1000),
      // The vendor, not the operator's name for its account: a provider's name may tell its region, tenant or plan.
      owned_by: this.o.catalog.provider(m.targets[0]?.provider ?? '')?.type ?? 'conduit',
    })
    if (id !== undefined) {
      // A model this key may not use is not in its list, so not found here either (a 403 would tell it exists).
      const model = this.o.catalog.model(id)
      if (!model || !allowedBy(id, allowed)) {
        throw new GatewayError(404, `The model '${id}' does not exist or you do not have access to it.`, { param: 'model', code: 'model_not_found' })
      }
      ctx.model = model
      return json(200, describe(model), ctx.headers)
    }
    const data = [...this.o.catalog.allModels()].filter((m) => allowedBy(m.name, allowed)).map(describe)
    return json(200, { object: 'list', data }, ctx.headers)
  }

  /**
   * Attempts in the router's order until one starts a response. Only failures before the first byte are
   * retried (5xx, 429, timeouts, connection errors; never a 4xx). Another deployment is tried at once; the
   * same one again only after a jittered backoff and within the retry budget. A target that timed out (connect
   * or first byte) is not tried again by this request; nor one that refused our key or asked us to wait (429 with
   * Retry-After), unless its provider has another key to try.
   */
  private async proxy(ctx: RequestCtx, operation: Operation): Promise<Response> {
    const model = ctx.model!
    const plan = this.o.router.plan(model, (id) => this.o.catalog.provider(id))
    const usable = plan.filter((t) => {
      const adapter = this.adapterFor(t.provider.type, operation)
      // Realtime events are relayed, never translated: a target must speak the client's vocabulary.
      return !!adapter && (operation !== 'realtime' || this.realtime.serves(ctx, t, adapter as RealtimeAdapter))
    })
    if (usable.length === 0) {
      if (plan.length > 0) {
        throw new GatewayError(400, `The model '${model.name}' does not support ${operationLabel[operation]}.`, { param: 'model', code: 'unsupported_endpoint' })
      }
      throw new GatewayError(503, `No provider is configured for the model '${model.name}'.`, { code: 'no_provider' })
    }
    const retries = model.routing?.retries ?? DEFAULT_RETRIES
    const excluded = new Set<string>()
    const tried = new Set<string>()
    let cursor = 0
    let retried = 0
    /** The provider refused the key the last attempt used, and has others: the next is asked at once, at no retry's cost. */
    let keyRefused = false
    let keySwitches = 0
    let lastError: GatewayError | null = null
    for (;;) {
      const candidates = usable.filter((t) => !excluded.has(targetId(t)))
      if (candidates.length === 0) break
      let target = keyRefused ? this.o.router.withNextKey(ctx.target!) : candidates[cursor++ % candidates.length]!
      if (keyRefused) keyRefused = false
      else if (tried.has(targetId(target))) {
        // Trying a deployment again adds load to one that just failed: only `retries` times, within the
        // budget, after a pause. Falling back to another deployment is free: each sees one attempt.
        if (retried >= retries) break
        if (!this.o.router.takeRetry()) {
          ctx.log.warn({ model: model.name }, 'retry budget exhausted; not retrying')
          break
        }
        await Bun.sleep(backoffMs(retried++))
        if (ctx.signal.aborted) throw new GatewayError(499, 'The client closed the request.', { code: 'client_closed_request' })
        target = this.o.router.withNextKey(target)
      }
      tried.add(targetId(target))
      const adapter = this.adapterFor(target.provider.type, operation)!
      const attempt = new Attempt(ctx, target, ++ctx.attempts)
      const lease = this.o.router.begin(target)
      ctx.target = target
      try {
        if (operation === 'realtime') return await this.realtime.connect(ctx, attempt, adapter as RealtimeAdapter, lease)
        return await this.attempt(ctx, attempt, adapter as AnyAdapter, lease)
      } catch (error) {
        lease.release()
        // A plugin that failed (closed) would fail the same way on any target: neither retried nor the target's fault.
        if (!GatewayError.is(error) || error.status === 499 || error.code === 'plugin_failure') throw error
        lease.failed(error)
        this.attemptFailures.inc({ provider: target.provider.name, code: error.code ?? String(error.status) })
        if (!isRetryable(error) || ctx.signal.aborted) throw error
        ctx.log.warn({ provider: target.provider.name, status: error.status, attempt: attempt.attempt, detail: error.cause }, 'upstream attempt failed')
        // With one key, a refusal of that key, or a 429 that said how long to wait, would only be met again.
        const keys = target.provider.apiKeys?.length ?? 0
        const oneKey = keys < 2
        if (NOT_AGAIN.has(error.code!) || (oneKey && (error.code === 'upstream_auth_failed' || (error.status === 429 && error.headers['retry-after'])))) {
          excluded.add(targetId(target))
        } else if (error.code === 'upstream_auth_failed' && keySwitches < keys - 1) {
          keySwitches++
          keyRefused = true
        }
        lastError = error
      }
    }
    throw lastError!
  }

  /** The adapter a target serves an operation with; a front door without its provider's own falls back to chat. */
  private adapterFor(type: string, operation: Operation): AnyAdapter | RealtimeAdapter | undefined {
    const adapters = this.o.host.providers.get(type)
    const door = operation === 'responses' || operation === 'messages'
    // A plugin that reads or edits content sees chat: a front door's request then goes to every target translated,
    // its edits included (relayed natively, the client's own body and answer would pass it by).
    if (door && this.o.host.inspectsContent) return adapters?.chat
    return adapters?.[operation] ?? (door ? adapters?.chat : undefined)
  }

  private async attempt(ctx: RequestCtx, attempt: Attempt, adapter: AnyAdapter, lease: AttemptLease): Promise<Response> {
    const provider = attempt.target.provider
    const started = performance.now()
    const prepare = ctx.operation ? this.calls[ctx.operation] : undefined
    const own = prepare ? await prepare(ctx, attempt, adapter) : null
    if (own?.abandoned) ctx.abandonedUsage = own.abandoned
    let upstream = adapter.buildRequest(own?.body ?? ctx.body!, attempt)
    if (upstream instanceof Promise) upstream = await upstream
    const hooked = this.o.host.upstreamRequest(attempt, upstream)
    if (hooked) await hooked
    const timeouts = timeoutsFor(provider, this.o.timeouts)
    const call = new UpstreamCall(ctx.signal, provider.name)
    const response = await call.fetch(upstream, timeouts, ctx.stream)
    if (!response.ok) {
      call.release()
      const error = await upstreamError(response, adapter, provider.name)
      if (error.status === 401 || error.status === 403) {
        // The provider refused *our* credentials: not the client's fault, and its message may quote our key.
        ctx.log.warn({ provider: provider.name, status: error.status, upstreamMessage: error.message }, 'provider rejected the gateway credentials')
        throw new GatewayError(502, `The provider '${provider.name}' rejected the gateway's credentials (HTTP ${error.status}).`, { code: 'upstream_auth_failed' })
      }
      throw error
    }
    this.routeHeaders(ctx, attempt.dropped)
    if (own) return own.respond(response, call, lease, timeouts, started)
    const chat = adapter as EndpointAdapter
    if (ctx.stream && response.body) {
      const framer = chat.createStreamFramer?.() ?? null
      // Read to the end of the first SSE event; a framed stream (Bedrock's binary events, NDJSON) has no blank line
      // to wait for, and goes on at its first bytes.
      const { reader, first } = await firstBytes(ctx, response.body, call, lease, started, provider.name, framer === null)
      const body = relayStream({
        call,
        reader,
        first,
        idleMs: timeouts.idleMs,
        attempt,
        parser: chat.createStreamParser?.(attempt) ?? null,
        framer,
        host: this.o.host,
        virtualModel: ctx.model!.name,
        includeUsage: ctx.body!.stream_options?.include_usage === true,
        onFinish: (outcome) => {
          lease.release()
          // A stream that died mid-way counts against its target (the client going away does not).
          if (outcome.error && targetFailed(outcome.error)) lease.failed(outcome.error)
          this.streamFinished(ctx, outcome)
        },
      })
      ctx.status = 200
      return respond(body, 200, { ...SSE_HEADERS, ...ctx.headers })
    }
    const text = await wholeText(response, call, lease, started, this.o.maxUpstreamBodyBytes, provider.name)
    return this.jsonResult(ctx, attempt, chat, text)
  }

  /**
   * Non-streaming. An OpenAI-compatible body goes to the client as the upstream sent it, with the model name
   * spliced in and only its `usage` object parsed; anything that must change (translation, onResponse
   * plugins, base64 embeddings from floats) works on the parsed object instead.
   */
  private async jsonResult(ctx: RequestCtx, attempt: Attempt, adapter: EndpointAdapter, text: string): Promise<Response> {
    const name = ctx.model!.name
    const badResponse = () =>
      new GatewayError(502, `The upstream provider '${attempt.target.provider.name}' returned a response that is not JSON.`, { code: 'upstream_bad_response' })
    const mustRewrite =
      !adapter.passthrough ||
      this.o.host.hasResponseHooks ||
      (ctx.endpoint === 'embeddings' && ctx.body!.encoding_format === 'base64' && text.includes('"embedding":['))
    let out: string
    if (mustRewrite) {
      let parsed: Record<string, any>
      try {
        parsed = JSON.parse(text)
      } catch {
        throw badResponse()
      }
      if (!adapter.passthrough) parsed = adapter.parseResponse!(parsed, attempt)
      if (ctx.endpoint === 'embeddings' && ctx.body!.encoding_format === 'base64') encodeEmbeddings(parsed)
      ctx.usage = this.usageFrom(ctx, parsed.usage, 0, parsed)
      parsed.model = name
      out = JSON.stringify(await this.o.host.response(attempt, parsed))
    } else {
      // Not parsed whole (the point of passing it through), but a body cut short must not reach the client as a 200.
      if ((text.charCodeAt(0) !== 123 && !text.trimStart().startsWith('{')) || (text.charCodeAt(text.length - 1) !== 125 && !text.trimEnd().endsWith('}'))) {
        throw badResponse()
      }
      const usage = extractUsage(text)
      let estimateFrom: Record<string, any> | undefined
      if (!usage) {
        try {
          estimateFrom = JSON.parse(text)
        } catch {
          throw badResponse()
        }
      }
      ctx.usage = usage ? this.usageFrom(ctx, usage, 0) : this.estimateUsage(ctx, 0, estimateFrom)
      out = spliceModel(text, name)
    }
    ctx.priceAnswer()
    ctx.status = 200
    ctx.firstByteMs = performance.now() - ctx.startedAt
    return this.settle(ctx, respond(out, 200, { 'content-type': JSON_TYPE, ...ctx.headers }))
  }

  /** Where the request went: on the response that succeeded, and on an error after an upstream attempt. */
  private routeHeaders(ctx: RequestCtx, dropped: string[] = []) {
    const h = ctx.headers
    h['x-request-id'] = ctx.id
    h['x-conduit-provider'] = headerValue(ctx.target!.provider.name)
    h['x-conduit-model'] = headerValue(ctx.target!.model)
    h['x-conduit-attempts'] = String(ctx.attempts)
    if (dropped.length > 0) h['x-conduit-dropped-params'] = dropped.join(',')
  }

  /**
   * A realtime WebSocket, admitted like any request (model, onAccess: rpm counts the start, max_parallel holds a
   * slot while the session is open, the budget must not be spent), then routed: the first target whose socket opens.
   */
  private async openRealtime(ctx: RequestCtx, request: Request, params: RealtimeParams): Promise<Response> {
    const body = await this.realtime.sessionBody(ctx, new URL(request.url), params)
    ctx.body = body
    await this.o.catalog.ready()
    ctx.model = this.resolveModel(ctx, body.model)
    const refused = await this.access(ctx)
    if (refused) return this.settle(ctx, refused)
    return await this.proxy(ctx, 'realtime')
  }

  /** `/v1/messages/count_tokens`: the model resolved and allowed like a request, then counted by the front door. */
  private async countTokens(ctx: RequestCtx, request: Request, door: FrontDoor): Promise<Response> {
    const body = (await readJsonBody(request, this.o.maxBodyBytes, this.o.bodyTimeoutMs, emptyBody)) as Record<string, any>
    if (typeof body.model !== 'string') throw new GatewayError(400, "Missing required parameter: 'model'.", { param: 'model', code: 'missing_required_parameter' })
    await this.o.catalog.ready()
    ctx.model = this.resolveModel(ctx, body.model)
    const targets = this.o.router.plan(ctx.model, (id) => this.o.catalog.provider(id))
    return json(200, await door.countTokens!(ctx, body, targets), ctx.headers)
  }

  /** POST /v1/realtime/sessions and /client_secrets: a session made ahead for the model, with its ephemeral secret. */
  private async mintRealtime(ctx: RequestCtx, request: Request, ga: boolean): Promise<Response> {
    const body = (await readJsonBody(request, this.o.maxBodyBytes, this.o.bodyTimeoutMs, emptyBody)) as Record<string, any>
    refuseUpstreamOverrides(body)
    await this.o.catalog.ready()
    const capable = () =>
      ctx.model!.targets.some((t) => {
        const provider = this.o.catalog.provider(t.provider)
        return !!provider && !!this.o.host.providers.get(provider.type)?.realtime
      })
    // Refused now for what would refuse its session (rate limits, a spent budget, a model without a price for a key
    // with a budget): the backend minting the secret can tell its user, a browser holding a dead secret could not.
    const admit = () => {
      ctx.operation = 'realtime'
      ctx.body = body
      return this.access(ctx)
    }
    return this.realtime.mint(ctx, body, ga, (name) => void (ctx.model = this.resolveModel(ctx, name)), capable, admit)
  }

  private streamFinished(ctx: RequestCtx, outcome: StreamOutcome) {
    ctx.usage = this.usageFrom(ctx, outcome.usage, outcome.chunks)
    if (outcome.error) {
      ctx.error = outcome.error
      ctx.status = outcome.error.status
    }
    this.report(ctx, outcome.aborted)
  }

  /**
   * The request is over (last byte, abort or refusal): metrics, the ledger, then the onLog hooks (which release
   * limit slots and budget holds), exactly once. Each step is guarded so that one failing never skips the next.
   */
  private report(ctx: RequestCtx, aborted: boolean) {
    // A stream's cost is known only now; an aborted one is billed its input and what it received.
    if (ctx.target && ctx.usage) ctx.costMicros = costMicros(ctx.target.price, ctx.usage)
    const finished = ctx.finish(aborted)
    if (!finished) return
    this.o.metrics.inflight--
    if (ctx.heldConnection) this.releaseConnection(ctx.heldConnection)
    if (ctx.cleanups) for (const cleanup of ctx.cleanups) cleanup()
    for (const step of this.reportSteps) {
      try {
        step(finished)
      } catch (err) {
        ctx.log.error({ err, requestId: ctx.id }, 'request accounting step failed')
      }
    }
  }

  private readonly reportSteps: ((f: FinishedRequest) => void)[] = [
    (f) => this.o.metrics.record(f),
    (f) => this.o.ledger.record(f),
    (f) => this.o.host.log(f),
  ]

  /** Answered requests waiting for the turn after their response (see settle). */
  private answered: RequestCtx[] = []
  private readonly reportAnswered = () => {
    const answered = this.answered
    this.answered = []
    for (const ctx of answered) this.report(ctx, false)
  }
  /** Stops flushes from settling this pipeline's requests (when its gateway closes). */
  readonly stopSettlingOnFlush = beforeFlush(this.reportAnswered)

  /**
   * Provider usage is input like any other: a count that is not a finite, non-negative number is replaced by
   * our estimate, and the record says it was estimated.
   */
  private usageFrom(ctx: RequestCtx, raw: any, chunks: number, response?: Record<string, any>): Usage {
    if (!raw || typeof raw !== 'object') return this.estimateUsage(ctx, chunks, response)
    const reportedPrompt = raw.prompt_tokens ?? raw.input_tokens
    const reportedCompletion = raw.completion_tokens ?? raw.output_tokens
    // No prompt count is no usage (`usage: {}`, nulls, a total alone); a missing completion count is 0 (embeddings).
    const prompt = reportedPrompt == null ? null : tokenCount(reportedPrompt)
    const completion = reportedCompletion == null ? (prompt === null ? null : 0) : tokenCount(reportedCompletion)
    const cached = tokenCount(raw.prompt_tokens_details?.cached_tokens)
    const written = tokenCount(raw.prompt_tokens_details?.cache_write_tokens)
    if (prompt === null || completion === null) {
      ctx.log.warn({ requestId: ctx.id, provider: ctx.target?.provider.name }, 'provider reported unusable token counts; estimated instead')
      const estimate = this.estimateUsage(ctx, chunks, response)
      const usage: Usage = { ...estimate, prompt_tokens: prompt ?? estimate.prompt_tokens, completion_tokens: completion ?? estimate.completion_tokens }
      usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
      return usage
    }
    const total = tokenCount(raw.total_tokens)
    const usage: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total || prompt + completion }
    if (cached) usage.cached_tokens = Math.min(cached, prompt)
    if (written) usage.cache_write_tokens = Math.min(written, prompt - (usage.cached_tokens ?? 0))
    return usage
  }

  /** When the upstream reports nothing (aborted stream, silent provider) we count, and say so. */
  private estimateUsage(ctx: RequestCtx, chunks: number, response?: Record<string, any>): Usage {
    const body = ctx.body ?? {}
    const prompt = estimatePromptTokens(body)
    let completion = chunks
    if (response?.choices) {
      for (const c of response.choices) completion += estimateTokens(c.message?.content ?? c.text ?? '')
    }
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, estimated: true }
  }

  /** Renders any failure as our envelope and accounts for the request; it does not throw. */
  private fail(ctx: RequestCtx, error: unknown): Response {
    let failure = GatewayError.is(error) ? error : storeUnavailable(error)
    if (!failure) {
      ctx.log.error({ err: error, requestId: ctx.id }, 'unhandled error')
      failure = new GatewayError(500, 'The gateway hit an internal error. It has been logged.', { code: 'internal_error' })
    } else if (failure !== error) ctx.log.warn({ err: error, requestId: ctx.id }, 'database unreachable')
    // A provider may quote our key back ("Incorrect API key provided: …"): the client never sees it.
    failure.message = scrubSecrets(failure.message)
    ctx.error = failure
    if (failure.status === 499) {
      ctx.status = 499
      // The provider already received (and bills) the prompt, or the whole of an audio or image request: so do we.
      if (ctx.target) ctx.usage ??= ctx.abandonedUsage?.() ?? this.estimateUsage(ctx, 0)
      this.report(ctx, true)
      return new Response(null, { status: 499 })
    }
    if (ctx.target) this.routeHeaders(ctx)
    else ctx.setHeader('x-request-id', ctx.id)
    return this.settle(ctx, json(failure.status, failure.toJSON(), { ...ctx.headers, ...failure.headers }))
  }

  /**
   * A complete (non-stream) response is ready. The client gets it first: metrics, the ledger and onLog run on the
   * loop's next turn (before Bun reads another request, so a client's next request finds this one accounted),
   * or sooner if a store is flushed meanwhile.
   */
  private settle(ctx: RequestCtx, response: Response): Response {
    ctx.status = response.status
    if (this.answered.push(ctx) === 1) setImmediate(this.reportAnswered)
    return response
  }
}

/** What the HTTP layer passes along with a route. */
export interface HandleParams {
  model?: string
  speechStream?: boolean
  realtime?: RealtimeParams
  gaShape?: boolean
  /** Stored responses: the id and the sub-resource (`input_items`). */
  id?: string
  part?: string
}

const operationLabel: Record<Operation, string> = {
  responses: 'the Responses API',
  messages: 'the Messages API',
  chat: 'chat completions',
  completions: 'text completions',
  embeddings: 'embeddings',
  transcriptions: 'audio transcriptions',
  translations: 'audio translations',
  speech: 'speech',
  realtime: 'realtime sessions',
  images: 'image generations',
  image_edits: 'image edits',
  image_variations: 'image variations',
}

/** No request comes near this many tokens (the longest contexts hold a few million): a larger count is not a count. */
const MAX_TOKEN_COUNT = 100_000_000

/** A provider's token count: absent is 0; anything but a number from 0 to MAX_TOKEN_COUNT is null (unusable). */
function tokenCount(value: unknown): number | null {
  if (value === undefined || value === null) return 0
  return typeof value === 'number' && value >= 0 && value <= MAX_TOKEN_COUNT ? Math.round(value) : null
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  respond(JSON.stringify(body), status, { 'content-type': JSON_TYPE, ...headers })

/**
 * Builds a response that cannot fail on a header a plugin set: `Headers` throws on values outside Latin-1 or
 * with CR/LF, and a throw after the upstream was called would lose the request's accounting.
 */
function respond(body: ConstructorParameters<typeof Response>[0], status: number, headers: Record<string, string>): Response {
  try {
    return new Response(body, { status, headers })
  } catch {
    const safe: Record<string, string> = {}
    for (const name in headers) safe[name] = headerValue(String(headers[name]))
    return new Response(body, { status, headers: safe })
  }
}

/** The client asked for base64; encode any float arrays the upstream sent. */
function encodeEmbeddings(response: Record<string, any>) {
  for (const item of response.data ?? []) {
    if (Array.isArray(item.embedding)) item.embedding = floatsToBase64(item.embedding)
  }
}
