import { GatewayError, definePlugin, t, within, type Principal, type RequestContext } from '../../plugin-sdk/index.ts'
import { isWellFormedKey, sha256 } from '../../store/crypto.ts'

const BEARER = /^Bearer\s+(.+)$/i

/** Where clients put their key: OpenAI SDKs use Authorization, Azure-style clients `api-key`, others `X-API-Key`. */
function credential(headers: Headers): string | null {
  const authorization = headers.get('authorization')
  if (authorization) {
    const match = BEARER.exec(authorization.trim())
    return match ? match[1]!.trim() : authorization.trim()
  }
  return headers.get('x-api-key') ?? headers.get('api-key')
}

const invalid = () =>
  new GatewayError(401, 'Incorrect API key provided. Create a Conduit virtual key (condt_…) in the admin API or UI.', {
    code: 'invalid_api_key',
  })

/** How often a key whose refresh failed asks the store again (it is served as last known meanwhile). */
const REFRESH_RETRY_MS = 1_000

const storeUnavailable = () =>
  new GatewayError(503, 'The gateway cannot check API keys right now. Try again shortly.', { code: 'store_unavailable', headers: { 'retry-after': '1' } })

/**
 * Virtual-key authentication. Keys are looked up by SHA-256 and cached; an admin change to a key (here or, over
 * the change bus, on another instance) drops that key's entry, so disabling or deleting it takes effect on the
 * next request. Expiry is checked on every request. A key cached longer than `cacheTtlMs` is served as known
 * while the store is asked again in the background, so no request of a known key waits for the store, and a
 * database that is down or hung stops no client already seen (Kong's resurrect). A key nobody has checked is
 * then a 503 the client can retry, never a 401: it may well be valid.
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
    /** A store that accepts connections and never answers must cost a request this much, not the hook timeout (10 s). */
    lookupTimeoutMs: t.Integer({ minimum: 1, default: 2_000 }),
  }),
  setup(api) {
    type Entry = { principal: Principal | null; enabled: boolean; expiresAt: number | null }
    // Known keys go stale by hand (`freshUntil`), not by the LRU: a stale entry is still served while it is refreshed.
    type Known = Entry & { freshUntil: number }
    const ttlMs = api.config.cacheTtlMs || Infinity
    const cache = api.cache<string, Known>({ max: api.config.cacheSize })
    const unknown = api.cache<string, Entry>({ max: api.config.unknownCacheSize, ttlMs: api.config.cacheTtlMs || undefined })
    // Concurrent misses for one key share a single store query (a cold start under load would send one each).
    const loading = new Map<string, Promise<Entry>>()
    // A lookup that started before a key change must not cache what it read.
    let generation = 0
    api.onClose(
      api.store.onChange((change) => {
        if (change.kind !== 'key') return
        generation++
        if (change.id === '*') {
          // Any key may have changed: each is read again on its next request (still served if the store is down).
          for (const entry of cache.values()) entry.freshUntil = 0
        } else {
          // Only the changed key's entry goes: the others stay servable while the store is down.
          for (const [key, entry] of cache.entries()) if (entry.principal?.keyId === change.id) cache.delete(key)
        }
        unknown.clear()
        loading.clear()
      }),
    )

    const lookup = async (key: string) => {
      try {
        // Wrapped: `within` answers null when time is up, the store answers null for a key it does not have.
        const found = await within(api.store.findKeyByHash(sha256(key)).then((row) => ({ row })), api.config.lookupTimeoutMs)
        if (!found) throw new Error(`no answer from the store in ${api.config.lookupTimeoutMs} ms`)
        return found.row
      } catch (err) {
        api.log.warn({ err }, 'key lookup failed: store unavailable')
        throw storeUnavailable()
      }
    }

    const load = async (key: string): Promise<Entry> => {
      const started = generation
      const row = await lookup(key)
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
      // A key the store no longer has loses what was known of it, whatever changed meanwhile.
      if (!entry.principal) cache.delete(key)
      if (generation === started) {
        if (entry.principal) cache.set(key, { ...entry, freshUntil: Date.now() + ttlMs })
        else unknown.set(key, entry)
      }
      return entry
    }

    /** One store query per key at a time, however many requests ask. */
    const loadOnce = (key: string): Promise<Entry> => {
      let pending = loading.get(key)
      if (!pending) {
        const started: Promise<Entry> = load(key).finally(() => loading.get(key) === started && loading.delete(key))
        loading.set(key, (pending = started))
      }
      return pending
    }

    const refresh = (key: string, stale: Known) => {
      // No second refresh while this one runs, nor for a while if it fails (`lookup` logged why).
      stale.freshUntil = Date.now() + REFRESH_RETRY_MS
      loadOnce(key).catch(() => {})
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
        const known = cache.get(key)
        if (known) {
          if (known.freshUntil <= Date.now()) refresh(key, known)
          return admit(known)
        }
        const cached = unknown.get(key)
        if (cached) return admit(cached)
        // Malformed keys and typos never reach the store (the checksum is part of the key).
        if (!isWellFormedKey(key)) throw invalid()
        return loadOnce(key).then(admit)
      },
    }
  },
})
