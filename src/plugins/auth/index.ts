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
    /** Well-formed keys the store does not know: remembered apart, so a flood of them cannot evict real keys. */
    unknownCacheSize: t.Integer({ minimum: 1, default: 1_000 }),
  }),
  setup(api) {
    type Entry = { principal: Principal | null; enabled: boolean; expiresAt: number | null }
    const cache = api.cache<string, Entry>({ max: api.config.cacheSize, ttlMs: api.config.cacheTtlMs || undefined })
    const unknown = api.cache<string, Entry>({ max: api.config.unknownCacheSize, ttlMs: api.config.cacheTtlMs || undefined })
    // Concurrent misses for one key share a single store query (a cold start under load would send one each).
    const loading = new Map<string, Promise<Entry>>()
    // A lookup that started before a key change must not cache what it read.
    let generation = 0
    api.onClose(
      api.store.onChange((change) => {
        if (change.kind !== 'key') return
        generation++
        cache.clear()
        unknown.clear()
        loading.clear()
      }),
    )

    const load = async (key: string): Promise<Entry> => {
      const started = generation
      const row = await api.store.findKeyByHash(sha256(key)).catch((err) => {
        // Not the caller's fault, and not a 401: the key may well be valid.
        api.log.warn({ err }, 'key lookup failed: store unavailable')
        throw new GatewayError(503, 'The gateway cannot check API keys right now. Try again shortly.', { code: 'store_unavailable' })
      })
      const entry: Entry = row
        ? {
            enabled: row.enabled,
            expiresAt: row.expiresAt,
            principal: {
              keyId: row.id,
              name: row.name,
              allowedModels: row.allowedModels,
              allowedEndpoints: row.allowedEndpoints,
              limits: row.limits,
              metadata: row.metadata,
            },
          }
        : { principal: null, enabled: false, expiresAt: null }
      if (generation === started) (entry.principal ? cache : unknown).set(key, entry)
      return entry
    }

    const admit = (entry: Entry): Principal => {
      if (!entry.principal) throw invalid()
      if (!entry.enabled) throw new GatewayError(401, 'This API key is disabled.', { code: 'key_disabled' })
      if (entry.expiresAt !== null && entry.expiresAt <= Date.now()) {
        throw new GatewayError(401, 'This API key has expired.', { code: 'key_expired' })
      }
      return entry.principal
    }

    return {
      onAuth(ctx: RequestContext) {
        const key = credential(ctx.request.headers)
        if (!key) return
        // Cached by the presented key itself: a hit costs one map lookup, no checksum, no hash, no promise.
        const cached = cache.get(key) ?? unknown.get(key)
        if (cached) return admit(cached)
        // Malformed keys and typos never reach the store (the checksum is part of the key).
        if (!isWellFormedKey(key)) throw invalid()
        let pending = loading.get(key)
        if (!pending) {
          const started: Promise<Entry> = load(key).finally(() => loading.get(key) === started && loading.delete(key))
          loading.set(key, (pending = started))
        }
        return pending.then(admit)
      },
    }
  },
})
