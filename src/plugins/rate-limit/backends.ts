import type Redis from 'ioredis'
import { within } from '../../plugin-sdk/index.ts'
import { Gcra, type Check, type Decision } from './gcra.ts'

/** One of `max` concurrency slots, held under a lease id until released (or, in Redis, until it expires). */
export interface Slot {
  key: string
  max: number
  id: string
}

export interface Admission {
  decisions: Decision[]
  /** The slot asked for was taken (true when none was asked). */
  slotTaken: boolean
}

/** A correction after the fact: units > 0 take more, units < 0 give back. */
export interface Adjustment {
  check: Check
  units: number
}

/** Where limit state lives: this process, or Redis shared by every instance. One call per step of a request. */
export interface LimitsBackend {
  /** All or nothing: every rate check and the slot, or nothing at all is taken. */
  admit(checks: Check[], slot: Slot | null): Promise<Admission>
  /** Frees the slot and applies the corrections (token settlement, refunds). */
  settle(slot: Omit<Slot, 'max'> | null, adjustments: Adjustment[]): Promise<void>
}

export class LocalLimits implements LimitsBackend {
  readonly gcra = new Gcra()
  private readonly slots = new Map<string, Set<string>>()

  async admit(checks: Check[], slot: Slot | null): Promise<Admission> {
    const decisions = this.gcra.evaluate(checks)
    const allowed = decisions.every((d) => d.allowed)
    const slotTaken = !slot || !allowed || (this.slots.get(slot.key)?.size ?? 0) < slot.max
    if (allowed && slotTaken) {
      this.gcra.commit(checks, decisions)
      if (slot) {
        const held = this.slots.get(slot.key) ?? new Set<string>()
        held.add(slot.id)
        this.slots.set(slot.key, held)
      }
    }
    return { decisions, slotTaken }
  }

  async settle(slot: Omit<Slot, 'max'> | null, adjustments: Adjustment[]) {
    if (slot) {
      const held = this.slots.get(slot.key)
      held?.delete(slot.id)
      if (held?.size === 0) this.slots.delete(slot.key)
    }
    for (const { check, units } of adjustments) this.gcra.adjust(check.key, check.limit, check.periodMs, units)
  }
}

/** Redis's clock; the GCRA test swaps this line for a synthetic one to run `ADMIT` at chosen instants. */
export const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/**
 * GCRA on Redis time and the concurrency slot in one atomic script: evaluate everything, commit only if all
 * pass; the arithmetic is `evaluate`'s in gcra.ts, step for step. GCRA keys hold the TAT in ms and expire when
 * the bucket would be full again, so idle keys leave no residue; slots are a sorted set of lease ids scored by
 * expiry, and expired ones (a crashed instance) are swept first. KEYS: the rule keys, then the slot key if any. ARGV: rule count, (limit, period, cost) per
 * rule, then max, lease id and TTL of the slot. Returns 4 numbers per rule, then 1 if the slot was taken.
 */
export const ADMIT = `${NOW}
local n = tonumber(ARGV[1])
local out, nexts, allowed = {}, {}, 1
for i = 1, n do
  local limit, period, cost = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local debt = math.max(0, tonumber(redis.call('GET', KEYS[i]) or now) - now)
  local horizon = debt + period * cost / limit
  if horizon > period then
    allowed = 0
    out[#out+1] = 0
    out[#out+1] = math.max(0, math.floor((period - debt) * limit / period + 1e-9))
    out[#out+1] = math.ceil(debt)
    out[#out+1] = math.ceil(horizon - period)
  else
    nexts[i] = now + horizon
    out[#out+1] = 1
    out[#out+1] = math.max(0, math.floor((period - horizon) * limit / period + 1e-9))
    out[#out+1] = math.ceil(horizon)
    out[#out+1] = 0
  end
end
local slot = 1
if #KEYS > n then
  local key, max, lease, ttl = KEYS[n+1], tonumber(ARGV[3*n+2]), ARGV[3*n+3], tonumber(ARGV[3*n+4])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= max then slot = 0 end
  if allowed == 1 and slot == 1 then
    redis.call('ZADD', key, now + ttl, lease)
    redis.call('PEXPIRE', key, ttl)
  end
end
if allowed == 1 and slot == 1 then
  for i = 1, n do
    redis.call('SET', KEYS[i], tostring(nexts[i]), 'PX', math.max(1, math.ceil(nexts[i] - now)))
  end
end
out[#out+1] = slot
return out`

/** KEYS: the slot key (or a placeholder), then one key per correction. ARGV: lease id ('' for none), then (limit, period, units) per correction. */
const SETTLE = `${NOW}
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
for i = 2, #KEYS do
  local limit, period, units = tonumber(ARGV[3*i-4]), tonumber(ARGV[3*i-3]), tonumber(ARGV[3*i-2])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tat = tat + (period / limit) * units
  if tat <= now then redis.call('DEL', KEYS[i]) else redis.call('SET', KEYS[i], tostring(tat), 'PX', math.ceil(tat - now)) end
end
return 1`

const RENEW = `${NOW}
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1`

/** A crashed instance's slots come back after this (by default; `slotLeaseMs`); live leases are renewed well before it. */
export const LEASE_TTL_MS = 30_000

type Scripted = Redis & {
  conduitAdmit(numKeys: number, ...args: (string | number)[]): Promise<number[]>
  conduitSettle(numKeys: number, ...args: (string | number)[]): Promise<number>
  conduitRenew(key: string, ...args: (string | number)[]): Promise<number>
}

export class RedisLimits implements LimitsBackend {
  private readonly redis: Scripted
  /** Slots this process holds, renewed together on one timer. */
  private readonly held = new Map<string, Omit<Slot, 'max'>>()
  private readonly renewer: Timer

  constructor(
    redis: Redis,
    private readonly leaseMs = LEASE_TTL_MS,
  ) {
    redis.defineCommand('conduitAdmit', { lua: ADMIT })
    redis.defineCommand('conduitSettle', { lua: SETTLE })
    redis.defineCommand('conduitRenew', { numberOfKeys: 1, lua: RENEW })
    this.redis = redis as Scripted
    this.renewer = setInterval(() => void this.renew(), leaseMs / 3)
    this.renewer.unref()
  }

  async admit(checks: Check[], slot: Slot | null): Promise<Admission> {
    const keys = checks.map((c) => c.key)
    const args: (string | number)[] = [checks.length, ...checks.flatMap((c) => [c.limit, c.periodMs, c.cost])]
    if (slot) {
      keys.push(slot.key)
      args.push(slot.max, slot.id, this.leaseMs)
    }
    const reply = this.redis.conduitAdmit(keys.length, ...keys, ...args).then((out) => {
      const decisions = checks.map((_, i) => ({
        allowed: out[4 * i] === 1,
        remaining: out[4 * i + 1]!,
        resetMs: out[4 * i + 2]!,
        retryAfterMs: out[4 * i + 3]!,
      }))
      const slotTaken = out[4 * checks.length] === 1
      return { decisions, slotTaken, took: slotTaken && decisions.every((d) => d.allowed) }
    })
    // Behind a batch that hangs (a settlement sent as Redis stalled), ioredis's own timeout could double: see `within`.
    const timeoutMs = this.redis.options.commandTimeout
    const answer = timeoutMs ? await within(reply, timeoutMs) : await reply
    if (!answer) {
      // Given up on: if Redis admitted it after all, give back what it took.
      reply.then(({ took }) => (took ? this.settle(slot, checks.map((check) => ({ check, units: -check.cost }))) : undefined)).catch(() => {})
      throw new Error(`Redis did not answer the admission within ${timeoutMs} ms`)
    }
    if (slot && answer.took) this.held.set(slot.id, slot)
    return { decisions: answer.decisions, slotTaken: answer.slotTaken }
  }

  async settle(slot: Omit<Slot, 'max'> | null, adjustments: Adjustment[]) {
    if (slot) this.held.delete(slot.id)
    const changes = adjustments.filter((a) => a.units !== 0)
    if (!slot && changes.length === 0) return
    // Every key of one scope shares its hash tag, so a correction's key can stand in when there is no slot.
    const keys = [slot?.key ?? changes[0]!.check.key, ...changes.map((a) => a.check.key)]
    const args = [slot?.id ?? '', ...changes.flatMap((a) => [a.check.limit, a.check.periodMs, a.units])]
    await this.redis.conduitSettle(keys.length, ...keys, ...args)
  }

  /** One key per call: slots of different scopes may live on different Cluster slots. */
  private async renew() {
    await Promise.all([...this.held.values()].map((l) => this.redis.conduitRenew(l.key, this.leaseMs, l.id).catch(() => {})))
  }

  close() {
    clearInterval(this.renewer)
  }
}
