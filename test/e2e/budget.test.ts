import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { accountFor, currentAccount } from '../../src/plugins/budget/accounts.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/** Per-key budgets on one instance: reserve the worst case, settle to the actual cost, refuse for good. */
const REDIS_URL = new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379')
/** USD per million tokens = micro-dollars per token. */
const PRICE = { input: 10, output: 10 }
let fake: FakeOpenAI

const setUp = async (gw: TestGateway) => {
  await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o', price: PRICE }] })
}
const newKey = async (gw: TestGateway, usd: number, period = 'total') =>
  (await gw.admin('POST', '/keys', { name: `b${Math.random()}`, budget: { usd, period } })) as { id: string; key: string; budget: unknown }
const chat = (gw: TestGateway, apiKey: string, content: string, extra: Record<string, unknown> = {}, signal?: AbortSignal) =>
  fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], ...extra }),
    signal,
  })
const micros = (usd: string | null) => Math.round(Number(usd) * 1e6)
/** The fake's own account of a request, priced: what the budget must have been charged. */
const upstreamCost = (from: number) => fake.usageLog.slice(from).reduce((sum, u) => sum + (u.prompt_tokens + u.completion_tokens) * PRICE.input, 0)

beforeAll(async () => {
  fake = await startFakeOpenAI()
})
afterAll(async () => {
  await fake.stop()
})

describe('one instance', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway()
    await setUp(gw)
  })
  afterAll(() => gw.close())

  test('spends down to the last request that fits, then 429 insufficient_quota that the SDK does not retry', async () => {
    const { key, budget } = await newKey(gw, 0.002)
    expect(budget).toEqual({ usd: 0.002, period: 'total' })
    const logStart = fake.usageLog.length
    let remaining = 2000
    let admitted = 0
    for (;;) {
      const res = await chat(gw, key, 'finish-length', { max_tokens: 3 })
      if (res.status !== 200) {
        expect(res.status).toBe(429)
        expect(res.headers.get('x-should-retry')).toBe('false')
        const body = (await res.json()) as any
        validateSchema('ErrorResponse', body)
        expect(body.error).toMatchObject({ type: 'insufficient_quota', code: 'insufficient_quota' })
        expect(body.error.message).toContain('budget of $0.002')
        break
      }
      admitted++
      const cost = micros(res.headers.get('x-conduit-cost-usd'))
      expect(cost).toBeGreaterThan(0)
      // The header is what is left after this request's cost (not its worst case, which it held meanwhile).
      remaining -= cost
      expect(micros(res.headers.get('x-conduit-budget-remaining-usd'))).toBe(remaining)
      await res.text()
    }
    const spent = upstreamCost(logStart)
    expect(admitted).toBeGreaterThan(3)
    expect(spent).toBe(2000 - remaining)
    expect(spent).toBeLessThanOrEqual(2000)
    // Used up: less than one request's worst case is left (its prompt's bytes and 3 completion tokens at 10 µ$).
    const worst = (JSON.stringify([{ role: 'user', content: 'finish-length' }]).length + 3) * 10
    expect(2000 - spent).toBeLessThan(worst)

    let attempts = 0
    const client = new OpenAI({
      apiKey: key,
      baseURL: gw.baseURL,
      fetch: (url: any, init: any) => {
        attempts++
        return fetch(url, init)
      },
    })
    const error = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }).catch((e) => e)
    expect(error).toBeInstanceOf(OpenAI.RateLimitError)
    expect(error.code).toBe('insufficient_quota')
    // The SDK retries a 429 twice by default; x-should-retry: false stops it.
    expect(attempts).toBe(1)
  })

  test('money held by a request in flight: 429 budget_held with Retry-After, which the SDK retries and gets through once the hold settles', async () => {
    // Worst cases (the prompt's bytes and 3 completion tokens at 10 µ$): the slow request 520 µ$, 'hi' 350 µ$. A budget
    // of 700 fits the first alone; once it has settled to what it really cost, 'hi' fits too.
    const worst = (content: string) => (JSON.stringify([{ role: 'user', content }]).length + 3) * 10
    expect([worst('slow-first-byte:800'), worst('hi')]).toEqual([520, 350])
    const { key } = await newKey(gw, 0.0007)
    const slow = chat(gw, key, 'slow-first-byte:800', { max_tokens: 3 })
    await Bun.sleep(150)

    const res = await chat(gw, key, 'hi', { max_tokens: 3 })
    expect(res.status).toBe(429)
    expect(res.headers.get('retry-after')).toBe('1')
    expect(res.headers.get('x-should-retry')).toBeNull()
    const body = (await res.json()) as any
    validateSchema('ErrorResponse', body)
    expect(body.error).toMatchObject({ type: 'rate_limit_error', code: 'budget_held' })
    expect(body.error.message).toBe(
      "This key has $0.000180 of its budget of $0.0007 free; requests in flight hold $0.000520 until they finish. This request could cost up to $0.000350 (its prompt and its max_tokens (3), at the model's price): a smaller max_tokens may fit. Retry shortly.",
    )

    let attempts = 0
    const client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, fetch: (url: any, init: any) => (attempts++, fetch(url, init)) })
    const answer = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 })
    expect(answer.choices[0]!.message.content).toBeString()
    // Refused while the slow request held its 520 µ$, admitted after the Retry-After second.
    expect(attempts).toBe(2)
    expect((await slow).status).toBe(200)
  })

  test('a spent budget is the answer even when another of the request’s budgets is only held', async () => {
    // The key's budget is held by a request without a user (520 µ$ of 700); the user's own ($0.0001) is too small for
    // any request: retrying would never help, so the refusal says spent.
    const { key } = await gw.admin('POST', '/keys', { name: `b${Math.random()}`, budget: { usd: 0.0007, period: 'total' }, user_limits: { budget: { usd: 0.0001, period: 'total' } } })
    const slow = chat(gw, key, 'slow-first-byte:800', { max_tokens: 3 })
    await Bun.sleep(150)
    const res = await chat(gw, key, 'hi', { max_tokens: 3, user: 'ivan' })
    expect(res.status).toBe(429)
    expect(res.headers.get('x-should-retry')).toBe('false')
    const body = (await res.json()) as any
    expect(body.error.code).toBe('insufficient_quota')
    expect(body.error.message).toStartWith("The user 'ivan' of this key has reached its budget of $0.0001")
    expect((await slow).status).toBe(200)
  })

  test('a request whose worst case does not fit is refused, and the message says what it could cost and why', async () => {
    const { key } = await newKey(gw, 0.001)
    const res = await chat(gw, key, 'hi', { max_tokens: 1000 }) // up to 10,000 µ$ of completion
    expect(res.status).toBe(429)
    expect(((await res.json()) as any).error.message).toMatch(/\$0\.001000 left\)\. This request could cost up to \$0\.01\d* \(its prompt and its max_tokens \(1000\), at the model's price\): a smaller max_tokens may fit\.$/)
    // Without max_tokens the reserve is the gateway's default, and the message says so.
    const unset = await chat(gw, key, 'hi')
    expect(((await unset.json()) as any).error.message).toContain('(its prompt and 4096 output tokens, as it sets no max_tokens, at the model')
    expect((await chat(gw, key, 'hi', { max_tokens: 5 })).status).toBe(200)
  })

  test('raising the budget readmits the key at once; null removes it', async () => {
    const { id, key } = await newKey(gw, 0.0001)
    expect((await chat(gw, key, 'hi', { max_tokens: 5 })).status).toBe(429)
    await gw.admin('PATCH', `/keys/${id}`, { budget: { usd: 1, period: 'total' } })
    const res = await chat(gw, key, 'hi', { max_tokens: 5 })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-conduit-budget-remaining-usd')).not.toBeNull()
    const view = await gw.admin('PATCH', `/keys/${id}`, { budget: null })
    expect(view.budget).toBeNull()
    const free = await chat(gw, key, 'hi')
    expect(free.status).toBe(200)
    expect(free.headers.get('x-conduit-budget-remaining-usd')).toBeNull()
    expect((await gw.adminRaw('PATCH', `/keys/${id}`, { budget: { usd: 0, period: 'total' } })).status).toBe(400)
    expect((await gw.adminRaw('PATCH', `/keys/${id}`, { budget: { usd: 1, period: 'weekly' } })).status).toBe(400)
  })

  test('the worst case counts what providers bill as prompt besides the messages (tools, response_format), and each prompt of a completions list', async () => {
    // 10 µ$ a token: a 40 KB tool description is up to $0.4 of prompt, whatever the message says.
    const { key } = await newKey(gw, 0.1)
    const before = fake.requests.length
    const tool = { type: 'function', function: { name: 'lookup', description: 'x'.repeat(40_000), parameters: { type: 'object' } } }
    const withTool = await chat(gw, key, 'hi', { max_tokens: 10, tools: [tool] })
    expect(withTool.status).toBe(429)
    expect(((await withTool.json()) as any).error.code).toBe('insufficient_quota')
    const schema = { type: 'json_schema', json_schema: { name: 'big', schema: { type: 'object', description: 'x'.repeat(40_000) } } }
    expect((await chat(gw, key, 'hi', { max_tokens: 10, response_format: schema })).status).toBe(429)
    // Twenty prompts answered with up to 400 tokens each: 8,000 completion tokens at worst, $0.08 and the prompts.
    const completions = (prompt: unknown) =>
      fetch(`${gw.baseURL}/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', prompt, max_tokens: 400 }),
      })
    expect((await completions(Array.from({ length: 30 }, (_, i) => `prompt ${i}`))).status).toBe(429)
    expect(fake.requests.length).toBe(before)
    const one = await completions('one prompt')
    expect(one.status).toBe(200)
  })

  test("a period changed right after a burst still counts the burst (the ledger's rows not yet written included)", async () => {
    const { id, key } = await newKey(gw, 1, 'daily')
    const from = fake.usageLog.length
    for (let i = 0; i < 5; i++) expect((await chat(gw, key, 'hi', { max_tokens: 5 })).status).toBe(200)
    // At once, before the ledger's next write: this month holds today's spend.
    await gw.admin('PATCH', `/keys/${id}`, { budget: { usd: 1, period: 'monthly' } })
    const res = await chat(gw, key, 'hi', { max_tokens: 5 })
    expect(res.status).toBe(200)
    expect(micros(res.headers.get('x-conduit-budget-remaining-usd'))).toBe(1_000_000 - upstreamCost(from))
  })

  test('a stream the client aborts is charged its prompt and what it received, within 2 s', async () => {
    const { key } = await newKey(gw, 1)
    const controller = new AbortController()
    const res = await chat(gw, key, 'slow-stream:100', { stream: true }, controller.signal)
    const reader = res.body!.getReader()
    await reader.read()
    await reader.read()
    const before = micros(res.headers.get('x-conduit-budget-remaining-usd'))
    controller.abort()
    const aborted = performance.now()
    let remaining = before
    while (performance.now() - aborted < 2000) {
      const probe = await chat(gw, key, 'hi', { max_tokens: 1 })
      // A whole answer's header is what is left after its own cost.
      remaining = micros(probe.headers.get('x-conduit-budget-remaining-usd')) + micros(probe.headers.get('x-conduit-cost-usd'))
      await probe.text()
      if (remaining < 1_000_000 - 100) break
      await Bun.sleep(50)
    }
    // Charged: some prompt tokens and at least one streamed token, far less than the 4,096-token reservation.
    expect(remaining).toBeLessThan(1_000_000 - 20)
    expect(remaining).toBeGreaterThan(1_000_000 - 5_000)
  })

  test('periods are UTC calendar days and months; total never resets', () => {
    const at = new Date('2026-11-30T23:59:59.999Z')
    expect(accountFor({ usd: 1, period: 'daily' }, at)).toMatchObject({ period: 'd2026-11-30', since: Date.parse('2026-11-30T00:00:00Z') })
    expect(accountFor({ usd: 1, period: 'daily' }, new Date(at.getTime() + 1)).period).toBe('d2026-12-01')
    expect(accountFor({ usd: 1, period: 'monthly' }, at)).toMatchObject({ period: 'm2026-11', since: Date.parse('2026-11-01T00:00:00Z') })
    expect(accountFor({ usd: 1, period: 'monthly' }, new Date(at.getTime() + 1)).period).toBe('m2026-12')
    expect(accountFor({ usd: 1, period: 'total' }, at)).toMatchObject({ period: 'total', since: 0 })
    // The period reused between requests turns over exactly when a new one starts, forwards and back.
    for (const period of ['daily', 'monthly', 'total'] as const) {
      for (const ms of [at.getTime(), at.getTime() + 1, at.getTime(), Date.parse('2027-01-31T23:59:59.999Z'), Date.parse('2027-02-01T00:00:00Z')]) {
        expect(currentAccount({ usd: 1, period }, ms)).toEqual(accountFor({ usd: 1, period }, new Date(ms)))
      }
    }
  })
})

describe('image inputs', () => {
  let gw: TestGateway
  beforeAll(async () => {
    // Above the fake's 765 a picture, and small enough that a few pictures fit in a test budget.
    gw = await startGateway({ plugins: [{ use: 'builtin:budget', config: { imageTokens: 1000 } }] })
    await setUp(gw)
  })
  afterAll(() => gw.close())

  test('each image is reserved at imageTokens: a burst of requests with image URLs and max_tokens set cannot overspend', async () => {
    const { key } = await newKey(gw, 0.05)
    const pictures = Array.from({ length: 4 }, (_, i) => ({ type: 'image_url', image_url: { url: `https://images.example/${i}.png` } }))
    const logStart = fake.usageLog.length
    const statuses = await Promise.all(
      Array.from({ length: 10 }, () =>
        fetch(`${gw.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'text', text: 'What are these?' }, ...pictures] }] }),
        }).then(async (res) => (await res.arrayBuffer(), res.status)),
      ),
    )
    const served = fake.usageLog.slice(logStart)
    // Four pictures are 3,060 tokens at the fake: a few bytes of URL each would have reserved a fortieth of that.
    expect(served.every((u) => u.prompt_tokens > 3000)).toBe(true)
    expect(statuses.filter((s) => s === 200).length).toBe(served.length)
    expect(served.length).toBeGreaterThanOrEqual(1)
    expect(statuses.filter((s) => s !== 200).every((s) => s === 429)).toBe(true)
    expect(upstreamCost(logStart)).toBeLessThanOrEqual(50_000)
  })
})

describe('models without a price', () => {
  let gw: TestGateway
  let lenient: TestGateway
  beforeAll(async () => {
    gw = await startGateway()
    lenient = await startGateway({ plugins: [{ use: 'builtin:budget', config: { allowUnpriced: true } }] })
    for (const g of [gw, lenient]) {
      await setUp(g)
      // No override and no catalog entry for this model.
      await g.admin('POST', '/models', { name: 'own', targets: [{ provider: 'fake', model: 'our-own-finetune-7b' }] })
    }
  })
  afterAll(async () => {
    await gw.close()
    await lenient.close()
  })
  const ask = (g: TestGateway, key: string, model: string) =>
    fetch(`${g.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }),
    })

  test('a key with a budget calling a model that has no price: 403 model_not_priced, nothing sent; a key without one is served', async () => {
    const { key } = await newKey(gw, 1)
    const before = fake.requests.length
    const res = await ask(gw, key, 'own')
    expect(res.status).toBe(403)
    const body = (await res.json()) as any
    validateSchema('ErrorResponse', body)
    expect(body.error).toMatchObject({ type: 'permission_error', code: 'model_not_priced', param: 'model' })
    expect(body.error.message).toContain("The model 'own' has no price, so this key's budget could not count")
    expect(fake.requests.length).toBe(before)
    const { key: free } = await gw.admin('POST', '/keys', { name: `free${Math.random()}` })
    expect((await ask(gw, free, 'own')).status).toBe(200)
    // A user's budget binds the same way.
    const { key: perUser } = await gw.admin('POST', '/keys', { name: `pu${Math.random()}`, user_limits: { budget: { usd: 1, period: 'total' } } })
    const asUser = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${perUser}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'own', messages: [{ role: 'user', content: 'hi' }], user: 'ann' }),
    })
    expect(asUser.status).toBe(403)
    expect(((await asUser.json()) as any).error.message).toContain("so the budget of this key's user 'ann' could not count")
  })

  test('allowUnpriced: served, and the budget counts it at $0', async () => {
    const { key } = await newKey(lenient, 0.001)
    for (let i = 0; i < 3; i++) expect((await ask(lenient, key, 'own')).status).toBe(200)
    const res = await ask(lenient, key, 'own')
    expect(res.headers.get('x-conduit-budget-remaining-usd')).toBe('0.001000')
  })

  test('a model with a priced target and an unpriced one: a request the unpriced one serves is charged its hold', async () => {
    // The priced target has no weight: every request goes to the unpriced one, but the worst case is known.
    await gw.admin('POST', '/models', {
      name: 'mixed',
      targets: [
        { provider: 'fake', model: 'gpt-4o', price: PRICE, weight: 0 },
        { provider: 'fake', model: 'our-own-finetune-7b', weight: 1 },
      ],
    })
    const { key } = await newKey(gw, 0.01)
    const first = await ask(gw, key, 'mixed')
    expect(first.status).toBe(200)
    expect(first.headers.get('x-conduit-model')).toBe('our-own-finetune-7b')
    expect(first.headers.get('x-conduit-cost-usd')).toBe('0.000000')
    await first.text()
    // Worst case: the prompt's bytes and 3 completion tokens at 10 µ$ each; charged in full, not $0.
    const worst = (JSON.stringify([{ role: 'user', content: 'hi' }]).length + 3) * 10
    await Bun.sleep(50) // the settlement lands
    const probe = await ask(gw, key, 'mixed')
    expect(micros(probe.headers.get('x-conduit-budget-remaining-usd'))).toBe(10_000 - worst - worst)
  })
})

describe('restarts and Redis', () => {
  test('spend survives a restart: a new instance on the same database rebuilds the budget from the ledger', async () => {
    const database = await createTestDatabase()
    try {
      const first = await startGateway({ databaseURL: database.url, encryptionKey: 'budget-test' })
      await setUp(first)
      const { key } = await newKey(first, 0.01)
      const logStart = fake.usageLog.length
      for (let i = 0; i < 5; i++) await (await chat(first, key, `question ${i}`, { max_tokens: 3 })).text()
      await first.close() // flushes the ledger
      const spent = upstreamCost(logStart)

      const second = await startGateway({ databaseURL: database.url, encryptionKey: 'budget-test' })
      const res = await chat(second, key, 'finish-length', { max_tokens: 3 })
      expect(micros(res.headers.get('x-conduit-budget-remaining-usd'))).toBe(10_000 - spent - micros(res.headers.get('x-conduit-cost-usd')))
      await second.close()
    } finally {
      await database.drop()
    }
  })

  /*
   * BU9. The row: counter store down, flag on → 100% 503 in < 200 ms and 0 upstream calls; flag off → served,
   * marked. The header is `x-conduit-budget-degraded` here. Down means refused connections, or connected and
   * silent (hung): the failing-closed instance is given a 100 ms Redis timeout so that 200 ms is twice it.
   */
  test('money one instance spent while cut off from Redis is added to the shared account when Redis is back: no overspend', async () => {
    const database = await createTestDatabase()
    const proxy = await startFaultProxy({ hostname: REDIS_URL.hostname, port: Number(REDIS_URL.port || 6379) })
    const shared = { databaseURL: database.url, encryptionKey: 'budget-test' }
    const a = await startGateway({ ...shared, redisURL: REDIS_URL.href })
    const b = await startGateway({ ...shared, redisURL: proxy.url('', 'redis') })
    try {
      await setUp(a)
      const { key } = await newKey(a, 0.005)
      const logStart = fake.usageLog.length
      /** Sequential requests on `gw` until one is refused (or `most`): how many were served. */
      const spendOn = async (gw: TestGateway, most: number) => {
        for (let served = 0; served < most; served++) {
          const res = await chat(gw, key, 'hi', { max_tokens: 5 })
          await res.text()
          if (res.status !== 200) return served
        }
        return most
      }
      expect(await spendOn(a, 3)).toBe(3)
      await a.gateway.ledger.flush() // what the cut-off instance sums its budget from
      proxy.refuse()
      let servedCutOff: number
      try {
        servedCutOff = await spendOn(b, 100)
        await b.gateway.ledger.flush()
      } finally {
        proxy.restore()
      }
      expect(servedCutOff).toBeGreaterThan(0)
      // Reconnected: what it owes leaves at once, not at its next retry a second later.
      const deadline = Date.now() + 5_000
      while (Date.now() < deadline && (await chat(b, key, 'hi', { max_tokens: 5 })).headers.get('x-conduit-budget-degraded')) await Bun.sleep(50)
      await Bun.sleep(100)
      const afterwards = await spendOn(a, 100)
      expect(upstreamCost(logStart)).toBeLessThanOrEqual(5_000)
      expect(afterwards).toBeLessThanOrEqual(1)
    } finally {
      await a.close()
      await b.close()
      proxy.stop()
      await database.drop()
    }
  }, 30_000)

  describe('BU9: Redis gone', () => {
    const ROUND = 20
    const BOUND_MS = 200
    let proxy: FaultProxy
    let open: TestGateway
    let closed: TestGateway
    beforeAll(async () => {
      proxy = await startFaultProxy({ hostname: REDIS_URL.hostname, port: Number(REDIS_URL.port || 6379) })
      open = await startGateway({ redisURL: proxy.url('', 'redis') })
      closed = await startGateway({
        redisURL: proxy.url('', 'redis'),
        plugins: [{ use: 'builtin:budget', config: { failClosed: true, redisTimeoutMs: 100 } }],
      })
      for (const gw of [open, closed]) await setUp(gw)
    })
    afterAll(async () => {
      await open.close()
      await closed.close()
      proxy.stop()
    })

    /** ROUND budgeted requests at once to each instance, timed; the upstream's request count around them. */
    const round = async (a: string, b: string) => {
      const timed = async (gw: TestGateway, key: string) => {
        const started = performance.now()
        const res = await chat(gw, key, 'hi', { max_tokens: 3 })
        // A key with only a budget has no rate limit to be degraded about.
        const degraded = `${res.headers.get('x-conduit-budget-degraded')} ${res.headers.get('x-ratelimit-degraded')}`
        return { ms: performance.now() - started, status: res.status, degraded, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as any }
      }
      const before = fake.requests.length
      const refused = await Promise.all(Array.from({ length: ROUND }, () => timed(closed, b)))
      const upstreamForClosed = fake.requests.length - before
      const served = await Promise.all(Array.from({ length: ROUND }, () => timed(open, a)))
      return { refused, served, upstreamForClosed, upstreamForOpen: fake.requests.length - before - upstreamForClosed }
    }
    const healthy = async (a: string, b: string) => {
      for (const [gw, key] of [[open, a], [closed, b]] as const) {
        const res = await chat(gw, key, 'hi', { max_tokens: 3 })
        expect(`${res.status} ${res.headers.get('x-conduit-budget-degraded')}`).toBe('200 null')
      }
    }
    const check = ({ refused, served, upstreamForClosed, upstreamForOpen }: Awaited<ReturnType<typeof round>>) => {
      expect(upstreamForClosed).toBe(0)
      expect(refused.filter((r) => r.status !== 503).map((r) => r.status)).toEqual([])
      for (const { body, retryAfter } of refused) {
        validateSchema('ErrorResponse', body)
        expect(body.error.code).toBe('budget_unavailable')
        expect(retryAfter).toBe('1')
      }
      const slowest = Math.max(...refused.map((r) => r.ms))
      expect(slowest).toBeLessThan(BOUND_MS)
      expect(served.map((r) => `${r.status} ${r.degraded}`)).toEqual(Array(ROUND).fill('200 true null'))
      expect(upstreamForOpen).toBe(ROUND)
      return slowest
    }

    test('refusing connections: failClosed answers every budgeted request 503 at once, none sent; by default all served, marked', async () => {
      const [a, b] = [await newKey(open, 1), await newKey(closed, 1)]
      await healthy(a.key, b.key)
      proxy.refuse()
      let slowest: number
      try {
        slowest = check(await round(a.key, b.key))
      } finally {
        proxy.restore()
      }
      console.log(`BU9 (refused): ${ROUND} × 503, slowest ${slowest.toFixed(1)} ms`)
    })

    test('hung (connected, silent): the same, within twice the budget store timeout', async () => {
      const [a, b] = [await newKey(open, 1), await newKey(closed, 1)]
      // Served again once the 1 s bypass after the last test's outage is over.
      await Bun.sleep(1100)
      await healthy(a.key, b.key)
      proxy.fault = { kind: 'stall', afterBytes: 0 }
      let slowest: number
      try {
        slowest = check(await round(a.key, b.key))
      } finally {
        // A hung Redis that recovers drops its connections; the gateways reconnect.
        proxy.fault = { kind: 'pass' }
        proxy.refuse()
        proxy.restore()
      }
      console.log(`BU9 (hung): ${ROUND} × 503, slowest ${slowest.toFixed(1)} ms`)
    })
  })
})
