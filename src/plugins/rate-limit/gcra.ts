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

/**
 * `horizon` is how far the bucket is behind (`debt`) plus what this request takes, computed as such and not as
 * `tat + interval × cost − now`: with a fractional `now`, that subtraction can come out an ulp above the period
 * and refuse a request that exactly fits an idle bucket. `period × cost / limit` never exceeds the period when
 * cost ≤ limit (rounding is monotonic). The Lua in `backends.ts` runs the same arithmetic.
 */
export function evaluate(tatOrNull: number | null, check: Check, now: number): Decision & { next: number } {
  const { limit, periodMs, cost } = check
  const debt = Math.max(0, (tatOrNull ?? now) - now)
  const horizon = debt + (periodMs * cost) / limit
  // Whole units that fit in `ms`; the nudge keeps float error from flooring 4 to 3.
  const units = (ms: number) => Math.max(0, Math.floor((ms * limit) / periodMs + 1e-9))
  if (horizon > periodMs) {
    return { allowed: false, remaining: units(periodMs - debt), resetMs: debt, retryAfterMs: horizon - periodMs, next: now + debt }
  }
  return { allowed: true, remaining: units(periodMs - horizon), resetMs: horizon, retryAfterMs: 0, next: now + horizon }
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
