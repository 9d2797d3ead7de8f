import { GatewayError } from './errors.ts'
import type { ProviderConfig, RealtimeAdapter, RealtimeAudioFormat, RealtimeProtocol } from './types.ts'

/** OpenAI's realtime audio formats: what a server that speaks its realtime API takes unless the admin says otherwise. */
export const OPENAI_REALTIME_FORMATS: readonly RealtimeAudioFormat[] = ['pcm16', 'g711_ulaw', 'g711_alaw']
const BOTH: readonly RealtimeProtocol[] = ['ga', 'beta']
const FORMATS = new Set<string>(OPENAI_REALTIME_FORMATS)
const PROTOCOLS = new Set<string>(BOTH)

/** `options.realtime: { audio_formats: ['pcm16'], protocols: ['beta'] }`: what a server declares; values we do not know are ignored. */
function declared(provider: ProviderConfig) {
  const realtime = provider.options.realtime as { audio_formats?: unknown; protocols?: unknown } | undefined
  const list = <T extends string>(value: unknown, known: Set<string>) => {
    if (!Array.isArray(value)) return null
    const items = value.filter((v): v is T => typeof v === 'string' && known.has(v))
    return items.length > 0 ? items : null
  }
  return { formats: list<RealtimeAudioFormat>(realtime?.audio_formats, FORMATS), protocols: list<RealtimeProtocol>(realtime?.protocols, PROTOCOLS) }
}

/**
 * A server that speaks OpenAI's realtime WebSocket API at `<base_url>/realtime?model=` (the base URL's http(s) made
 * ws(s)), the key as a bearer token and the beta vocabulary asked for with `OpenAI-Beta: realtime=v1`. What it
 * takes is OpenAI's unless `options.realtime` says otherwise (a pcm16-only server gets G.711 converted by the core).
 */
export function compatibleRealtime(defaultBaseURL?: string): RealtimeAdapter {
  return {
    protocols: (provider) => declared(provider).protocols ?? BOTH,
    audioFormats: (provider) => declared(provider).formats ?? OPENAI_REALTIME_FORMATS,
    connect(ctx, protocol) {
      const { provider, model } = ctx.target
      const base = (provider.baseURL ?? defaultBaseURL ?? '').replace(/\/+$/, '')
      if (!/^https?:\/\//.test(base)) throw new GatewayError(500, `Provider '${provider.name}' has no http(s) base_url for realtime.`, { code: 'provider_misconfigured' })
      const headers: Record<string, string> = {}
      if (provider.apiKey) headers.authorization = `Bearer ${provider.apiKey}`
      if (protocol === 'beta') headers['openai-beta'] = 'realtime=v1'
      return { url: `${base.replace(/^http/, 'ws')}/realtime?model=${encodeURIComponent(model)}`, headers }
    },
  }
}
