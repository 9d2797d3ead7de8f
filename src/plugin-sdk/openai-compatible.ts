import { GatewayError } from './errors.ts'
import { API_VERSION, type AttemptContext, type EndpointAdapter, type Plugin, type ProviderAdapter } from './types.ts'

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

  const endpoint = (path: string, prepare?: (body: Record<string, any>) => void): EndpointAdapter => ({
    passthrough: true,
    buildRequest(body, ctx) {
      const { provider, model } = ctx.target
      const baseURL = (provider.baseURL ?? options.baseURL ?? '').replace(/\/+$/, '')
      if (!baseURL) throw new GatewayError(500, `Provider '${provider.name}' has no base_url.`, { code: 'provider_misconfigured' })
      const upstreamBody: Record<string, any> = { ...body, model }
      applyParamPolicy(upstreamBody, params, ctx, provider.name)
      for (const from in options.rename) {
        if (from in upstreamBody) {
          upstreamBody[options.rename[from]!] = upstreamBody[from]
          delete upstreamBody[from]
        }
      }
      prepare?.(upstreamBody)
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: upstreamBody.stream ? 'text/event-stream' : 'application/json' }
      if ((options.auth ?? 'bearer') === 'bearer' && provider.apiKey) headers.authorization = `Bearer ${provider.apiKey}`
      return { url: baseURL + path, headers, body: JSON.stringify(upstreamBody) }
    },
    parseError: (status, body) => parseOpenAIError(status, body, options.id),
  })

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

  return {
    name: `provider-${options.id}`,
    version: '1.0.0',
    apiVersion: API_VERSION,
    setup(api) {
      api.registerProvider(adapter)
    },
  }
}
