import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import Redis from 'ioredis'
import { sha256 } from '../../src/store/crypto.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const KEYS = 50

/**
 * Values read by type rather than DUMPed: RDB's DUMP compresses long strings (LZF), which a byte scan would miss.
 */
const READERS: Record<string, (redis: Redis, name: string) => Promise<unknown>> = {
  string: (redis, name) => redis.get(name),
  hash: (redis, name) => redis.hgetall(name),
  list: (redis, name) => redis.lrange(name, 0, -1),
  set: (redis, name) => redis.smembers(name),
  zset: (redis, name) => redis.zrange(name, '0', '-1', 'WITHSCORES'),
  stream: (redis, name) => redis.xrange(name, '-', '+'),
}

/** Every key in Redis (not only ours: a superset cannot miss one) with its value, as text. */
async function redisContents(redis: Redis): Promise<{ names: string; values: string }> {
  const names: string[] = []
  const values: string[] = []
  for await (const batch of redis.scanStream({ count: 1000 }) as AsyncIterable<string[]>) {
    for (const name of batch) {
      names.push(name)
      const read = READERS[await redis.type(name)]
      values.push(JSON.stringify(read ? await read(redis, name) : null))
    }
  }
  return { names: names.join('\n'), values: values.join('\n') }
}

/**
 * SE1 on both store engines, with Redis: 50 keys created through the admin API, each used once (so Redis
 * holds its rate-limit and budget state), then the SQLite files (main, -wal, -shm), `pg_dump` of the whole
 * database and every key and value in Redis are scanned for each plaintext. Each scan is shown to see what it
 * should: the SHA-256 of every key in the store, every key id in Redis's key names, a planted value in Redis.
 */
for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`SE1 (${engine}): 50 virtual keys at rest`, () => {
    let fake: FakeOpenAI
    let gw: TestGateway
    let database: Awaited<ReturnType<typeof createTestDatabase>> | null = null
    const created: { id: string; key: string }[] = []
    /** The secret part: the display prefix (10 characters) and the last four are stored on purpose. */
    const secretOf = (key: string) => key.slice(10, -4)

    beforeAll(async () => {
      fake = await startFakeOpenAI()
      if (engine === 'postgres') database = await createTestDatabase()
      gw = await startGateway({ redisURL: REDIS_URL, ...(database ? { databaseURL: database.url } : {}) })
      await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
      await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o', price: { input: 1, output: 1 } }] })
      for (let i = 0; i < KEYS; i++) {
        // rpd: a day's limit keeps the key's rate state in Redis for minutes (an rpm's lasts milliseconds).
        const policy = { rpm: 1000, rpd: 1000, tpm: 1_000_000, max_parallel: 10, budget: { usd: 5, period: 'daily' } }
        created.push(await gw.admin('POST', '/keys', { name: `se1-${engine}-${i}`, ...policy }))
      }
      const statuses = await Promise.all(
        created.map(async ({ key }) => {
          const res = await fetch(`${gw.baseURL}/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
          })
          await res.text()
          return res.status
        }),
      )
      expect(statuses.filter((s) => s === 200).length).toBe(KEYS)
    }, 60_000)

    afterAll(async () => {
      await gw.close()
      await fake.stop()
      await database?.drop()
    })

    test('the store holds each key as its SHA-256 only', () => {
      let stored: Buffer
      if (engine === 'sqlite') {
        const files = readdirSync(gw.dataDir).filter((f) => f.startsWith('conduit.sqlite'))
        // Read while the gateway runs: the recent inserts are in the write-ahead log, not yet in the main file.
        expect(files).toEqual(expect.arrayContaining(['conduit.sqlite', 'conduit.sqlite-wal', 'conduit.sqlite-shm']))
        stored = Buffer.concat(files.map((f) => readFileSync(path.join(gw.dataDir, f))))
      } else {
        const dump = Bun.spawnSync(['pg_dump', '--dbname', database!.url], { stdout: 'pipe', stderr: 'pipe' })
        expect(dump.stderr.toString()).toBe('')
        stored = dump.stdout
      }
      expect(created.filter(({ key }) => stored.includes(sha256(key))).length).toBe(KEYS)
      expect(created.filter(({ key }) => stored.includes(secretOf(key)))).toEqual([])
    })

    test('Redis holds no plaintext, in any key name or value', async () => {
      const redis = new Redis(REDIS_URL)
      // Plants a value the scan must find, so a scan that reads nothing cannot pass.
      const canary = `se1-canary:${crypto.randomUUID()}`
      const planted = secretOf(created[0]!.key).split('').reverse().join('')
      try {
        await redis.hset(canary, 'value', planted)
        const { names, values } = await redisContents(redis)
        expect(values).toContain(planted)
        // One hash per key holds its rate-limit and budget state.
        expect(created.filter(({ id }) => names.includes(`conduit:gov:{${id}}:k`)).length).toBe(KEYS)
        expect(created.filter(({ key }) => names.includes(secretOf(key)) || values.includes(secretOf(key)))).toEqual([])
      } finally {
        await redis.del(canary)
        redis.disconnect()
      }
    })
  })
}
