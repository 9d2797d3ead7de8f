import { taken, type Outcome, type ScopeClaim, type ScopeOutcome, type Settlement, type Status } from './claims.ts'
import { adjusted, evaluate } from './gcra.ts'

/** One scope's state in this process: what the Redis state holds, for one instance. */
interface ScopeState {
  /** TAT per rule, and the limit it was run up under. */
  tats: Map<string, number>
  limits: Map<string, number>
  inflight: number
  reserved: number
  /** The budget period whose spend is loaded, and that spend. */
  period: string | null
  spent: number
  usedAt: number
}

/** A budget's state idle this long is dropped, and summed from the ledger again when next used. */
const BUDGET_IDLE_MS = 10 * 60_000

/**
 * Limits and budgets kept in this process: exact on one instance, and where requests go while Redis is away.
 * The same decisions as the Redis script (`script.ts`), on this process's clock; memory is what recently
 * active scopes hold (`sweep`).
 */
export class LocalState {
  private readonly scopes = new Map<string, ScopeState>()

  constructor(private readonly clock: () => number = () => performance.now()) {}

  /** All or nothing. `loads`: spend summed from the ledger, by scope key, for budgets reported not loaded. */
  admit(claims: ScopeClaim[], shadow: boolean, loads?: Map<string, number>): Outcome {
    const now = this.clock()
    let limited = false
    let unloaded = false
    let broke = false
    const nexts: number[][] = []
    const scopes: ScopeOutcome[] = claims.map((claim, i) => {
      const s = this.state(claim.scope.key, now)
      const rates = claim.rates.map((rate) => {
        const d = evaluate(s.tats.get(rate.rule), rate, now, s.limits.get(rate.rule))
        if (!d.allowed) limited = true
        ;(nexts[i] ??= []).push(d.next)
        return { allowed: d.allowed, remaining: d.remaining, resetMs: d.resetMs, retryAfterMs: d.retryAfterMs }
      })
      let slotTaken: boolean | null = null
      if (claim.slots !== null) {
        slotTaken = s.inflight < claim.slots
        if (!slotTaken) limited = true
      }
      let budget: ScopeOutcome['budget'] = null
      const b = claim.budget
      if (b) {
        const load = loads?.get(claim.scope.key)
        if (s.period !== b.period && load !== undefined) {
          s.period = b.period
          s.spent = load
        }
        if (s.period !== b.period) {
          unloaded = true
          budget = { loaded: false, ok: false, left: 0, held: 0 }
        } else {
          const left = b.limitMicros - s.spent - s.reserved
          const ok = left > 0 && b.cost <= left
          if (!ok) broke = true
          budget = { loaded: true, ok, left: ok ? left - b.cost : Math.max(0, left), held: s.reserved }
        }
      }
      return { rates, slotTaken, budget }
    })
    const status: Status = limited && !shadow ? 0 : unloaded ? -1 : broke ? 0 : limited ? 2 : 1
    if (status > 0) {
      claims.forEach((claim, i) => {
        const s = this.scopes.get(claim.scope.key)!
        const took = taken(claim, status)
        if (took.rates) {
          claim.rates.forEach((rate, j) => {
            s.tats.set(rate.rule, nexts[i]![j]!)
            s.limits.set(rate.rule, rate.limit)
          })
        }
        if (took.lease) s.inflight++
        s.reserved += took.reserved
      })
    }
    return { status, scopes }
  }

  settle(settlement: Settlement) {
    const now = this.clock()
    const s = this.state(settlement.scope.key, now)
    for (const a of settlement.adjustments) {
      const tat = adjusted(s.tats.get(a.rule), a.limit, a.periodMs, a.units, now, s.limits.get(a.rule))
      s.limits.set(a.rule, a.limit)
      if (tat === null) s.tats.delete(a.rule)
      else s.tats.set(a.rule, tat)
    }
    s.inflight = Math.max(0, s.inflight - settlement.holds)
    s.reserved = Math.max(0, s.reserved - settlement.reserved)
    // A period that rolled over: the ledger has the row, and the new period starts from the ledger.
    if (settlement.period !== null && settlement.period === s.period) s.spent += settlement.spent
  }

  /** Drops what holds nothing: full buckets, nothing in flight, and budgets idle long enough to be summed again. */
  sweep() {
    const now = this.clock()
    for (const [key, s] of this.scopes) {
      for (const [rule, tat] of s.tats) {
        if (tat > now) continue
        s.tats.delete(rule)
        s.limits.delete(rule)
      }
      const idle = s.period === null || now - s.usedAt > BUDGET_IDLE_MS
      if (s.tats.size === 0 && s.inflight === 0 && s.reserved === 0 && idle) this.scopes.delete(key)
    }
  }

  private state(key: string, now: number): ScopeState {
    let s = this.scopes.get(key)
    if (!s) this.scopes.set(key, (s = { tats: new Map(), limits: new Map(), inflight: 0, reserved: 0, period: null, spent: 0, usedAt: now }))
    s.usedAt = now
    return s
  }
}
