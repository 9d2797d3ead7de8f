import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { estimatePromptTokens } from '../../src/plugin-sdk/tokens.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { resetDuration } from '../../src/plugins/rate-limit/index.ts'

/** Per-key policy on one instance: exact request and token limits, concurrency, allowed endpoints. */
let fake: FakeOpenAI
let gw: TestGateway

beforeAll(async () => {
  fake = await startFakeOpenAI()
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
})
afterAll(async () => {
  await gw.close()
  fake.stop()
})

const key = async (policy: Record<string, unknown>) => (await gw.admin('POST', '/keys', { name: `k${Math.random()}`, ...policy })).key as string
const chat = (apiKey: string, content = 'hi', extra: Record<string, unknown> = {}, signal?: AbortSignal) =>
  fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], ...extra }),
    signal,
  })
/** What the limiter reserves for a chat prompt (its own estimate, ⌈JSON characters / 4⌉), so a test can be exact. */
const promptEstimate = (content = 'hi') => estimatePromptTokens({ messages: [{ role: 'user', content }] })

describe('x-ratelimit-reset-* as OpenAI writes it (Go durations)', () => {
  test('milliseconds, seconds, minutes and hours', () => {
    const cases: [number, string][] = [[0, '0s'], [6, '6ms'], [0.2, '1ms'], [1000, '1s'], [1500, '1.5s'], [59_996, '59.996s'], [60_000, '1m0s'], [360_000, '6m0s'], [17_280_000, '4h48m0s'], [86_399_996, '23h59m59.996s']]
    expect(cases.map(([ms]) => resetDuration(ms))).toEqual(cases.map(([, text]) => text))
  })

  test('a day limit resets in hours and minutes, not tens of thousands of seconds', async () => {
    const res = await chat(await key({ rpd: 5 }))
    expect(res.headers.get('x-ratelimit-reset-requests')).toMatch(/^4h4\dm\d+(\.\d+)?s$/)
  })
})

describe('requests per minute', () => {
  test('exactly the limit is admitted under concurrency; refusals are 429 with a true Retry-After', async () => {
    const k = await key({ rpm: 10 })
    const before = fake.requests.length
    const responses = await Promise.all(Array.from({ length: 50 }, () => chat(k)))
    const ok = responses.filter((r) => r.status === 200)
    const refused = responses.filter((r) => r.status === 429)
    expect(ok.length).toBe(10)
    expect(refused.length).toBe(40)
    expect(fake.requests.length - before).toBe(10)

    const first = refused[0]!
    const retryAfter = Number(first.headers.get('retry-after'))
    expect(Number.isInteger(retryAfter)).toBe(true)
    // 10 per minute refills one every 6 s.
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(retryAfter).toBeLessThanOrEqual(6)
    expect(first.headers.get('x-ratelimit-limit-requests')).toBe('10')
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('0')
    expect(first.headers.get('x-ratelimit-reset-requests')).toMatch(/^(\d{1,2}(\.\d{1,3})?s|1m0s)$/)
    const body = (await first.json()) as any
    validateSchema('ErrorResponse', body)
    expect(body.error.code).toBe('rate_limit_exceeded')
    expect(ok[0]!.headers.get('x-ratelimit-limit-requests')).toBe('10')
  })

  test('a request made after Retry-After succeeds', async () => {
    const k = await key({ rpm: 60 })
    const burst = await Promise.all(Array.from({ length: 61 }, () => chat(k)))
    const refused = burst.find((r) => r.status === 429)!
    const wait = Number(refused.headers.get('retry-after'))
    expect(wait).toBe(1)
    await Bun.sleep(wait * 1000)
    expect((await chat(k)).status).toBe(200)
  })

  test('remaining counts down on admitted responses', async () => {
    const k = await key({ rpm: 5 })
    const remaining: string[] = []
    for (let i = 0; i < 3; i++) remaining.push((await chat(k)).headers.get('x-ratelimit-remaining-requests')!)
    expect(remaining).toEqual(['4', '3', '2'])
  })
})

describe('tokens per minute', () => {
  test('tokens are reserved at admission and refunded to actual usage when the request ends', async () => {
    const k = await key({ tpm: 1000 })
    // Each reserves ~13 prompt tokens + max_tokens 200 and is held in flight by the upstream for 300 ms.
    const burst = () => Promise.all(Array.from({ length: 6 }, () => chat(k, 'slow-first-byte:300', { max_tokens: 200 })))
    const first = await burst()
    expect(first.filter((r) => r.status === 200).length).toBe(4)
    expect(first.filter((r) => r.status === 429).length).toBe(2)
    expect(first.find((r) => r.status === 429)!.headers.get('x-ratelimit-limit-tokens')).toBe('1000')
    // The fake used a few dozen tokens each; the unused reservation came back, so four fit again.
    await Bun.sleep(20)
    const second = await burst()
    expect(second.filter((r) => r.status === 200).length).toBe(4)
  })

  /*
   * RL6. The row: L = 10,000, each request reserves 600 and uses 200; afterwards remaining = L − Σ actual (±1).
   * Here L = 300, so the bucket refills one token per 200 ms: slow next to this test, and the refill that did
   * happen is bounded by the time measured around it (the in-process limiter runs on this same clock).
   */
  test('RL6: after reconciliation, remaining = L − Σ actual usage; exactly that much is admitted next', async () => {
    const LIMIT = 300
    const TOKEN_MS = 60_000 / LIMIT
    const k = await key({ tpm: LIMIT })
    const started = performance.now()
    const refilled = () => Math.floor((performance.now() - started) / TOKEN_MS)
    // Each reserves the prompt estimate + 50; the fake uses a few tokens of prompt and ~14 of completion.
    const done = await Promise.all(Array.from({ length: 4 }, () => chat(k, 'hi', { max_tokens: 50 })))
    expect(done.map((r) => r.status)).toEqual([200, 200, 200, 200])
    const actual = (await Promise.all(done.map(async (r) => ((await r.json()) as any).usage.total_tokens as number))).reduce((a, b) => a + b)
    const reserved = 4 * (promptEstimate() + 50)
    expect(actual).toBeLessThan(reserved / 2)

    // One that cannot fit is refused and reports what is left, not counting its own reservation.
    const probe = await chat(k, 'hi', { max_tokens: LIMIT - promptEstimate() })
    expect(probe.status).toBe(429)
    const remaining = Number(probe.headers.get('x-ratelimit-remaining-tokens'))
    const refill = refilled()
    expect(remaining).toBeGreaterThanOrEqual(LIMIT - actual)
    expect(remaining).toBeLessThanOrEqual(LIMIT - actual + refill)

    // A request reserving exactly that is admitted and leaves nothing (but what refilled since).
    const fits = await chat(k, 'hi', { max_tokens: remaining - promptEstimate() })
    expect(fits.status).toBe(200)
    expect(Number(fits.headers.get('x-ratelimit-remaining-tokens'))).toBeLessThanOrEqual(refilled())
    console.log(`RL6: L ${LIMIT}, reserved ${reserved}, used ${actual}, remaining ${remaining} (refill allowance ${refill})`)
  })

  test('an image counts as a picture in the tpm reservation, not as the characters of its URL', async () => {
    // Four pictures are 3,060 tokens at the fake (gpt-4o's 765 each); the URLs' text would have reserved some 100.
    const k = await key({ tpm: 7_000 })
    const pictures = Array.from({ length: 4 }, (_, i) => ({ type: 'image_url', image_url: { url: `https://images.example/${i}.png` } }))
    const before = fake.requests.length
    const burst = await Promise.all(Array.from({ length: 5 }, () => chat(k, [{ type: 'text', text: 'What are these?' }, ...pictures] as any, { max_tokens: 5 })))
    expect(burst.map((r) => r.status).sort()).toEqual([200, 200, 429, 429, 429])
    expect(fake.requests.length - before).toBe(2)
  })

  test('a request the provider fails gives its reservation back, as the ledger bills it nothing', async () => {
    const k = await key({ tpm: 2100 })
    for (const stream of [true, false]) expect((await chat(k, 'fail-500', { stream, max_tokens: 1000 })).status).toBe(500)
    // Both reservations (about 1,010 tokens each) held would leave 90: this one fits only if they came back.
    const after = await chat(k, 'hi', { max_tokens: 1000 })
    expect(after.status).toBe(200)
  })

  test('a prompt larger than the whole limit is a clear 400, not a 429 that can never succeed', async () => {
    const k = await key({ tpm: 50 })
    const before = fake.requests.length
    const res = await chat(k, 'x'.repeat(400))
    expect(res.status).toBe(400)
    expect(((await res.json()) as any).error.code).toBe('request_exceeds_token_limit')
    expect(fake.requests.length).toBe(before)
  })

  // RL7: a request that could never fit the bucket, even full, is refused outright; it takes nothing.
  test('max_tokens above the limit is a 400 naming the field and both numbers; our default reserve is not', async () => {
    const k = await key({ tpm: 1000 })
    const before = fake.requests.length
    const cases = [
      { extra: { max_tokens: 5000 }, param: 'max_tokens', numbers: ['5000', '1000'] },
      // Fits alone, not with the prompt (8 tokens: 32 characters of JSON).
      { extra: { max_completion_tokens: 995 }, param: 'max_completion_tokens', numbers: ['995', '1000'] },
      { extra: { max_tokens: 300, n: 4 }, param: 'max_tokens', numbers: ['300', '4', '1000'] },
    ]
    for (const { extra, param, numbers } of cases) {
      const res = await chat(k, 'hi', extra)
      expect(res.status).toBe(400)
      const body = (await res.json()) as any
      validateSchema('ErrorResponse', body)
      expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'request_exceeds_token_limit', param })
      for (const n of numbers) expect(body.error.message).toContain(n)
    }
    expect(fake.requests.length).toBe(before)

    // The refusals took nothing: a request that fits sees the whole bucket. One without max_tokens reserves our
    // default (256), which never refuses: it is capped to the limit.
    const fits = await chat(k, 'hi', { max_tokens: 900 })
    expect(fits.status).toBe(200)
    expect(Number(fits.headers.get('x-ratelimit-remaining-tokens'))).toBe(1000 - 900 - promptEstimate())
    const small = await key({ tpm: 100 })
    expect((await chat(small, 'hi')).status).toBe(200)
  })

  test('the same holds for a model’s own token limit; what the key took is given back', async () => {
    await gw.admin('POST', '/models', { name: 'tpm-model', targets: [{ provider: 'fake', model: 'gpt-4o' }], limits: { tpm: 500 } })
    const k = await key({ tpm: 10_000 })
    const before = fake.requests.length
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tpm-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000 }),
    })
    expect(res.status).toBe(400)
    const { error } = (await res.json()) as any
    expect(error).toMatchObject({ code: 'request_exceeds_token_limit', param: 'max_tokens' })
    expect(error.message).toContain("the model 'tpm-model'")
    expect(error.message).toContain('500')
    expect(fake.requests.length).toBe(before)
    // The key's own limit admitted 1,000 tokens and the prompt's before the model refused: they all came back.
    const next = await chat(k, 'hi', { max_tokens: 10 })
    expect(Number(next.headers.get('x-ratelimit-remaining-tokens'))).toBe(10_000 - 10 - promptEstimate())
  })
})

describe('max_parallel', () => {
  test('requests in flight are capped; a slot frees as soon as a client aborts', async () => {
    const k = await key({ max_parallel: 2 })
    const controllers = [new AbortController(), new AbortController()]
    const running = await Promise.all(controllers.map((c) => chat(k, 'slow-stream:100', { stream: true }, c.signal)))
    expect(running.map((r) => r.status)).toEqual([200, 200])
    const third = await chat(k)
    expect(third.status).toBe(429)
    expect(third.headers.get('retry-after')).toBe('1')

    await running[0]!.body!.getReader().read()
    controllers[0]!.abort()
    const deadline = Date.now() + 1000
    let status = 0
    while (Date.now() < deadline && status !== 200) {
      status = (await chat(k)).status
      if (status !== 200) await Bun.sleep(20)
    }
    expect(status).toBe(200)
    controllers[1]!.abort()
  })
})

describe('allowed endpoints and the admin view', () => {
  test('a key limited to chat may not call embeddings; models stay visible', async () => {
    const k = await key({ allowed_endpoints: ['chat'] })
    expect((await chat(k)).status).toBe(200)
    const embed = await fetch(`${gw.baseURL}/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', input: 'x' }),
    })
    expect(embed.status).toBe(403)
    expect(((await embed.json()) as any).error.code).toBe('endpoint_not_allowed')
    expect((await fetch(`${gw.baseURL}/models`, { headers: { authorization: `Bearer ${k}` } })).status).toBe(200)
  })

  test('limits are shown, patched, and removed with null; the change applies to the next request', async () => {
    const created = await gw.admin('POST', '/keys', { name: 'policy', rpm: 1, tpm: 5000, allowed_endpoints: ['chat', 'embeddings'] })
    expect(created).toMatchObject({ rpm: 1, rpd: null, tpm: 5000, max_parallel: null, allowed_endpoints: ['chat', 'embeddings'] })
    expect((await chat(created.key)).status).toBe(200)
    expect((await chat(created.key)).status).toBe(429)
    const patched = await gw.admin('PATCH', `/keys/${created.id}`, { rpm: null, max_parallel: 3 })
    expect(patched).toMatchObject({ rpm: null, tpm: 5000, max_parallel: 3 })
    expect((await chat(created.key)).status).toBe(200)
    const bad = await gw.adminRaw('POST', '/keys', { name: 'bad', rpm: 0 })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as any).error.param).toBe('rpm')
  })
})

describe('limits on a virtual model', () => {
  test('shared by every key that calls it, on top of each key’s own; shown and removed in the admin view', async () => {
    const model = await gw.admin('POST', '/models', { name: 'quota-model', targets: [{ provider: 'fake', model: 'gpt-4o' }], limits: { max_parallel: 2 } })
    expect(model.limits).toEqual({ max_parallel: 2 })
    const keys = await Promise.all([key({}), key({}), key({ rpm: 2 })])
    const call = (k: string, content = 'hi') =>
      fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'quota-model', messages: [{ role: 'user', content }] }),
      })

    // Two slow requests fill the model's parallel slots, whoever sends them.
    const slow = [call(keys[0]!, 'slow-first-byte:400'), call(keys[1]!, 'slow-first-byte:400')]
    await Bun.sleep(100)
    const third = await call(keys[0]!)
    expect(third.status).toBe(429)
    expect(((await third.json()) as any).error.message).toContain("model 'quota-model' already has 2 requests in flight")
    expect((await Promise.all(slow)).map((r) => r.status)).toEqual([200, 200])

    // rpm 4 for everyone together; the third key also has its own rpm 2.
    // A patch merges like one on a key: absent fields stay, null removes.
    const patched = await gw.admin('PATCH', '/models/quota-model', { limits: { rpm: 4, max_parallel: null } })
    expect(patched.limits).toEqual({ rpm: 4 })
    const statuses = await Promise.all([call(keys[2]!), call(keys[2]!), call(keys[2]!), ...Array.from({ length: 6 }, (_, i) => call(keys[i % 2]!))])
    expect(statuses.filter((r) => r.status === 200).length).toBe(4)
    // The key's own limit refused its third request before it could take a unit of the model's.
    expect(statuses.slice(0, 3).filter((r) => r.status === 200).length).toBeLessThanOrEqual(2)
    const refusal = statuses.find((r) => r.status === 429)!
    expect(Number(refusal.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)

    const cleared = await gw.admin('PATCH', '/models/quota-model', { limits: null })
    expect(cleared.limits).toBeNull()
    expect((await call(keys[0]!)).status).toBe(200)
  })
})
