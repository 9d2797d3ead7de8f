/**
 * Load process for the soak: steady open-loop traffic for a fixed time, JSON requests and streams at fixed
 * rates, a share of the streams hung up by the client mid-stream. In-flight requests are capped so a slow
 * gateway sheds load (counted) instead of piling up in this process.
 * Usage: bun bench/clients/soak.ts '<json SoakClientConfig>'  → one JSON SoakClientResult on stdout.
 */
import { readStream, timedJson, type Target } from './http.ts'

export interface SoakClientConfig {
  target: Target
  jsonBody: string
  streamBody: string
  jsonPerSec: number
  streamsPerSec: number
  abortRatio: number
  chunks: number
  durationSec: number
  maxInFlight: number
}

export interface SoakClientResult {
  json: { ok: number; failed: number }
  streams: { ok: number; aborted: number; failed: number }
  /** Requests not sent because maxInFlight was reached. */
  shed: number
  errors: string[]
  seconds: number
}

if (import.meta.main) {
  const c = JSON.parse(process.argv[2] ?? '{}') as SoakClientConfig
  const result: SoakClientResult = { json: { ok: 0, failed: 0 }, streams: { ok: 0, aborted: 0, failed: 0 }, shed: 0, errors: [], seconds: 0 }
  const errors = new Map<string, number>()
  const noteError = (why: string) => errors.set(why, (errors.get(why) ?? 0) + 1)
  let inFlight = 0
  const pending = new Set<Promise<void>>()
  const track = (p: Promise<void>) => {
    inFlight++
    pending.add(p)
    void p.finally(() => {
      inFlight--
      pending.delete(p)
    })
  }

  const sendJson = () =>
    track(
      timedJson(c.target, c.jsonBody).then((r) => {
        if (r.status === 200) result.json.ok++
        else {
          result.json.failed++
          noteError(r.status ? `JSON HTTP ${r.status}` : 'JSON network error')
        }
      }),
    )
  const sendStream = () => {
    const abort = Math.random() < c.abortRatio ? 1 + Math.floor(Math.random() * Math.max(1, c.chunks - 1)) : undefined
    track(
      readStream(c.target, c.streamBody, { timeoutMs: 60_000, abortAfterEvents: abort }).then((r) => {
        if (r.aborted) result.streams.aborted++
        else if (r.status === 200 && r.error === null && r.doneLast) result.streams.ok++
        else {
          result.streams.failed++
          noteError(r.error ?? (r.status !== 200 ? `stream HTTP ${r.status}` : 'stream ended without [DONE]'))
        }
      }),
    )
  }

  // Fixed-rate dispatch: every 10 ms, send what the schedule says is due by now, for durationSec.
  const start = performance.now()
  let jsonSent = 0
  let streamsSent = 0
  for (let elapsed = 0; elapsed < c.durationSec * 1000; elapsed = performance.now() - start) {
    for (; jsonSent < (c.jsonPerSec * elapsed) / 1000; jsonSent++) inFlight < c.maxInFlight ? sendJson() : result.shed++
    for (; streamsSent < (c.streamsPerSec * elapsed) / 1000; streamsSent++) inFlight < c.maxInFlight ? sendStream() : result.shed++
    await Bun.sleep(10)
  }
  const drained = Promise.allSettled([...pending]).then(() => true)
  if (!(await Promise.race([drained, Bun.sleep(65_000).then(() => false)]))) noteError(`${inFlight} requests still open 65 s after the load stopped`)
  result.seconds = (performance.now() - start) / 1000
  result.errors = [...errors].slice(0, 5).map(([why, n]) => `${n}× ${why}`)
  await Bun.write(Bun.stdout, JSON.stringify(result) + '\n')
  process.exit(0) // pending timers must not keep the process (and the runner) waiting
}
