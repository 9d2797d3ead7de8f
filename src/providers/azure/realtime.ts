import { GatewayError, type RealtimeAdapter } from '../../plugin-sdk/index.ts'
import { OPENAI_REALTIME_FORMATS } from '../../plugin-sdk/index.ts'

/** The preview API version of Azure's deployment-style realtime endpoint (beta events). */
const DEPLOYMENT_API_VERSION = '2025-04-01-preview'

/**
 * Azure OpenAI realtime, the key in `api-key`. GA clients go to the v1 path, `wss://<resource>/openai/v1/realtime?model=<deployment>`;
 * beta clients (`OpenAI-Beta: realtime=v1`) to the deployment path, `/openai/realtime?api-version=…&deployment=<deployment>`,
 * which speaks the beta events (`options.realtime_api_version` picks its version).
 */
export const azureRealtime: RealtimeAdapter = {
  protocols: () => ['ga', 'beta'],
  audioFormats: () => OPENAI_REALTIME_FORMATS,
  connect(ctx, protocol) {
    const { provider, model } = ctx.target
    const base = (provider.baseURL ?? '').replace(/\/+$/, '').replace(/\/openai(\/v1)?$/, '')
    if (!/^https?:\/\//.test(base)) throw new GatewayError(500, `Provider '${provider.name}' has no base_url (https://<resource>.openai.azure.com).`, { code: 'provider_misconfigured' })
    const ws = base.replace(/^http/, 'ws')
    const headers: Record<string, string> = provider.apiKey ? { 'api-key': provider.apiKey } : {}
    if (protocol === 'ga') return { url: `${ws}/openai/v1/realtime?model=${encodeURIComponent(model)}`, headers }
    const version = typeof provider.options.realtime_api_version === 'string' ? provider.options.realtime_api_version : DEPLOYMENT_API_VERSION
    return { url: `${ws}/openai/realtime?api-version=${encodeURIComponent(version)}&deployment=${encodeURIComponent(model)}`, headers: { ...headers, 'openai-beta': 'realtime=v1' } }
  },
}
