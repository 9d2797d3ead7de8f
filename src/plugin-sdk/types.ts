import type { TSchema } from '@sinclair/typebox'
import type { Cluster, default as Redis } from 'ioredis'
import type { LRUCache } from 'lru-cache'
import type { GatewayError } from './errors.ts'
import type { SentJson } from './json-text.ts'

export type MaybePromise<T> = T | Promise<T>

/** Bumped only on a breaking change of this file; the host refuses plugins built for another version. */
export const API_VERSION = 1 as const

/** The OpenAI surfaces a request can target; `allowed_endpoints` and metrics use these names. */
export type Endpoint = 'chat' | 'completions' | 'embeddings' | 'models' | 'usage' | 'audio' | 'images' | 'realtime' | 'responses' | 'messages'

/** What a key's `allowed_endpoints` may name (`models` and `usage` are always allowed); the admin API and the Web UI share it. */
export const KEY_ENDPOINTS = ['chat', 'completions', 'embeddings', 'audio', 'images', 'realtime', 'responses', 'messages'] as const satisfies readonly Endpoint[]

/**
 * What a request asks a provider to do: the adapter method it runs. `allowed_endpoints` works on the coarser
 * `Endpoint` (all three audio operations are `audio`).
 */
export type Operation = 'chat' | 'completions' | 'embeddings' | 'transcriptions' | 'translations' | 'speech' | ImageOperation | 'realtime' | FrontDoorOperation

/**
 * Client protocols other than chat completions (`/v1/responses`, `/v1/messages`): translated onto any `chat` adapter,
 * or relayed to a provider whose adapter speaks the protocol itself.
 */
export type FrontDoorOperation = 'responses' | 'messages'

/** `/v1/images/generations`, `/edits` and `/variations`; all three are the `images` endpoint. */
export type ImageOperation = 'images' | 'image_edits' | 'image_variations'

/** Subset of pino's logger that plugins may rely on. */
export interface Logger {
  debug(obj: unknown, msg?: string): void
  info(obj: unknown, msg?: string): void
  warn(obj: unknown, msg?: string): void
  error(obj: unknown, msg?: string): void
  child(bindings: Record<string, unknown>): Logger
  /**
   * A line whose fields are plain JSON values, written without the logger's per-record machinery: for a line per
   * request. Still scrubbed of known secrets; no `err` or `headers` handling.
   */
  record(level: 'info' | 'debug', fields: Record<string, unknown>, msg: string): void
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
  /** Images per minute (image endpoints: each request takes its `n`). */
  ipm?: number
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

/** USD per million tokens, and for audio models the units they are sold in. */
export interface Price {
  input: number
  output: number
  cached_input?: number
  /** USD per million prompt tokens written to the provider's cache (Anthropic, Bedrock: 1.25× input for 5 minutes); else `input`. */
  cache_write?: number
  /** USD per million audio tokens in and out (gpt-4o-transcribe, gpt-4o-mini-tts, realtime); text tokens keep `input`/`output`. */
  input_audio?: number
  output_audio?: number
  /** USD per hour of input audio (whisper-1, Groq's Whisper, Deepgram). */
  audio_hour?: number
  /** USD per million characters of input text (tts-1, ElevenLabs). */
  characters?: number
  /** USD per image when no entry of `images` names its quality and size (Imagen, Stability). */
  image?: number
  /**
   * USD per image by `quality/size` (`hd/1024x1792`), `size` or `quality`, the most specific first (DALL·E,
   * Titan). A model priced per image has `input`/`output` 0; token-priced image models (gpt-image-1) leave these out.
   */
  images?: Record<string, number>
  /** USD per million image tokens in (edits of gpt-image-1) and out (Gemini's image models); else `input`/`output`. */
  input_image?: number
  output_image?: number
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
  /** Prompt tokens the provider wrote to its cache (billed at the cache-write price). */
  cache_write_tokens?: number
  /** Of `prompt_tokens` and `completion_tokens`, the audio tokens (billed at the audio prices when the price has them). */
  prompt_audio_tokens?: number
  completion_audio_tokens?: number
  /** Seconds of audio the request carried (transcription, translation), measured by the gateway. */
  audio_seconds?: number
  /** Characters of text the request asked to be spoken. */
  characters?: number
  /** Images produced, with the size and quality they were asked at (what per-image prices go by). */
  images?: number
  image_size?: string
  image_quality?: string
  /** Of `prompt_tokens` and `completion_tokens`, the image tokens (billed at the image prices when the price has them). */
  prompt_image_tokens?: number
  completion_image_tokens?: number
  /** True when the upstream never reported usage (aborted stream, silent provider) and we counted. */
  estimated?: boolean
}

/** Per-request state shared by every phase. Fields are declared up front; plugins add data under `shared`. */
export interface RequestContext {
  readonly id: string
  readonly endpoint: Endpoint
  readonly operation: Operation | null
  readonly request: Request
  /** Aborts when the client goes away. */
  readonly signal: AbortSignal
  readonly startedAt: number
  readonly log: Logger
  principal: Principal | null
  /** The virtual model the request names, resolved before `onAccess`. */
  model: VirtualModel | null
  /**
   * The parsed OpenAI request body; `onRequestBody` hooks may edit or replace it. For multipart requests
   * (transcriptions, translations) the form fields, with the upload under `file` as an `AudioUpload`.
   */
  body: Record<string, any> | null
  /**
   * The JSON body as the client sent it and its parse, for adapters that pass it on with their changes spliced in
   * (`jsonText`, which serializes instead whatever it cannot splice exactly) rather than serialize it again. At a
   * front door (Responses, Messages) the client's own, of which `body` is the chat translation. Null for uploads, and
   * whenever an `onRequestBody` hook is registered: that hook may edit `body` in place, and no other hook may.
   */
  readonly sentJson: SentJson | null
  /** Cross-plugin data; namespace your keys (`'acme.tenant'`). */
  shared: Record<string, unknown>
  /** Adds a header to the response, stream or not. */
  setHeader(name: string, value: string): void
  /**
   * `fn` gets the request's cost (micro-dollars) and the target that answered once a whole answer is priced, before
   * its headers leave: a header that depends on what the request cost can be set then. Never called for streams
   * (priced after their headers have gone).
   */
  onPriced(fn: (costMicros: number, target: Target) => void): void
  /** Only on the contexts of a realtime session's responses (see `onSessionEvent`). */
  readonly session?: SessionEventInfo
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
  /**
   * A Blob (a spooled upload) is read from disk as it is sent; a stream (see `multipartBody`) must be made fresh
   * per attempt. Avoid FormData with a file: Bun reads the file whole into memory before sending.
   */
  body?: string | Uint8Array | Blob | ReadableStream<Uint8Array>
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

/** An uploaded audio file, spooled (to disk past a small size) and replayable: every attempt reads `blob` again. */
export interface AudioUpload {
  blob: Blob
  /** The client's file name, or one the gateway chose after a conversion (`audio.flac`). */
  filename: string
  /** Detected from the bytes (`wav`, `mp3`, `flac`, `ogg`, `webm`, `m4a`, …), never the client's claim. */
  format: string
  /** The MIME type that goes with `format`. */
  contentType: string
  size: number
  /** Measured by the gateway (headers, or the transcoder's probe); null when nothing could tell. */
  durationSeconds: number | null
  sampleRate?: number
  channels?: number
}

/**
 * What a provider (or, for `openai-compatible`, the admin in `options.audio`) says it can do with audio. The core
 * decides from it what to convert, reroute or refuse; adapters never convert.
 */
export interface AudioAbilities {
  /** Upload formats it takes as they are (names as `AudioUpload.format`). */
  inputFormats: readonly string[]
  /** Sample rates it takes for uploads; absent: any (a 16 kHz-only engine says `[16000]`). */
  inputSampleRates?: readonly number[]
  /** Largest upload it takes, in bytes. */
  maxUploadBytes: number
  /** Speech formats it produces, by OpenAI's `response_format` names (`mp3`, `opus`, `aac`, `flac`, `wav`, `pcm`). */
  outputFormats: readonly string[]
  /** Sample rate of its `pcm` speech (mono 16-bit little-endian). */
  pcmSampleRate?: number
  /** Transcript `response_format`s it produces itself; the gateway renders the others from the verbose transcript. */
  transcriptFormats: readonly string[]
  /** It streams transcripts itself (`transcript.text.delta`); otherwise a `stream: true` request gets one delta and the done event. */
  streamTranscripts: boolean
}

/** A transcript in the gateway's hands: what a translating adapter produces and what `srt`/`vtt`/`text` are rendered from. */
export interface Transcript {
  text: string
  language?: string
  /** Seconds. */
  duration?: number
  segments?: { start: number; end: number; text: string; speaker?: string }[]
  words?: { word: string; start: number; end: number; speaker?: string }[]
  /** The provider's usage in OpenAI's transcription shape, if it reports one. */
  usage?: Record<string, any>
}

/** `transcriptions` and `translations`: multipart uploads of audio, answered with text. */
export interface TranscriptionAdapter {
  abilities(provider: ProviderConfig): AudioAbilities
  /**
   * `body.file` is an `AudioUpload` already in a format, rate and size the provider takes; `body.response_format`
   * is one of `abilities().transcriptFormats` (the core asks for `verbose_json` or `json` when it renders another).
   */
  buildRequest(body: Record<string, any>, ctx: AttemptContext): MaybePromise<UpstreamRequest>
  /** Translating adapters turn the upstream's JSON into a transcript; without this the upstream speaks OpenAI's format. */
  parseTranscript?(body: any, ctx: AttemptContext): Transcript
  parseError?(status: number, body: unknown, headers: Headers): GatewayError
}

/** `speech`: JSON in, audio bytes out, relayed as the provider produces them. */
export interface SpeechAdapter {
  abilities(provider: ProviderConfig): AudioAbilities
  /**
   * `body.response_format` is one of `abilities().outputFormats` (the core picked it, and converts when the client
   * asked for another); the upstream must answer with the audio bytes themselves, streamed.
   */
  buildRequest(body: Record<string, any>, ctx: AttemptContext): MaybePromise<UpstreamRequest>
  parseError?(status: number, body: unknown, headers: Headers): GatewayError
}

/** An uploaded image (edits, variations), spooled and replayable like an `AudioUpload`; its format read from its bytes. */
export interface ImageUpload {
  blob: Blob
  filename: string
  format: 'png' | 'jpeg' | 'webp'
  contentType: string
  size: number
  /** From the file's header, when it says. */
  width?: number
  height?: number
}

/** What a provider's model can do with images; the core refuses what it cannot (400 naming the param) before any call. */
export interface ImageAbilities {
  /** Sizes it makes, as OpenAI's `WIDTHxHEIGHT` (and `auto`); absent: any (the provider decides). */
  sizes?: readonly string[]
  /** Largest `n` of one request. */
  maxN: number
  /** How it returns images: base64 only, URLs only, or as asked (`response_format`). */
  returns: 'b64_json' | 'url' | 'either'
  /** Hosts (`*.blob.core.windows.net`) its image URLs may be fetched from, besides its base URL's host. */
  urlHosts?: readonly string[]
  /** It streams partial images itself (OpenAI's SSE events); otherwise a streamed request gets the final images as events. */
  stream: boolean
  /** Edits and variations: formats and size of each upload, and how many images one edit takes. */
  inputFormats: readonly ImageUpload['format'][]
  maxUploadBytes: number
  maxImages: number
  /** It takes a `mask` with an edit. */
  mask: boolean
  /** It makes variations of an image (OpenAI: DALL·E 2 alone); absent: it does as it takes images for edits. */
  variations?: boolean
}

/** What a translating adapter turns its provider's answer into: OpenAI's images response, usage included when known. */
export interface ImagesResult {
  created?: number
  data: { b64_json?: string; url?: string; revised_prompt?: string }[]
  /** OpenAI's `ImageGenUsage` (`input_tokens`, `output_tokens`, …) or usage in the gateway's own shape. */
  usage?: Record<string, any>
  [field: string]: unknown
}

/**
 * `images`, `image_edits`, `image_variations`. `body.image` (edits: an array) and `body.mask` are `ImageUpload`s
 * already checked against `abilities()`; `body.response_format` is what the core asks of this provider.
 */
export interface ImagesAdapter {
  abilities(provider: ProviderConfig, model: string): ImageAbilities
  buildRequest(body: Record<string, any>, ctx: AttemptContext): MaybePromise<UpstreamRequest>
  /** Translating adapters: the upstream's JSON → OpenAI's images response. Without it the upstream speaks OpenAI's format. */
  parseResponse?(body: any, ctx: AttemptContext): ImagesResult
  parseError?(status: number, body: unknown, headers: Headers): GatewayError
}

export interface ProviderAdapter {
  /** The provider `type` an admin selects: `openai`, `groq`, `anthropic`, … */
  id: string
  defaultBaseURL?: string
  chat?: EndpointAdapter
  completions?: EndpointAdapter
  embeddings?: EndpointAdapter
  transcriptions?: TranscriptionAdapter
  translations?: TranscriptionAdapter
  speech?: SpeechAdapter
  images?: ImagesAdapter
  image_edits?: ImagesAdapter
  image_variations?: ImagesAdapter
  realtime?: RealtimeAdapter
  /**
   * The provider speaks OpenAI's Responses API (`responses`) or Anthropic's Messages API (`messages`) itself: such
   * requests get the client's body (model set to the target's) and the answer is relayed with only the model name
   * changed. Without one, the core translates the request onto `chat`.
   */
  responses?: EndpointAdapter
  messages?: EndpointAdapter
}

/** OpenAI's realtime audio formats: 16-bit PCM at 24 kHz mono, G.711 µ-law and A-law at 8 kHz. */
export type RealtimeAudioFormat = 'pcm16' | 'g711_ulaw' | 'g711_alaw'

/** The realtime event vocabularies: OpenAI's GA API, and the beta one (`OpenAI-Beta: realtime=v1`). */
export type RealtimeProtocol = 'ga' | 'beta'

/** The WebSocket the gateway opens to the provider for one realtime session. */
export interface RealtimeUpstream {
  /** `wss://…` (or `ws://` for a local server). */
  url: string
  headers: Record<string, string>
  /** Subprotocols to offer, if the provider wants any. */
  protocols?: string[]
}

/**
 * `realtime`: a WebSocket session relayed frame by frame. The adapter only says where and how to connect and what the
 * provider takes; the core relays, governs and (for G.711 clients of a pcm16-only provider) converts audio.
 */
export interface RealtimeAdapter {
  /** Vocabularies it speaks; a client speaking another is refused (events are relayed, never translated). */
  protocols(provider: ProviderConfig): readonly RealtimeProtocol[]
  /** Audio formats it takes and produces. */
  audioFormats(provider: ProviderConfig): readonly RealtimeAudioFormat[]
  connect(ctx: AttemptContext, protocol: RealtimeProtocol): MaybePromise<RealtimeUpstream>
}

/** Set on the context of one response of a realtime session, for the plugins that govern it (`onSessionEvent`). */
export interface SessionEventInfo {
  /** The session's request id. */
  sessionId: string
  /** The client event being governed (`response.create`), or the server's `response.created` for a response the server started (voice activity). */
  event: string
  /** What the response may cost at worst, in tokens by unit (conversation so far plus its output cap). */
  worstCase: Usage
}

/** An audio stream's encoding: a container format (`mp3`, `wav`, `flac`, …) or raw `pcm` (16-bit LE) with its rate. */
export interface AudioSpec {
  format: string
  sampleRate?: number
  channels?: number
}

/**
 * Audio conversion, offered by a plugin (`builtin:audio-transcode` runs ffmpeg) through `registerTranscoder`. The
 * core asks it to convert streams; it never knows how.
 */
export interface Transcoder {
  /** Why conversions cannot run here (a missing program, say), for the error a request that needs one gets; null when they can. */
  readonly unavailable: string | null
  /**
   * `input` converted to `to`, streamed: output starts before the input has ended. `from` null: the transcoder
   * finds out. Aborting `signal` ends the work at once (no process outlives it); an error fails the output stream.
   */
  convert(input: ReadableStream<Uint8Array> | Blob, from: AudioSpec | null, to: AudioSpec, signal: AbortSignal): ReadableStream<Uint8Array>
  /** Duration and shape of a file the gateway could not read itself; null fields when unknown. */
  probe(input: Blob, signal: AbortSignal): Promise<{ format: string | null; durationSeconds: number | null; sampleRate: number | null; channels: number | null }>
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
  /**
   * Realtime: one response of an open session (`ctx.session`), before the event that starts it is forwarded. Throw
   * a GatewayError to refuse it (the client gets an `error` event; a 429 `insufficient_quota` also ends the session).
   * Settled like a request: `onLog` fires for it with its usage.
   */
  onSessionEvent?(ctx: RequestContext): MaybePromise<void | Response>
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
  /**
   * The row's id, or `'*'`: any row of this kind may have changed (another instance's notices were lost while Redis
   * was out of reach). Cached rows of that kind should be read again before they are trusted.
   */
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

/** A single Redis, or a Redis Cluster (REDIS_CLUSTER): the commands are the same on both. */
export type RedisClient = Redis | Cluster

export interface PluginApi<C = any> {
  readonly name: string
  readonly config: C
  readonly log: Logger
  readonly store: StoreView
  /**
   * Shared Redis when REDIS_URL is set: fail-fast (no offline queue, short command timeout). A `Cluster` with
   * REDIS_CLUSTER: a command's keys must then share a hash slot (`{tag}` in their names).
   */
  readonly redis?: RedisClient
  /** A bounded in-process cache, private to this plugin instance. */
  cache<K extends {}, V extends {}>(options: CacheOptions): LRUCache<K, V>
  /** A counter on `/metrics`; declare it in `setup`. */
  counter(options: CounterOptions): Counter
  registerProvider(adapter: ProviderAdapter): void
  /** Offers audio conversion to the core; one transcoder per gateway (a second registration is refused). */
  registerTranscoder(transcoder: Transcoder): void
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
