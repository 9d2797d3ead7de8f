import type { TSchema } from '@sinclair/typebox'
import type Redis from 'ioredis'
import type { LRUCache } from 'lru-cache'
import type { GatewayError } from './errors.ts'

export type MaybePromise<T> = T | Promise<T>

/** Bumped only on a breaking change of this file; the host refuses plugins built for another version. */
export const API_VERSION = 1 as const

/** The OpenAI surfaces a request can target; `allowed_endpoints` and metrics use these names. */
export type Endpoint = 'chat' | 'completions' | 'embeddings' | 'models' | 'usage'

/** Subset of pino's logger that plugins may rely on. */
export interface Logger {
  debug(obj: unknown, msg?: string): void
  info(obj: unknown, msg?: string): void
  warn(obj: unknown, msg?: string): void
  error(obj: unknown, msg?: string): void
  child(bindings: Record<string, unknown>): Logger
}

/** Rate limits of a key or a virtual model; an absent field is unlimited. */
export interface RateLimits {
  /** Requests per minute. */
  rpm?: number
  /** Requests per day. */
  rpd?: number
  /** Tokens (prompt + completion) per minute, reserved at admission and settled to actual usage. */
  tpm?: number
  /** Requests in flight at once, streams included. */
  max_parallel?: number
}

/** A spending cap in USD over a calendar period (UTC); `total` never resets. */
export interface Budget {
  usd: number
  period: 'total' | 'daily' | 'monthly'
}

/** Limits each distinct end user of a key gets (the request's `user` field), on top of the key's own. */
export interface UserLimits {
  rpm?: number
  rpd?: number
  tpm?: number
  budget?: Budget
}

export interface KeyLimits extends RateLimits {
  budget?: Budget
  user_limits?: UserLimits
}

/** Who is calling: produced by an `onAuth` hook. */
export interface Principal {
  keyId: string
  name: string
  /** Glob patterns over virtual model names; null allows every model. */
  allowedModels: string[] | null
  /** Endpoints the key may call (`/v1/models` is always allowed); null allows all. */
  allowedEndpoints: Endpoint[] | null
  limits: KeyLimits | null
  metadata: Record<string, unknown>
}

/** USD per million tokens. */
export interface Price {
  input: number
  output: number
  cached_input?: number
}

export interface ModelTarget {
  /** Provider id. */
  provider: string
  model: string
  weight: number
  priority: number
  /** Overrides the list price for this target. */
  price?: Price
}

/** How a tier of targets is ordered: weighted random, fewest requests in flight, or fastest first byte. */
export type RoutingStrategy = 'weighted' | 'least-busy' | 'lowest-latency'

export interface Routing {
  strategy?: RoutingStrategy
  /** Extra attempts after a retryable failure (5xx, 429, timeout, connection error) before the first byte. */
  retries?: number
}

/** A virtual model: the name clients send, mapped to provider deployments. */
export interface VirtualModel {
  id: string
  name: string
  targets: ModelTarget[]
  /** Shared by every caller of this model (an upstream quota, say), on top of each key's own limits. */
  limits: RateLimits | null
  routing?: Routing | null
  createdAt: number
  /**
   * The dearest input and output prices among the targets (override or list price), set by the gateway: what
   * a request may cost at worst, whichever target serves it. Null when no target has a known price.
   */
  maxPrice?: Price | null
}

/** A configured provider with its secret decrypted; lives only in memory. */
export interface ProviderConfig {
  id: string
  name: string
  type: string
  baseURL: string | null
  /** The key this attempt uses: the first, or the next in turn when the provider has several. */
  apiKey: string | null
  /** Every key configured; attempts take them in turn and skip one resting after a 429. */
  apiKeys?: string[]
  /** Which of `apiKeys` is `apiKey`. */
  keyIndex?: number
  options: Record<string, unknown>
}

/** One concrete upstream choice for an attempt. */
export interface Target {
  provider: ProviderConfig
  model: string
  /** The target's override, else the list price; null when unknown (cost recorded as 0). */
  price: Price | null
}

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  /** Prompt tokens the provider served from its cache (billed at the cached price). */
  cached_tokens?: number
  /** True when the upstream never reported usage (aborted stream, silent provider) and we counted. */
  estimated?: boolean
}

/** Per-request state shared by every phase. Fields are declared up front; plugins add data under `shared`. */
export interface RequestContext {
  readonly id: string
  readonly endpoint: Endpoint
  readonly request: Request
  /** Aborts when the client goes away. */
  readonly signal: AbortSignal
  readonly startedAt: number
  readonly log: Logger
  principal: Principal | null
  /** The virtual model the request names, resolved before `onAccess`. */
  model: VirtualModel | null
  /** The parsed OpenAI request body; `onRequestBody` hooks may edit or replace it. */
  body: Record<string, any> | null
  /** Cross-plugin data; namespace your keys (`'acme.tenant'`). */
  shared: Record<string, unknown>
  /** Adds a header to the response, stream or not. */
  setHeader(name: string, value: string): void
}

export interface AttemptContext {
  readonly request: RequestContext
  readonly target: Target
  readonly attempt: number
  /** Records a request field the provider cannot carry and we dropped; surfaced in `x-conduit-dropped-params`. */
  dropParam(name: string): void
  /**
   * For the extra calls an adapter makes itself (a fan-out): the gateway's egress policy applies, redirects are
   * not followed. The adapter owns timeouts and error mapping.
   */
  fetch(request: UpstreamRequest, signal: AbortSignal): Promise<Response>
}

export interface UpstreamRequest {
  url: string
  method?: string
  headers: Record<string, string>
  body?: string | Uint8Array
}

/** One server-sent event, already decoded by the core. */
export interface SseEvent {
  event: string | null
  data: string
}

/**
 * Splits a stream that is not text/event-stream (AWS's binary event-stream, say) into events for the stream
 * parser. Fresh per stream; bytes arrive as the network delivers them, split anywhere.
 */
export interface StreamFramer {
  push(bytes: Uint8Array): SseEvent[]
  /** End of stream: a partial frame left over is an error to throw. */
  flush(): SseEvent[]
}

/** OpenAI `chat.completion.chunk` (and `text_completion` chunk) objects, as plain JSON. */
export type OpenAIChunk = Record<string, any>

export interface EndpointAdapter {
  /**
   * The upstream already speaks OpenAI's format for this endpoint: the core forwards its bytes and only
   * rewrites the `model` field. Translating adapters leave this off and implement the parse methods.
   */
  passthrough?: boolean
  buildRequest(body: Record<string, any>, ctx: AttemptContext): MaybePromise<UpstreamRequest>
  /** Translate a successful upstream JSON body to the OpenAI response object. */
  parseResponse?(body: any, ctx: AttemptContext): Record<string, any>
  /** Map an upstream error body (already JSON-parsed when possible) to our envelope. */
  parseError?(status: number, body: unknown, headers: Headers): GatewayError
  /** Fresh per stream: turns upstream events into OpenAI chunks; per-stream state lives in the closure. */
  createStreamParser?(ctx: AttemptContext): (event: SseEvent) => OpenAIChunk[] | null
  /** For upstream streams that are not SSE; the events it yields go to `createStreamParser`'s parser. */
  createStreamFramer?(): StreamFramer
}

export interface ProviderAdapter {
  /** The provider `type` an admin selects: `openai`, `groq`, `anthropic`, … */
  id: string
  defaultBaseURL?: string
  chat?: EndpointAdapter
  completions?: EndpointAdapter
  embeddings?: EndpointAdapter
}

export interface FinishedRequest {
  ctx: RequestContext
  status: number
  error: GatewayError | null
  /** The client went away before the response ended. */
  aborted: boolean
  stream: boolean
  usage: Usage | null
  target: Target | null
  attempts: number
  /** Integer micro-dollars, from the usage and the target's price. */
  costMicros: number
  durationMs: number
  /** Time to the first byte sent to the client. */
  firstByteMs: number | null
}

/** Hooks run in phase order. Returning nothing continues; throwing `GatewayError` or returning a Response ends the request. */
export interface Hooks {
  /** Headers only; before authentication and before the body is read. */
  onRequest?(ctx: RequestContext): MaybePromise<void | Response>
  /** Return a principal to authenticate the request; the first principal wins. */
  onAuth?(ctx: RequestContext): MaybePromise<void | Principal | Response>
  /** Policy: allowed models, limits. `ctx.body` and `ctx.model` are set. */
  onAccess?(ctx: RequestContext): MaybePromise<void | Response>
  /** Guardrails and rewrites of `ctx.body`. */
  onRequestBody?(ctx: RequestContext): MaybePromise<void | Response>
  /** Per attempt, after the adapter built the upstream request. */
  onUpstreamRequest?(ctx: AttemptContext, upstream: UpstreamRequest): MaybePromise<void>
  /** Non-streaming OpenAI-shaped response body, before it is sent. Returning an object replaces it. */
  onResponse?(ctx: AttemptContext, body: Record<string, any>): MaybePromise<void | Record<string, any>>
  /**
   * Streaming, synchronous and on the hot path: return a replacement chunk, null to drop it, or nothing.
   * Registering this hook makes the core parse every chunk instead of forwarding bytes.
   */
  onChunk?(ctx: AttemptContext, chunk: OpenAIChunk): void | null | OpenAIChunk
  /** Always fires once per request, after the last byte, an abort or an early refusal. Never delays the client. */
  onLog?(finished: FinishedRequest): MaybePromise<void>
}

export interface CacheOptions {
  max: number
  ttlMs?: number
}

/** The read side of Conduit's store that plugins may use. */
export interface StoreView {
  findKeyByHash(hash: string): Promise<StoredKey | null>
  /** Integer micro-dollars the ledger holds for a key (or one of its end users) since `since` (epoch ms). */
  spentMicros(keyId: string, since: number, user?: string): Promise<number>
  /** Called after any admin change; `kind` says which table changed. */
  onChange(listener: (change: StoreChange) => void): () => void
}

export interface StoredKey {
  id: string
  name: string
  enabled: boolean
  expiresAt: number | null
  allowedModels: string[] | null
  allowedEndpoints: Endpoint[] | null
  limits: KeyLimits | null
  metadata: Record<string, unknown>
}

export interface StoreChange {
  kind: 'key' | 'provider' | 'model'
  id: string
}

/** A Prometheus counter declared by a plugin; `/metrics` shows it, summed over the worker processes. */
export interface CounterOptions {
  /** Prometheus rules; not one of Conduit's own names. Prefix it (`conduit_<plugin>_…`, `acme_…`). */
  name: string
  help: string
  /** Keep their values few: every distinct combination is a series kept for the life of the process. */
  labelNames?: string[]
}

export interface Counter {
  /** Adds `by` (default 1); a label left out is the empty string. */
  inc(labels?: Record<string, string>, by?: number): void
}

export interface PluginApi<C = any> {
  readonly name: string
  readonly config: C
  readonly log: Logger
  readonly store: StoreView
  /** Shared Redis when REDIS_URL is set: fail-fast (no offline queue, short command timeout). */
  readonly redis?: Redis
  /** A bounded in-process cache, private to this plugin instance. */
  cache<K extends {}, V extends {}>(options: CacheOptions): LRUCache<K, V>
  /** A counter on `/metrics`; declare it in `setup`. */
  counter(options: CounterOptions): Counter
  registerProvider(adapter: ProviderAdapter): void
  onClose(fn: () => MaybePromise<void>): void
}

export interface Plugin<C = any> {
  /** Unique, kebab-case or npm-scoped. */
  name: string
  version: string
  apiVersion: typeof API_VERSION
  /** Request-side hooks run by descending priority; response-side in reverse. Default 0. */
  priority?: number
  /** TypeBox schema of the instance config; defaults are applied before `setup`. */
  configSchema?: TSchema
  /** Once per configured instance. */
  setup(api: PluginApi<C>): MaybePromise<Hooks | void>
}
