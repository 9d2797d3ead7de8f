/**
 * GCRA (generic cell rate algorithm): one number per rule and scope, the theoretical arrival time (TAT). A rule
 * of `limit` per `periodMs` admits a burst of `limit`, then one unit every `periodMs / limit`. Exact, with no
 * window boundaries to double-burst across. This is the arithmetic of the in-process state (`local.ts`); the
 * Redis script (`script.ts`) runs the same, step for step, on Redis's clock.
 */
export interface Rate {
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
 * cost ≤ limit (rounding is monotonic). `next` is the TAT once the request is admitted.
 */
export function evaluate(tat: number | undefined, rate: Rate, now: number, was?: number): Decision & { next: number } {
  const { limit, periodMs, cost } = rate
  const debt = inLimit(Math.max(0, (tat ?? now) - now), was, limit)
  const horizon = debt + (periodMs * cost) / limit
  // Whole units that fit in `ms`; the nudge keeps float error from flooring 4 to 3.
  const units = (ms: number) => Math.max(0, Math.floor((ms * limit) / periodMs + 1e-9))
  if (horizon > periodMs) {
    return { allowed: false, remaining: units(periodMs - debt), resetMs: Math.ceil(debt), retryAfterMs: Math.ceil(horizon - periodMs), next: now + debt }
  }
  return { allowed: true, remaining: units(periodMs - horizon), resetMs: Math.ceil(horizon), retryAfterMs: 0, next: now + horizon }
}

/** The TAT after taking (units > 0) or giving back (units < 0) after the fact; null when the bucket is full again. */
export function adjusted(tat: number | undefined, limit: number, periodMs: number, units: number, now: number, was?: number): number | null {
  const next = now + inLimit(Math.max(tat ?? now, now) - now, was, limit) + (periodMs * units) / limit
  return next <= now ? null : next
}

/**
 * A debt run up under the limit `was`, in `limit`'s units: the requests it stands for stay used when a key's limit
 * changes (an rpd raised from 5 to 100 after 5 leaves 95; lowered from 100 to 10 after 50 leaves none). Unknown
 * (`was` absent, or 0 from a state written before limits were kept): as it is.
 */
const inLimit = (debt: number, was: number | undefined, limit: number) => (was && was !== limit ? (debt * was) / limit : debt)
