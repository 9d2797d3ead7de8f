import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Socket, TCPSocketListener } from 'bun'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

/**
 * Three gateway instances sharing one store and the machine's Redis: limits hold exactly across them,
 * revocations reach all of them, and a Redis outage costs no request more than the command timeout.
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let fake: FakeOpenAI
let dataDir: string
let instances: TestGateway[]

/** A TCP relay in front of Redis that the test can cut and restore, as if Redis stopped and came back. */
function redisRelay(target = new URL(REDIS_URL)) {
  const open = new Set<Socket<any>>()
  let listener: TCPSocketListener<any> | null = null
  let port = 0
  const start = () => {
    listener = Bun.listen<{ upstream?: Socket<any>; pending: Uint8Array[] }>({
      hostname: '127.0.0.1',
      port,
      socket: {
        open(client) {
          open.add(client)
          client.data = { pending: [] }
          void Bun.connect({
            hostname: target.hostname,
            port: Number(target.port || 6379),
            socket: {
              open(server) {
                open.add(server)
                client.data.upstream = server
                for (const chunk of client.data.pending) server.write(chunk)
              },
              data: (_server, chunk) => void client.write(chunk),
              close: () => void client.end(),
            },
          })
        },
        data(client, chunk) {
          if (client.data.upstream) client.data.upstream.write(chunk)
          else client.data.pending.push(new Uint8Array(chunk))
        },
        close(client) {
          client.data.upstream?.end()
        },
      },
    })
    port = listener.port
  }
  start()
  return {
    url: () => `redis://127.0.0.1:${port}`,
    cut() {
      listener?.stop(true)
      for (const s of open) s.end()
      open.clear()
    },
    restore: start,
  }
}

const relay = redisRelay()

beforeAll(async () => {
  fake = await startFakeOpenAI()
  dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-shared-'))
  instances = []
  for (let i = 0; i < 3; i++) instances.push(await startGateway({ dataDir, redisURL: relay.url(), encryptionKey: 'shared-test-key' }))
  const [a] = instances
  await a!.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await a!.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  // Every instance sees the new model before the tests start.
  await Bun.sleep(200)
})

afterAll(async () => {
  for (const gw of instances) await gw.close()
  relay.cut()
  fake.stop()
  rmSync(dataDir, { recursive: true, force: true })
})

const key = async (policy: Record<string, unknown>) => (await instances[0]!.admin('POST', '/keys', { name: `k${Math.random()}`, ...policy })) as { id: string; key: string }
const chat = (i: number, apiKey: string, content = 'hi', extra: Record<string, unknown> = {}, signal?: AbortSignal) =>
  fetch(`${instances[i % 3]!.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], ...extra }),
    signal,
  })

/** `total` requests by `clients` concurrent clients, round-robin over the instances. */
async function fire(total: number, clients: number, send: (i: number) => Promise<Response>) {
  const statuses: number[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < total) {
        const i = next++
        const res = await send(i)
        statuses.push(res.status)
        await res.body?.cancel()
      }
    }),
  )
  return statuses
}

describe('exact across three instances', () => {
  test('1,000 attempts from 60 clients against a limit of 100 per day: exactly 100 admitted', async () => {
    const { key: k } = await key({ rpd: 100 })
    const before = fake.requests.length
    const statuses = await fire(1000, 60, (i) => chat(i, k))
    expect(statuses.filter((s) => s === 200).length).toBe(100)
    expect(statuses.filter((s) => s === 429).length).toBe(900)
    expect(fake.requests.length - before).toBe(100)
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
  test('limits fail open to each instance within the command timeout, and are exact again when Redis returns', async () => {
    const { key: k } = await key({ rpm: 1000 })
    expect((await chat(0, k)).headers.get('x-ratelimit-degraded')).toBeNull()
    relay.cut()
    const slowest = { ms: 0 }
    const statuses = await fire(60, 10, async (i) => {
      const started = performance.now()
      const res = await chat(i, k)
      slowest.ms = Math.max(slowest.ms, performance.now() - started)
      expect(res.headers.get('x-ratelimit-degraded')).toBe('true')
      return res
    })
    expect(statuses.every((s) => s === 200)).toBe(true)
    // The Redis command timeout is 50 ms; a request must never wait on Redis longer than that + 50 ms.
    expect(slowest.ms).toBeLessThan(50 + 50 + 50)

    relay.restore()
    const deadline = Date.now() + 3000
    let degraded: string | null = 'true'
    while (Date.now() < deadline && degraded) {
      degraded = (await chat(0, k)).headers.get('x-ratelimit-degraded')
      if (degraded) await Bun.sleep(100)
    }
    expect(degraded).toBeNull()
  }, 30_000)
})
