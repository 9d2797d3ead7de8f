import { GatewayError, definePlugin, t, type Principal, type RequestContext } from '../../plugin-sdk/index.ts'
import { isWellFormedKey, sha256 } from '../../store/crypto.ts'

/** Where clients put their key: OpenAI SDKs use Authorization, Azure-style clients `api-key`, others `X-API-Key`. */
function credential(headers: Headers): string | null {
  const authorization = headers.get('authorization')
  if (authorization) {
    const match = /^Bearer\s+(.+)$/i.exec(authorization.trim())
    return match ? match[1]!.trim() : authorization.trim()
  }
  return headers.get('x-api-key') ?? headers.get('api-key')
}

const invalid = () =>
  new GatewayError(401, 'Incorrect API key provided. Create a Conduit virtual key (condt_…) in the admin API or UI.', {
    code: 'invalid_api_key',
  })

/**
 * Virtual-key authentication. Keys are looked up by SHA-256 and cached; any admin change to keys clears the
 * cache, so disabling or deleting a key takes effect on the next request. Expiry is checked on every request.
 */
export default definePlugin({
  name: 'auth',
  version: '1.0.0',
  apiVersion: 1,
  priority: 1000,
  configSchema: t.Object({
    cacheSize: t.Integer({ minimum: 1, default: 10_000 }),
    cacheTtlMs: t.Integer({ minimum: 0, default: 60_000 }),
  }),
  setup(api) {
    type Entry = { principal: Principal | null; enabled: boolean; expiresAt: number | null }
    const cache = api.cache<string, Entry>({ max: api.config.cacheSize, ttlMs: api.config.cacheTtlMs || undefined })
    api.onClose(api.store.onChange((change) => change.kind === 'key' && cache.clear()))

    return {
      async onAuth(ctx: RequestContext) {
        const key = credential(ctx.request.headers)
        if (!key) return
        // Cached by the presented key itself: a hit costs one map lookup, no checksum and no hash.
        let entry = cache.get(key)
        if (!entry) {
          // Malformed keys and typos never reach the store (the checksum is part of the key).
          if (!isWellFormedKey(key)) throw invalid()
          const row = await api.store.findKeyByHash(sha256(key))
          entry = row
            ? {
                enabled: row.enabled,
                expiresAt: row.expiresAt,
                principal: { keyId: row.id, name: row.name, allowedModels: row.allowedModels, metadata: row.metadata },
              }
            : { principal: null, enabled: false, expiresAt: null }
          cache.set(key, entry)
        }
        if (!entry.principal) throw invalid()
        if (!entry.enabled) throw new GatewayError(401, 'This API key is disabled.', { code: 'key_disabled' })
        if (entry.expiresAt !== null && entry.expiresAt <= Date.now()) {
          throw new GatewayError(401, 'This API key has expired.', { code: 'key_expired' })
        }
        return entry.principal
      },
    }
  },
})
