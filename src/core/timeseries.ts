import { LRUCache } from 'lru-cache'
import { badRequest } from '../plugin-sdk/errors.ts'
import type { FinishedRequest, Logger } from '../plugin-sdk/types.ts'
import { microsToUsd } from '../pricing/prices.ts'
import { BatchWriter, settleOwing } from '../store/batch-writer.ts'
import { UNRECORDED } from '../store/request-records.ts'
import { storedAmount } from '../store/ledger.ts'
import type { Store } from '../store/store.ts'

/** What the ledger records: an amount that is not a safe non-negative integer (a price that overflowed) counts 0. */
const amount = (value: number | undefined) => storedAmount(value) ?? 0

/*
 * Traffic in 1-minute buckets kept in the store, so the Overview shows every instance's traffic and a restart
 * loses nothing. Each instance counts its own requests in memory per (minute, key, model) and rewrites its own
 * rows every few seconds (the row is the instance's whole count, so a retried write never double-counts);
 * readers sum the instances. Latencies are kept as histograms with bins 25% apart, from which p50/p95 are read
 * to within ±12%.
 */

export const MINUTE_MS = 60_000
/** Bin i holds latencies in [1.25^i, 1.25^(i+1)) ms; bin 0 also holds everything under 1 ms. 80 bins reach 12 h. */
const GROWTH = 1.25
const BINS = 80
const LOG_GROWTH = Math.log(GROWTH)
const FLUSH_EVERY_MS = 5_000

export interface BucketRow {
  minute: number
  instance: string
  key_id: string
  model: string
  requests: number
  errors: number
  prompt_tokens: number
  completion_tokens: number
  cost_micros: number
  /** Sparse histogram, `bin:count,bin:count`. */
  latency_hist: string
  ttft_hist: string
}

interface Bucket {
  row: BucketRow
  /** Counts by bin (see binOf). */
  latency: number[]
  ttft: number[]
  dirty: boolean
}

export const binOf = (ms: number) => (ms < 1 ? 0 : Math.min(BINS - 1, Math.floor(Math.log(ms) / LOG_GROWTH)))
function encode(hist: number[]): string {
  const parts: string[] = []
  for (let bin = 0; bin < hist.length; bin++) if (hist[bin]! > 0) parts.push(`${bin}:${hist[bin]}`)
  return parts.join(',')
}
/** Adds `bin:count,bin:count` (pairs of several histograms joined by commas) into `into`; a pair that is not two numbers is skipped. */
function decodeInto(text: string, into: number[]) {
  // One pass over the characters: a day of points is millions of pairs, and split/slice/Number allocated for each.
  let bin = 0
  let count = 0
  let digits = 0
  let colon = false
  let valid = true
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 44
    if (c >= 48 && c <= 57) {
      if (colon) count = count * 10 + (c - 48)
      else bin = bin * 10 + (c - 48)
      digits++
    } else if (c === 58 && !colon && digits > 0) {
      colon = true
      digits = 0
    } else if (c === 44) {
      if (valid && colon && digits > 0 && bin < BINS) into[bin]! += count
      bin = count = digits = 0
      colon = false
      valid = true
    } else valid = false
  }
}

/** The q-quantile of a histogram: the geometric middle of the bin it falls in; null when empty. */
export function quantile(hist: number[], q: number): number | null {
  let total = 0
  for (const n of hist) total += n
  if (total === 0) return null
  const rank = Math.max(1, Math.ceil(q * total))
  let seen = 0
  for (let bin = 0; bin < hist.length; bin++) {
    seen += hist[bin]!
    if (seen >= rank) return bin === 0 ? 1 : Math.round(GROWTH ** (bin + 0.5) * 10) / 10
  }
  return null
}

/** A request counts as an error when it failed; a client that hung up (499) did not see a failure. */
export const isError = (status: number) => status >= 400 && status !== 499

/** One point of a chart, summed over instances, keys and models. */
interface PointTotals {
  requests: number
  errors: number
  promptTokens: number
  completionTokens: number
  cost: number
  latency: number[]
  ttft: number[]
}

const emptyPoint = (): PointTotals => ({
  requests: 0,
  errors: 0,
  promptTokens: 0,
  completionTokens: 0,
  cost: 0,
  latency: new Array<number>(BINS).fill(0),
  ttft: new Array<number>(BINS).fill(0),
})

/** A point this long over has its buckets written by every instance (each writes every FLUSH_EVERY_MS). */
const SETTLED_MS = 2 * MINUTE_MS
/** How long a settled point is kept, on average: a bucket written late (an instance back from a database outage) shows after it. */
const SETTLED_TTL_MS = 5 * MINUTE_MS

export class TimeSeries {
  /** Random per process start: this instance's rows, rewritten whole on each flush. */
  readonly instance = crypto.randomUUID().slice(0, 13)
  /** Buckets by minute, key and model: names the request already holds, so no id string is built per request. */
  private readonly buckets = new Map<number, Map<string, Map<string, Bucket>>>()
  /**
   * Settled points already read, by step, key, model and time: a day is a bucket row per minute, instance, key and
   * model, and an Overview showing it refreshes every 15 s (115,200 rows for 40 keys and models on 2 instances: 0.32 s
   * of SQLite's event loop each time). About 1.3 KB each.
   */
  private readonly settledPoints = new LRUCache<string, PointTotals>({ max: 4_000 })
  private readonly writer: BatchWriter<BucketRow>
  private readonly ticker: Timer

  constructor(
    private readonly store: Store,
    log: Logger,
    private readonly settledTtlMs = SETTLED_TTL_MS,
  ) {
    this.writer = new BatchWriter('metric buckets', (rows) => store.upsertMetricBuckets(rows), log, {
      batch: 500,
      flushEveryMs: 0,
      maxQueued: 50_000,
    })
    this.ticker = setInterval(() => void this.flush(), FLUSH_EVERY_MS)
    this.ticker.unref()
  }

  /** On the request's onLog: three map lookups and a few additions. */
  record(f: FinishedRequest, now = Date.now()) {
    const ctx = f.ctx
    if (UNRECORDED.has(ctx.endpoint)) return
    const bucket = this.bucketOf(now - (now % MINUTE_MS), ctx.principal?.keyId ?? '', ctx.model?.name ?? '')
    const row = bucket.row
    row.requests++
    if (isError(f.status)) row.errors++
    row.prompt_tokens += amount(f.usage?.prompt_tokens)
    row.completion_tokens += amount(f.usage?.completion_tokens)
    row.cost_micros += amount(f.costMicros)
    bucket.latency[binOf(f.durationMs)]!++
    if (f.firstByteMs !== null && f.target) bucket.ttft[binOf(f.firstByteMs)]!++
    bucket.dirty = true
  }

  private bucketOf(minute: number, keyId: string, model: string): Bucket {
    let byKey = this.buckets.get(minute)
    if (!byKey) this.buckets.set(minute, (byKey = new Map()))
    let byModel = byKey.get(keyId)
    if (!byModel) byKey.set(keyId, (byModel = new Map()))
    let bucket = byModel.get(model)
    if (!bucket) {
      bucket = {
        row: {
          minute,
          instance: this.instance,
          key_id: keyId,
          model,
          requests: 0,
          errors: 0,
          prompt_tokens: 0,
          completion_tokens: 0,
          cost_micros: 0,
          latency_hist: '',
          ttft_hist: '',
        },
        latency: new Array<number>(BINS).fill(0),
        ttft: new Array<number>(BINS).fill(0),
        dirty: true,
      }
      byModel.set(model, bucket)
    }
    return bucket
  }

  /** Writes every bucket that changed; buckets of past minutes are then forgotten (the store has them). */
  async flush(now = Date.now()) {
    settleOwing() // requests answered this turn belong in the buckets written below
    const current = now - (now % MINUTE_MS)
    for (const [minute, byKey] of this.buckets) {
      for (const byModel of byKey.values()) {
        for (const bucket of byModel.values()) {
          if (!bucket.dirty) continue
          bucket.row.latency_hist = encode(bucket.latency)
          bucket.row.ttft_hist = encode(bucket.ttft)
          this.writer.push({ ...bucket.row })
          bucket.dirty = false
        }
      }
      if (minute < current) this.buckets.delete(minute)
    }
    await this.writer.flush()
  }

  async close() {
    clearInterval(this.ticker)
    await this.flush(Number.MAX_SAFE_INTEGER)
    await this.writer.close()
  }

  /**
   * Columns for charts over [from, to): one point per `step` (a whole number of minutes), every point present
   * (zeros where nothing happened), optionally for one key and/or one model. A point that ended SETTLED_MS ago is
   * kept for a few minutes (see settledPoints); the others are read from the store, a run of points at a time.
   */
  async query(range: { from: number; to: number; stepMs: number }, filter: { keyId?: string | null; model?: string | null } = {}, now = Date.now()) {
    const { stepMs } = range
    const keyId = filter.keyId ?? null
    const model = filter.model ?? null
    const from = range.from - (range.from % stepMs)
    const points = Math.ceil((range.to - from) / stepMs)
    const id = (i: number) => `${stepMs}\n${keyId}\n${model}\n${from + i * stepMs}`
    const settledBefore = Math.min(range.to, now - SETTLED_MS)
    const settled = (i: number) => from + (i + 1) * stepMs <= settledBefore
    const totals: (PointTotals | undefined)[] = Array.from({ length: points }, (_, i) => (settled(i) ? this.settledPoints.get(id(i)) : undefined))
    for (let first = 0; first < points; first++) {
      if (totals[first]) continue
      let end = first
      while (end < points && !totals[end]) totals[end++] = emptyPoint()
      const rows = await this.store.metricPoints(from + first * stepMs, Math.min(range.to, from + end * stepMs), stepMs, keyId, model)
      for (const r of rows) {
        const point = r.point >= 0 && first + r.point < end ? totals[first + r.point] : undefined
        if (!point) continue
        point.requests += r.requests
        point.errors += r.errors
        point.promptTokens += r.prompt_tokens
        point.completionTokens += r.completion_tokens
        point.cost += r.cost_micros
        decodeInto(r.latency_hist, point.latency)
        decodeInto(r.ttft_hist, point.ttft)
      }
      // Each its own lifetime, so that a refresh re-reads a few points rather than all of them at once.
      for (let i = first; i < end; i++) if (settled(i)) this.settledPoints.set(id(i), totals[i]!, { ttl: this.settledTtlMs * (0.5 + Math.random()) })
      first = end
    }
    const column = (pick: (p: PointTotals) => number) => totals.map((p) => pick(p!))
    const requests = column((p) => p.requests)
    const errors = column((p) => p.errors)
    const promptTokens = column((p) => p.promptTokens)
    const completionTokens = column((p) => p.completionTokens)
    const cost = column((p) => p.cost)
    const latency = totals.map((p) => p!.latency)
    const ttft = totals.map((p) => p!.ttft)
    const seconds = stepMs / 1000
    const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits
    const all = { latency: new Array<number>(BINS).fill(0), ttft: new Array<number>(BINS).fill(0) }
    latency.forEach((h) => h.forEach((n, bin) => (all.latency[bin]! += n)))
    ttft.forEach((h) => h.forEach((n, bin) => (all.ttft[bin]! += n)))
    const total = (list: number[]) => list.reduce((a, b) => a + b, 0)
    const totalRequests = total(requests)
    return {
      object: 'timeseries',
      from: new Date(from).toISOString(),
      to: new Date(range.to).toISOString(),
      step_seconds: seconds,
      totals: {
        requests: totalRequests,
        errors: total(errors),
        error_rate: totalRequests ? round(total(errors) / totalRequests, 4) : 0,
        prompt_tokens: total(promptTokens),
        completion_tokens: total(completionTokens),
        cost_usd: microsToUsd(total(cost)),
        latency_p50_ms: quantile(all.latency, 0.5),
        latency_p95_ms: quantile(all.latency, 0.95),
        ttft_p50_ms: quantile(all.ttft, 0.5),
        ttft_p95_ms: quantile(all.ttft, 0.95),
      },
      /** Unix seconds at the start of each point. */
      t: requests.map((_, i) => (from + i * stepMs) / 1000),
      requests,
      errors,
      requests_per_second: requests.map((n) => round(n / seconds)),
      tokens_per_second: requests.map((_, i) => round((promptTokens[i]! + completionTokens[i]!) / seconds)),
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      error_rate: requests.map((n, i) => (n ? round(errors[i]! / n, 4) : 0)),
      cost_usd: cost.map((micros) => Number(microsToUsd(micros))),
      latency_p50_ms: latency.map((h) => quantile(h, 0.5)),
      latency_p95_ms: latency.map((h) => quantile(h, 0.95)),
      ttft_p50_ms: ttft.map((h) => quantile(h, 0.5)),
      ttft_p95_ms: ttft.map((h) => quantile(h, 0.95)),
    }
  }
}

/** `from`, `to` (ISO or unix seconds; default the last hour) and `step` (seconds, a multiple of 60, default 60). */
export function timeseriesRange(params: URLSearchParams, now = Date.now()) {
  const time = (name: string, fallback: number) => {
    const raw = params.get(name)
    if (raw === null || raw === '') return fallback
    const ms = /^\d+$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw)
    if (!Number.isFinite(ms) || ms < 0 || ms > 253_402_300_799_999) throw badRequest(`'${name}' must be an ISO 8601 date or unix seconds.`, name)
    return ms
  }
  const to = time('to', now)
  const from = time('from', to - 3_600_000)
  if (from >= to) throw badRequest("'from' must be before 'to'.", 'from')
  const rawStep = params.get('step')
  const step = rawStep === null || rawStep === '' ? 60 : Number(rawStep)
  if (!Number.isInteger(step) || step < 60 || step % 60 !== 0 || step > 86_400) {
    throw badRequest("'step' must be a whole number of minutes in seconds (60, 300, 3600…), at most 86400.", 'step')
  }
  const stepMs = step * 1000
  if ((to - from) / stepMs > 10_000) throw badRequest(`The range holds more than 10000 points of ${step} s; use a larger 'step'.`, 'step')
  return { from, to, stepMs }
}
