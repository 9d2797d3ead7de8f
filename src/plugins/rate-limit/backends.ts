import type Redis from 'ioredis'
import { Gcra, type Check, type Decision } from './gcra.ts'

/** Where limit state lives: this process, or Redis shared by every instance. */
export interface LimitsBackend {
  /** All or nothing over the checks. */
  admit(checks: Check[]): Promise<Decision[]>
  /** Takes (units > 0) or gives back (units < 0) after the fact. */
  adjust(key: string, limit: number, periodMs: number, units: number): Promise<void>
  /** Takes one of `max` concurrency slots under `lease`; false when all are taken. */
  acquire(key: string, max: number, lease: string): Promise<boolean>
  release(key: string, lease: string): Promise<void>
}

export class LocalLimits implements LimitsBackend {
  readonly gcra = new Gcra()
  private readonly slots = new Map<string, Set<string>>()

  async admit(checks: Check[]) {
    return this.gcra.admit(checks)
  }

  async adjust(key: string, limit: number, periodMs: number, units: number) {
    this.gcra.adjust(key, limit, periodMs, units)
  }

  async acquire(key: string, max: number, lease: string) {
    const held = this.slots.get(key) ?? new Set<string>()
    if (held.size >= max) return false
    held.add(lease)
    this.slots.set(key, held)
    return true
  }

  async release(key: string, lease: string) {
    const held = this.slots.get(key)
    if (!held) return
    held.delete(lease)
    if (held.size === 0) this.slots.delete(key)
  }
}

/**
 * GCRA on Redis time, every check of a request in one atomic script: evaluate all, commit only if all pass.
 * Keys hold the TAT in ms and expire when the bucket would be full again, so idle keys leave no residue.
 */
const ADMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out, nexts, allowed = {}, {}, 1
for i, key in ipairs(KEYS) do
  local limit, period, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local nxt = tat + interval * cost
  local horizon = nxt - now
  if horizon > period then
    allowed = 0
    out[#out+1] = 0
    out[#out+1] = math.max(0, math.floor((period - (tat - now)) / interval))
    out[#out+1] = math.ceil(tat - now)
    out[#out+1] = math.ceil(horizon - period)
  else
    nexts[i] = nxt
    out[#out+1] = 1
    out[#out+1] = math.floor((period - horizon) / interval)
    out[#out+1] = math.ceil(horizon)
    out[#out+1] = 0
  end
end
if allowed == 1 then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, tostring(nexts[i]), 'PX', math.max(1, math.ceil(nexts[i] - now)))
  end
end
return out`

const ADJUST = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, period, units = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = tat + (period / limit) * units
if tat <= now then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - now)) end
return 1`

/** Leases: a sorted set of lease ids scored by expiry; expired ones (a crashed instance) are swept first. */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1`

const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1`

/** A crashed instance's slots come back after this; live leases are renewed well before it. */
export const LEASE_TTL_MS = 30_000

type Scripted = Redis & {
  conduitAdmit(numKeys: number, ...args: (string | number)[]): Promise<number[]>
  conduitAdjust(key: string, ...args: (string | number)[]): Promise<number>
  conduitAcquire(key: string, ...args: (string | number)[]): Promise<number>
  conduitRenew(key: string, ...args: (string | number)[]): Promise<number>
}

export class RedisLimits implements LimitsBackend {
  private readonly redis: Scripted
  /** Leases this process holds, renewed together on one timer. */
  private readonly held = new Map<string, { key: string; lease: string }>()
  private readonly renewer: Timer

  constructor(redis: Redis) {
    redis.defineCommand('conduitAdmit', { lua: ADMIT })
    redis.defineCommand('conduitAdjust', { numberOfKeys: 1, lua: ADJUST })
    redis.defineCommand('conduitAcquire', { numberOfKeys: 1, lua: ACQUIRE })
    redis.defineCommand('conduitRenew', { numberOfKeys: 1, lua: RENEW })
    this.redis = redis as Scripted
    this.renewer = setInterval(() => void this.renew(), LEASE_TTL_MS / 3)
    this.renewer.unref()
  }

  async admit(checks: Check[]): Promise<Decision[]> {
    const args = checks.flatMap((c) => [c.limit, c.periodMs, c.cost])
    const out = await this.redis.conduitAdmit(checks.length, ...checks.map((c) => c.key), ...args)
    return checks.map((_, i) => ({
      allowed: out[4 * i] === 1,
      remaining: out[4 * i + 1]!,
      resetMs: out[4 * i + 2]!,
      retryAfterMs: out[4 * i + 3]!,
    }))
  }

  async adjust(key: string, limit: number, periodMs: number, units: number) {
    if (units !== 0) await this.redis.conduitAdjust(key, limit, periodMs, units)
  }

  async acquire(key: string, max: number, lease: string) {
    const ok = (await this.redis.conduitAcquire(key, max, lease, LEASE_TTL_MS)) === 1
    if (ok) this.held.set(lease, { key, lease })
    return ok
  }

  async release(key: string, lease: string) {
    this.held.delete(lease)
    await this.redis.zrem(key, lease)
  }

  /** One key per call: leases of different keys may live on different Cluster slots. */
  private async renew() {
    await Promise.all([...this.held.values()].map((l) => this.redis.conduitRenew(l.key, LEASE_TTL_MS, l.lease).catch(() => {})))
  }

  close() {
    clearInterval(this.renewer)
  }
}
