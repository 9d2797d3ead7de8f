import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Redis from 'ioredis'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { fire } from '../helpers/fire.ts'
import { startInstances, type Instance } from '../helpers/instances.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/**
 * Three gateway processes sharing one PostgreSQL database and the machine's Redis: limits and budgets hold
 * exactly across them, revocations reach all of them, and a Redis outage costs no request more than the
 * command timeout while each instance keeps a third of every limit.
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let fake: FakeOpenAI
let database: Awaited<ReturnType<typeof createTestDatabase>>
let instances: Instance[]
/** Between the gateways and Redis, so a test can make Redis vanish and come back. */
let relay: FaultProxy
/** Holds the gateways' config file. */
let configDir: string

const REDIS_TIMEOUT_MS = 250
/** USD per million tokens, i.e. micro-dollars per token: 10 makes every token cost 10 µ$. */
const PRICE = { input: 10, output: 10 }

beforeAll(async () => {
  fake = await startFakeOpenAI()
  database = await createTestDatabase()
  const redis = new URL(REDIS_URL)
  relay = await startFaultProxy({ hostname: redis.hostname, port: Number(redis.port || 6379) })
  // Redis is reached through a relay in this process, which the bursts below keep busy: its delays are Redis's
  // delays to the gateways, and on two shared cores they can pass the default 50 ms (limits-busy.test.ts runs the
  // default against Redis itself). Redis itself answers in < 1 ms.
  // Three instances, and they are told so: while Redis is down each keeps a third of every limit.
  configDir = mkdtempSync(path.join(tmpdir(), 'conduit-limits-'))
  const config = path.join(configDir, 'conduit.json')
  writeFileSync(config, JSON.stringify({ plugins: [{ use: 'builtin:rate-limit', config: { instances: 3 } }] }))
  instances = await startInstances(3, {
    DATABASE_URL: database.url,
    REDIS_URL: relay.url('', 'redis'),
    CONDUIT_REDIS_TIMEOUT_MS: String(REDIS_TIMEOUT_MS),
    CONDUIT_CONFIG: config,
  })
  const [a] = instances
  await a!.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await a!.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o', price: PRICE }] })
  // Every instance sees the new model before the tests start.
  await Bun.sleep(300)
}, 60_000)

afterAll(async () => {
  for (const gw of instances) await gw.stop()
  relay.stop()
  await fake.stop()
  await database.drop()
  rmSync(configDir, { recursive: true, force: true })
}, 30_000)

/** Ids of the keys this file created: the Redis hygiene check looks at their state only. */
const keyIds: string[] = []
const key = async (policy: Record<string, unknown>) => {
  const created = (await instances[0]!.admin('POST', '/keys', { name: `k${Math.random()}`, ...policy })) as { id: string; key: string }
  keyIds.push(created.id)
  return created
}
const chat = (i: number, apiKey: string, content = 'hi', extra: Record<string, unknown> = {}, signal?: AbortSignal) =>
  fetch(`${instances[i % 3]!.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], ...extra }),
    signal,
  })

describe('exact across three instances', () => {
  test('1,000 attempts from 60 clients against a limit of 100 per day: exactly 100 admitted; every 429 says when to retry', async () => {
    const { key: k } = await key({ rpd: 100 })
    const before = fake.requests.length
    const retryAfters: (string | null)[] = []
    const started = performance.now()
    const statuses = await fire(1000, 60, async (i) => {
      const res = await chat(i, k)
      if (res.status === 429) retryAfters.push(res.headers.get('retry-after'))
      return res
    })
    const runSeconds = (performance.now() - started) / 1000
    expect(statuses.filter((s) => s === 200).length).toBe(100)
    expect(statuses.filter((s) => s === 429).length).toBe(900)
    expect(fake.requests.length - before).toBe(100)

    // RL4 on all 900: an integer number of seconds in [1, P], and the true wait. 100 per day frees one request
    // 864 s after the first admission, so each says 864 s less the time the run had taken when it was refused.
    const DAY_S = 86_400
    expect(retryAfters.filter((v) => !/^[0-9]+$/.test(v ?? '') || Number(v) < 1 || Number(v) > DAY_S)).toEqual([])
    const waits = retryAfters.map(Number)
    expect(Math.max(...waits)).toBeLessThanOrEqual(DAY_S / 100)
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(DAY_S / 100 - Math.ceil(runSeconds))
  }, 30_000)

  // RL4's second half. At 100 per day the wait is 14 minutes; at 20 per minute it is at most 3 s.
  test('a request made after a 429’s Retry-After succeeds, on any instance', async () => {
    const { key: k } = await key({ rpm: 20 })
    const retryAfters: (string | null)[] = []
    const statuses = await fire(60, 20, async (i) => {
      const res = await chat(i, k)
      if (res.status === 429) retryAfters.push(res.headers.get('retry-after'))
      return res
    })
    expect(statuses.filter((s) => s === 429).length).toBe(retryAfters.length)
    expect(retryAfters.length).toBeGreaterThanOrEqual(30)
    expect(retryAfters.filter((v) => !/^[0-9]+$/.test(v ?? '') || Number(v) < 1 || Number(v) > 60)).toEqual([])
    const wait = Number(retryAfters.at(-1))
    expect(wait).toBeLessThanOrEqual(3)
    await Bun.sleep(wait * 1000)
    expect((await chat(1, k)).status).toBe(200)
  }, 30_000)

  test('tokens reserved across instances never exceed the limit; refunds restore capacity', async () => {
    const { key: k } = await key({ tpm: 1000 })
    const burst = () => Promise.all(Array.from({ length: 12 }, (_, i) => chat(i, k, 'slow-first-byte:300', { max_tokens: 200 })))
    const first = await burst()
    expect(first.filter((r) => r.status === 200).length).toBe(4)
    await Bun.sleep(50)
    expect((await burst()).filter((r) => r.status === 200).length).toBe(4)
  }, 30_000)

  test('max_parallel 5 over three instances: the upstream never sees more than 5; an abort frees a slot within 1 s', async () => {
    const { key: k } = await key({ max_parallel: 5 })
    const controllers = Array.from({ length: 15 }, () => new AbortController())
    let peak = 0
    const watcher = setInterval(() => (peak = Math.max(peak, fake.openStreams)), 5)
    const responses = await Promise.all(controllers.map((c, i) => chat(i, k, 'slow-stream:100', { stream: true }, c.signal)))
    const running = responses.map((r, i) => ({ r, c: controllers[i]! })).filter(({ r }) => r.status === 200)
    expect(running.length).toBe(5)
    expect(responses.filter((r) => r.status === 429).length).toBe(10)

    await running[0]!.r.body!.getReader().read()
    running[0]!.c.abort()
    const deadline = Date.now() + 1000
    let admitted = false
    for (let i = 1; Date.now() < deadline && !admitted; i++) {
      const res = await chat(i, k)
      admitted = res.status === 200
      if (!admitted) await Bun.sleep(20)
    }
    clearInterval(watcher)
    expect(admitted).toBe(true)
    expect(peak).toBeLessThanOrEqual(5)
    for (const { c } of running) c.abort()
  }, 30_000)

  test('a client going one request at a time from instance to instance is never refused by its own last request', async () => {
    // Its answer reaches the client before the instance settles it in Redis: the next instance may ask first.
    const { key: k } = await key({ max_parallel: 1, budget: { usd: 1, period: 'daily' } })
    const statuses: number[] = []
    for (let i = 0; i < 60; i++) {
      const res = await chat(i, k, 'hi', { max_tokens: 5 })
      await res.arrayBuffer()
      statuses.push(res.status)
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([])
  }, 30_000)

  test('budget: 300 concurrent requests over three instances never spend past it; the ledger equals the upstream usage log', async () => {
    const BUDGET_MICROS = 10_000
    const { id, key: k } = await key({ budget: { usd: BUDGET_MICROS / 1e6, period: 'total' } })
    const logStart = fake.usageLog.length
    // `finish-length` with max_tokens 3: the fake stops at 3 completion tokens, so replies stay within the reservation.
    const ask = (i: number) => chat(i, k, `finish-length ${i}`, { max_tokens: 3 })
    const refusals: { headers: Headers; body: any }[] = []
    const send = async (i: number) => {
      const res = await ask(i)
      if (res.status === 429) refusals.push({ headers: res.headers, body: await res.clone().json() })
      return res
    }
    // All at once, then 20 clients, then one at a time until the money is gone. A request settles just after its
    // response (onLog never delays the client): the next one, on another instance, may still see its hold, and is
    // then refused with budget_held; insufficient_quota says the money is spent.
    const burst = await fire(300, 300, send)
    const rest = await fire(300, 20, send)
    const last: number[] = []
    while (refusals.at(-1)?.body.error.code !== 'insufficient_quota' || last.at(-1) !== 429) {
      if (last.at(-1) === 429) await Bun.sleep(100)
      last.push((await send(last.length)).status)
    }
    const statuses = [...burst, ...rest, ...last]
    const admitted = statuses.filter((s) => s === 200).length
    expect(burst.filter((s) => s === 200).length).toBeGreaterThan(0)
    expect(admitted + refusals.length).toBe(statuses.length)
    // While the first requests held the money, the rest were told to retry; once it was spent, not to.
    const held = refusals.filter((r) => r.body.error.code === 'budget_held')
    const spent = refusals.filter((r) => r.body.error.code === 'insufficient_quota')
    expect(held.length + spent.length).toBe(refusals.length)
    expect(held.length).toBeGreaterThan(0)
    for (const r of held) {
      validateSchema('ErrorResponse', r.body)
      expect(r.body.error.type).toBe('rate_limit_error')
      expect(r.body.error.message).toContain('requests in flight hold $')
      expect(r.headers.get('retry-after')).toBe('1')
      expect(r.headers.get('x-should-retry')).toBeNull()
    }
    expect(spent.at(-1)!.body.error).toMatchObject({ type: 'insufficient_quota', code: 'insufficient_quota' })
    expect(spent.every((r) => r.headers.get('x-should-retry') === 'false')).toBe(true)

    const upstream = fake.usageLog.slice(logStart)
    expect(upstream.length).toBe(admitted)
    const upstreamMicros = upstream.reduce((sum, u) => sum + (u.prompt_tokens + u.completion_tokens) * PRICE.input, 0)
    // Every instance flushes its ledger within a second; the sum must then match to the micro-dollar.
    let ledger: any
    for (let tries = 0; tries < 50; tries++) {
      ledger = (await instances[tries % 3]!.admin('GET', `/usage?key=${id}`)).total
      if (ledger.requests === admitted) break
      await Bun.sleep(100)
    }
    expect(ledger.requests).toBe(admitted)
    expect(ledger.prompt_tokens).toBe(upstream.reduce((sum, u) => sum + u.prompt_tokens, 0))
    expect(ledger.completion_tokens).toBe(upstream.reduce((sum, u) => sum + u.completion_tokens, 0))
    expect(Math.round(Number(ledger.cost_usd) * 1e6)).toBe(upstreamMicros)
    expect(upstreamMicros).toBeLessThanOrEqual(BUDGET_MICROS)
    // Used up, not merely refused early: what is left is less than one request's worst case (≈ 500 µ$).
    expect(BUDGET_MICROS - upstreamMicros).toBeLessThan(600)
  }, 60_000)

  test('a key disabled on one instance is refused by the others within a second', async () => {
    const { id, key: k } = await key({})
    expect((await Promise.all([0, 1, 2].map((i) => chat(i, k)))).map((r) => r.status)).toEqual([200, 200, 200])
    await instances[0]!.admin('PATCH', `/keys/${id}`, { enabled: false })
    const deadline = Date.now() + 1000
    let statuses: number[] = []
    while (Date.now() < deadline) {
      statuses = (await Promise.all([1, 2].map((i) => chat(i, k)))).map((r) => r.status)
      if (statuses.every((s) => s === 401)) break
      await Bun.sleep(20)
    }
    expect(statuses).toEqual([401, 401])
  })
})

describe('Redis outage', () => {

  /** 60 requests from 10 clients; each must be served, degraded, and none may wait on Redis past the timeout. */
  const degradedRun = async (k: string) => {
    let slowest = 0
    const statuses = await fire(60, 10, async (i) => {
      const started = performance.now()
      const res = await chat(i, k, 'hi', { max_tokens: 3 })
      slowest = Math.max(slowest, performance.now() - started)
      expect(res.headers.get('x-ratelimit-degraded')).toBe('true')
      return res
    })
    expect(statuses.every((s) => s === 200)).toBe(true)
    // The command timeout + 50 ms, + 50 ms for the request itself.
    expect(slowest).toBeLessThan(REDIS_TIMEOUT_MS + 50 + 50)
  }
  const exactAgain = async (k: string) => {
    const deadline = Date.now() + 3000
    let degraded: string | null = 'true'
    while (Date.now() < deadline && degraded) {
      degraded = (await chat(0, k)).headers.get('x-ratelimit-degraded')
      if (degraded) await Bun.sleep(100)
    }
    expect(degraded).toBeNull()
  }

  test('Redis stopped: limits fail open to each instance at once, and are exact again when it returns', async () => {
    const { key: k } = await key({ rpm: 1000, max_parallel: 50 })
    expect((await chat(0, k)).headers.get('x-ratelimit-degraded')).toBeNull()
    relay.refuse()
    await degradedRun(k)
    // Still ready: an orchestrator must not take every instance out of service while they serve without Redis.
    const ready = await fetch(instances[0]!.baseURL.replace(/\/v1$/, '/ready'))
    const readiness = (await ready.json()) as { checks: Record<string, string> }
    expect([ready.status, readiness.checks.store, readiness.checks.redis === 'ok']).toEqual([200, 'ok', false])
    relay.restore()
    await exactAgain(k)
  }, 30_000)

  // RL10's bound: per instance ≤ L/N + 1. Without `instances: 3` each would admit the whole limit (3 × L in all).
  test('Redis stopped: each of the three instances admits its third of the limit, ⌈L/3⌉, on its own, and Redis counts them once back', async () => {
    const LIMIT = 30
    const { key: k } = await key({ rpd: LIMIT })
    expect((await chat(0, k)).headers.get('x-ratelimit-degraded')).toBeNull()
    relay.refuse()
    const admitted = [0, 0, 0]
    const oddities: string[] = []
    try {
      await fire(150, 15, async (i) => {
        const res = await chat(i, k)
        if (res.status === 200) admitted[i % 3]!++
        else if (res.status !== 429) oddities.push(`status ${res.status}`)
        if (res.headers.get('x-ratelimit-degraded') !== 'true') oddities.push('not marked degraded')
        const limit = res.headers.get('x-ratelimit-limit-requests')
        if (limit !== String(LIMIT / 3)) oddities.push(`limit ${limit}`)
        return res
      })
    } finally {
      relay.restore()
    }
    expect(oddities).toEqual([])
    expect(admitted).toEqual([LIMIT / 3, LIMIT / 3, LIMIT / 3])
    await exactAgain(k)
    // What the instances admitted on their own is in Redis now: the day's limit is used up everywhere (one request
    // before the outage, thirty during it).
    await Bun.sleep(100)
    expect((await Promise.all([0, 1, 2].map((i) => chat(i, k)))).map((r) => r.status)).toEqual([429, 429, 429])
  }, 30_000)

  test('Redis hung (connected, silent): no request waits past the command timeout; budgets keep working', async () => {
    const { key: k } = await key({ rpm: 1000, max_parallel: 50 })
    const { key: b } = await key({ budget: { usd: 1, period: 'total' } })
    expect((await chat(0, b)).headers.get('x-conduit-budget-degraded')).toBeNull()
    relay.fault = { kind: 'stall', afterBytes: 0 }
    try {
      await degradedRun(k)
      const started = performance.now()
      const budgeted = await chat(1, b, 'hi', { max_tokens: 3 })
      expect(budgeted.status).toBe(200)
      expect(budgeted.headers.get('x-conduit-budget-degraded')).toBe('true')
      // The budget's own, longer timeout (500 ms by default): money gets more patience than rate limits.
      expect(performance.now() - started).toBeLessThan(500 + 100)
    } finally {
      // A hung Redis that recovers drops its connections; the gateways reconnect.
      relay.fault = { kind: 'pass' }
      relay.refuse()
      relay.restore()
    }
    await exactAgain(k)
  }, 30_000)

  test('a key disabled while Redis is out of reach (its notice lost) is refused by the others within two seconds, not at the cache TTL', async () => {
    const { id, key: k } = await key({})
    expect((await Promise.all([0, 1, 2].map((i) => chat(i, k)))).map((r) => r.status)).toEqual([200, 200, 200])
    relay.refuse()
    try {
      const started = performance.now()
      await instances[0]!.admin('PATCH', `/keys/${id}`, { enabled: false })
      let statuses: number[] = []
      while (performance.now() - started < 5_000) {
        statuses = (await Promise.all([1, 2].map((i) => chat(i, k)))).map((r) => r.status)
        if (statuses.every((s) => s === 401)) break
        await Bun.sleep(50)
      }
      expect(statuses).toEqual([401, 401])
      expect(performance.now() - started).toBeLessThan(2_500)
    } finally {
      relay.restore()
    }
    await exactAgain((await key({ rpm: 1000 })).key)
  }, 30_000)
})

describe('Redis key hygiene', () => {
  test('every key the gateway wrote expires on its own', async () => {
    const redis = new Redis(REDIS_URL)
    try {
      const keys = (await redis.keys('conduit:*')).filter((k) => keyIds.some((id) => k.includes(`{${id}}`)))
      // One hash per scope: a key's limits and budget together; every one was written by this file's requests.
      expect(keys.length).toBeGreaterThan(0)
      expect(keys.filter((k) => !k.startsWith('conduit:gov:'))).toEqual([])
      const ttls = await Promise.all(keys.map((k) => redis.pttl(k)))
      expect(keys.filter((_, i) => ttls[i]! < 0)).toEqual([])
    } finally {
      redis.disconnect()
    }
  })
})
