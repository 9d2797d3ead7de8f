/**
 * The c=1 tail without a client's own noise: one keep-alive socket, one request at a time, timed from the write to the
 * last byte of the response. Bun's fetch, which latency-c1 uses as an SDK would, hands each request to its HTTP
 * thread and back (the mock answers it in a p50 of 45 µs against 26 here), and its own scheduling shows in the p99.
 *
 *   bun bench/c1-tail.ts http://127.0.0.1:5931/v1/chat/completions '<JSON body>' [key] [seconds]
 *
 * Prints how many requests it sent, then p50 to p99.9 of those after a 2-s warm-up, and the median of each
 * 300-request round's p99: what latency-c1's p99 is made of (about a round's third slowest request).
 * `bench/profile.sh` runs it with `C1=1`.
 */
import { median, percentile } from './stats.ts'

const [url, body, key = '', seconds = '8'] = process.argv.slice(2)
if (!url || !body) throw new Error("usage: bun bench/c1-tail.ts <url> '<JSON body>' [key] [seconds]")
const target = new URL(url)
const request = [
  `POST ${target.pathname} HTTP/1.1`,
  `Host: ${target.host}`,
  'Content-Type: application/json',
  ...(key ? [`Authorization: Bearer ${key}`] : []),
  `Content-Length: ${Buffer.byteLength(body)}`,
  '',
  body,
].join('\r\n')

let received = ''
/** The request on its way; a failure (not a 200, a closed socket) ends the run with its reason, never a hang. */
let pending: { resolve(): void; reject(error: Error): void } | null = null
const fail = (message: string) => pending?.reject(new Error(message))
const socket = await Bun.connect({
  hostname: target.hostname,
  port: Number(target.port),
  socket: {
    data(_socket, data) {
      received += data.toString('latin1') // one character a byte, as Content-Length counts
      const headEnd = received.indexOf('\r\n\r\n')
      if (headEnd < 0) return
      const length = /content-length: *(\d+)/i.exec(received.slice(0, headEnd))
      if (!length) return fail(`a response without content-length: ${received.slice(0, headEnd)}`)
      if (received.length < headEnd + 4 + Number(length[1])) return
      if (!received.startsWith('HTTP/1.1 200')) return fail(`not a 200: ${received.slice(0, headEnd)}`)
      received = ''
      pending?.resolve()
    },
    close() {
      fail('the server closed the connection')
    },
  },
})

const WARMUP_MS = 2_000
const ROUND = 300
const started = performance.now()
const ms: number[] = []
let sentCount = 0
while (performance.now() - started < Number(seconds) * 1000) {
  sentCount++
  const sent = performance.now()
  await new Promise<void>((resolve, reject) => {
    pending = { resolve, reject }
    socket.write(request)
  })
  if (sent - started > WARMUP_MS) ms.push(performance.now() - sent)
}
socket.end()

const roundP99s: number[] = []
for (let i = 0; i + ROUND <= ms.length; i += ROUND) roundP99s.push(percentile(ms.slice(i, i + ROUND), 99))
const us = (p: number) => Math.round(percentile(ms, p) * 1000)
console.log(`${sentCount} sent, ${ms.length} timed: p50 ${us(50)} p90 ${us(90)} p99 ${us(99)} p99.9 ${us(99.9)} µs; median of ${roundP99s.length} rounds' p99 ${Math.round(median(roundP99s) * 1000)} µs`)
