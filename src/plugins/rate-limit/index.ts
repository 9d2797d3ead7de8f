import { GatewayError, definePlugin, estimatePromptTokens, t, type FinishedRequest, type RateLimits, type RequestContext } from '../../plugin-sdk/index.ts'
import { LEASE_TTL_MS, LocalLimits, RedisLimits, type Adjustment, type Admission, type LimitsBackend, type Slot } from './backends.ts'
import type { Check } from './gcra.ts'

const MINUTE = 60_000
const DAY = 86_400_000
/** How long Redis is bypassed after it failed; the first request after that tries it again. */
const RETRY_SHARED_MS = 1_000
/** Completion tokens reserved when a request sets no max_tokens. */
const DEFAULT_COMPLETION_RESERVE = 256

type RuleName = 'rpm' | 'rpd' | 'tpm'
const RULES: { name: RuleName; periodMs: number; unit: 'requests' | 'tokens'; label: string }[] = [
  { name: 'rpm', periodMs: MINUTE, unit: 'requests', label: 'requests per minute' },
  { name: 'rpd', periodMs: DAY, unit: 'requests', label: 'requests per day' },
  { name: 'tpm', periodMs: MINUTE, unit: 'tokens', label: 'tokens per minute' },
]

type RuleCheck = Check & { rule: (typeof RULES)[number] }

/** Whose limits: a virtual key's own, or a virtual model's shared by all its callers. */
interface Scope {
  kind: 'key' | 'model'
  /** `{…}` is a Redis Cluster hash tag: every key of one scope lives on one slot. */
  tag: string
  /** For messages: "this key", "the model 'x'". */
  label: string
  limits: RateLimits
}

/** What an admitted request holds in one scope until it ends (settlement goes where the reservation went). */
interface Held {
  /** The rate checks it passed, with what each took (this process's share of each limit, when degraded). */
  taken: RuleCheck[]
  slot: Slot | null
  backend: LimitsBackend
}

type Admitted = { headers: Record<string, string> | null }
type Refused = { refusal: GatewayError; rule: RuleName | 'max_parallel'; scope: Scope['kind'] }

const seconds = (ms: number) => `${Math.max(0, ms / 1000).toFixed(3).replace(/\.?0+$/, '')}s`
const stateKey = (scope: Scope, what: string) => `conduit:rl:{${scope.tag}}:${what}`

/**
 * Prompt estimate plus the completion the request may produce (per choice, times `n`). A request that could
 * never fit the limit, even with the bucket full, gets a 400 instead: a 429 would send the client into retries
 * that never succeed. Only our own default reserve is capped to the limit, since the client did not ask for it.
 */
function tokenReservation(body: Record<string, any>, limit: number, scope: Scope): number | GatewayError {
  const prompt = estimatePromptTokens(body)
  if (prompt > limit) {
    return new GatewayError(400, `The prompt alone (about ${prompt} tokens) exceeds the limit of ${limit} tokens per minute of ${scope.label}.`, {
      code: 'request_exceeds_token_limit',
    })
  }
  const choices = body.n ?? 1
  const asked = body.max_completion_tokens ?? body.max_tokens
  if (asked == null) return Math.min(limit, prompt + DEFAULT_COMPLETION_RESERVE * choices)
  if (prompt + asked * choices > limit) {
    const param = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens'
    const times = choices > 1 ? ` × ${choices} choices` : ''
    const message = `${param} ${asked}${times} plus the prompt (about ${prompt} tokens) exceeds the limit of ${limit} tokens per minute`
    const never = `${message} of ${scope.label}: such a request can never be admitted.`
    return new GatewayError(400, never, { code: 'request_exceeds_token_limit', param })
  }
  return prompt + asked * choices
}

/**
 * Rate limits of virtual keys and of virtual models: requests per minute and per day, tokens per minute
 * (GCRA; tokens reserved at admission and settled to the reported usage when the request ends) and requests
 * in flight (leases). In one process the state is local; with Redis (REDIS_URL) every admission is one
 * atomic script per scope on Redis time, exact across instances. If Redis fails, each process keeps its
 * share of every limit (1/`instances` of it) on its own (fail open) unless `failClosed`. With `shadow`,
 * nothing is refused: what enforcement would refuse is counted and marked, and takes nothing, as it would not.
 */
export default definePlugin({
  name: 'rate-limit',
  version: '1.0.0',
  apiVersion: 1,
  priority: 900,
  configSchema: t.Object({
    failClosed: t.Boolean({ default: false }),
    slotLeaseMs: t.Integer({ minimum: 1_000, default: LEASE_TTL_MS }),
    /**
     * Gateway processes sharing the limits through Redis (instances × workers). While Redis is down each keeps
     * ⌈limit / instances⌉ on its own, so together they admit about the limit, not `instances` times it.
     */
    instances: t.Integer({ minimum: 1, default: 1 }),
    /** Dark launch: refuse nothing; count what would be refused (metric, `x-ratelimit-shadow` header). */
    shadow: t.Boolean({ default: false }),
  }),
  setup(api) {
    if (api.config.shadow && api.config.failClosed) throw new Error("The rate-limit plugin's 'shadow' refuses nothing: it cannot be 'failClosed'.")
    const wouldLimit = api.counter({
      name: 'conduit_rate_limit_would_limit_total',
      help: 'Requests the rate limits would have refused, let through in shadow mode, by limit (rpm, rpd, tpm, max_parallel) and scope (key, model).',
      labelNames: ['rule', 'scope'],
    })
    const local = new LocalLimits()
    const shared = api.redis ? new RedisLimits(api.redis, api.config.slotLeaseMs) : null
    const held = new WeakMap<RequestContext, Held[]>()
    const sweeper = setInterval(() => local.gcra.sweep(), MINUTE)
    sweeper.unref()
    api.onClose(() => {
      clearInterval(sweeper)
      shared?.close()
    })

    /** After a Redis failure, requests skip it for a while instead of each paying the command timeout again. */
    let sharedDownUntil = 0

    /** This process's part of a limit while Redis is down: the instances together stay near the limit. */
    const share = (limit: number) => Math.ceil(limit / api.config.instances)

    /**
     * Admits against Redis when there is one. On failure, a 503 when failing closed; otherwise this process's
     * share of each limit, locally (marked degraded). A request that fits the limit but not the share takes the
     * whole share: fail open means nothing the limit admits is refused for good while Redis is away.
     */
    const admitSomewhere = async (ctx: RequestContext, checks: RuleCheck[], slot: Slot | null): Promise<Held & { admission: Admission }> => {
      if (!shared) return { backend: local, taken: checks, slot, admission: await local.admit(checks, slot) }
      if (performance.now() >= sharedDownUntil) {
        try {
          return { backend: shared, taken: checks, slot, admission: await shared.admit(checks, slot) }
        } catch (error) {
          api.log.warn({ err: error }, 'rate-limit store unavailable')
          sharedDownUntil = performance.now() + RETRY_SHARED_MS
        }
      }
      if (api.config.failClosed) {
        throw new GatewayError(503, 'Rate limits cannot be checked right now; the request was not sent.', { code: 'rate_limit_unavailable' })
      }
      ctx.setHeader('x-ratelimit-degraded', 'true')
      const own = checks.map((c) => ({ ...c, limit: share(c.limit), cost: Math.min(c.cost, share(c.limit)) }))
      const ownSlot = slot && { ...slot, max: share(slot.max) }
      return { backend: local, taken: own, slot: ownSlot, admission: await local.admit(own, ownSlot) }
    }

    /**
     * Admits the request in one scope (one backend call) and returns its x-ratelimit-* headers, or returns the
     * refusal (429, or 400 for a request that never fits) and the limit that refused, having taken nothing.
     */
    const admitIn = async (ctx: RequestContext, scope: Scope, body: Record<string, any>, holding: Held[]): Promise<Admitted | Refused> => {
      const { limits } = scope
      const wanted: RuleCheck[] = []
      for (const rule of RULES) {
        const limit = limits[rule.name]
        if (!limit) continue
        const cost = rule.unit === 'tokens' ? tokenReservation(body, limit, scope) : 1
        if (cost instanceof GatewayError) return { refusal: cost, rule: rule.name, scope: scope.kind }
        wanted.push({ key: stateKey(scope, rule.name), limit, periodMs: rule.periodMs, cost, rule })
      }
      const asked = limits.max_parallel ? { key: stateKey(scope, 'slots'), max: limits.max_parallel, id: ctx.id } : null
      // A key whose only limit is a budget: nothing to ask Redis (nor to be degraded about when it is down).
      if (wanted.length === 0 && !asked) return { headers: null }
      const { admission, ...hold } = await admitSomewhere(ctx, wanted, asked)
      const { taken: checks, slot } = hold

      const headers: Record<string, string> = {}
      let refused = -1
      admission.decisions.forEach((d, i) => {
        const { unit } = checks[i]!.rule
        headers[`x-ratelimit-limit-${unit}`] = String(checks[i]!.limit)
        headers[`x-ratelimit-remaining-${unit}`] = String(d.remaining)
        headers[`x-ratelimit-reset-${unit}`] = seconds(d.resetMs)
        if (!d.allowed && refused === -1) refused = i
      })
      if (refused !== -1) {
        const { rule, limit } = checks[refused]!
        const retryAfter = Math.max(1, Math.ceil(admission.decisions[refused]!.retryAfterMs / 1000))
        const message = `Rate limit reached for ${rule.label} (${rule.name}) on ${scope.label}: limit ${limit}. Try again in ${retryAfter} s.`
        const refusal = new GatewayError(429, message, { code: 'rate_limit_exceeded', headers: { ...headers, 'retry-after': String(retryAfter) } })
        return { refusal, rule: rule.name, scope: scope.kind }
      }
      if (!admission.slotTaken) {
        const message = `${scope.label[0]!.toUpperCase()}${scope.label.slice(1)} already has ${slot!.max} requests in flight (max_parallel).`
        const refusal = new GatewayError(429, message, { code: 'rate_limit_exceeded', headers: { 'retry-after': '1' } })
        return { refusal, rule: 'max_parallel', scope: scope.kind }
      }
      holding.push(hold)
      return { headers: checks.length > 0 ? headers : null }
    }

    const admit = async (ctx: RequestContext, body: Record<string, any>) => {
      const scopes: Scope[] = []
      const keyLimits = ctx.principal?.limits
      if (keyLimits) scopes.push({ kind: 'key', tag: ctx.principal!.keyId, label: 'this key', limits: keyLimits })
      const model = ctx.model
      if (model?.limits) scopes.push({ kind: 'model', tag: `model:${model.id}`, label: `the model '${model.name}'`, limits: model.limits })
      const holding: Held[] = []
      let headers: Record<string, string> | null = null
      let refused: Refused | null = null
      try {
        for (const scope of scopes) {
          const outcome = await admitIn(ctx, scope, body, holding)
          if ('refusal' in outcome) {
            refused = outcome
            break
          }
          headers ??= outcome.headers
        }
      } catch (error) {
        // The store failed in a later scope (failing closed): give back what the earlier ones took.
        await settle(holding, null)
        throw error
      }
      if (refused) {
        // Refused by a later check or scope: a refused request takes nothing, so give back what it took.
        await settle(holding, null)
        if (!api.config.shadow) throw refused.refusal
        wouldLimit.inc({ rule: refused.rule, scope: refused.scope })
        ctx.setHeader('x-ratelimit-shadow', 'would-limit')
        return
      }
      // The first scope with rate rules speaks for the response (the key's, when it has any).
      for (const name in headers) ctx.setHeader(name, headers[name]!)
      held.set(ctx, holding)
    }

    /**
     * The request ended (`f`): free its slots and settle its token reservation to what was used (an aborted
     * stream is billed what it produced). Or it was refused after all (`f` null): give back everything.
     * A lost settlement only errs on the safe side: a slot held until its lease expires, units not refunded.
     */
    const settle = async (holding: Held[], f: FinishedRequest | null) => {
      await Promise.all(
        holding.map(({ taken, slot, backend }) => {
          const adjustments: Adjustment[] = []
          for (const check of taken) {
            if (f && check.rule.unit !== 'tokens') continue
            const used = f ? (f.usage?.total_tokens ?? check.cost) : 0
            if (used !== check.cost) adjustments.push({ check, units: used - check.cost })
          }
          return backend.settle(slot, adjustments).catch((err) => api.log.warn({ err }, 'rate-limit settlement failed'))
        }),
      )
    }

    return {
      /** Requests without limits cost two property checks, no promise. */
      onAccess(ctx) {
        if (ctx.body && (ctx.principal?.limits || ctx.model?.limits)) return admit(ctx, ctx.body)
      },

      onLog(f: FinishedRequest) {
        const holding = held.get(f.ctx)
        if (!holding) return
        held.delete(f.ctx)
        return settle(holding, f)
      },
    }
  },
})
