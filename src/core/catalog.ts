import { within } from '../plugin-sdk/deadline.ts'
import { GatewayError } from '../plugin-sdk/errors.ts'
import type { Logger, Price, ProviderConfig, VirtualModel } from '../plugin-sdk/types.ts'
import { listPrice } from '../pricing/prices.ts'
import type { SecretBox } from '../store/crypto.ts'
import { baseURLAad } from '../store/secrets.ts'
import type { ProviderRow, Store } from '../store/store.ts'
import { setSecrets } from '../services/known-secrets.ts'

const REFRESH_MS = 30_000
const RETRY_MS = 1_000
/** Requests wait for a pending reload: from a database that accepts and never answers, at most this long. */
const LOAD_TIMEOUT_MS = 2_000

/**
 * Models and providers, held in memory with secrets decrypted (both tables are small and read on every
 * request). An admin change marks the catalog stale and reloads it at once: a request that comes first waits for
 * the reload, so a change takes effect on the very next request, and one made before the store goes down is not
 * lost because no request came between them (the previous catalog is what a failed reload keeps serving).
 */
export class Catalog {
  private models = new Map<string, VirtualModel>()
  private providers = new Map<string, ProviderConfig>()
  /** A change (or the first load) the maps lack: the next ready() starts the reload that reads it. */
  private stale = true
  /** The reload under way, if any. */
  private loading: Promise<void> | null = null
  /** The last reload started for a change, until it lands: requests wait for it, never for a periodic refresh. */
  private awaited: Promise<void> | null = null

  private readonly refresher: Timer

  constructor(
    private readonly store: Store,
    private readonly secrets: SecretBox,
    private readonly log: Logger,
  ) {
    store.onChange((change) => {
      if (change.kind === 'key') return
      this.stale = true
      this.ready()?.catch(() => {}) // at once: a change made just before the store goes down is not lost
    })
    // Change notices from other instances can be lost (a Redis reconnect); a periodic reload heals that. It runs
    // behind the requests, which keep the maps they have: a store that hangs delays none of them.
    this.refresher = setInterval(() => this.refresh(), REFRESH_MS)
    this.refresher.unref()
  }

  close() {
    clearInterval(this.refresher)
    setSecrets(this.secretsOwner, [])
  }

  /** Its own entry in the process's secret list: several gateways in one process (tests) must not erase each other's. */
  private readonly secretsOwner = `providers:${crypto.randomUUID()}`

  /** Resolves immediately unless an admin change is still being read. */
  ready(): Promise<void> | undefined {
    if (this.stale) {
      this.stale = false
      const load = (this.awaited = this.startReload())
      const landed = () => void (this.awaited === load && (this.awaited = null))
      load.then(landed, landed)
    }
    return this.awaited ?? undefined
  }

  /** A reload after the one under way, if any: that one may have read the tables before the change. */
  private startReload(): Promise<void> {
    const previous = this.loading
    const load = previous ? previous.then(this.reload, this.reload) : this.reload()
    this.loading = load
    const done = () => void (this.loading === load && (this.loading = null))
    load.then(done, done)
    return load
  }

  private refresh() {
    if (!this.loading) this.startReload().catch(() => {})
  }

  private loaded = false

  private reload = async () => {
    let models, providers
    try {
      const tables = await within(Promise.all([this.store.listModels(), this.store.listProviders()]), LOAD_TIMEOUT_MS)
      if (!tables) throw new Error(`no answer from the store in ${LOAD_TIMEOUT_MS} ms`)
      ;[models, providers] = tables
    } catch (error) {
      if (!this.loaded) {
        this.stale = true
        throw new GatewayError(503, 'The gateway cannot read its model catalog right now.', { code: 'store_unavailable', headers: { 'retry-after': '1' } })
      }
      // The store blipped: keep routing with what we have and try again shortly, behind the requests.
      this.log.warn({ err: error }, 'catalog reload failed; serving the previous catalog')
      setTimeout(() => this.refresh(), RETRY_MS).unref()
      return
    }
    this.loaded = true
    const providerMap = new Map<string, ProviderConfig>()
    for (const p of providers) {
      let config: ProviderConfig
      try {
        config = openProvider(this.secrets, p)
      } catch (err) {
        // Sealed with a key this instance lacks (a rotation under way, a ring not yet deployed): one provider
        // keeps its last known config, or is left out, instead of the whole catalog failing every request.
        this.log.error({ err, provider: p.name }, 'provider secret does not decrypt with this instance’s keys; keeping its previous config')
        const previous = this.providers.get(p.id)
        if (previous) providerMap.set(p.id, previous)
        continue
      }
      providerMap.set(p.id, config)
    }
    this.providers = providerMap
    setSecrets(this.secretsOwner, [...providerMap.values()].flatMap(secretsOf))
    this.models = new Map(models.map((m) => [m.name, { ...m, maxPrice: maxPrice(m, providerMap) }]))
  }

  model(name: string): VirtualModel | undefined {
    return this.models.get(name)
  }

  allModels(): IterableIterator<VirtualModel> {
    return this.models.values()
  }

  provider(id: string): ProviderConfig | undefined {
    return this.providers.get(id)
  }
}

/** The dearest price of each unit among a model's targets: a request's worst case, whoever serves it. */
function maxPrice(model: VirtualModel, providers: Map<string, ProviderConfig>): Price | null {
  let max: Price | null = null
  for (const t of model.targets) {
    const provider = providers.get(t.provider)
    const price = t.price ?? (provider ? listPrice(provider.type, t.model) : null)
    if (!price) continue
    if (!max) max = { ...price }
    else {
      for (const unit of Object.keys(price) as (keyof Price)[]) {
        // A per-image table: the dearest of each entry (budgets reserve its dearest entry anyway).
        if (unit === 'images') max.images = mergeMax(max.images, price.images!)
        else max[unit] = Math.max((max[unit] as number | undefined) ?? 0, (price[unit] as number | undefined) ?? 0)
      }
    }
  }
  return max
}

function mergeMax(a: Record<string, number> | undefined, b: Record<string, number>): Record<string, number> {
  const out = { ...a }
  for (const k in b) out[k] = Math.max(out[k] ?? 0, b[k]!)
  return out
}

/**
 * What an upstream error may quote back and must be scrubbed of: the provider's API keys, and a credential in its base
 * URL (`https://user:secret@host/`, or a token as the user), which fetch sends as Basic auth: its text and that
 * header's token.
 */
export function secretsOf(p: ProviderConfig): string[] {
  const url = p.baseURL ? URL.parse(p.baseURL) : null
  const keys = p.apiKeys ?? []
  if (!url?.username && !url?.password) return keys
  const user = decodeURIComponent(url.username)
  const password = decodeURIComponent(url.password)
  const basic = Buffer.from(`${user}:${password}`).toString('base64')
  return [...keys, basic, ...(password ? [password, url.password] : [user, url.username])]
}

/** A provider as routing uses it: its key(s) and base URL unsealed. Throws when a secret does not open with `box`. */
export function openProvider(box: SecretBox, p: ProviderRow): ProviderConfig {
  const baseURL = p.baseURLSecret ? box.decrypt(p.baseURLSecret, baseURLAad(p.id)) : p.baseURL
  const keys = keysOf(p.apiKeySecret ? box.decrypt(p.apiKeySecret, `provider:${p.id}`) : null)
  return { id: p.id, name: p.name, type: p.type, baseURL, ...keys, options: p.options }
}

/** A sealed key is one key, or a JSON array of several (see AdminService.seal). */
function keysOf(secret: string | null): { apiKey: string | null; apiKeys: string[] } {
  if (secret === null) return { apiKey: null, apiKeys: [] }
  const keys: string[] = secret.startsWith('["') ? JSON.parse(secret) : [secret]
  return { apiKey: keys[0] ?? null, apiKeys: keys }
}
