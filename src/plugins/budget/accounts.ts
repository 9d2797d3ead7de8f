import type Redis from 'ioredis'
import { within, type Budget } from '../../plugin-sdk/index.ts'

/** One key's spending in one budget period. */
export interface Account {
  keyId: string
  /** `total`, `d2026-11-25` or `m2026-11` (UTC). */
  period: string
  /** Start of the period, epoch ms: where the ledger is summed from. */
  since: number
  /** Seconds the shared state lives: past its period, or a week for `total` (then rebuilt from the ledger). */
  ttlSec: number
}

export function accountFor(keyId: string, budget: Budget, now = new Date()): Account {
  const y = now.getUTCFullYear()
  const m = now.getUTCMonth()
  if (budget.period === 'daily') {
    const since = Date.UTC(y, m, now.getUTCDate())
    return { keyId, period: `d${new Date(since).toISOString().slice(0, 10)}`, since, ttlSec: 2 * 86_400 }
  }
  if (budget.period === 'monthly') {
    const since = Date.UTC(y, m, 1)
    return { keyId, period: `m${new Date(since).toISOString().slice(0, 7)}`, since, ttlSec: 32 * 86_400 }
  }
  return { keyId, period: 'total', since: 0, ttlSec: 7 * 86_400 }
}

export interface Reservation {
  ok: boolean
  /** Micro-dollars left after this reservation (before it when refused). */
  left: number
}

/**
 * Where budget state lives. `reserve` answers null when the account is not loaded yet: the caller sums the
 * ledger and calls `load`, so state lost with a restart (ours or Redis's) is rebuilt from the ledger.
 */
export interface Accounts {
  reserve(account: Account, limitMicros: number, cost: number, hold: string): Promise<Reservation | null>
  load(account: Account, spentMicros: number): Promise<void>
  /** Releases the hold and records what was actually spent. */
  settle(account: Account, hold: string, reserved: number, spent: number): Promise<void>
}

/** This process only: exact on one instance. */
export class LocalAccounts implements Accounts {
  /** By key: only the current period is kept, so memory stays one entry per active key. */
  private readonly state = new Map<string, { period: string; spent: number; reserved: number }>()

  async reserve(account: Account, limitMicros: number, cost: number): Promise<Reservation | null> {
    const s = this.state.get(account.keyId)
    if (!s || s.period !== account.period) return null
    const left = limitMicros - s.spent - s.reserved
    if (left <= 0 || cost > left) return { ok: false, left: Math.max(0, left) }
    s.reserved += cost
    return { ok: true, left: left - cost }
  }

  async load(account: Account, spentMicros: number) {
    const s = this.state.get(account.keyId)
    if (!s || s.period !== account.period) this.state.set(account.keyId, { period: account.period, spent: spentMicros, reserved: 0 })
  }

  async settle(account: Account, _hold: string, reserved: number, spent: number) {
    const s = this.state.get(account.keyId)
    if (!s || s.period !== account.period) return // the period rolled over: the ledger has the row
    s.reserved -= reserved
    s.spent += spent
  }
}

/*
 * Redis: a hash {spent, reserved} per key and period, and a sorted set of holds (`<request id>:<micros>`)
 * scored by expiry. A hold is renewed while its request runs; one whose instance crashed expires and its
 * reservation returns, so a crash cannot lock money away. Keys carry the `{keyId}` hash tag (one Cluster slot).
 */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

const RESERVE = `${NOW}
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
for _, hold in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(string.match(hold, ':(%d+)$')))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local limit, cost, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local left = limit - tonumber(redis.call('HGET', KEYS[1], 'spent') or 0) - tonumber(redis.call('HGET', KEYS[1], 'reserved') or 0)
if left <= 0 or cost > left then return {0, math.max(0, left)} end
redis.call('HINCRBY', KEYS[1], 'reserved', cost)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[2], ttl)
return {1, left - cost}`

const LOAD = `
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'reserved', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1`

// A missing account (Redis restarted) is left missing: the next reservation rebuilds it from the ledger.
const SETTLE = `
local held = redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  if held == 1 then redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(ARGV[2])) end
  redis.call('HINCRBY', KEYS[1], 'spent', ARGV[3])
end
return 1`

const RENEW = `${NOW}
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1`

/** A crashed instance's holds return after this; live ones are renewed well before. */
export const HOLD_TTL_MS = 30_000

type Scripted = Redis & {
  conduitBudgetReserve(k1: string, k2: string, ...args: (string | number)[]): Promise<[number, number]>
  conduitBudgetLoad(k1: string, ...args: (string | number)[]): Promise<number>
  conduitBudgetSettle(k1: string, k2: string, ...args: (string | number)[]): Promise<number>
  conduitBudgetRenew(k1: string, ...args: (string | number)[]): Promise<number>
}

const accountKey = (a: Account) => `conduit:budget:{${a.keyId}}:${a.period}`
const holdMember = (hold: string, micros: number) => `${hold}:${micros}`

/** Shared by every instance: one atomic script per reservation, on Redis time. */
export class RedisAccounts implements Accounts {
  private readonly redis: Scripted
  private readonly held = new Map<string, { key: string; member: string }>()
  private readonly renewer: Timer

  /** `timeoutMs`: how long a reservation may wait for Redis, counted from its own ask (see `within`). */
  constructor(
    redis: Redis,
    private readonly timeoutMs: number,
  ) {
    redis.defineCommand('conduitBudgetReserve', { numberOfKeys: 2, lua: RESERVE })
    redis.defineCommand('conduitBudgetLoad', { numberOfKeys: 1, lua: LOAD })
    redis.defineCommand('conduitBudgetSettle', { numberOfKeys: 2, lua: SETTLE })
    redis.defineCommand('conduitBudgetRenew', { numberOfKeys: 1, lua: RENEW })
    this.redis = redis as Scripted
    this.renewer = setInterval(() => void this.renew(), HOLD_TTL_MS / 3)
    this.renewer.unref()
  }

  async reserve(account: Account, limitMicros: number, cost: number, hold: string): Promise<Reservation | null> {
    const key = accountKey(account)
    const member = holdMember(hold, cost)
    const reply = this.redis.conduitBudgetReserve(key, `${key}:holds`, limitMicros, cost, member, HOLD_TTL_MS)
    const answer = await within(reply, this.timeoutMs)
    if (!answer) {
      // Given up on: if Redis reserved after all, give the hold back.
      reply.then(([status]) => (status === 1 ? this.settle(account, hold, cost, 0) : undefined)).catch(() => {})
      throw new Error(`Redis did not answer the budget reservation within ${this.timeoutMs} ms`)
    }
    const [status, left] = answer
    if (status === -1) return null
    if (status === 1) this.held.set(hold, { key: `${key}:holds`, member })
    return { ok: status === 1, left }
  }

  async load(account: Account, spentMicros: number) {
    await this.redis.conduitBudgetLoad(accountKey(account), spentMicros, account.ttlSec)
  }

  async settle(account: Account, hold: string, reserved: number, spent: number) {
    this.held.delete(hold)
    const key = accountKey(account)
    await this.redis.conduitBudgetSettle(key, `${key}:holds`, holdMember(hold, reserved), reserved, spent)
  }

  private async renew() {
    await Promise.all([...this.held.values()].map((h) => this.redis.conduitBudgetRenew(h.key, HOLD_TTL_MS, h.member).catch(() => {})))
  }

  close() {
    clearInterval(this.renewer)
  }
}
