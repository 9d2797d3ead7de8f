// k6: non-streaming chat completions at a constant arrival rate (an open model: no coordinated omission).
//   k6 run -e BASE_URL=http://127.0.0.1:5000/v1 -e API_KEY=condt_… -e MODEL=my-model -e RATE=1000 -e DURATION=60s bench/k6/chat.js
import http from 'k6/http'
import { check } from 'k6'

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:5000/v1'
const API_KEY = __ENV.API_KEY || ''
const MODEL = __ENV.MODEL || 'mock-c0-i0-d0'
const RATE = Number(__ENV.RATE || 500)
const DURATION = __ENV.DURATION || '30s'

export const options = {
  scenarios: {
    chat: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(10, Math.ceil(RATE / 20)),
      maxVUs: Math.max(50, RATE),
    },
  },
  thresholds: { http_req_failed: ['rate<0.001'] },
}

const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hello, how are you?' }] })
const headers = { 'Content-Type': 'application/json' }
if (API_KEY) headers.Authorization = `Bearer ${API_KEY}`

export default function () {
  const res = http.post(`${BASE_URL}/chat/completions`, body, { headers })
  check(res, {
    'status is 200': (r) => r.status === 200,
    'has choices': (r) => typeof r.body === 'string' && r.body.includes('"choices"'),
  })
}
