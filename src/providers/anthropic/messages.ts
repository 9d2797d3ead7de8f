import { jsonText, type AttemptContext, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { DEFAULT_BASE_URL } from './request.ts'
import { ANTHROPIC_VERSION } from './types.ts'

/**
 * Beta features a client may switch on through the gateway (`anthropic-beta`), by family: any dated version of
 * these passes, anything else is left out (a beta can change what is billed or what the key may reach).
 */
export const ALLOWED_BETAS = ['prompt-caching', 'token-efficient-tools', 'interleaved-thinking', 'output-128k', 'context-1m', 'fine-grained-tool-streaming']
const BETA = new RegExp(`^(${ALLOWED_BETAS.join('|')})-\\d{4}-\\d{2}-\\d{2}$`)

/** The client's `anthropic-beta` values that are on the allowlist, comma-joined; null when none is. */
export function allowedBetas(header: string | null): string | null {
  const kept = (header ?? '')
    .split(',')
    .map((beta) => beta.trim())
    .filter((beta) => BETA.test(beta))
  return kept.length > 0 ? kept.join(',') : null
}

/** The client's Messages body as it came, for the target's model (cache_control and all, untouched). */
export function buildMessagesRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model } = ctx.target
  const baseURL = (provider.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '')
  const headers: Record<string, string> = { 'anthropic-version': ANTHROPIC_VERSION, 'content-type': 'application/json' }
  if (provider.apiKey) headers['x-api-key'] = provider.apiKey
  if (body.stream === true) headers.accept = 'text/event-stream'
  const betas = allowedBetas(ctx.request.request.headers.get('anthropic-beta'))
  if (betas) headers['anthropic-beta'] = betas
  return { url: `${baseURL}/messages`, headers, body: jsonText({ ...body, model }, ctx.request.sentJson) }
}
