/** Small, dependency-free statistics for the benchmark. */

/** Percentile with linear interpolation between closest ranks; `p` in 0..100. NaN for no data. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = (p / 100) * (sorted.length - 1)
  const lo = Math.floor(rank)
  const hi = Math.ceil(rank)
  const a = sorted[lo]!
  const b = sorted[hi]!
  return a + (b - a) * (rank - lo)
}

export const median = (values: readonly number[]) => percentile(values, 50)

export const mean = (values: readonly number[]) => (values.length === 0 ? NaN : values.reduce((s, v) => s + v, 0) / values.length)

export const max = (values: readonly number[]) => (values.length === 0 ? NaN : values.reduce((m, v) => (v > m ? v : m), -Infinity))

export interface Summary {
  n: number
  p50: number
  p90: number
  p99: number
  max: number
}

export function summarize(values: readonly number[]): Summary {
  return { n: values.length, p50: percentile(values, 50), p90: percentile(values, 90), p99: percentile(values, 99), max: max(values) }
}

/** Fisher–Yates, in a copy. */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/** Least-squares line through (x, y). */
export function linearFit(xs: readonly number[], ys: readonly number[]): { slope: number; intercept: number } {
  const n = Math.min(xs.length, ys.length)
  if (n < 2) return { slope: NaN, intercept: NaN }
  const mx = mean(xs.slice(0, n))
  const my = mean(ys.slice(0, n))
  let sxy = 0
  let sxx = 0
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my)
    sxx += (xs[i]! - mx) ** 2
  }
  const slope = sxx === 0 ? NaN : sxy / sxx
  return { slope, intercept: my - slope * mx }
}

/** A statistic over rounds: its median and its spread (min..max). */
export interface Spread {
  median: number
  min: number
  max: number
}

/** The finite values' median and spread; NaN throughout when there are none. */
export function spreadOf(values: readonly number[]): Spread {
  const finite = values.filter((v) => Number.isFinite(v))
  if (finite.length === 0) return { median: NaN, min: NaN, max: NaN }
  return { median: median(finite), min: Math.min(...finite), max: Math.max(...finite) }
}

/**
 * The side-by-side estimate: for each round, the arm's statistic minus the direct arm's statistic in the
 * same round; the median of those differences, and their spread.
 */
export function addedOverRounds(arm: readonly number[], direct: readonly number[]): Spread {
  return spreadOf(arm.map((v, i) => v - (direct[i] ?? NaN)))
}
