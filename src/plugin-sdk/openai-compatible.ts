import { GatewayError } from './errors.ts'
import type { RealtimeAdapter } from './types.ts'
import { multipartBody, type MultipartValue } from './multipart.ts'
import { jsonText } from './json-text.ts'
import {
  API_VERSION,
  type AttemptContext,
  type AudioAbilities,
  type AudioUpload,
  type EndpointAdapter,
  type ImageAbilities,
  type ImageOperation,
  type ImagesAdapter,
  type ImageUpload,
  type Plugin,
  type ProviderAdapter,
  type ProviderConfig,
  type SpeechAdapter,
  type TranscriptionAdapter,
  type UpstreamRequest,
} from './types.ts'

/**
 * What to do with a request field the provider cannot carry: drop it (signalled in a header), refuse it with
 * 400, or decide by value (e.g. accept `n: 1` but refuse `n: 2`).
 */
export type ParamAction = 'pass' | 'drop' | 'refuse'
export type ParamPolicy = Exclude<ParamAction, 'pass'> | ((value: unknown) => ParamAction)

/** For providers that sample a single choice: `n: 1` passes, `n > 1` is refused. */
export const singleChoice: ParamPolicy = (n) => (n === undefined || n === null || n === 1 ? 'pass' : 'refuse')

export interface OpenAICompatibleOptions {
  /** Provider type, e.g. `groq`. */
  id: string
  baseURL?: string
  /** Per top-level request field; fields not listed pass through unchanged. */
  params?: Record<string, ParamPolicy>
  /** Fields the provider knows under another name (Mistral's `random_seed` for `seed`). */
  rename?: Record<string, string>
  /** Defaults: chat and completions and embeddings all true. */
  endpoints?: { chat?: boolean; completions?: boolean; embeddings?: boolean }
  /** The upstream honours `stream_options.include_usage` (default true). */
  streamUsage?: boolean
  /** The upstream returns base64 embeddings when asked (default true); otherwise the core encodes floats. */
  base64Embeddings?: boolean
  /** How the API key is sent. */
  auth?: 'bearer' | 'none'
  /**
   * The audio operations it serves at OpenAI's paths (`/audio/transcriptions`, `/audio/translations`,
   * `/audio/speech`) and what it takes and makes; a provider's `options.audio` overrides the abilities.
   */
  audio?: { operations: ('transcriptions' | 'translations' | 'speech')[]; abilities?: Partial<AudioAbilities> }
  /** Its realtime WebSocket API, when it has one (see openai-realtime.ts). */
  realtime?: RealtimeAdapter
  /** Its own Responses API, when it has one: `/v1/responses` requests go to it untranslated. */
  responses?: EndpointAdapter
  /**
   * The image operations it serves at OpenAI's paths (`/images/generations`, `/images/edits`, `/images/variations`),
   * what each model makes (default: OpenAI's own models as OpenAI documents them, anything else permissive) and the
   * fields it cannot carry per model; a provider's `options.images` overrides the abilities.
   */
  images?: {
    operations: ImageOperation[]
    abilities?: (model: string) => ImageAbilities
    params?: (model: string) => Record<string, ParamPolicy>
    /** Last changes to the upstream body (Together's `width`/`height`). */
    prepare?: (body: Record<string, any>) => void
  }
}

/** What OpenAI's own audio API takes and makes: the default for servers that speak its wire format. */
export const OPENAI_AUDIO_ABILITIES: AudioAbilities = {
  inputFormats: ['flac', 'mp3', 'm4a', 'ogg', 'wav', 'webm'],
  maxUploadBytes: 25 * 1024 * 1024,
  outputFormats: ['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm'],
  pcmSampleRate: 24_000,
  transcriptFormats: ['json', 'text', 'srt', 'verbose_json', 'vtt', 'diarized_json'],
  streamTranscripts: true,
}

const strings = (v: unknown) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined)
const numbers = (v: unknown) => (Array.isArray(v) && v.every((x) => typeof x === 'number' && x > 0) ? (v as number[]) : undefined)
const positive = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined)

/**
 * A provider's audio abilities: the adapter's defaults under what the admin declared in `options.audio`
 * (`input_formats`, `sample_rates`, `max_upload_bytes`, `output_formats`, `pcm_sample_rate`, `transcript_formats`,
 * `stream_transcripts`) — for servers whose abilities the gateway cannot know. Values of the wrong type are ignored.
 */
export function declaredAudioAbilities(provider: ProviderConfig, defaults: AudioAbilities): AudioAbilities {
  const declared = provider.options.audio as Record<string, unknown> | undefined
  if (!declared || typeof declared !== 'object') return defaults
  return {
    inputFormats: strings(declared.input_formats) ?? defaults.inputFormats,
    inputSampleRates: numbers(declared.sample_rates) ?? defaults.inputSampleRates,
    maxUploadBytes: positive(declared.max_upload_bytes) ?? defaults.maxUploadBytes,
    outputFormats: strings(declared.output_formats) ?? defaults.outputFormats,
    pcmSampleRate: positive(declared.pcm_sample_rate) ?? defaults.pcmSampleRate,
    transcriptFormats: strings(declared.transcript_formats) ?? defaults.transcriptFormats,
    streamTranscripts: typeof declared.stream_transcripts === 'boolean' ? declared.stream_transcripts : defaults.streamTranscripts,
  }
}

/**
 * OpenAI's multipart transcription body: the fields as the SDKs send them (arrays as `name[]`, objects as JSON)
 * and the file last, streamed from its spool as the request is sent. `omit` leaves fields out (Azure's `model`).
 */
export function transcriptionUpload(body: Record<string, any>, model: string, omit: string[] = []): { body: ReadableStream<Uint8Array>; headers: Record<string, string> } {
  const { file, ...fields } = body as { file: AudioUpload } & Record<string, unknown>
  fields.model = model
  const parts: [string, MultipartValue][] = []
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null || omit.includes(name)) continue
    if (Array.isArray(value)) for (const item of value) parts.push([`${name}[]`, String(item)])
    else parts.push([name, typeof value === 'object' ? JSON.stringify(value) : String(value)])
  }
  parts.push(['file', { blob: file.blob, filename: file.filename, contentType: file.contentType }])
  return multipartBody(parts)
}

const GPT_IMAGE_SIZES = ['auto', '1024x1024', '1536x1024', '1024x1536']
const IMAGE_FORMATS: ImageUpload['format'][] = ['png', 'jpeg', 'webp']
/** A server whose models the gateway does not know: it decides, and refuses what it cannot do itself. */
export const PERMISSIVE_IMAGE_ABILITIES: ImageAbilities = {
  maxN: 10,
  returns: 'either',
  stream: false,
  inputFormats: IMAGE_FORMATS,
  maxUploadBytes: 50 * 1024 * 1024,
  maxImages: 16,
  mask: true,
}
/** OpenAI's DALL·E image URLs live on this Azure blob host (they expire after an hour). */
const OPENAI_IMAGE_HOSTS = ['oaidalleapiprodscus.blob.core.windows.net']

/** What OpenAI's image models make and take (the image API reference and guide). */
export function openAIImageAbilities(model: string): ImageAbilities {
  if (model.startsWith('dall-e-2')) {
    return { sizes: ['256x256', '512x512', '1024x1024'], maxN: 10, returns: 'either', urlHosts: OPENAI_IMAGE_HOSTS, stream: false, inputFormats: ['png'], maxUploadBytes: 4 * 1024 * 1024, maxImages: 1, mask: true }
  }
  if (model.startsWith('dall-e-3')) {
    // Generations only: no edits, no variations.
    return { sizes: ['1024x1024', '1792x1024', '1024x1792'], maxN: 1, returns: 'either', urlHosts: OPENAI_IMAGE_HOSTS, stream: false, inputFormats: [], maxUploadBytes: 0, maxImages: 0, mask: false }
  }
  if (model.startsWith('gpt-image-') || model.startsWith('chatgpt-image')) {
    // gpt-image-2 takes any WIDTHxHEIGHT within its limits: OpenAI judges those.
    const sizes = model.startsWith('gpt-image-2') ? undefined : GPT_IMAGE_SIZES
    return { sizes, maxN: 10, returns: 'b64_json', stream: true, inputFormats: IMAGE_FORMATS, maxUploadBytes: 50 * 1024 * 1024, maxImages: 16, mask: true, variations: false }
  }
  return { ...PERMISSIVE_IMAGE_ABILITIES, urlHosts: OPENAI_IMAGE_HOSTS }
}

/** Fields only the GPT image models take. */
const GPT_IMAGE_ONLY = ['output_format', 'output_compression', 'background', 'moderation', 'partial_images', 'input_fidelity']
/** What OpenAI's image models cannot carry: dropped and signalled rather than sent to a 400. */
export function openAIImageParams(model: string): Record<string, ParamPolicy> {
  const policy: Record<string, ParamPolicy> = {}
  if (model.startsWith('dall-e-')) {
    for (const name of GPT_IMAGE_ONLY) policy[name] = 'drop'
    if (model.startsWith('dall-e-2')) {
      policy.style = 'drop'
      policy.quality = (q) => (q === 'standard' || q === 'auto' ? 'pass' : 'drop')
    } else policy.quality = (q) => (q === 'standard' || q === 'hd' || q === 'auto' ? 'pass' : 'drop')
  } else if (model.startsWith('gpt-image-') || model.startsWith('chatgpt-image')) {
    policy.style = 'drop'
    policy.quality = (q) => (q === 'standard' || q === 'hd' ? 'drop' : 'pass')
  }
  return policy
}

const IMAGE_RETURNS = new Set(['b64_json', 'url', 'either'])
/**
 * A provider's image abilities: the adapter's under what the admin declared in `options.images` (`sizes`, `max_n`,
 * `returns`, `url_hosts`, `stream`, `input_formats`, `max_upload_bytes`, `max_images`, `mask`); values of the wrong
 * type are ignored.
 */
export function declaredImageAbilities(provider: ProviderConfig, defaults: ImageAbilities): ImageAbilities {
  const declared = provider.options.images as Record<string, unknown> | undefined
  if (!declared || typeof declared !== 'object') return defaults
  const formats = strings(declared.input_formats)?.filter((f): f is ImageUpload['format'] => (IMAGE_FORMATS as string[]).includes(f))
  return {
    sizes: strings(declared.sizes) ?? defaults.sizes,
    maxN: positive(declared.max_n) ?? defaults.maxN,
    returns: typeof declared.returns === 'string' && IMAGE_RETURNS.has(declared.returns) ? (declared.returns as ImageAbilities['returns']) : defaults.returns,
    urlHosts: strings(declared.url_hosts) ?? defaults.urlHosts,
    stream: typeof declared.stream === 'boolean' ? declared.stream : defaults.stream,
    inputFormats: formats?.length ? formats : defaults.inputFormats,
    maxUploadBytes: positive(declared.max_upload_bytes) ?? defaults.maxUploadBytes,
    maxImages: positive(declared.max_images) ?? defaults.maxImages,
    mask: typeof declared.mask === 'boolean' ? declared.mask : defaults.mask,
  }
}

/**
 * OpenAI's multipart image edit or variation body: the fields as strings, then the image (`image`, or `image[]`
 * for several) and the mask, streamed from their spools. `omit` leaves fields out (Azure's `model`).
 */
export function imageUpload(body: Record<string, any>, model: string, omit: string[] = []): { body: ReadableStream<Uint8Array>; headers: Record<string, string> } {
  const { image, mask, ...fields } = body as { image: ImageUpload | ImageUpload[]; mask?: ImageUpload } & Record<string, unknown>
  fields.model = model
  const parts: [string, MultipartValue][] = []
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null || omit.includes(name)) continue
    parts.push([name, typeof value === 'object' ? JSON.stringify(value) : String(value)])
  }
  const images = Array.isArray(image) ? image : [image]
  const field = images.length > 1 ? 'image[]' : 'image'
  for (const i of images) parts.push([field, { blob: i.blob, filename: i.filename, contentType: i.contentType }])
  if (mask) parts.push(['mask', { blob: mask.blob, filename: mask.filename, contentType: mask.contentType }])
  return multipartBody(parts)
}

/** OpenAI-style error bodies, including the quirky ones (numeric `code`, bare strings, no `param`). */
export function parseOpenAIError(status: number, body: unknown, provider: string): GatewayError {
  const err = (body && typeof body === 'object' && 'error' in body ? (body as any).error : body) as any
  let message: string
  if (typeof err === 'string') message = err
  else if (err && typeof err.message === 'string') message = err.message
  else if (typeof body === 'string' && body.length > 0) message = body.slice(0, 500)
  else message = `${provider} returned HTTP ${status}`
  return new GatewayError(status, message, {
    type: err && typeof err.type === 'string' ? err.type : undefined,
    // Some servers (llama.cpp) send a numeric code; the envelope carries strings only.
    code: err && typeof err.code === 'string' ? err.code : null,
    param: err && typeof err.param === 'string' ? err.param : null,
  })
}

function applyParamPolicy(body: Record<string, any>, params: Record<string, ParamPolicy>, ctx: AttemptContext, provider: string) {
  for (const name in params) {
    if (!(name in body)) continue
    const policy = params[name]!
    const action = typeof policy === 'function' ? policy(body[name]) : policy
    if (action === 'pass') continue
    if (action === 'refuse') {
      throw new GatewayError(400, `The provider '${provider}' does not support the '${name}' parameter.`, {
        param: name,
        code: 'unsupported_parameter',
      })
    }
    delete body[name]
    ctx.dropParam(name)
  }
}

/** Builds a provider plugin for any API that speaks OpenAI's wire format. */
export function openAICompatible(options: OpenAICompatibleOptions): Plugin {
  const params = options.params ?? {}
  const streamUsage = options.streamUsage ?? true
  const base64Embeddings = options.base64Embeddings ?? true
  const enabled = { chat: true, completions: true, embeddings: true, ...options.endpoints }

  const baseOf = (provider: ProviderConfig) => {
    const baseURL = (provider.baseURL ?? options.baseURL ?? '').replace(/\/+$/, '')
    if (!baseURL) throw new GatewayError(500, `Provider '${provider.name}' has no base_url.`, { code: 'provider_misconfigured' })
    return baseURL
  }
  const authHeaders = (provider: ProviderConfig): Record<string, string> =>
    (options.auth ?? 'bearer') === 'bearer' && provider.apiKey ? { authorization: `Bearer ${provider.apiKey}` } : {}
  const endpoint = (path: string, prepare?: (body: Record<string, any>) => void): EndpointAdapter => ({
    passthrough: true,
    buildRequest(body, ctx) {
      const { provider, model } = ctx.target
      const baseURL = baseOf(provider)
      const upstreamBody: Record<string, any> = { ...body, model }
      applyParamPolicy(upstreamBody, params, ctx, provider.name)
      for (const from in options.rename) {
        if (from in upstreamBody) {
          upstreamBody[options.rename[from]!] = upstreamBody[from]
          delete upstreamBody[from]
        }
      }
      prepare?.(upstreamBody)
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        accept: upstreamBody.stream ? 'text/event-stream' : 'application/json',
        ...authHeaders(provider),
      }
      return { url: baseURL + path, headers, body: jsonText(upstreamBody, ctx.request.sentJson) }
    },
    parseError: (status, body) => parseOpenAIError(status, body, options.id),
  })

  const audioDefaults: AudioAbilities = { ...OPENAI_AUDIO_ABILITIES, ...options.audio?.abilities }
  const abilities = (provider: ProviderConfig) => declaredAudioAbilities(provider, audioDefaults)
  const parseError = (status: number, body: unknown) => parseOpenAIError(status, body, options.id)
  const transcription = (path: string): TranscriptionAdapter => ({
    abilities,
    buildRequest: (body, ctx): UpstreamRequest => {
      const upload = transcriptionUpload(body, ctx.target.model)
      return {
        url: baseOf(ctx.target.provider) + path,
        headers: { ...authHeaders(ctx.target.provider), ...upload.headers, accept: body.stream ? 'text/event-stream' : 'application/json' },
        body: upload.body,
      }
    },
    parseError,
  })
  const speech: SpeechAdapter = {
    abilities,
    buildRequest: (body, ctx): UpstreamRequest => ({
      url: baseOf(ctx.target.provider) + '/audio/speech',
      headers: { ...authHeaders(ctx.target.provider), 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, model: ctx.target.model }),
    }),
    parseError,
  }

  const imageOptions = options.images
  const imageAbilities = (provider: ProviderConfig, model: string) => declaredImageAbilities(provider, (imageOptions?.abilities ?? openAIImageAbilities)(model))
  const imagesAt = (path: string, multipart: boolean): ImagesAdapter => ({
    abilities: imageAbilities,
    buildRequest: (body, ctx): UpstreamRequest => {
      const { provider, model } = ctx.target
      const upstreamBody: Record<string, any> = {}
      for (const name in body) if (body[name] !== null && body[name] !== undefined) upstreamBody[name] = body[name]
      applyParamPolicy(upstreamBody, (imageOptions?.params ?? openAIImageParams)(model), ctx, provider.name)
      imageOptions?.prepare?.(upstreamBody)
      const accept = upstreamBody.stream ? 'text/event-stream' : 'application/json'
      if (multipart) {
        const upload = imageUpload(upstreamBody, model)
        return { url: baseOf(provider) + path, headers: { ...authHeaders(provider), ...upload.headers, accept }, body: upload.body }
      }
      upstreamBody.model = model
      return { url: baseOf(provider) + path, headers: { ...authHeaders(provider), 'content-type': 'application/json', accept }, body: JSON.stringify(upstreamBody) }
    },
    parseError,
  })

  const askForStreamUsage = (body: Record<string, any>) => {
    // A client that asked for usage already keeps its own object (and its body's text: see jsonText).
    if (streamUsage && body.stream === true && body.stream_options?.include_usage !== true) body.stream_options = { ...body.stream_options, include_usage: true }
  }

  const adapter: ProviderAdapter = { id: options.id, defaultBaseURL: options.baseURL }
  if (enabled.chat) adapter.chat = endpoint('/chat/completions', askForStreamUsage)
  if (enabled.completions) adapter.completions = endpoint('/completions', askForStreamUsage)
  if (enabled.embeddings) {
    adapter.embeddings = endpoint('/embeddings', (body) => {
      if (!base64Embeddings && body.encoding_format === 'base64') body.encoding_format = 'float'
    })
  }

  const audio = new Set(options.audio?.operations ?? [])
  if (audio.has('transcriptions')) adapter.transcriptions = transcription('/audio/transcriptions')
  if (audio.has('translations')) adapter.translations = transcription('/audio/translations')
  if (audio.has('speech')) adapter.speech = speech

  const images = new Set(imageOptions?.operations ?? [])
  if (images.has('images')) adapter.images = imagesAt('/images/generations', false)
  if (images.has('image_edits')) adapter.image_edits = imagesAt('/images/edits', true)
  if (images.has('image_variations')) adapter.image_variations = imagesAt('/images/variations', true)
  if (options.realtime) adapter.realtime = options.realtime
  if (options.responses) adapter.responses = options.responses

  return {
    name: `provider-${options.id}`,
    version: '1.0.0',
    apiVersion: API_VERSION,
    setup(api) {
      api.registerProvider(adapter)
    },
  }
}
