import { GatewayError, definePlugin, type FinishedRequest, type KeyLimits, type RequestContext } from '../../plugin-sdk/index.ts'
import { Gcra, type Decision, type Rule } from './gcra.ts'

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

/** What an admitted request holds until it ends. */
interface Held {
  keyId: string
  limits: KeyLimits
  reservedTokens: number
  parallel: boolean
}

const seconds = (ms: number) => `${Math.max(0, ms / 1000).toFixed(3).replace(/\.?0+$/, '')}s`

/** Prompt estimate (~4 characters a token) plus the completion the request may produce. */
function tokenReservation(body: Record<string, any>, limit: number): number {
  const prompt = Math.ceil(JSON.stringify(body.messages ?? body.prompt ?? body.input ?? '').length / 4)
  if (prompt > limit) {
    throw new GatewayError(400, `The prompt alone (about ${prompt} tokens) exceeds this key's limit of ${limit} tokens per minute.`, {
      code: 'request_exceeds_token_limit',
    })
  }
  const completion = body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_COMPLETION_RESERVE
  return Math.min(limit, prompt + completion)
}

/**
 * Per-key limits, exact within one process: requests per minute and per day and tokens per minute (GCRA,
 * tokens reserved at admission and settled to the reported usage when the request ends), and requests in
 * flight. Every limited response carries x-ratelimit-* headers; a refusal is a 429 with a true Retry-After.
 */
export default definePlugin({
  name: 'rate-limit',
  version: '1.0.0',
  apiVersion: 1,
  priority: 900,
  setup(api) {
    const gcra = new Gcra()
    const inFlight = new Map<string, number>()
    const held = new WeakMap<RequestContext, Held>()
    const sweeper = setInterval(() => gcra.sweep(), MINUTE)
    sweeper.unref()
    api.onClose(() => clearInterval(sweeper))

    const release = (h: Held) => {
      if (!h.parallel) return
      const n = (inFlight.get(h.keyId) ?? 1) - 1
      if (n <= 0) inFlight.delete(h.keyId)
      else inFlight.set(h.keyId, n)
    }

    return {
      onAccess(ctx) {
        const limits = ctx.principal?.limits
        if (!limits || !ctx.body) return
        const keyId = ctx.principal!.keyId
        const headers: Record<string, string> = {}
        const admitted: { rule: Rule; key: string; cost: number }[] = []
        const h: Held = { keyId, limits, reservedTokens: 0, parallel: false }

        for (const { name, periodMs, unit, label } of RULES) {
          const limit = limits[name]
          if (!limit) continue
          const cost = unit === 'tokens' ? tokenReservation(ctx.body, limit) : 1
          const rule = { limit, periodMs }
          const key = `${keyId}:${name}`
          const decision: Decision = gcra.admit(key, rule, cost)
          headers[`x-ratelimit-limit-${unit}`] = String(limit)
          headers[`x-ratelimit-remaining-${unit}`] = String(decision.remaining)
          headers[`x-ratelimit-reset-${unit}`] = seconds(decision.resetMs)
          if (!decision.allowed) {
            for (const a of admitted) gcra.refund(a.key, a.rule, a.cost)
            const retryAfter = Math.max(1, Math.ceil(decision.retryAfterMs / 1000))
            throw new GatewayError(429, `Rate limit reached for ${label} (${name}) on this key: limit ${limit}. Try again in ${retryAfter} s.`, {
              code: 'rate_limit_exceeded',
              headers: { ...headers, 'retry-after': String(retryAfter) },
            })
          }
          admitted.push({ rule, key, cost })
          if (unit === 'tokens') h.reservedTokens = cost
        }

        if (limits.max_parallel) {
          const running = inFlight.get(keyId) ?? 0
          if (running >= limits.max_parallel) {
            for (const a of admitted) gcra.refund(a.key, a.rule, a.cost)
            throw new GatewayError(429, `This key already has ${running} requests in flight (max_parallel ${limits.max_parallel}).`, {
              code: 'rate_limit_exceeded',
              headers: { ...headers, 'retry-after': '1' },
            })
          }
          inFlight.set(keyId, running + 1)
          h.parallel = true
        }
        held.set(ctx, h)
        for (const name in headers) ctx.setHeader(name, headers[name]!)
      },

      onLog(f: FinishedRequest) {
        const h = held.get(f.ctx)
        if (!h) return
        held.delete(f.ctx)
        release(h)
        if (h.limits.tpm && h.reservedTokens > 0) {
          // Settle the reservation: refund what was not used (an aborted stream is billed what it produced).
          const used = f.usage?.total_tokens ?? h.reservedTokens
          const key = `${h.keyId}:tpm`
          const rule = { limit: h.limits.tpm, periodMs: MINUTE }
          if (used < h.reservedTokens) gcra.refund(key, rule, h.reservedTokens - used)
          else gcra.charge(key, rule, used - h.reservedTokens)
        }
      },
    }
  },
})
