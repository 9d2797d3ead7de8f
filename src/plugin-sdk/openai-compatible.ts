import { GatewayError } from './errors.ts'
import { multipartBody, type MultipartValue } from './multipart.ts'
import { API_VERSION, type AttemptContext, type AudioAbilities, type AudioUpload, type EndpointAdapter, type Plugin, type ProviderAdapter, type ProviderConfig, type SpeechAdapter, type TranscriptionAdapter, type UpstreamRequest } from './types.ts'

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
      return { url: baseURL + path, headers, body: JSON.stringify(upstreamBody) }
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

  const askForStreamUsage = (body: Record<string, any>) => {
    if (streamUsage && body.stream === true) body.stream_options = { ...body.stream_options, include_usage: true }
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

  return {
    name: `provider-${options.id}`,
    version: '1.0.0',
    apiVersion: API_VERSION,
    setup(api) {
      api.registerProvider(adapter)
    },
  }
}
