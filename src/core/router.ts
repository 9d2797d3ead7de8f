import type { GatewayError } from '../plugin-sdk/errors.ts'
import type { ModelTarget, ProviderConfig, RoutingStrategy, Target, VirtualModel } from '../plugin-sdk/types.ts'
import { listPrice } from '../pricing/prices.ts'

/** Consecutive failures that eject a target. */
export const EJECT_AFTER = 5
/** First ejection; each repeat doubles it, up to MAX_EJECTION_MS. */
export const EJECTION_MS = 30_000
const MAX_EJECTION_MS = 300_000
/** Extra attempts allowed per request, over time (the retry budget). */
export const RETRY_RATIO = 0.2
const RETRY_BURST = 10
/** Backoff before retrying a target already tried: full jitter over 25 ms · 2^n, capped. */
export const BACKOFF_BASE_MS = 25
export const BACKOFF_CAP_MS = 250
/** Weight of the newest time-to-first-byte in the moving average. */
const LATENCY_ALPHA = 0.3
/** A Retry-After longer than this is not worth honouring with a cooldown (the key is likely out of quota). */
const MAX_COOLDOWN_MS = 600_000
/** How long a key the provider refused sits out while the provider's other keys serve; then it is tried again. */
export const REFUSED_KEY_REST_MS = 60_000

/** What routing learns about one provider deployment (provider + upstream model). */
class TargetState {
  inflight = 0
  /** Moving average of time to first byte, ms; null until measured. */
  latencyMs: number | null = null
  failures = 0
  ejections = 0
  ejectedUntil = 0
}

/** One attempt in flight against a target: report how it went exactly once, and when it is over. */
export interface AttemptLease {
  target: Target
  /** The response started: a success for the breaker, and a latency sample. */
  succeeded(firstByteMs: number): void
  failed(error: GatewayError): void
  /** The attempt no longer occupies the target (response complete, stream ended, or failed). */
  release(): void
}

/** An attempt's hold on its target: a class, not an object of closures, since every request makes one. */
class Lease implements AttemptLease {
  private released = false

  constructor(
    readonly target: Target,
    private readonly state: TargetState,
    private readonly router: Router,
  ) {}

  failed(error: GatewayError) {
    this.router.targetFailed(this.target, this.state, error)
  }

  succeeded(firstByteMs: number) {
    const state = this.state
    state.failures = 0
    state.ejections = 0
    state.latencyMs = state.latencyMs === null ? firstByteMs : state.latencyMs + LATENCY_ALPHA * (firstByteMs - state.latencyMs)
  }

  release() {
    if (this.released) return
    this.released = true
    this.state.inflight--
  }
}

/**
 * Where each attempt goes. Targets of a virtual model are tried tier by tier (descending priority); inside a
 * tier the model's strategy orders them: weighted random, least busy (fewest in flight) or lowest latency
 * (moving average of time to first byte; unmeasured targets first). Ejected targets (circuit open) are left
 * out unless nothing else is left: the last healthy target is never ejected in effect. Provider keys
 * in a cooldown after a 429 are skipped while another key is available.
 */
export class Router {
  private readonly targets = new Map<string, TargetState>()
  private readonly keyCooldowns = new Map<string, number>()
  private readonly keyCursors = new Map<string, number>()
  private retryTokens = 1 - RETRY_RATIO

  constructor(
    private readonly now: () => number = () => performance.now(),
    /** Told each time a deployment is ejected (for /metrics). */
    private readonly onEject: (target: Target) => void = () => {},
  ) {}

  /** Attempt order for one request; call once per request (it also funds the retry budget). */
  plan(model: VirtualModel, provider: (id: string) => ProviderConfig | undefined): Target[] {
    this.retryTokens = Math.min(RETRY_BURST, this.retryTokens + RETRY_RATIO)
    if (model.targets.length === 1) {
      // Most models have one target: served whether ejected or not, so there is nothing to order.
      const t = model.targets[0]!
      const p = provider(t.provider)
      return p ? [this.target(p, t)] : []
    }
    const now = this.now()
    const tiers = new Map<number, { target: Target; state: TargetState; key: number }[]>()
    for (const t of model.targets) {
      const p = provider(t.provider)
      if (!p) continue
      const state = this.state(`${p.id}/${t.model}`)
      const entry = { target: this.target(p, t), state, key: Math.random() ** (1 / Math.max(t.weight, 1e-9)) }
      const tier = tiers.get(t.priority)
      if (tier) tier.push(entry)
      else tiers.set(t.priority, [entry])
    }
    const strategy = model.routing?.strategy ?? 'weighted'
    const healthy: Target[] = []
    const ejected: { target: Target; until: number }[] = []
    for (const [, tier] of [...tiers].sort(([a], [b]) => b - a)) {
      if (tier.length > 1) tier.sort(ORDER[strategy])
      for (const e of tier) {
        if (e.state.ejectedUntil > now) ejected.push({ target: e.target, until: e.state.ejectedUntil })
        else healthy.push(e.target)
      }
    }
    // All ejected: serve anyway, soonest back first, rather than refuse.
    return healthy.length > 0 ? healthy : ejected.sort((a, b) => a.until - b.until).map((e) => e.target)
  }

  /** Takes one extra attempt from the budget; false when retries already use their share of traffic. */
  takeRetry(): boolean {
    if (this.retryTokens < 1) return false
    this.retryTokens -= 1
    return true
  }

  begin(target: Target): AttemptLease {
    const state = this.state(targetId(target))
    state.inflight++
    return new Lease(target, state, this)
  }

  /** A lease's failure (see Lease.failed). */
  targetFailed(target: Target, state: TargetState, error: GatewayError) {
    if (error.status === 429) {
      // The provider asked us to slow down: rest that key, not the whole deployment.
      const wait = retryAfterMs(error.headers['retry-after'])
      if (wait > 0) this.keyCooldowns.set(keyId(target.provider), this.now() + Math.min(wait, MAX_COOLDOWN_MS))
      return
    }
    if (error.code === 'upstream_auth_failed') {
      // That key is refused (revoked, mistyped): rest it, so the provider's other keys serve; the deployment is fine.
      if ((target.provider.apiKeys?.length ?? 0) > 1) this.keyCooldowns.set(keyId(target.provider), this.now() + REFUSED_KEY_REST_MS)
      return
    }
    if (error.status < 500) return // the request's fault, not the target's
    state.failures++
    if (state.failures >= EJECT_AFTER) {
      state.ejections++
      state.ejectedUntil = this.now() + Math.min(MAX_EJECTION_MS, EJECTION_MS * 2 ** (state.ejections - 1))
      this.onEject(target)
      // Back on probation when it returns: one more failure ejects it again, for longer.
      state.failures = EJECT_AFTER - 1
    }
  }

  /** A target with the provider's next key in turn (several keys share the load), skipping rested ones. */
  private target(p: ProviderConfig, t: ModelTarget): Target {
    const price = t.price ?? listPrice(p.type, t.model)
    const keys = p.apiKeys ?? []
    if (keys.length < 2) return { provider: p, model: t.model, price }
    const now = this.now()
    const start = this.keyCursors.get(p.id) ?? 0
    let index = start
    for (let i = 0; i < keys.length; i++) {
      const candidate = (start + i) % keys.length
      if ((this.keyCooldowns.get(`${p.id}#${candidate}`) ?? 0) <= now) {
        index = candidate
        break
      }
    }
    this.keyCursors.set(p.id, index + 1)
    return { provider: { ...p, apiKey: keys[index]!, keyIndex: index }, model: t.model, price }
  }

  /** The same target with the provider's next usable key (the same target when it has one key). */
  withNextKey(target: Target): Target {
    const p = target.provider
    if ((p.apiKeys?.length ?? 0) < 2) return target
    return this.target(p, { provider: p.id, model: target.model, weight: 1, priority: 0, price: target.price ?? undefined })
  }

  private state(id: string): TargetState {
    let state = this.targets.get(id)
    if (!state) this.targets.set(id, (state = new TargetState()))
    return state
  }

  /** For tests and /metrics: whether a target is ejected now. */
  isEjected(providerId: string, model: string): boolean {
    return (this.targets.get(`${providerId}/${model}`)?.ejectedUntil ?? 0) > this.now()
  }
}

type Entry = { state: TargetState; key: number }
const ORDER: Record<RoutingStrategy, (a: Entry, b: Entry) => number> = {
  weighted: (a, b) => b.key - a.key,
  'least-busy': (a, b) => a.state.inflight - b.state.inflight || b.key - a.key,
  'lowest-latency': (a, b) => (a.state.latencyMs ?? -1) - (b.state.latencyMs ?? -1) || b.key - a.key,
}

const keyId = (p: ProviderConfig) => `${p.id}#${p.keyIndex ?? 0}`
/** A deployment: the provider and its model, whichever key an attempt uses. */
export const targetId = (t: Target) => `${t.provider.id}/${t.model}`

/** `Retry-After` as seconds or an HTTP date, in ms; 0 when absent or unreadable. */
export function retryAfterMs(value: string | undefined): number {
  if (!value) return 0
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(value)
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : 0
}

/** Full jitter: a random wait in [0, min(cap, base · 2^retry)). */
export const backoffMs = (retry: number) => Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** retry)
