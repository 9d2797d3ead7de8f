import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Redis from 'ioredis'
import type { Subprocess } from 'bun'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { fire } from '../helpers/fire.ts'
import { startGateway } from '../helpers/gateway.ts'
import { startInstances, type Instance } from '../helpers/instances.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/**
 * Two gateway processes on a Redis Cluster of three masters (`REDIS_CLUSTER=1`, started here from the machine's
 * redis-server): limits hold exactly across them, each key's state lives on the node of its own hash slot with its
 * users' beside it, and an admin change reaches the other instance through the Cluster's pub/sub.
 */
let fake: FakeOpenAI
let database: Awaited<ReturnType<typeof createTestDatabase>>
let instances: Instance[]
let clusterDir: string
const nodes: { port: number; proc: Subprocess; client: Redis }[] = []

/**
 * Free ports below the ephemeral range whose cluster bus port (+10,000) is free too: a node listens on both. Found
 * by binding each, since the ports are picked at random.
 */
function freePorts(count: number): number[] {
  const ports: number[] = []
  while (ports.length < count) {
    const port = 11_000 + Math.floor(Math.random() * 9_000)
    try {
      for (const p of [port, port + 10_000]) Bun.listen({ hostname: '127.0.0.1', port: p, socket: { data() {} } }).stop(true)
      if (!ports.includes(port)) ports.push(port)
    } catch {
      // taken: another
    }
  }
  return ports
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(100)
  }
}

beforeAll(async () => {
  fake = await startFakeOpenAI()
  database = await createTestDatabase()
  clusterDir = mkdtempSync(path.join(tmpdir(), 'conduit-redis-cluster-'))
  for (const port of freePorts(3)) {
    const proc = Bun.spawn(
      ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--save', '', '--appendonly', 'no'],
      { cwd: clusterDir, stdout: 'ignore', stderr: 'ignore' },
    )
    const client = new Redis({ port, lazyConnect: true, retryStrategy: () => 100, maxRetriesPerRequest: 1 })
    client.on('error', () => {})
    nodes.push({ port, proc, client })
  }
  for (const node of nodes) await until(`redis-server on ${node.port}`, async () => (await node.client.ping()) === 'PONG')
  const create = Bun.spawnSync(['redis-cli', '--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'])
  if (create.exitCode !== 0) throw new Error(`redis-cli --cluster create: ${create.stdout} ${create.stderr}`)
  for (const node of nodes) await until(`cluster state ok on ${node.port}`, async () => String(await node.client.cluster('INFO')).includes('cluster_state:ok'))

  // Two of the three nodes as seeds: the gateways find the third from them.
  const seeds = nodes.slice(0, 2).map((n) => `redis://127.0.0.1:${n.port}`)
  instances = await startInstances(2, { DATABASE_URL: database.url, REDIS_URL: seeds.join(','), REDIS_CLUSTER: '1', CONDUIT_REDIS_TIMEOUT_MS: '250' })
  await instances[0]!.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await instances[0]!.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o', price: { input: 1, output: 1 } }] })
  await Bun.sleep(300)
}, 60_000)

afterAll(async () => {
  for (const gw of instances ?? []) await gw.stop()
  for (const node of nodes) {
    node.client.disconnect()
    node.proc.kill()
    await node.proc.exited
  }
  await fake?.stop()
  await database?.drop()
  rmSync(clusterDir, { recursive: true, force: true })
}, 30_000)

const chat = (i: number, apiKey: string, extra: Record<string, unknown> = {}) =>
  fetch(`${instances[i % 2]!.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra }),
  })

/** The node holding `key`: the one whose slot ranges cover CLUSTER KEYSLOT of it. */
async function nodeOf(key: string): Promise<number> {
  const slot = Number(await nodes[0]!.client.cluster('KEYSLOT', key))
  const ranges = await nodes[0]!.client.cluster('SLOTS')
  const [, , master] = ranges.find(([from, to]) => slot >= from && slot <= to)!
  return master![1]
}

describe('limits on a Redis Cluster', () => {
  test('a gateway pointed at a Cluster node without REDIS_CLUSTER says so in its log', async () => {
    const logs = { level: 'info', lines: [] as string[] }
    const gw = await startGateway({ redisURL: `redis://127.0.0.1:${nodes[0]!.port}`, redisCluster: false }, logs)
    try {
      await until('the log line', async () => logs.lines.some((line) => line.includes('set REDIS_CLUSTER=true')), 5_000)
    } finally {
      await gw.close()
    }
    // The machine's own Redis is not a Cluster: no such line.
    const plain = { level: 'info', lines: [] as string[] }
    const other = await startGateway({ redisURL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', redisCluster: false }, plain)
    await Bun.sleep(300)
    await other.close()
    expect(plain.lines.filter((line) => line.includes('REDIS_CLUSTER'))).toEqual([])
  }, 30_000)

  test('a gateway told REDIS_CLUSTER=true of a Redis that is not a Cluster says so in its log, once', async () => {
    const logs = { level: 'info', lines: [] as string[] }
    const gw = await startGateway({ redisURL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', redisCluster: true }, logs)
    try {
      await until('the log line', async () => logs.lines.some((line) => line.includes('unset REDIS_CLUSTER')), 5_000)
      await Bun.sleep(1_500) // the client keeps trying meanwhile
      expect(logs.lines.filter((line) => line.includes('unset REDIS_CLUSTER')).length).toBe(1)
    } finally {
      await gw.close()
    }
  }, 30_000)

  test('a limit of 100 a day, 400 attempts from 40 clients over two instances: exactly 100 admitted; per user exactly 3', async () => {
    const { key } = await instances[0]!.admin('POST', '/keys', { name: 'cluster-rpd', rpd: 100 })
    const statuses = await fire(400, 40, (i) => chat(i, key))
    expect(statuses.filter((s) => s === 200).length).toBe(100)
    expect(statuses.filter((s) => s === 429).length).toBe(300)

    const users = await instances[0]!.admin('POST', '/keys', { name: 'cluster-users', user_limits: { rpd: 3 } })
    const perUser = await fire(40, 20, (i) => chat(i, users.key, { user: `u${i % 4}` }))
    expect(perUser.filter((s) => s === 200).length).toBe(12)
  }, 60_000)

  test('each key’s state is on the node of its own slot, its users’ beside it, and keys spread over the nodes', async () => {
    const keys: { id: string; key: string }[] = []
    for (let i = 0; i < 12; i++) keys.push(await instances[0]!.admin('POST', '/keys', { name: `cluster-spread-${i}`, rpd: 10, user_limits: { rpd: 5 } }))
    for (const [i, k] of keys.entries()) expect((await chat(i, k.key, { user: 'alice' })).status).toBe(200)
    const holders = new Set<number>()
    for (const k of keys) {
      const state = `conduit:gov:{${k.id}}:k`
      const port = await nodeOf(state)
      const holder = nodes.find((n) => n.port === port)!
      // Asked of another node, Redis would answer MOVED: the slot is this node's alone.
      expect(await holder.client.exists(state, `conduit:gov:{${k.id}}:u:alice`)).toBe(2)
      holders.add(port)
    }
    // Twelve random key ids all in one node's third of the slots: about 1 in 180,000.
    expect(holders.size).toBeGreaterThan(1)
  }, 30_000)

  test('a key disabled on one instance is refused by the other within a second (pub/sub across the Cluster)', async () => {
    const { id, key } = await instances[0]!.admin('POST', '/keys', { name: 'cluster-revoke' })
    expect((await Promise.all([0, 1].map((i) => chat(i, key)))).map((r) => r.status)).toEqual([200, 200])
    await instances[0]!.admin('PATCH', `/keys/${id}`, { enabled: false })
    const deadline = Date.now() + 1000
    let status = 0
    while (Date.now() < deadline) {
      status = (await chat(1, key)).status
      if (status === 401) break
      await Bun.sleep(20)
    }
    expect(status).toBe(401)
  }, 30_000)
})
