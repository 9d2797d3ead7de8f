/**
 * Traffic at a fixed rate, as most gateways see it most of the time: well below saturation, every request arriving to
 * threads that slept since the last one. wrk's closed loop at c=64 never lets them sleep, c1-tail's one request at a
 * time barely does. Requests are sent on schedule whether or not earlier ones have been answered (Bun's fetch, pooled).
 *
 *   RATE=500 bun bench/paced.ts http://127.0.0.1:5931/v1/chat/completions '<JSON body>' [key] [seconds]
 *
 * Prints how many requests it sent and their latency percentiles. `bench/profile.sh` runs it with `PACED=<n>` and
 * divides the gateway's CPU by the requests: at 500 a second, 5–6 times what a request costs at c=64, for Conduit
 * and the floor alike.
 */
import { timedJson, type Target } from './clients/http.ts'
import { percentile } from './stats.ts'

const [url, body, key = '', seconds = '8'] = process.argv.slice(2)
if (!url || !body) throw new Error("usage: bun bench/paced.ts <url> '<JSON body>' [key] [seconds]")
const rate = Number(process.env.RATE ?? 500)
const target: Target = { url, headers: key ? { authorization: `Bearer ${key}` } : {} }
const send = async () => {
  const { ms, status } = await timedJson(target, body)
  if (status !== 200) throw new Error(`HTTP ${status || 'failure or timeout'}`)
  return ms * 1000
}

const total = Math.round(rate * Number(seconds))
const start = performance.now()
const latencies: Promise<number>[] = []
for (let n = 0; n < total; n++) {
  const wait = start + (n * 1000) / rate - performance.now()
  if (wait > 0) await Bun.sleep(wait)
  latencies.push(send())
}
const us = await Promise.all(latencies)
const behind = (performance.now() - start) / 1000 - Number(seconds)
const p = (q: number) => percentile(us, q).toFixed(0)
console.log(`${total} sent at ${rate}/s${behind > 0.5 ? ` (finished ${behind.toFixed(1)} s late: the rate is past what the gateway serves)` : ''}: p50 ${p(50)} p90 ${p(90)} p99 ${p(99)} µs`)
