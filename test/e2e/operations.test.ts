import { afterAll, beforeAll, expect, test } from 'bun:test'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

/** What an operator scrapes and probes: /health, /ready and /metrics. */
let fake: FakeOpenAI
let gw: TestGateway
let key: string

beforeAll(async () => {
  fake = await startFakeOpenAI()
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  key = (await gw.admin('POST', '/keys', { name: 'k' })).key
})
afterAll(async () => {
  await gw.close()
  fake.stop()
})

const chat = (content: string, stream = false) =>
  fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content }] }),
  })

test('health and readiness', async () => {
  expect(await (await fetch(`${gw.origin}/health`)).json()).toEqual({ status: 'ok' })
  const ready = await fetch(`${gw.origin}/ready`)
  expect(ready.status).toBe(200)
  expect(await ready.json()).toEqual({ status: 'ready', checks: { store: 'ok' } })
  gw.gateway.draining = true
  const draining = await fetch(`${gw.origin}/ready`)
  expect(draining.status).toBe(503)
  expect(((await draining.json()) as any).checks.server).toBe('draining')
  gw.gateway.draining = false
})

test('metrics: requests, errors, tokens, latency and TTFT histograms by model and provider, in Prometheus text', async () => {
  for (let i = 0; i < 3; i++) expect((await chat('hi')).status).toBe(200)
  await (await chat('hi', true)).text()
  expect((await chat('fail-503')).status).toBe(503)
  const res = await fetch(`${gw.origin}/metrics`)
  expect(res.headers.get('content-type')).toContain('text/plain')
  const text = await res.text()

  for (const line of text.trim().split('\n')) {
    expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? [\d.e+-]+)$/)
  }
  const labels = 'endpoint="chat",model="m",provider="fake"'
  expect(text).toContain(`conduit_requests_total{${labels},status="200"} 4`)
  expect(text).toContain(`conduit_requests_total{${labels},status="503"} 1`)
  expect(text).toContain(`conduit_request_errors_total{${labels},code="server_is_overloaded"} 1`)
  expect(text).toMatch(new RegExp(`conduit_tokens_total\\{${labels},type="completion"\\} [1-9]`))
  expect(text).toContain(`conduit_request_duration_seconds_count{${labels}} 5`)
  expect(text).toContain(`conduit_time_to_first_token_seconds_count{${labels}} 1`)
  expect(text).toContain('conduit_inflight_requests 0')
  expect(text).toMatch(/conduit_resident_memory_bytes [1-9]\d+/)
})
