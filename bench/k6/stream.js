// k6: streaming chat completions at a constant arrival rate. k6 reads the whole SSE body, so the time to the
// first byte (http_req_waiting, also recorded as `ttfb`) stands in for TTFT; the frames are counted after.
//   k6 run -e BASE_URL=http://127.0.0.1:5000/v1 -e API_KEY=condt_… -e MODEL=my-model -e RATE=50 -e DURATION=60s bench/k6/stream.js
import http from 'k6/http'
import { check } from 'k6'
import { Trend, Rate } from 'k6/metrics'

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:5000/v1'
const API_KEY = __ENV.API_KEY || ''
const MODEL = __ENV.MODEL || 'mock-c20-i100-d0'
const RATE = Number(__ENV.RATE || 50)
const DURATION = __ENV.DURATION || '30s'

const ttfb = new Trend('ttfb', true)
const events = new Trend('sse_events')
const complete = new Rate('stream_complete')

export const options = {
  scenarios: {
    stream: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(10, RATE * 3),
      maxVUs: Math.max(100, RATE * 30),
    },
  },
  thresholds: { http_req_failed: ['rate<0.001'], stream_complete: ['rate>0.999'] },
}

const body = JSON.stringify({
  model: MODEL,
  stream: true,
  stream_options: { include_usage: true },
  messages: [{ role: 'user', content: 'Hello, how are you?' }],
})
const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream' }
if (API_KEY) headers.Authorization = `Bearer ${API_KEY}`

export default function () {
  const res = http.post(`${BASE_URL}/chat/completions`, body, { headers, timeout: '120s' })
  ttfb.add(res.timings.waiting)
  const text = typeof res.body === 'string' ? res.body : ''
  const frames = text.split('\n\n').filter((e) => e.startsWith('data:'))
  events.add(frames.length)
  const done = frames.length > 0 && frames[frames.length - 1].trim() === 'data: [DONE]'
  complete.add(res.status === 200 && done)
  check(res, { 'status is 200': (r) => r.status === 200, '[DONE] last': () => done })
}
