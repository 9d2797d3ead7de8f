import { GatewayError, definePlugin, estimatePromptTokens, t, type FinishedRequest, type RateLimits, type RequestContext } from '../../plugin-sdk/index.ts'
import { LEASE_TTL_MS, LocalLimits, RedisLimits, type Adjustment, type LimitsBackend, type Slot } from './backends.ts'
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
  /** `{…}` is a Redis Cluster hash tag: every key of one scope lives on one slot. */
  tag: string
  /** For messages: "this key", "the model 'x'". */
  label: string
  limits: RateLimits
}

/** What an admitted request holds in one scope until it ends (settlement goes where the reservation went). */
interface Held {
  scope: Scope
  /** The rate checks it passed, with what each took. */
  taken: RuleCheck[]
  slot: Slot | null
  backend: LimitsBackend
}

const seconds = (ms: number) => `${Math.max(0, ms / 1000).toFixed(3).replace(/\.?0+$/, '')}s`
const stateKey = (scope: Scope, what: string) => `conduit:rl:{${scope.tag}}:${what}`

/**
 * Prompt estimate plus the completion the request may produce (per choice, times `n`). A request that could
 * never fit the limit, even with the bucket full, is a 400: a 429 would send the client into retries that
 * never succeed. Only our own default reserve is capped to the limit, since the client did not ask for it.
 */
function tokenReservation(body: Record<string, any>, limit: number, scope: Scope): number {
  const prompt = estimatePromptTokens(body)
  if (prompt > limit) {
    throw new GatewayError(400, `The prompt alone (about ${prompt} tokens) exceeds the limit of ${limit} tokens per minute of ${scope.label}.`, {
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
    throw new GatewayError(400, `${message} of ${scope.label}: such a request can never be admitted.`, { code: 'request_exceeds_token_limit', param })
  }
  return prompt + asked * choices
}

/**
 * Rate limits of virtual keys and of virtual models: requests per minute and per day, tokens per minute
 * (GCRA; tokens reserved at admission and settled to the reported usage when the request ends) and requests
 * in flight (leases). In one process the state is local; with Redis (REDIS_URL) every admission is one
 * atomic script per scope on Redis time, exact across instances. If Redis fails, limits fall back to this
 * process's own state (fail open) unless `failClosed`.
 */
export default definePlugin({
  name: 'rate-limit',
  version: '1.0.0',
  apiVersion: 1,
  priority: 900,
  configSchema: t.Object({ failClosed: t.Boolean({ default: false }), slotLeaseMs: t.Integer({ minimum: 1_000, default: LEASE_TTL_MS }) }),
  setup(api) {
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

    /** Runs against Redis when there is one; on failure, locally (marked degraded) or 503 when failing closed. */
    const withBackend = async <T>(ctx: RequestContext, work: (backend: LimitsBackend) => Promise<T>): Promise<[T, LimitsBackend]> => {
      if (!shared) return [await work(local), local]
      if (performance.now() >= sharedDownUntil) {
        try {
          return [await work(shared), shared]
        } catch (error) {
          api.log.warn({ err: error }, 'rate-limit store unavailable')
          sharedDownUntil = performance.now() + RETRY_SHARED_MS
        }
      }
      if (api.config.failClosed) {
        throw new GatewayError(503, 'Rate limits cannot be checked right now; the request was not sent.', { code: 'rate_limit_unavailable' })
      }
      ctx.setHeader('x-ratelimit-degraded', 'true')
      return [await work(local), local]
    }

    /** Admits the request in one scope (one backend call) or throws a 429; returns its x-ratelimit-* headers. */
    const admitIn = async (ctx: RequestContext, scope: Scope, body: Record<string, any>, holding: Held[]) => {
      const { limits } = scope
      const checks: RuleCheck[] = []
      for (const rule of RULES) {
        const limit = limits[rule.name]
        if (!limit) continue
        const cost = rule.unit === 'tokens' ? tokenReservation(body, limit, scope) : 1
        checks.push({ key: stateKey(scope, rule.name), limit, periodMs: rule.periodMs, cost, rule })
      }
      const slot = limits.max_parallel ? { key: stateKey(scope, 'slots'), max: limits.max_parallel, id: ctx.id } : null
      const [{ decisions, slotTaken }, backend] = await withBackend(ctx, (b) => b.admit(checks, slot))

      const headers: Record<string, string> = {}
      let refused = -1
      decisions.forEach((d, i) => {
        const { unit } = checks[i]!.rule
        headers[`x-ratelimit-limit-${unit}`] = String(checks[i]!.limit)
        headers[`x-ratelimit-remaining-${unit}`] = String(d.remaining)
        headers[`x-ratelimit-reset-${unit}`] = seconds(d.resetMs)
        if (!d.allowed && refused === -1) refused = i
      })
      if (refused !== -1) {
        const { rule, limit } = checks[refused]!
        const retryAfter = Math.max(1, Math.ceil(decisions[refused]!.retryAfterMs / 1000))
        throw new GatewayError(429, `Rate limit reached for ${rule.label} (${rule.name}) on ${scope.label}: limit ${limit}. Try again in ${retryAfter} s.`, {
          code: 'rate_limit_exceeded',
          headers: { ...headers, 'retry-after': String(retryAfter) },
        })
      }
      if (!slotTaken) {
        throw new GatewayError(429, `${scope.label[0]!.toUpperCase()}${scope.label.slice(1)} already has ${limits.max_parallel} requests in flight (max_parallel).`, {
          code: 'rate_limit_exceeded',
          headers: { 'retry-after': '1' },
        })
      }
      holding.push({ scope, taken: checks, slot, backend })
      return checks.length > 0 ? headers : null
    }

    const admit = async (ctx: RequestContext, body: Record<string, any>) => {
      const scopes: Scope[] = []
      const keyLimits = ctx.principal?.limits
      if (keyLimits) scopes.push({ tag: ctx.principal!.keyId, label: 'this key', limits: keyLimits })
      const model = ctx.model
      if (model?.limits) scopes.push({ tag: `model:${model.id}`, label: `the model '${model.name}'`, limits: model.limits })
      const holding: Held[] = []
      let headers: Record<string, string> | null = null
      try {
        for (const scope of scopes) {
          const own = await admitIn(ctx, scope, body, holding)
          headers ??= own
        }
      } catch (error) {
        // Refused by a later check or scope: a refused request takes nothing, so give back what it took.
        await settle(holding, null)
        throw error
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
