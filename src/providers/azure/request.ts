import { GatewayError, transcriptionUpload, type AttemptContext, type ProviderConfig, type UpstreamRequest } from '../../plugin-sdk/index.ts'

/** The current GA data-plane version of the deployment-based API; `options.api_version` overrides it. */
export const DEFAULT_API_VERSION = '2024-10-21'

export type AzureEndpoint = 'chat' | 'completions' | 'embeddings' | 'transcriptions' | 'translations' | 'speech'

const PATHS: Record<AzureEndpoint, string> = {
  chat: '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
  transcriptions: '/audio/transcriptions',
  translations: '/audio/translations',
  speech: '/audio/speech',
}

/**
 * Request fields the GA 2024-10-21 spec lists (`createChatCompletionRequest`, `createCompletionRequest`). A dated
 * GA version answers anything else with 400 "Unrecognized request argument supplied", so those fields are
 * dropped and signalled. Preview versions and the v1 surface track OpenAI's API and get the body unchanged.
 */
const GA_FIELDS: Record<'chat' | 'completions', Set<string>> = {
  chat: new Set([
    'messages', 'model', 'data_sources', 'frequency_penalty', 'presence_penalty', 'logit_bias', 'logprobs', 'top_logprobs',
    'max_tokens', 'max_completion_tokens', 'n', 'parallel_tool_calls', 'response_format', 'seed', 'stop', 'stream',
    'stream_options', 'temperature', 'top_p', 'tools', 'tool_choice', 'function_call', 'functions', 'user',
  ]),
  completions: new Set([
    'prompt', 'model', 'best_of', 'echo', 'frequency_penalty', 'logit_bias', 'logprobs', 'max_tokens', 'n', 'presence_penalty',
    'seed', 'stop', 'stream', 'stream_options', 'suffix', 'temperature', 'top_p', 'user',
  ]),
}

export interface AzureSurface {
  /** `v1` (the OpenAI-shaped surface, deployment in the body) or a dated `api-version`. */
  apiVersion: string
  v1: boolean
  /** A dated GA version (no `-preview`): strict about request fields. */
  datedGA: boolean
}

export function surfaceOf(provider: ProviderConfig): AzureSurface {
  const configured = provider.options.api_version
  const apiVersion = typeof configured === 'string' && configured.trim() ? configured.trim() : DEFAULT_API_VERSION
  const v1 = apiVersion === 'v1'
  return { apiVersion, v1, datedGA: !v1 && /^\d{4}-\d{2}-\d{2}$/.test(apiVersion) }
}

/**
 * Fields that arrived with 2024-09-01(-preview): older versions refuse them. Without `stream_options` a stream
 * reports no usage, and the core estimates it.
 */
const SINCE_2024_09 = ['stream_options', 'max_completion_tokens', 'parallel_tool_calls']
const hasSince2024_09 = (s: AzureSurface) => s.v1 || s.apiVersion >= '2024-09-01'

/**
 * The resource endpoint, whatever form the admin pasted (`https://res.openai.azure.com`, with `/openai` or
 * `/openai/v1/` on the end, trailing slashes).
 */
export function resourceEndpoint(provider: ProviderConfig): string {
  const base = (provider.baseURL ?? '').trim().replace(/\/+$/, '').replace(/\/openai(?:\/v1)?$/i, '')
  if (!base) {
    throw new GatewayError(500, `Provider '${provider.name}' has no base_url: set it to the resource endpoint, https://<resource>.openai.azure.com.`, {
      code: 'provider_misconfigured',
    })
  }
  return base
}

export function upstreamURL(provider: ProviderConfig, deployment: string, endpoint: AzureEndpoint): string {
  const surface = surfaceOf(provider)
  const base = resourceEndpoint(provider)
  if (surface.v1) return `${base}/openai/v1${PATHS[endpoint]}`
  return `${base}/openai/deployments/${encodeURIComponent(deployment)}${PATHS[endpoint]}?api-version=${encodeURIComponent(surface.apiVersion)}`
}

/**
 * Audio keeps OpenAI's wire format on Azure; the deployment is the model (in the path, or the body for v1).
 * Transcriptions and translations go as multipart, the upload read from its spool as it is sent.
 */
export function buildAudioRequest(endpoint: 'transcriptions' | 'translations' | 'speech', body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model: deployment } = ctx.target
  const v1 = surfaceOf(provider).v1
  const headers: Record<string, string> = provider.apiKey ? { 'api-key': provider.apiKey } : {}
  const url = upstreamURL(provider, deployment, endpoint)
  if (endpoint === 'speech') {
    const upstream: Record<string, any> = { ...body, model: deployment }
    return { url, headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(upstream) }
  }
  const upload = transcriptionUpload(body, deployment, v1 ? [] : ['model'])
  return { url, headers: { ...headers, ...upload.headers, accept: 'application/json' }, body: upload.body }
}

/** OpenAI request → Azure request for the same endpoint. The body keeps OpenAI's shape; never mutates `body`. */
export function buildRequest(endpoint: 'chat' | 'completions' | 'embeddings', body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model: deployment } = ctx.target
  const surface = surfaceOf(provider)
  const upstream: Record<string, any> = { ...body }
  // The deployment is the model: in the path for dated versions, in the body for v1.
  if (surface.v1) upstream.model = deployment
  else delete upstream.model

  if (endpoint !== 'embeddings') {
    const older = !hasSince2024_09(surface)
    // The same limit under its older name: nothing is lost.
    if (older && upstream.max_completion_tokens != null && upstream.max_tokens == null) {
      upstream.max_tokens = upstream.max_completion_tokens
      delete upstream.max_completion_tokens
    }
    if (surface.datedGA || older) {
      const known = GA_FIELDS[endpoint]
      for (const name of Object.keys(upstream)) {
        if ((!surface.datedGA || known.has(name)) && !(older && SINCE_2024_09.includes(name))) continue
        // parallel_tool_calls: true is what the older versions do anyway: nothing is lost.
        if (upstream[name] != null && !(name === 'parallel_tool_calls' && upstream[name] === true)) ctx.dropParam(name)
        delete upstream[name]
      }
    }
    // Every Azure stream is parsed (its first chunk must go), so asking for usage costs nothing more.
    if (upstream.stream === true && !older) upstream.stream_options = { ...upstream.stream_options, include_usage: true }
  }

  const headers: Record<string, string> = { 'content-type': 'application/json', accept: upstream.stream === true ? 'text/event-stream' : 'application/json' }
  if (provider.apiKey) headers['api-key'] = provider.apiKey
  return { url: upstreamURL(provider, deployment, endpoint), headers, body: JSON.stringify(upstream) }
}
