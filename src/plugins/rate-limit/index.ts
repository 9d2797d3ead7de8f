import { GatewayError, commandTimeoutOf, definePlugin, estimatePromptTokens, requestedImages, t, type RateLimits, type RequestContext } from '../../plugin-sdk/index.ts'
import {
  LEASE_TTL_MS,
  endUser,
  governance,
  keyScope,
  userScope,
  type Admission,
  type RateClaim,
  type RuleName,
  type Scope,
  type ScopeClaim,
} from '../admission/index.ts'

const MINUTE = 60_000
const DAY = 86_400_000
/** Completion tokens reserved when a request sets no max_tokens. */
const DEFAULT_COMPLETION_RESERVE = 256

const RULES: { name: RuleName; periodMs: number; unit: 'requests' | 'tokens' | 'images'; label: string }[] = [
  { name: 'rpm', periodMs: MINUTE, unit: 'requests', label: 'requests per minute' },
  { name: 'rpd', periodMs: DAY, unit: 'requests', label: 'requests per day' },
  { name: 'tpm', periodMs: MINUTE, unit: 'tokens', label: 'tokens per minute' },
  // Image requests only: each takes its `n`, settled to the images it made.
  { name: 'ipm', periodMs: MINUTE, unit: 'images', label: 'images per minute' },
]
const LABELS = Object.fromEntries(RULES.map((r) => [r.name, r.label]))

/**
 * A duration as OpenAI writes its reset headers (Go's format): `6ms`, `1.5s`, `6m0s`, `23h59m59.996s`. Clients parse
 * it so; `86399.996s` read as minutes and hours by none of them.
 */
export function resetDuration(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms))
  if (whole < 1000) return whole === 0 ? '0s' : `${whole}ms`
  const h = Math.floor(whole / 3_600_000)
  const m = Math.floor((whole % 3_600_000) / 60_000)
  const s = `${(whole % 60_000) / 1000}s`
  return h > 0 ? `${h}h${m}m${s}` : m > 0 ? `${m}m${s}` : s
}
const hasRateRules = (l: RateLimits | null | undefined): l is RateLimits => !!l && !!(l.rpm || l.rpd || l.tpm || l.max_parallel || l.ipm)
const IMAGE_OPERATIONS = new Set(['images', 'image_edits', 'image_variations'])

/** The images a request asks for; more than the limit can ever admit is a 400 (a 429 would only bring retries). */
function imageReservation(body: Record<string, any>, limit: number, scope: Scope): number | GatewayError {
  const n = requestedImages(body)
  if (n <= limit) return n
  return new GatewayError(400, `n ${n} exceeds the limit of ${limit} images per minute of ${scope.label}: such a request can never be admitted.`, {
    code: 'request_exceeds_image_limit',
    param: 'n',
  })
}

/**
 * Prompt estimate plus the completion the request may produce (per choice, times `n`). A request that could
 * never fit the limit, even with the bucket full, gets a 400 instead: a 429 would send the client into retries
 * that never succeed. Only our own default reserve is capped to the limit, since the client did not ask for it.
 */
function tokenReservation(body: Record<string, any>, prompt: number, limit: number, scope: Scope): number | GatewayError {
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
 * Rate limits of virtual keys, of each end user of a key (`user_limits`, by the request's `user`) and of virtual
 * models: requests per minute and per day, tokens per minute (GCRA; tokens reserved at admission and settled to
 * the reported usage when the request ends) and requests in flight (leases). Admitted together with the budget
 * (src/plugins/admission): in one process the state is local; with Redis (REDIS_URL) every rule of every scope is
 * one atomic script on Redis time, exact across instances. If Redis fails (not merely this process being busy),
 * each process keeps its share of every limit (1/`instances` of it) on its own (fail open, counted in
 * `conduit_rate_limit_fail_open_total`) unless `failClosed`. With `shadow`, nothing is refused: what enforcement
 * would refuse is counted and marked, and takes nothing, as it would not.
 */
/** What one rule has left, for its `x-ratelimit-*` headers. */
interface RateState {
  limit: number
  remaining: number
  resetMs: number
}

/** `x-ratelimit-{limit,remaining,reset}-<unit>` for one rule per unit (a later one of the same unit wins). */
function rateHeaders(rules: Iterable<readonly [string, RateState]>): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const [unit, { limit, remaining, resetMs }] of rules) {
    headers[`x-ratelimit-limit-${unit}`] = String(limit)
    headers[`x-ratelimit-remaining-${unit}`] = String(remaining)
    headers[`x-ratelimit-reset-${unit}`] = resetDuration(resetMs)
  }
  return headers
}

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
    const { shadow } = api.config
    if (shadow && api.config.failClosed) throw new Error("The rate-limit plugin's 'shadow' refuses nothing: it cannot be 'failClosed'.")
    const wouldLimit = api.counter({
      name: 'conduit_rate_limit_would_limit_total',
      help: 'Requests the rate limits would have refused, let through in shadow mode, by limit (rpm, rpd, tpm, max_parallel) and scope (key, user, model).',
      labelNames: ['rule', 'scope'],
    })
    const failOpen = api.counter({
      name: 'conduit_rate_limit_fail_open_total',
      help: "Requests whose rate limits were decided by this instance alone (its share) because Redis errored, did not answer in time, or had failed within the last second (reason: error, timeout, bypass).",
      labelNames: ['reason'],
    })
    const markShadow = (ctx: RequestContext, rule: string, scope: Scope['kind']) => {
      wouldLimit.inc({ rule, scope })
      ctx.setHeader('x-ratelimit-shadow', 'would-limit')
    }

    /** The rules of one scope; a rule the request can never fit refuses it (400) before anything is asked. */
    /** `prompt`: the prompt's estimate, computed once per request for every scope's token rule. */
    const claimIn = (ctx: RequestContext, prompt: () => number, scope: Scope, limits: RateLimits, slots: boolean): ScopeClaim | { never: GatewayError; rule: RuleName; scope: Scope } => {
      const rates: RateClaim[] = []
      for (const rule of RULES) {
        const limit = limits[rule.name]
        if (!limit) continue
        // A realtime session's start counts as a request (rpm, rpd, a max_parallel slot while it is open); its
        // tokens are counted per response (onSessionEvent), at worst the whole limit, settled to the reported usage.
        if (ctx.operation === 'realtime' && (rule.unit === 'tokens') !== !!ctx.session) continue
        if (ctx.session) {
          rates.push({ rule: rule.name, unit: rule.unit, limit, periodMs: rule.periodMs, cost: Math.min(limit, ctx.session.worstCase.total_tokens) })
          continue
        }
        if (rule.unit === 'images' && !IMAGE_OPERATIONS.has(ctx.operation ?? '')) continue
        const cost = rule.unit === 'tokens' ? tokenReservation(ctx.body!, prompt(), limit, scope) : rule.unit === 'images' ? imageReservation(ctx.body!, limit, scope) : 1
        if (cost instanceof GatewayError) return { never: cost, rule: rule.name, scope }
        rates.push({ rule: rule.name, unit: rule.unit, limit, periodMs: rule.periodMs, cost })
      }
      return { scope, rates, slots: slots && !ctx.session ? (limits.max_parallel ?? null) : null, budget: null }
    }

    const gov = governance(api)
    gov.join({
      limits: {
        failClosed: api.config.failClosed,
        shadow,
        instances: api.config.instances,
        leaseMs: api.config.slotLeaseMs,
        timeoutMs: (api.redis && commandTimeoutOf(api.redis)) ?? 50,
        failedOpen: (reason) => failOpen.inc({ reason }),
        claim(ctx) {
          const keyLimits = ctx.principal?.limits
          const userLimits = keyLimits?.user_limits
          const model = ctx.model
          if (!ctx.body || (!keyLimits && !model?.limits)) return null
          const asked: ReturnType<typeof claimIn>[] = []
          const keyId = ctx.principal!.keyId
          let estimate: number | undefined
          const prompt = () => (estimate ??= estimatePromptTokens(ctx.body!))
          if (hasRateRules(keyLimits)) asked.push(claimIn(ctx, prompt, keyScope(keyId), keyLimits, true))
          if (hasRateRules(userLimits)) {
            const user = endUser(ctx)
            if (user) asked.push(claimIn(ctx, prompt, userScope(keyId, user), userLimits, false))
          }
          if (hasRateRules(model?.limits)) {
            const scope = { kind: 'model', tag: `model:${model.id}`, key: `conduit:gov:{model:${model.id}}:m`, label: `the model '${model.name}'`, keyId } as const
            asked.push(claimIn(ctx, prompt, scope, model.limits, true))
          }
          if (asked.length === 0) return null
          const never = asked.find((a) => 'never' in a)
          if (never && 'never' in never) {
            if (!shadow) throw never.never
            markShadow(ctx, never.rule, never.scope.kind)
            return []
          }
          return asked as ScopeClaim[]
        },
      },
    })
    api.onClose(() => gov.leave())

    /**
     * The 429 of the first rule that refused, or headers of the rule that binds first for each unit (the fewest
     * remaining, whichever scope it is of: a user's rpm 3 under a key's rpm 10 is what that user's client must see).
     */
    const present = (ctx: RequestContext, admission: Admission) => {
      if (admission.unavailable.limits) {
        throw new GatewayError(503, 'Rate limits cannot be checked right now; the request was not sent.', { code: 'rate_limit_unavailable', headers: { 'retry-after': '1' } })
      }
      if (admission.unavailable.budget) return // the budget plugin refuses it
      const { claims, outcome } = admission
      if (admission.via === 'degraded' && claims.some((c) => c.rates.length > 0 || c.slots !== null)) ctx.setHeader('x-ratelimit-degraded', 'true')
      const binding = new Map<string, RateState>()
      for (let i = 0; i < claims.length; i++) {
        const claim = claims[i]!
        if (claim.rates.length === 0 && claim.slots === null) continue
        const decided = outcome.scopes[i]!
        claim.rates.forEach((rate, j) => {
          const d = decided.rates[j]!
          const tightest = binding.get(rate.unit)
          if (!tightest || d.remaining < tightest.remaining) binding.set(rate.unit, { limit: rate.limit, remaining: d.remaining, resetMs: d.resetMs })
        })
        const refused = claim.rates.findIndex((_, j) => !decided.rates[j]!.allowed)
        if (refused !== -1 || decided.slotTaken === false) {
          const rule = refused !== -1 ? claim.rates[refused]!.rule : 'max_parallel'
          if (shadow) return markShadow(ctx, rule, claim.scope.kind)
          if (refused === -1) {
            const message = `${claim.scope.label[0]!.toUpperCase()}${claim.scope.label.slice(1)} already has ${claim.slots} requests in flight (max_parallel).`
            throw new GatewayError(429, message, { code: 'rate_limit_exceeded', headers: { 'retry-after': '1' } })
          }
          const { limit } = claim.rates[refused]!
          const retryAfter = Math.max(1, Math.ceil(decided.rates[refused]!.retryAfterMs / 1000))
          const message = `Rate limit reached for ${LABELS[rule]} (${rule}) on ${claim.scope.label}: limit ${limit}. Try again in ${retryAfter} s.`
          // The refusing scope's own headers, whatever binds elsewhere.
          const scope = claim.rates.map((rate, j) => [rate.unit, { limit: rate.limit, ...decided.rates[j]! }] as const)
          throw new GatewayError(429, message, { code: 'rate_limit_exceeded', headers: { ...rateHeaders(scope), 'retry-after': String(retryAfter) } })
        }
      }
      const headers = rateHeaders(binding)
      for (const name in headers) ctx.setHeader(name, headers[name]!)
    }

    /**
     * One admission for a request (onAccess) and for each response of a realtime session (onSessionEvent), settled
     * by onLog. Requests without limits cost a few property checks, no promise.
     */
    const admit = (ctx: RequestContext) => {
      const admission = gov.admission(ctx)
      if (admission instanceof Promise) return admission.then((a) => present(ctx, a))
      if (admission) present(ctx, admission)
    }

    return {
      onAccess: admit,
      onSessionEvent: admit,
      onLog(f) {
        gov.finish(f)
      },
    }
  },
})
