import type { Budget } from '../../plugin-sdk/index.ts'

/** One budget's period: where its spend is counted from and how long its shared state lives. */
export interface Account {
  /** `total`, `d2026-11-25` or `m2026-11` (UTC). */
  period: string
  /** Start of the period, epoch ms: where the ledger is summed from. */
  since: number
  /** Seconds the shared state lives: past its period, or a week for `total` (then rebuilt from the ledger). */
  ttlSec: number
}

/** The current period of each kind, reused until it ends: working it out takes a few date conversions. */
const current = new Map<Budget['period'], { account: Account; until: number }>()

export function currentAccount(budget: Budget, now = Date.now()): Account {
  const known = current.get(budget.period)
  if (known && now >= known.account.since && now < known.until) return known.account
  const account = accountFor(budget, new Date(now))
  const start = new Date(account.since)
  const until =
    budget.period === 'daily' ? account.since + 86_400_000 : budget.period === 'monthly' ? Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1) : Infinity
  current.set(budget.period, { account, until })
  return account
}

export function accountFor(budget: Budget, now = new Date()): Account {
  const y = now.getUTCFullYear()
  const m = now.getUTCMonth()
  if (budget.period === 'daily') {
    const since = Date.UTC(y, m, now.getUTCDate())
    return { period: `d${new Date(since).toISOString().slice(0, 10)}`, since, ttlSec: 2 * 86_400 }
  }
  if (budget.period === 'monthly') {
    const since = Date.UTC(y, m, 1)
    return { period: `m${new Date(since).toISOString().slice(0, 7)}`, since, ttlSec: 32 * 86_400 }
  }
  return { period: 'total', since: 0, ttlSec: 7 * 86_400 }
}
