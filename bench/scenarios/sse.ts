/**
 * sse: c=1, interleaved rounds against a paced stream (CHUNKS content chunks INTERVAL ms apart). Per arm:
 * time to the first content chunk (TTFT) and total time. Added TTFT p50 = median over rounds of the round
 * medians' difference to direct; added p99 from the pooled samples (a round holds too few for a p99).
 * Per-chunk cost = (added total − added TTFT) / chunks (the mock keeps a fixed schedule, so totals do not
 * drift with timer jitter); as a cross-check, the added delivery delay of every chunk, from the send time the
 * mock stamps into it. Fidelity: same number of data events as direct and
 * `[DONE]` last, in every stream.
 */
import type { Arm } from '../arms.ts'
import { chatBody, readStream } from '../clients/http.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { addedOverRounds, median, percentile, shuffled } from '../stats.ts'

export interface SseOptions {
  rounds: number
  perRound: number
  /** Streams per arm before the measured rounds, WARMUP_CONCURRENCY at a time. */
  warmup: number
  timing: MockTiming
}

/** Warm-up streams run this many at a time: a stream lasts chunks × interval, and the JIT needs thousands of calls. */
const WARMUP_CONCURRENCY = 16

export interface SseArmResult {
  arm: string
  ttft: { p50: number; p99: number }
  total: { p50: number; p99: number }
  streams: number
  /** Streams that failed, ended without [DONE], or whose event count differs from direct's. */
  fidelityFailures: number
  eventsSeen: number[]
  errors: string[]
  addedTtftP50: number | null
  addedTtftP99: number | null
  addedTotalP50: number | null
  /** µs per chunk. */
  perChunkUs: number | null
  /** Per content chunk, mock send → client read (ms; the two clocks' offset cancels in the difference to direct). */
  delivery: { p50: number; p99: number }
  /** Median over rounds of (round median delivery − direct's), µs; pooled p99 difference, µs. */
  addedDeliveryP50Us: number | null
  addedDeliveryP99Us: number | null
}

export interface SseResult {
  timing: MockTiming
  rounds: number
  perRound: number
  expectedEvents: number
  arms: SseArmResult[]
}

export async function runSse(arms: Arm[], o: SseOptions, progress: (m: string) => void): Promise<SseResult> {
  const body = chatBody(mockModel(o.timing), true)
  const targets = arms.map((arm) => ({ arm, target: { url: `${arm.baseURL}/chat/completions`, headers: arm.headers } }))
  type Sample = { ttft: number; total: number; events: number; ok: boolean; error: string | null; delivery: number[] }
  const data = new Map(arms.map((a) => [a.name, [] as Sample[][]]))

  // Enough streams that the request path and the relay are compiled, as in a gateway that has been running (see latency.ts).
  for (const { target } of targets) {
    let left = o.warmup
    await Promise.all(Array.from({ length: WARMUP_CONCURRENCY }, async () => {
      while (left-- > 0) await readStream(target, body, { timeoutMs: 30_000 })
    }))
  }

  for (let round = 0; round < o.rounds; round++) {
    for (const { arm, target } of shuffled(targets)) {
      const samples: Sample[] = []
      for (let i = 0; i < o.perRound; i++) {
        const delivery: number[] = []
        const r = await readStream(target, body, { timeoutMs: 30_000, delivery })
        const ok = r.status === 200 && r.error === null && r.doneLast && r.contentEvents === o.timing.chunks
        samples.push({ ttft: r.ttftMs, total: r.totalMs, events: r.events, ok, error: r.error ?? (r.status !== 200 ? `HTTP ${r.status}` : null), delivery })
      }
      data.get(arm.name)!.push(samples)
    }
    progress(`sse: round ${round + 1}/${o.rounds}`)
  }

  const good = (name: string) => data.get(name)!.map((round) => round.filter((s) => s.ok))
  const roundMedian = (name: string, key: 'ttft' | 'total') => good(name).map((r) => median(r.map((s) => s[key])))
  const pooled = (name: string, key: 'ttft' | 'total', p: number) => percentile(good(name).flat().map((s) => s[key]), p)
  const roundDelivery = (name: string) => good(name).map((r) => median(r.flatMap((s) => s.delivery)))
  const pooledDelivery = (name: string, p: number) => percentile(good(name).flat().flatMap((s) => s.delivery), p)
  const directEvents = median(good('direct').flat().map((s) => s.events))
  const directTtft = roundMedian('direct', 'ttft')
  const directTotal = roundMedian('direct', 'total')

  return {
    timing: o.timing,
    rounds: o.rounds,
    perRound: o.perRound,
    expectedEvents: directEvents,
    arms: arms.map((arm) => {
      const all = data.get(arm.name)!.flat()
      const isDirect = arm.kind === 'direct'
      const addedTtft = isDirect ? null : addedOverRounds(roundMedian(arm.name, 'ttft'), directTtft).median
      const addedTotal = isDirect ? null : addedOverRounds(roundMedian(arm.name, 'total'), directTotal).median
      return {
        arm: arm.name,
        ttft: { p50: pooled(arm.name, 'ttft', 50), p99: pooled(arm.name, 'ttft', 99) },
        total: { p50: pooled(arm.name, 'total', 50), p99: pooled(arm.name, 'total', 99) },
        streams: all.length,
        fidelityFailures: all.filter((s) => !s.ok || s.events !== directEvents).length,
        eventsSeen: [...new Set(all.map((s) => s.events))].sort((a, b) => a - b),
        errors: [...new Set(all.map((s) => s.error).filter((e): e is string => e !== null))].slice(0, 3),
        addedTtftP50: addedTtft,
        addedTtftP99: isDirect ? null : pooled(arm.name, 'ttft', 99) - pooled('direct', 'ttft', 99),
        addedTotalP50: addedTotal,
        perChunkUs: addedTtft === null || addedTotal === null ? null : ((addedTotal - addedTtft) / o.timing.chunks) * 1000,
        delivery: { p50: pooledDelivery(arm.name, 50), p99: pooledDelivery(arm.name, 99) },
        addedDeliveryP50Us: isDirect ? null : addedOverRounds(roundDelivery(arm.name), roundDelivery('direct')).median * 1000,
        addedDeliveryP99Us: isDirect ? null : (pooledDelivery(arm.name, 99) - pooledDelivery('direct', 99)) * 1000,
      }
    }),
  }
}
