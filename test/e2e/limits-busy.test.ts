import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startInstances, type Instance } from '../helpers/instances.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/**
 * Limits exact under load: three instances on the default Redis timeout (50 ms) while other clients keep them
 * busy parsing 8 MB bodies. A reply that arrived while the event loop was parsing is not a Redis failure; before
 * the deadline counted only the loop's attention, such a burst fell open to each instance's own limit and admitted
 * about three times the limit. A Redis that is really gone still fails open within the timeout.
 */
const REDIS_URL = new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379')
const LIMIT = 100
let fake: FakeOpenAI
let database: Awaited<ReturnType<typeof createTestDatabase>>
let instances: Instance[]

beforeAll(async () => {
  fake = await startFakeOpenAI()
  database = await createTestDatabase()
  // No CONDUIT_REDIS_TIMEOUT_MS: the default 50 ms. Straight to Redis: a relay in this process would be slowed by it.
  instances = await startInstances(3, { DATABASE_URL: database.url, REDIS_URL: REDIS_URL.toString() })
  await instances[0]!.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await instances[0]!.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  await Bun.sleep(300) // every instance hears of the model
}, 60_000)

afterAll(async () => {
  for (const gw of instances ?? []) await gw.stop()
  await fake?.stop()
  await database?.drop()
}, 30_000)

const post = (i: number, apiKey: string, body: string) =>
  fetch(`${instances[i % 3]!.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body,
  })
const small = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })

/** Fail-opens counted on the gateways' /metrics. */
async function failOpens(gateways: { origin: string }[] = instances) {
  let total = 0
  for (const gw of gateways) {
    const text = await (await fetch(`${gw.origin}/metrics`)).text()
    for (const m of text.matchAll(/^conduit_rate_limit_fail_open_total\{[^}]*\} (\d+)$/gm)) total += Number(m[1])
  }
  return total
}

/**
 * `clients` clients sending 8 MB of JSON round-robin to the instances, from a child process (this one relays
 * Redis and must stay responsive), until `stop` resolves. The body names a model that does not exist: the gateway
 * parses all of it, then answers 404, and nothing goes upstream. Resolves with the bodies sent and the statuses.
 */
function keepBusy(apiKey: string, clients: number, stop: Promise<unknown>) {
  const script = `
    const [urls, key, clients] = JSON.parse(process.argv[1])
    const body = JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'x'.repeat(8 * 1024 * 1024) }] })
    let done = false, sent = 0
    const statuses = new Set()
    process.stdin.on('data', () => (done = true))
    await Promise.all(Array.from({ length: clients }, async (_, c) => {
      for (let i = c; !done; i += clients) {
        const res = await fetch(urls[i % urls.length], { method: 'POST', headers: { authorization: 'Bearer ' + key, 'content-type': 'application/json' }, body })
        statuses.add(res.status)
        await res.body?.cancel()
        sent++
      }
    }))
    console.log(JSON.stringify({ sent, statuses: [...statuses] }))`
  const urls = instances.map((gw) => `${gw.baseURL}/chat/completions`)
  const child = Bun.spawn(['bun', '-e', script, JSON.stringify([urls, apiKey, clients])], { stdin: 'pipe', stdout: 'pipe', stderr: 'inherit' })
  void stop.then(() => {
    child.stdin.write('stop\n')
    child.stdin.end()
  })
  return new Response(child.stdout).text().then((out) => JSON.parse(out) as { sent: number; statuses: number[] })
}

describe('busy instances', () => {
  test(`rpd ${LIMIT}, 1,000 requests from 60 clients while 6 others send 8 MB bodies: exactly ${LIMIT} admitted, nothing failed open`, async () => {
    const [{ key: limited }, { key: plain }] = await Promise.all([
      instances[0]!.admin('POST', '/keys', { name: 'busy-limited', rpd: LIMIT }),
      instances[0]!.admin('POST', '/keys', { name: 'busy-plain' }),
    ])
    await Bun.sleep(100)
    const before = await failOpens()
    let burstDone!: () => void
    const busy = keepBusy(plain, 6, new Promise<void>((resolve) => (burstDone = resolve)))
    // The big bodies are flowing before the burst starts.
    await Bun.sleep(300)

    const statuses: number[] = []
    let degraded = 0
    let next = 0
    const started = performance.now()
    await Promise.all(
      Array.from({ length: 60 }, async () => {
        while (next < 1000) {
          const res = await post(next++, limited, small)
          statuses.push(res.status)
          if (res.headers.get('x-ratelimit-degraded')) degraded++
          await res.body?.cancel()
        }
      }),
    )
    const burstMs = performance.now() - started
    burstDone()
    const load = await busy

    const admitted = statuses.filter((s) => s === 200).length
    console.log(`busy: ${admitted} admitted of 1,000 in ${burstMs.toFixed(0)} ms while ${load.sent} bodies of 8 MB were parsed; ${degraded} degraded`)
    // The load was real: 8 MB bodies were parsed (404, unknown model) all along the burst.
    expect(load.statuses).toEqual([404])
    expect(load.sent).toBeGreaterThan(10)
    expect(degraded).toBe(0)
    expect(admitted).toBe(LIMIT)
    expect(statuses.filter((s) => s === 429).length).toBe(1000 - LIMIT)
    expect(await failOpens()).toBe(before)
  }, 60_000)

})

/*
 * RL10 on the default 50 ms timeout, through a relay that can refuse connections or hang: a Redis that refuses
 * fails at once; one that hangs is waited for 50 ms of the loop's attention, then skipped for a second. Each
 * request is served within the timeout plus the row's 50 ms (here 100 ms: shared cores), and each is counted.
 */
describe('Redis really gone', () => {
  let relay: FaultProxy
  let gw: TestGateway
  beforeAll(async () => {
    relay = await startFaultProxy({ hostname: REDIS_URL.hostname, port: Number(REDIS_URL.port || 6379) })
    gw = await startGateway({ redisURL: relay.url('', 'redis'), redisTimeoutMs: 50 })
    await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
    await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  })
  afterAll(async () => {
    await gw?.close()
    relay?.stop()
  })

  for (const [outage, fault] of [
    ['refusing connections', () => relay.refuse()],
    ['hung (connected, silent)', () => (relay.fault = { kind: 'stall', afterBytes: 0 })],
  ] as const) {
    test(`Redis ${outage}: every limited request fails open within the timeout, and is counted`, async () => {
      const { key: limited } = await gw.admin('POST', '/keys', { name: `outage-${outage}`, rpm: 10_000 })
      const send = () => fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${limited}`, 'content-type': 'application/json' }, body: small })
      await Bun.sleep(1_100) // the bypass after an earlier outage is over
      expect((await send()).headers.get('x-ratelimit-degraded')).toBeNull()
      const before = await failOpens([gw])
      fault()
      const times: number[] = []
      const oddities: string[] = []
      try {
        await Promise.all(
          Array.from({ length: 10 }, async () => {
            for (let i = 0; i < 6; i++) {
              const started = performance.now()
              const res = await send()
              times.push(performance.now() - started)
              if (res.status !== 200 || res.headers.get('x-ratelimit-degraded') !== 'true') oddities.push(`${res.status} ${res.headers.get('x-ratelimit-degraded')}`)
              await res.body?.cancel()
            }
          }),
        )
      } finally {
        // A hung Redis that recovers drops its connections; the gateway reconnects.
        relay.fault = { kind: 'pass' }
        relay.refuse()
        relay.restore()
      }
      const slowest = Math.max(...times)
      console.log(`Redis ${outage}: slowest of 60 ${slowest.toFixed(1)} ms`)
      expect(oddities).toEqual([])
      expect(slowest).toBeLessThan(50 + 100)
      expect((await failOpens([gw])) - before).toBe(60)
    }, 30_000)
  }
})
