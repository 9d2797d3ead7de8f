import { expect } from 'bun:test'
import { Attempt, RequestCtx } from '../../src/core/context.ts'
import type { Plugin, PluginApi, ProviderAdapter, ProviderConfig, UpstreamRequest } from '../../src/plugin-sdk/types.ts'
import { GatewayError } from '../../src/plugin-sdk/errors.ts'
import { createLogger } from '../../src/services/logger.ts'

/**
 * Fixtures for driving a provider adapter directly, without a gateway: the adapter a provider plugin registers,
 * and the attempt its `buildRequest`, parsers and stream parsers are handed.
 */

const silent = createLogger('silent')

/** The adapter `plugin` registers in `setup` (fails when it registers none). */
export async function registeredAdapter(plugin: Plugin): Promise<ProviderAdapter> {
  let adapter: ProviderAdapter | undefined
  const api: Pick<PluginApi, 'registerProvider'> = { registerProvider: (a) => (adapter = a) }
  await plugin.setup(api as PluginApi)
  if (!adapter) throw new Error(`plugin ${plugin.name} registered no provider`)
  return adapter
}

/**
 * A real attempt (as the pipeline builds one) for a chat request with `body`, targeting `model` on `provider`
 * (fields left out: id and name `p`, no base URL, no key, no options). The fields the adapter dropped are in
 * `attempt.dropped`.
 */
export function attemptFor(provider: Partial<ProviderConfig> & Pick<ProviderConfig, 'type'>, model: string, body: Record<string, any> = {}): Attempt {
  const ctx = new RequestCtx('chat', 'chat', new Request('http://gateway.test/v1/chat/completions'), silent)
  ctx.body = body
  const config: ProviderConfig = { id: 'p', name: 'p', baseURL: null, apiKey: null, options: {}, ...provider }
  return new Attempt(ctx, { provider: config, model, price: null }, 1)
}

/** Runs `fn`, which must throw a GatewayError with this status (and param and code, when given); returns it. */
export function expectGatewayError(fn: () => unknown, status: number, param?: string | null, code?: string): GatewayError {
  try {
    fn()
  } catch (error) {
    expect(GatewayError.is(error)).toBe(true)
    const e = error as GatewayError
    expect(e.status).toBe(status)
    if (param !== undefined) expect(e.param).toBe(param)
    if (code !== undefined) expect(e.code).toBe(code)
    return e
  }
  throw new Error('expected a GatewayError')
}

/** Sends an adapter-built request as the core would (a Blob or a stream body is read from where it lives as it goes). */
export const sendUpstream = (upstream: UpstreamRequest) =>
  fetch(upstream.url, { method: upstream.method ?? 'POST', headers: upstream.headers, body: upstream.body as any })
