/**
 * GCRA (generic cell rate algorithm): one number per key and rule, the theoretical arrival time (TAT). A rule
 * of `limit` per `periodMs` admits a burst of `limit`, then one unit every `periodMs / limit`. Exact, with no
 * window boundaries to double-burst across. This is the in-process version; `backends.ts` runs the same
 * arithmetic in one Lua call on Redis time.
 */
export interface Check {
  key: string
  limit: number
  periodMs: number
  cost: number
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

export function evaluate(tatOrNull: number | null, check: Check, now: number): Decision & { next: number } {
  const interval = check.periodMs / check.limit
  const tat = Math.max(tatOrNull ?? now, now)
  const next = tat + interval * check.cost
  const horizon = next - now
  if (horizon > check.periodMs) {
    const remaining = Math.max(0, Math.floor((check.periodMs - (tat - now)) / interval))
    return { allowed: false, remaining, resetMs: tat - now, retryAfterMs: horizon - check.periodMs, next: tat }
  }
  return { allowed: true, remaining: Math.floor((check.periodMs - horizon) / interval), resetMs: horizon, retryAfterMs: 0, next }
}

export class Gcra {
  private readonly tat = new Map<string, number>()

  /** What each check would decide now; nothing is taken until `commit`. */
  evaluate(checks: Check[], now = performance.now()): (Decision & { next: number })[] {
    return checks.map((c) => evaluate(this.tat.get(c.key) ?? null, c, now))
  }

  /** Takes what `evaluate` allowed (call only when every check passed: all or nothing). */
  commit(checks: Check[], decisions: { next: number }[]) {
    checks.forEach((c, i) => this.tat.set(c.key, decisions[i]!.next))
  }

  /** Takes (units > 0) or gives back (units < 0) after the fact: a token reservation settled to actual usage. */
  adjust(key: string, limit: number, periodMs: number, units: number, now = performance.now()) {
    if (units === 0) return
    const tat = Math.max(this.tat.get(key) ?? now, now) + (periodMs / limit) * units
    if (tat <= now) this.tat.delete(key)
    else this.tat.set(key, tat)
  }

  /** Drops keys whose buckets are full again: memory stays proportional to recently active keys. */
  sweep(now = performance.now()) {
    for (const [key, tat] of this.tat) if (tat <= now) this.tat.delete(key)
  }
}
