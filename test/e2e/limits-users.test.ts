import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Redis from 'ioredis'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/**
 * Per-user limits and tracking: a key's `user_limits` (rpm, rpd, tpm, budget) apply to each distinct `user` of the
 * request, in the same admission as the key's own limits; a request without `user` counts against the key
 * alone. The ledger records `user`; usage reports group by it.
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
/** USD per million tokens = micro-dollars per token. */
const PRICE = { input: 10, output: 10 }
let fake: FakeOpenAI

beforeAll(async () => {
  fake = await startFakeOpenAI()
})
afterAll(() => fake.stop())

const setUp = async (gw: TestGateway) => {
  await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o', price: PRICE }] })
}
const chat = (gw: TestGateway, apiKey: string, user?: string, extra: Record<string, unknown> = {}) =>
  fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...(user === undefined ? {} : { user }), ...extra }),
  })
const statuses = async (responses: Promise<Response>[]) => Promise.all(responses.map(async (r) => (await r).status))

/** The same rules in one process and, with Redis, shared by two gateways: each request alternates between them. */
for (const mode of ['in-process', 'redis, two gateways'] as const) {
  describe(mode, () => {
    let gateways: TestGateway[]
    let database: Awaited<ReturnType<typeof createTestDatabase>> | null = null
    beforeAll(async () => {
      if (mode === 'in-process') gateways = [await startGateway()]
      else {
        database = await createTestDatabase()
        const shared = { redisURL: REDIS_URL, redisTimeoutMs: 1_000, databaseURL: database.url, encryptionKey: 'users-test' }
        gateways = [await startGateway(shared), await startGateway(shared)]
      }
      await setUp(gateways[0]!)
      await Bun.sleep(100) // the other gateway hears of the model
    })
    afterAll(async () => {
      for (const gw of gateways) await gw.close()
      await database?.drop()
    })
    const gw = (i: number) => gateways[i % gateways.length]!
    const send = (i: number, key: string, user?: string, extra?: Record<string, unknown>) => chat(gw(i), key, user, extra)

    test('each user gets its own rpm; the key’s rpm still caps them all; no user counts against the key alone', async () => {
      const { key } = await gw(0).admin('POST', '/keys', { name: `users-${mode}`, rpm: 8, user_limits: { rpm: 3 } })
      // Alice and Bob at once: three each.
      const burst = await Promise.all(['alice', 'bob'].flatMap((user) => Array.from({ length: 5 }, (_, i) => send(i, key, user))))
      const alice = burst.slice(0, 5)
      const bob = burst.slice(5)
      expect(alice.filter((r) => r.status === 200).length).toBe(3)
      expect(bob.filter((r) => r.status === 200).length).toBe(3)
      const refusal = alice.find((r) => r.status === 429)!
      const body = (await refusal.json()) as any
      validateSchema('ErrorResponse', body)
      expect(body.error.code).toBe('rate_limit_exceeded')
      expect(body.error.message).toContain("the user 'alice' of this key")
      // The headers are those of the limit that binds first: Alice's 3, not the key's 8, of which more are left.
      const admitted = alice.filter((r) => r.status === 200)
      expect(admitted.map((r) => r.headers.get('x-ratelimit-limit-requests'))).toEqual(['3', '3', '3'])
      expect(admitted.map((r) => Number(r.headers.get('x-ratelimit-remaining-requests'))).sort()).toEqual([0, 1, 2])
      // Without a user only the key's limit applies, and its headers say so: 2 of its 8 are left.
      const keyAlone = await Promise.all([0, 1, 2].map((i) => send(i, key)))
      expect(keyAlone.map((r) => r.status).sort()).toEqual([200, 200, 429])
      expect(keyAlone.find((r) => r.status === 200)!.headers.get('x-ratelimit-limit-requests')).toBe('8')
      // A new user is refused by the key, and takes nothing of its own.
      const carol = await send(0, key, 'carol')
      expect(carol.status).toBe(429)
      expect(((await carol.json()) as any).error.message).toContain('on this key')
    })

    test("safety_identifier, OpenAI's replacement for user, names the user when user is absent: chat and /v1/responses", async () => {
      const { id, key } = await gw(0).admin('POST', '/keys', { name: `users-safety-${mode}`, user_limits: { rpm: 2 } })
      const responses = (i: number, body: Record<string, unknown>) =>
        fetch(`${gw(i).baseURL}/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'm', input: 'hi', ...body }),
        })
      const results = await statuses([send(0, key, undefined, { safety_identifier: 'hank' }), responses(1, { safety_identifier: 'hank' }), responses(2, { safety_identifier: 'hank' })])
      expect(results.sort()).toEqual([200, 200, 429])
      // user wins over it; another identifier is another user.
      expect((await send(0, key, 'ivy', { safety_identifier: 'hank' })).status).toBe(200)
      expect((await responses(1, { safety_identifier: 'jo' })).status).toBe(200)
      const tooLong = await responses(0, { safety_identifier: 's'.repeat(257) })
      expect(tooLong.status).toBe(400)
      expect(((await tooLong.json()) as any).error.param).toBe('safety_identifier')
      for (const g of gateways) await g.gateway.ledger.flush()
      const report = await gw(0).admin('GET', `/usage?key=${id}`)
      expect(Object.fromEntries(report.by_user.map((r: any) => [r.user, r.requests]))).toEqual({ hank: 2, ivy: 1, jo: 1 })
    })

    test('tokens per minute per user', async () => {
      const { key } = await gw(0).admin('POST', '/keys', { name: `user-tpm-${mode}`, user_limits: { tpm: 300 } })
      // Each reserves its prompt estimate and max_tokens 100: two fit in 300, the third does not.
      const results = await statuses([0, 1, 2].map((i) => send(i, key, 'dora', { max_tokens: 100 })))
      expect(results.filter((s) => s === 429).length).toBeGreaterThanOrEqual(1)
      expect((await send(0, key, 'eve', { max_tokens: 100 })).status).toBe(200)
      // A request that could never fit a user's limit is a 400 naming it.
      const never = await send(0, key, 'eve', { max_tokens: 1_000 })
      expect(never.status).toBe(400)
      expect(((await never.json()) as any).error.message).toContain("the user 'eve' of this key")
    })

    test('a budget per user: one user spends theirs, another is untouched; the ledger and the reports name them', async () => {
      const { id, key } = await gw(0).admin('POST', '/keys', { name: `user-budget-${mode}`, user_limits: { budget: { usd: 0.001, period: 'daily' } } })
      const spend = async (user: string) => {
        let admitted = 0
        for (let i = 0; ; i++) {
          const res = await send(i, key, user, { max_tokens: 3 })
          if (res.status !== 200) {
            expect(res.status).toBe(429)
            const body = (await res.json()) as any
            // Across two gateways the next request may reach the other one before the last one's settlement has
            // reached Redis: the worst case it still holds is told apart from money spent, and waited out.
            if (body.error.code === 'budget_held' && gateways.length > 1) {
              await Bun.sleep(50)
              continue
            }
            expect(body.error.code).toBe('insufficient_quota')
            expect(body.error.message).toContain(`The user '${user}' of this key has reached its daily budget of $0.001`)
            return admitted
          }
          admitted++
          await res.text()
        }
      }
      const frank = await spend('frank')
      expect(frank).toBeGreaterThan(2)
      // Grace's budget is her own.
      expect(await spend('grace')).toBe(frank)
      // No user: not limited by the per-user budget.
      expect((await send(0, key, undefined, { max_tokens: 3 })).status).toBe(200)

      for (const g of gateways) await g.gateway.ledger.flush()
      const report = await gw(0).admin('GET', `/usage?key=${id}`)
      const byUser = Object.fromEntries(report.by_user.map((r: any) => [r.user, r]))
      expect(Object.keys(byUser).sort()).toEqual(['frank', 'grace', 'null'])
      expect(byUser.frank.requests).toBe(frank)
      expect(Math.round(Number(byUser.frank.cost_usd) * 1e6)).toBeLessThanOrEqual(1_000)
      expect(byUser.null.requests).toBe(1)
      // Over every key, a user is one key's user: this key's frank is not another key's.
      const { id: otherId, key: other } = await gw(0).admin('POST', '/keys', { name: `users-other-${mode}` })
      expect((await send(0, other, 'frank', { max_tokens: 3 })).status).toBe(200)
      for (const g of gateways) await g.gateway.ledger.flush()
      const fleet = await gw(0).admin('GET', '/usage')
      const franks = fleet.by_user.filter((r: any) => r.user === 'frank' && (r.key === id || r.key === otherId))
      expect(franks.map((r: any) => [r.key, r.requests]).sort()).toEqual([[id, frank], [otherId, 1]].sort())
      // The key's own view, too.
      const own = (await (await fetch(`${gw(1).baseURL}/conduit/usage`, { headers: { authorization: `Bearer ${key}` } })).json()) as any
      expect(own.by_user.map((r: any) => r.user).sort()).toEqual(['frank', 'grace', null].sort())
    })

    test("a user value too long to record is refused (400) by a key with per-user limits; other keys don't mind", async () => {
      const { key } = await gw(0).admin('POST', '/keys', { name: `user-long-${mode}`, user_limits: { rpm: 5 } })
      const res = await send(0, key, 'u'.repeat(257))
      expect(res.status).toBe(400)
      expect(((await res.json()) as any).error.param).toBe('user')
      expect((await send(0, key, 'u'.repeat(256))).status).toBe(200)
      const { key: plain } = await gw(0).admin('POST', '/keys', { name: `user-long-plain-${mode}` })
      expect((await send(0, plain, 'u'.repeat(5_000))).status).toBe(200)
    })
  })
}

test("a user's budget survives a restart: a new instance rebuilds it from that user's ledger rows", async () => {
  const database = await createTestDatabase()
  try {
    const options = { databaseURL: database.url, encryptionKey: 'users-restart' }
    const first = await startGateway(options)
    await setUp(first)
    const { key } = await first.admin('POST', '/keys', { name: 'restart', user_limits: { budget: { usd: 0.0005, period: 'total' } } })
    let admitted = 0
    while ((await chat(first, key, 'hana', { max_tokens: 3 })).status === 200) admitted++
    expect(admitted).toBeGreaterThan(0)
    await first.close() // flushes the ledger
    const second = await startGateway(options)
    try {
      expect((await chat(second, key, 'hana', { max_tokens: 3 })).status).toBe(429)
      expect((await chat(second, key, 'ines', { max_tokens: 3 })).status).toBe(200)
    } finally {
      await second.close()
    }
  } finally {
    await database.drop()
  }
})

describe('cardinality in Redis', () => {
  let gw: TestGateway
  let redis: Redis
  beforeAll(async () => {
    gw = await startGateway({ redisURL: REDIS_URL, redisTimeoutMs: 1_000 })
    await setUp(gw)
    redis = new Redis(REDIS_URL)
  })
  afterAll(async () => {
    await gw.close()
    redis.disconnect()
  })

  test('one state per user that expires on its own; users the key’s own limit refuses leave none; no user, none', async () => {
    const { id, key } = await gw.admin('POST', '/keys', { name: 'many-users', rpm: 50, user_limits: { rpm: 2 } })
    // 200 distinct users against a key allowing 50 a minute: 50 admitted, 150 refused by the key.
    const results = await statuses(Array.from({ length: 200 }, (_, i) => chat(gw, key, `user-${i}`)))
    expect(results.filter((s) => s === 200).length).toBe(50)
    await chat(gw, key)
    const users = await redis.keys(`conduit:gov:{${id}}:u:*`)
    expect(users.length).toBe(50)
    const ttls = await Promise.all(users.map((k) => redis.pttl(k)))
    // Two a minute per user: a user's bucket is full again within 30 s; the state lives at most a minute longer.
    expect(ttls.filter((ms) => ms <= 0 || ms > 66_000)).toEqual([])
  })
})

describe('admin', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway()
  })
  afterAll(() => gw.close())

  test('user_limits are shown, patched field by field, removed with null; unknown fields are refused', async () => {
    const created = await gw.admin('POST', '/keys', { name: 'ul', user_limits: { rpm: 5, budget: { usd: 2, period: 'monthly' } } })
    expect(created.user_limits).toEqual({ rpm: 5, budget: { usd: 2, period: 'monthly' } })
    const patched = await gw.admin('PATCH', `/keys/${created.id}`, { user_limits: { rpm: null, tpm: 1_000 } })
    expect(patched.user_limits).toEqual({ tpm: 1_000, budget: { usd: 2, period: 'monthly' } })
    expect((await gw.admin('PATCH', `/keys/${created.id}`, { user_limits: null })).user_limits).toBeNull()
    const typo = await gw.adminRaw('PATCH', `/keys/${created.id}`, { user_limits: { rmp: 5 } })
    expect(typo.status).toBe(400)
    expect(((await typo.json()) as any).error).toMatchObject({ code: 'unknown_parameter', param: 'user_limits.rmp' })
    const zero = await gw.adminRaw('POST', '/keys', { name: 'ul0', user_limits: { rpm: 0 } })
    expect(zero.status).toBe(400)
  })
})
