/**
 * GCRA (generic cell rate algorithm): one number per key and rule, the theoretical arrival time (TAT). A rule
 * of `limit` per `periodMs` admits a burst of `limit`, then one unit every `periodMs / limit`. Exact, no
 * window boundaries to double-burst across. In-process; the Redis variant keeps the same arithmetic in Lua.
 */
export interface Rule {
  limit: number
  periodMs: number
}

export interface Decision {
  allowed: boolean
  /** Units still available right after this decision. */
  remaining: number
  /** Until the bucket is full again, ms. */
  resetMs: number
  /** When refused: until `cost` units fit, ms. */
  retryAfterMs: number
}

export class Gcra {
  private readonly tat = new Map<string, number>()

  admit(key: string, rule: Rule, cost: number, now = performance.now()): Decision {
    const interval = rule.periodMs / rule.limit
    const tat = Math.max(this.tat.get(key) ?? now, now)
    const next = tat + interval * cost
    const horizon = next - now
    if (horizon > rule.periodMs) {
      return { allowed: false, remaining: Math.max(0, Math.floor((rule.periodMs - (tat - now)) / interval)), resetMs: tat - now, retryAfterMs: horizon - rule.periodMs }
    }
    this.tat.set(key, next)
    return { allowed: true, remaining: Math.floor((rule.periodMs - horizon) / interval), resetMs: horizon, retryAfterMs: 0 }
  }

  /** Gives back `units` that were reserved but not used (a token reservation settled to actual usage). */
  refund(key: string, rule: Rule, units: number, now = performance.now()) {
    const tat = this.tat.get(key)
    if (tat === undefined || units <= 0) return
    const refunded = tat - (rule.periodMs / rule.limit) * units
    if (refunded <= now) this.tat.delete(key)
    else this.tat.set(key, refunded)
  }

  /** Takes `units` more than were reserved (usage came out above the estimate); may go past the limit. */
  charge(key: string, rule: Rule, units: number, now = performance.now()) {
    if (units <= 0) return
    this.tat.set(key, Math.max(this.tat.get(key) ?? now, now) + (rule.periodMs / rule.limit) * units)
  }

  /** Drops keys whose buckets are full again: memory stays proportional to recently active keys. */
  sweep(now = performance.now()) {
    for (const [key, tat] of this.tat) if (tat <= now) this.tat.delete(key)
  }
}
