import { GatewayError, definePlugin, t, type Budget, type FinishedRequest, type Price, type RequestContext } from '../../plugin-sdk/index.ts'
import { LocalAccounts, RedisAccounts, accountFor, type Account, type Accounts, type Reservation } from './accounts.ts'

/** How long Redis is bypassed after it failed; the first request after that tries it again. */
const RETRY_SHARED_MS = 1_000
/** Completion tokens reserved for a request that sets no max_tokens. */
export const DEFAULT_COMPLETION_RESERVE = 4096

const encoder = new TextEncoder()
const usd = (micros: number) => (micros / 1_000_000).toFixed(6)

/**
 * The most a request can cost: every prompt byte a token (byte-level tokenizers never pack fewer than one
 * byte into a token, so this bounds text prompts from above) plus every completion token it may produce, at
 * the dearest target's prices. The excess is returned when the request settles to its actual cost.
 */
export function worstCaseMicros(ctx: RequestContext, price: Price | null | undefined): number {
  if (!price) return 0
  const body = ctx.body ?? {}
  const prompt = encoder.encode(JSON.stringify(body.messages ?? body.prompt ?? body.input ?? '')).length
  const completion =
    ctx.endpoint === 'embeddings'
      ? 0
      : (body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_COMPLETION_RESERVE) * Math.max(1, body.n ?? 1, body.best_of ?? 1)
  return Math.ceil(prompt * price.input + completion * price.output)
}

interface Hold {
  account: Account
  accounts: Accounts
  reserved: number
}

/**
 * Per-key spending caps (`budget: { usd, period }`). Before a request goes upstream its worst-case cost is
 * reserved against what is left; when it ends, the reservation is settled to the actual cost (an aborted
 * stream pays for its prompt and what it received). Exact across instances with Redis; state lost with a
 * restart is rebuilt from the spend ledger. When Redis fails, the budget is kept by this instance alone
 * (marked `x-conduit-budget-degraded`) or, with `failClosed`, the request is refused with a 503.
 */
export default definePlugin({
  name: 'budget',
  version: '1.0.0',
  apiVersion: 1,
  // After the rate limits: a request they refuse reserves no money.
  priority: 800,
  configSchema: t.Object({
    failClosed: t.Boolean({ default: false }),
    /**
     * Money gets more patience than rate limits: Redis's short shared timeout also trips on a busy event
     * loop, and every budget check that falls back to this instance alone can overspend.
     */
    redisTimeoutMs: t.Integer({ minimum: 1, default: 500 }),
  }),
  setup(api) {
    const local = new LocalAccounts()
    const redis = api.redis?.duplicate({ commandTimeout: api.config.redisTimeoutMs })
    redis?.on('error', () => {}) // outages are reported once by the shared connection
    const shared = redis ? new RedisAccounts(redis, api.config.redisTimeoutMs) : null
    const holds = new WeakMap<RequestContext, Hold>()
    /** After a Redis failure, requests skip it for a while instead of each paying the timeout again. */
    let sharedDownUntil = 0
    /** Ledger sums in progress, shared by concurrent first requests of an account. */
    const loading = new Map<string, Promise<number>>()
    api.onClose(() => {
      shared?.close()
      redis?.disconnect()
    })

    const ledgerSpend = (account: Account) => {
      const id = `${account.keyId}:${account.period}`
      let sum = loading.get(id)
      if (!sum) {
        sum = api.store.spentMicros(account.keyId, account.since).finally(() => loading.delete(id))
        loading.set(id, sum)
      }
      return sum
    }

    const reserve = async (accounts: Accounts, account: Account, limit: number, cost: number, hold: string) => {
      const first = await accounts.reserve(account, limit, cost, hold)
      if (first) return first
      await accounts.load(account, await ledgerSpend(account))
      return (await accounts.reserve(account, limit, cost, hold))!
    }

    const admit = async (ctx: RequestContext, budget: Budget) => {
      const account = accountFor(ctx.principal!.keyId, budget)
      const limit = Math.round(budget.usd * 1_000_000)
      const cost = worstCaseMicros(ctx, ctx.model?.maxPrice)
      let accounts: Accounts = local
      let r: Reservation | null = null
      if (shared && performance.now() >= sharedDownUntil) {
        try {
          r = await reserve(shared, account, limit, cost, ctx.id)
          accounts = shared
        } catch (error) {
          api.log.warn({ err: error }, 'budget store unavailable')
          sharedDownUntil = performance.now() + RETRY_SHARED_MS
        }
      }
      if (!r) {
        if (shared && api.config.failClosed) {
          throw new GatewayError(503, 'The key has a budget that cannot be checked right now; the request was not sent.', { code: 'budget_unavailable' })
        }
        if (shared) ctx.setHeader('x-conduit-budget-degraded', 'true')
        r = await reserve(local, account, limit, cost, ctx.id)
      }
      if (!r.ok) {
        const worst = cost > r.left ? ` This request could cost up to $${usd(cost)}.` : ''
        const period = budget.period === 'total' ? '' : `${budget.period} `
        throw new GatewayError(429, `This key has reached its ${period}budget of $${budget.usd} ($${usd(r.left)} left).${worst}`, {
          type: 'insufficient_quota',
          code: 'insufficient_quota',
          // The official SDKs retry a 429 twice unless told not to; waiting does not refill a budget.
          headers: { 'x-should-retry': 'false' },
        })
      }
      holds.set(ctx, { account, accounts, reserved: cost })
      ctx.setHeader('x-conduit-budget-remaining-usd', usd(r.left))
    }

    return {
      onAccess(ctx) {
        const budget = ctx.principal?.limits?.budget
        if (budget && ctx.body) return admit(ctx, budget)
      },
      async onLog(f: FinishedRequest) {
        const hold = holds.get(f.ctx)
        if (!hold) return
        holds.delete(f.ctx)
        await hold.accounts.settle(hold.account, f.ctx.id, hold.reserved, f.costMicros).catch((err) => {
          // The hold expires by itself; the spend is in the ledger and counted again after the next rebuild.
          api.log.warn({ err }, 'budget settlement failed')
        })
      },
    }
  },
})
