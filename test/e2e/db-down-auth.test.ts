import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { generateVirtualKey } from '../../src/store/crypto.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/**
 * PR18: PostgreSQL becomes unreachable for one gateway (A) while another (B) still reaches it; both share
 * Redis, which carries key changes between them. The key cache lives 1 s here (60 s by default), so an
 * outage of several seconds outlasts every cached entry, as a 60 s outage would with the default.
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const CACHE_TTL_MS = 1_000
const OUTAGE_MS = 4 * CACHE_TTL_MS
/** The auth plugin's default deadline for one key lookup. */
const LOOKUP_TIMEOUT_MS = 2_000
/** How long the catalog waits for the store to read a change (LOAD_TIMEOUT_MS in catalog.ts). */
const CATALOG_TIMEOUT_MS = 2_000
/** The row's bound for a revocation to reach A once PostgreSQL is back. */
const PROPAGATION_MS = 5_000

let fake: FakeOpenAI
let database: Awaited<ReturnType<typeof createTestDatabase>>
/** Between A and PostgreSQL. */
let proxy: FaultProxy
let a: TestGateway
let b: TestGateway
/** Used on A before the outage. */
const cached: string[] = []
/** Used on A before the outage, then disabled on B during it. */
let disabledDuring: { id: string; key: string }
/** Used on A before the outage, then deleted on B once PostgreSQL is back. */
let deletedAfter: { id: string; key: string }
/** Exists, but A never saw it. */
let neverSeen: string
/** Well-formed, checksummed, in no store. */
const unknown = Array.from({ length: 10 }, generateVirtualKey)

/** No request here takes seconds unless something waits for the database: such a request is cut at 8 s. */
const HANG_MS = 8_000
const chat = (gw: TestGateway, key: string, stream = false) =>
  fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream }),
    signal: AbortSignal.timeout(HANG_MS),
  })
/** The status, or `hung` when no answer came within HANG_MS. */
const status = async (gw: TestGateway, key: string, stream = false) => {
  try {
    const res = await chat(gw, key, stream)
    await res.text()
    return res.status
  } catch (error) {
    if ((error as Error).name === 'TimeoutError') return 'hung'
    throw error
  }
}
/** `200`, or a refusal's status and code, its body checked against the OpenAI error schema (a 503 says when to retry). */
const refusal = async (gw: TestGateway, key: string) => {
  const res = await chat(gw, key)
  const body = (await res.json()) as any
  if (res.ok) return String(res.status)
  validateSchema('ErrorResponse', body)
  if (res.status === 503) expect(res.headers.get('retry-after')).toBe('1')
  return `${res.status} ${body.error.code}`
}
/** Milliseconds until `check` holds, polling every 50 ms; Infinity past `withinMs`. */
async function timeUntil(check: () => Promise<boolean>, withinMs: number): Promise<number> {
  const started = performance.now()
  while (performance.now() - started < withinMs) {
    if (await check()) return performance.now() - started
    await Bun.sleep(50)
  }
  return Infinity
}

beforeAll(async () => {
  fake = await startFakeOpenAI()
  database = await createTestDatabase()
  const pg = new URL(database.url)
  proxy = await startFaultProxy({ hostname: pg.hostname, port: Number(pg.port || 5432) })
  const viaProxy = new URL(database.url)
  viaProxy.port = String(proxy.port)
  const shared = { redisURL: REDIS_URL, encryptionKey: 'db-down-auth-test-key' }
  b = await startGateway({ ...shared, databaseURL: database.url })
  await b.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await b.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  for (let i = 0; i < 20; i++) cached.push((await b.admin('POST', '/keys', { name: `cached-${i}` })).key)
  disabledDuring = await b.admin('POST', '/keys', { name: 'disabled-during' })
  deletedAfter = await b.admin('POST', '/keys', { name: 'deleted-after' })
  neverSeen = (await b.admin('POST', '/keys', { name: 'never-seen' })).key
  a = await startGateway({ ...shared, databaseURL: viaProxy.toString(), plugins: [{ use: 'builtin:auth', config: { cacheTtlMs: CACHE_TTL_MS } }] })
  for (const key of [...cached, disabledDuring.key, deletedAfter.key]) expect(await status(a, key)).toBe(200)
}, 30_000)

afterAll(async () => {
  await a.close()
  await b.close()
  proxy.stop()
  await fake.stop()
  await database.drop()
})

describe('PR18: PostgreSQL unreachable, authentication keeps working', () => {
  test(`refused for ${OUTAGE_MS / 1000} s (4× the cache TTL): cached keys 100% served; keys A cannot check 503; a key changed meanwhile not served`, async () => {
    proxy.refuse()
    const started = performance.now()
    let served = 0
    const failed: string[] = []
    for (let round = 0; performance.now() - started < OUTAGE_MS; round++) {
      const statuses = await Promise.all(cached.map((key, i) => status(a, key, (round + i) % 2 === 0)))
      served += statuses.filter((s) => s === 200).length
      failed.push(...statuses.filter((s) => s !== 200).map((s) => `round ${round}: ${s}`))
      // Keys A cannot check: a 503 it can retry, never a 401 that tells a valid key it is wrong.
      for (const key of [unknown[round % unknown.length]!, neverSeen]) expect(await refusal(a, key)).toBe('503 store_unavailable')
      // A malformed key needs no store to be refused (its last character changed: 1 key in 62 already ended in x).
      expect(await refusal(a, `${cached[0]!.slice(0, -1)}${cached[0]!.endsWith('x') ? 'y' : 'x'}`)).toBe('401 invalid_api_key')
      if (round === 2) {
        // Changes made on B meanwhile: one key disabled, another created. A hears of both through Redis.
        await b.admin('PATCH', `/keys/${disabledDuring.id}`, { enabled: false })
        await b.admin('POST', '/keys', { name: 'created-during' })
        expect(await timeUntil(async () => (await status(a, disabledDuring.key)) !== 200, 1_000)).toBeLessThan(1_000)
      }
      if (round > 2) expect(await refusal(a, disabledDuring.key)).toBe('503 store_unavailable')
      if (round === 3) {
        // What reads the database itself (the admin API, a key's usage) says so: a 503 to retry, not a 500.
        const answers = [await a.adminRaw('GET', '/keys'), await a.adminRaw('POST', '/keys', { name: 'during' }), await fetch(`${a.baseURL}/conduit/usage`, { headers: { authorization: `Bearer ${cached[0]}` } })]
        const bodies = await Promise.all(answers.map((r) => r.json() as Promise<any>))
        expect(answers.map((r, i) => `${r.status} ${bodies[i].error?.code}`)).toEqual(answers.map(() => '503 store_unavailable'))
      }
      await Bun.sleep(100)
    }
    expect(failed).toEqual([])
    expect(served).toBeGreaterThanOrEqual(cached.length * 8)
  }, 30_000)

  test('once PostgreSQL is back: the key disabled during the outage and one deleted now are refused on A within 5 s', async () => {
    proxy.restore()
    const disabled = await timeUntil(async () => (await refusal(a, disabledDuring.key)) === '401 key_disabled', PROPAGATION_MS)
    await b.admin('DELETE', `/keys/${deletedAfter.id}`)
    const deleted = await timeUntil(async () => (await refusal(a, deletedAfter.key)) === '401 invalid_api_key', PROPAGATION_MS)
    console.log(`PR18: disabled during the outage refused ${disabled.toFixed(0)} ms after PostgreSQL returned, deleted after it in ${deleted.toFixed(0)} ms`)
    expect(disabled).toBeLessThan(PROPAGATION_MS)
    expect(deleted).toBeLessThan(PROPAGATION_MS)
    expect(await status(a, neverSeen)).toBe(200)
    expect(await refusal(a, unknown[0]!)).toBe('401 invalid_api_key')
    const statuses = await Promise.all(cached.map((key) => status(a, key)))
    expect(statuses.filter((s) => s === 200).length).toBe(cached.length)
  }, 20_000)

  test(`hung (connections open, nothing answers) for ${OUTAGE_MS / 1000} s: cached keys 100% served; others 503 within the lookup deadline`, async () => {
    proxy.fault = { kind: 'stall', afterBytes: 0 }
    try {
      // A model changed on B: A must reload its catalog, from a database that does not answer.
      await b.admin('PATCH', '/models/m', { routing: { retries: 1 } })
      const started = performance.now()
      const slowest: number[] = []
      /** The slowest request of each round that began once the change's own reload had given up. */
      const afterChange: number[] = []
      const failed: (number | string)[] = []
      while (performance.now() - started < OUTAGE_MS) {
        const round = performance.now() - started
        const timed = await Promise.all(
          cached.map(async (key) => {
            const sent = performance.now()
            return [await status(a, key), performance.now() - sent] as const
          }),
        )
        failed.push(...timed.map(([s]) => s).filter((s) => s !== 200))
        slowest.push(Math.max(...timed.map(([, ms]) => ms)))
        if (round > CATALOG_TIMEOUT_MS + 500) afterChange.push(slowest.at(-1)!)
        await Bun.sleep(100)
      }
      const sent = performance.now()
      const refused = await Promise.all([unknown[1]!, unknown[2]!].map((key) => refusal(a, key)))
      const refusedIn = performance.now() - sent
      console.log(`PR18 hung: slowest cached-key request ${Math.max(...slowest).toFixed(0)} ms; unknown keys refused in ${refusedIn.toFixed(0)} ms`)
      expect(failed).toEqual([])
      // A request waits for the store at most its deadline (the catalog's, while a change is pending), never more.
      expect(Math.max(...slowest)).toBeLessThan(2 * LOOKUP_TIMEOUT_MS)
      // The catalog tries the store again behind the requests: none waits for those tries.
      expect(afterChange.length).toBeGreaterThan(0)
      expect(Math.max(...afterChange)).toBeLessThan(1_000)
      expect(refused).toEqual(['503 store_unavailable', '503 store_unavailable'])
      expect(refusedIn).toBeLessThan(2 * LOOKUP_TIMEOUT_MS)
      // Readiness answers too: not ready, in time for an orchestrator's probe.
      const asked = performance.now()
      const ready = await fetch(`${a.origin}/ready`, { signal: AbortSignal.timeout(HANG_MS) })
      expect({ status: ready.status, store: ((await ready.json()) as any).checks.store }).toEqual({ status: 503, store: 'no answer in 2000 ms' })
      expect(performance.now() - asked).toBeLessThan(2 * LOOKUP_TIMEOUT_MS)
    } finally {
      // The stalled connections stay wedged: drop them, as a partition that ends resets them.
      proxy.fault = { kind: 'pass' }
      proxy.refuse()
      proxy.restore()
    }
    expect(await timeUntil(async () => (await status(a, neverSeen)) === 200, PROPAGATION_MS)).toBeLessThan(PROPAGATION_MS)
  }, 30_000)

  test('a model deleted just before PostgreSQL becomes unreachable stays deleted through the outage, though no request came between', async () => {
    const ask = async (model: string) => {
      const res = await fetch(`${a.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${cached[0]}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
      })
      await res.text()
      return res.status
    }
    await b.admin('POST', '/models', { name: 'doomed', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
    expect(await timeUntil(async () => (await ask('doomed')) === 200, PROPAGATION_MS)).toBeLessThan(PROPAGATION_MS)
    await b.admin('DELETE', '/models/doomed')
    await Bun.sleep(500) // A hears of it through Redis; no request reaches A meanwhile
    proxy.refuse()
    try {
      expect(await ask('doomed')).toBe(404)
      expect(await ask('m')).toBe(200)
    } finally {
      proxy.restore()
    }
  }, 20_000)
})
