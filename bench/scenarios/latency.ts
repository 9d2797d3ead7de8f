/**
 * latency-c1: one sequential Bun fetch client, a timed warm-up per arm, then interleaved rounds (arm order shuffled per
 * round). Added latency = median over rounds of (arm round percentile − direct round percentile).
 */
import type { Arm } from '../arms.ts'
import { chatBody, timedJson } from '../clients/http.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { addedOverRounds, percentile, shuffled } from '../stats.ts'

export interface LatencyOptions {
  rounds: number
  perRound: number
  /** Sequential requests per arm before the measured rounds, for this long (ms): see runLatency. */
  warmupMs: number
  timing: MockTiming
}

export interface LatencyArmResult {
  arm: string
  /** Per round, ms. */
  p50: number[]
  p99: number[]
  /** Pooled over all rounds, ms. */
  pooled: { p50: number; p90: number; p99: number }
  errors: number
  /** Median over rounds of arm − direct, ms (null for direct). */
  addedP50: number | null
  addedP99: number | null
  addedP50Spread: [number, number] | null
}

export interface LatencyResult {
  rounds: number
  perRound: number
  arms: LatencyArmResult[]
}

export async function runLatency(arms: Arm[], o: LatencyOptions, progress: (m: string) => void): Promise<LatencyResult> {
  const body = chatBody(mockModel(o.timing), false)
  const targets = arms.map((arm) => ({ arm, target: { url: `${arm.baseURL}/chat/completions`, headers: arm.headers } }))
  const samples = new Map(arms.map((a) => [a.name, { rounds: [] as number[][], errors: 0 }]))

  // Until the JIT has settled: a few hundred requests leave a gateway's thousands of lines still being compiled
  // (JSC tiers a function up after thousands of calls), and its compiler threads then compete with the measured
  // requests on a small box. The floor's ten lines are warm at once. What a client of a running gateway sees is
  // the steady state.
  for (const { target } of targets) for (const started = performance.now(); performance.now() - started < o.warmupMs; ) await timedJson(target, body)

  for (let round = 0; round < o.rounds; round++) {
    for (const { arm, target } of shuffled(targets)) {
      const times: number[] = []
      const entry = samples.get(arm.name)!
      for (let i = 0; i < o.perRound; i++) {
        const r = await timedJson(target, body)
        if (r.status === 200) times.push(r.ms)
        else entry.errors++
      }
      entry.rounds.push(times)
    }
    progress(`latency-c1: round ${round + 1}/${o.rounds}`)
  }

  const perRound = (name: string, p: number) => samples.get(name)!.rounds.map((t) => percentile(t, p))
  const directP50 = perRound('direct', 50)
  const directP99 = perRound('direct', 99)
  return {
    rounds: o.rounds,
    perRound: o.perRound,
    arms: arms.map((arm) => {
      const entry = samples.get(arm.name)!
      const all = entry.rounds.flat()
      const p50 = perRound(arm.name, 50)
      const p99 = perRound(arm.name, 99)
      const isDirect = arm.kind === 'direct'
      const a50 = addedOverRounds(p50, directP50)
      return {
        arm: arm.name,
        p50,
        p99,
        pooled: { p50: percentile(all, 50), p90: percentile(all, 90), p99: percentile(all, 99) },
        errors: entry.errors,
        addedP50: isDirect ? null : a50.median,
        addedP99: isDirect ? null : addedOverRounds(p99, directP99).median,
        addedP50Spread: isDirect ? null : [a50.min, a50.max],
      }
    }),
  }
}
