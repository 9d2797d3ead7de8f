import { GatewayError, definePlugin, estimatePromptTokens, t, type FinishedRequest, type KeyLimits, type RequestContext } from '../../plugin-sdk/index.ts'
import { LocalLimits, RedisLimits, type LimitsBackend } from './backends.ts'
import type { Check } from './gcra.ts'

const MINUTE = 60_000
const DAY = 86_400_000
/** Completion tokens reserved when a request sets no max_tokens. */
const DEFAULT_COMPLETION_RESERVE = 256

type RuleName = 'rpm' | 'rpd' | 'tpm'
const RULES: { name: RuleName; periodMs: number; unit: 'requests' | 'tokens'; label: string }[] = [
  { name: 'rpm', periodMs: MINUTE, unit: 'requests', label: 'requests per minute' },
  { name: 'rpd', periodMs: DAY, unit: 'requests', label: 'requests per day' },
  { name: 'tpm', periodMs: MINUTE, unit: 'tokens', label: 'tokens per minute' },
]

/** What an admitted request holds until it ends, and where (settlement goes where the reservation went). */
interface Held {
  keyId: string
  limits: KeyLimits
  reservedTokens: number
  tokens: LimitsBackend | null
  lease: { id: string; backend: LimitsBackend } | null
}

const seconds = (ms: number) => `${Math.max(0, ms / 1000).toFixed(3).replace(/\.?0+$/, '')}s`
/** `{keyId}` is a Redis Cluster hash tag: every key of one virtual key lives on one slot. */
const stateKey = (keyId: string, what: string) => `conduit:rl:{${keyId}}:${what}`

/** Prompt estimate plus the completion the request may produce. */
function tokenReservation(body: Record<string, any>, limit: number): number {
  const prompt = estimatePromptTokens(body)
  if (prompt > limit) {
    throw new GatewayError(400, `The prompt alone (about ${prompt} tokens) exceeds this key's limit of ${limit} tokens per minute.`, {
      code: 'request_exceeds_token_limit',
    })
  }
  const completion = body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_COMPLETION_RESERVE
  return Math.min(limit, prompt + completion)
}

/**
 * Per-key limits: requests per minute and per day, tokens per minute (GCRA; tokens reserved at admission and
 * settled to the reported usage when the request ends) and requests in flight (leases). In one process the
 * state is local; with Redis (REDIS_URL) every admission is one atomic script on Redis time, exact across
 * instances. If Redis fails, limits fall back to this process's own state (fail open) unless `failClosed`.
 */
export default definePlugin({
  name: 'rate-limit',
  version: '1.0.0',
  apiVersion: 1,
  priority: 900,
  configSchema: t.Object({ failClosed: t.Boolean({ default: false }) }),
  setup(api) {
    const local = new LocalLimits()
    const shared = api.redis ? new RedisLimits(api.redis) : null
    const held = new WeakMap<RequestContext, Held>()
    const sweeper = setInterval(() => local.gcra.sweep(), MINUTE)
    sweeper.unref()
    api.onClose(() => {
      clearInterval(sweeper)
      shared?.close()
    })

    /** Runs against Redis when there is one; on failure, locally (marked degraded) or 503 when failing closed. */
    const withBackend = async <T>(ctx: RequestContext, work: (backend: LimitsBackend) => Promise<T>): Promise<[T, LimitsBackend]> => {
      if (shared) {
        try {
          return [await work(shared), shared]
        } catch (error) {
          api.log.warn({ err: error }, 'rate-limit store unavailable')
          if (api.config.failClosed) {
            throw new GatewayError(503, 'Rate limits cannot be checked right now; the request was not sent.', { code: 'rate_limit_unavailable' })
          }
          ctx.setHeader('x-ratelimit-degraded', 'true')
        }
      }
      return [await work(local), local]
    }

    const admit = async (ctx: RequestContext, limits: KeyLimits, body: Record<string, any>) => {
      const keyId = ctx.principal!.keyId
      const checks: (Check & { rule: (typeof RULES)[number] })[] = []
      for (const rule of RULES) {
        const limit = limits[rule.name]
        if (!limit) continue
        const cost = rule.unit === 'tokens' ? tokenReservation(body, limit) : 1
        checks.push({ key: stateKey(keyId, rule.name), limit, periodMs: rule.periodMs, cost, rule })
      }
      const h: Held = { keyId, limits, reservedTokens: 0, tokens: null, lease: null }

      if (checks.length > 0) {
        const [decisions, backend] = await withBackend(ctx, (b) => b.admit(checks))
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
          throw new GatewayError(429, `Rate limit reached for ${rule.label} (${rule.name}) on this key: limit ${limit}. Try again in ${retryAfter} s.`, {
            code: 'rate_limit_exceeded',
            headers: { ...headers, 'retry-after': String(retryAfter) },
          })
        }
        for (const name in headers) ctx.setHeader(name, headers[name]!)
        h.reservedTokens = checks.find((c) => c.rule.unit === 'tokens')?.cost ?? 0
        h.tokens = backend
      }

      if (limits.max_parallel) {
        const [ok, backend] = await withBackend(ctx, (b) => b.acquire(stateKey(keyId, 'leases'), limits.max_parallel!, ctx.id))
        if (!ok) {
          // Refused after the rate checks passed: give the tokens back (the request counts as made).
          if (h.tokens) await h.tokens.adjust(stateKey(keyId, 'tpm'), limits.tpm!, MINUTE, -h.reservedTokens).catch(() => {})
          throw new GatewayError(429, `This key already has ${limits.max_parallel} requests in flight (max_parallel).`, {
            code: 'rate_limit_exceeded',
            headers: { 'retry-after': '1' },
          })
        }
        h.lease = { id: ctx.id, backend }
      }
      held.set(ctx, h)
    }

    // A lost settlement only errs on the safe side: a slot held until its lease expires, tokens not refunded.
    const settle = async (h: Held, f: FinishedRequest) => {
      held.delete(f.ctx)
      const failed = (err: unknown) => api.log.warn({ err }, 'rate-limit settlement failed')
      if (h.lease) await h.lease.backend.release(stateKey(h.keyId, 'leases'), h.lease.id).catch(failed)
      if (h.tokens && h.limits.tpm && h.reservedTokens > 0) {
        // Settle the reservation to what was used (an aborted stream is billed what it produced).
        const used = f.usage?.total_tokens ?? h.reservedTokens
        await h.tokens.adjust(stateKey(h.keyId, 'tpm'), h.limits.tpm, MINUTE, used - h.reservedTokens).catch(failed)
      }
    }

    return {
      /** Keys without limits cost one property check, no promise. */
      onAccess(ctx) {
        const limits = ctx.principal?.limits
        if (limits && ctx.body) return admit(ctx, limits, ctx.body)
      },

      onLog(f: FinishedRequest) {
        const h = held.get(f.ctx)
        if (h) return settle(h, f)
      },
    }
  },
})
