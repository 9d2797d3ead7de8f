/**
 * Load process for streams-1000: opens N streams at once and reads them all. Run with
 * BUN_CONFIG_MAX_HTTP_REQUESTS=65535, or Bun's fetch queues every request past 256.
 * Usage: bun bench/clients/streams.ts '<json StreamsClientConfig>'  → one JSON StreamsClientResult on stdout.
 */
import { percentile } from '../stats.ts'
import { readStream, type Target } from './http.ts'

export interface StreamsClientConfig {
  target: Target
  body: string
  count: number
  chunks: number
  intervalMs: number
  timeoutMs: number
}

export interface StreamsClientResult {
  count: number
  completed: number
  failed: number
  errors: string[]
  ttftMs: { p50: number; p99: number; max: number }
  /** Largest gap between two reads in any stream, minus the mock's interval, ms. */
  maxStallMs: number
  /** Streams whose largest gap exceeded the interval by more than 100 ms. */
  stalledStreams: number
  wallMs: number
}

if (import.meta.main) {
  const config = JSON.parse(process.argv[2] ?? '{}') as StreamsClientConfig
  const start = performance.now()
  const results = await Promise.all(Array.from({ length: config.count }, () => readStream(config.target, config.body, { timeoutMs: config.timeoutMs })))
  const ok = new Set(results.filter((r) => r.status === 200 && r.error === null && r.doneLast && r.contentEvents === config.chunks))
  const ttfts = results.filter((r) => Number.isFinite(r.ttftMs)).map((r) => r.ttftMs)
  const stalls = results.map((r) => r.maxGapMs - config.intervalMs)
  const errors = new Map<string, number>()
  for (const r of results) {
    if (ok.has(r)) continue
    const why = r.error ?? (r.status !== 200 ? `HTTP ${r.status}` : !r.doneLast ? 'ended without [DONE]' : `${r.contentEvents} content events`)
    errors.set(why, (errors.get(why) ?? 0) + 1)
  }
  const out: StreamsClientResult = {
    count: config.count,
    completed: ok.size,
    failed: config.count - ok.size,
    errors: [...errors].slice(0, 5).map(([why, n]) => `${n}× ${why}`),
    ttftMs: { p50: percentile(ttfts, 50), p99: percentile(ttfts, 99), max: percentile(ttfts, 100) },
    maxStallMs: Math.max(0, ...stalls),
    stalledStreams: stalls.filter((s) => s > 100).length,
    wallMs: performance.now() - start,
  }
  await Bun.write(Bun.stdout, JSON.stringify(out) + '\n')
  process.exit(0)
}
