import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SQL } from 'bun'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { FinishedRequest } from '../../src/plugin-sdk/types.ts'
import { createLogger } from '../../src/services/logger.ts'
import { SPEND_COLUMNS, SpendLedger } from '../../src/store/ledger.ts'
import { decodeBatches, encodeInTurns } from '../../src/store/row-writer.ts'
import { Store } from '../../src/store/store.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { recordRow, spendRow } from '../helpers/ledger-rows.ts'
import { MB, rssBytes, threadsOf } from '../helpers/proc-stats.ts'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startInstances, type Instance } from '../helpers/instances.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/**
 * The spend ledger survives what the world does to it: a provider's nonsense numbers, a row the database
 * refuses, replies lost after a COMMIT, the database down for a while, and a SIGTERM mid-stream.
 */
type Database = Awaited<ReturnType<typeof createTestDatabase>>
/** Micro-dollars per token, integers, so Σ cost is exact. */
const PRICE = { input: 2, output: 3 }

const capture = () => {
  const lines: string[] = []
  return { lines, log: createLogger('warn', { write: (line: string) => void lines.push(line) }), parsed: () => lines.map((l) => JSON.parse(l)) }
}

/** What the pipeline hands the ledger when a request is over; only the fields the ledger reads. */
const finished = (id: string, over: { endpoint?: unknown; usage?: Record<string, unknown>; costMicros?: unknown } = {}) =>
  ({
    ctx: { id, endpoint: 'endpoint' in over ? over.endpoint : 'chat', principal: { keyId: 'key-1' }, model: { name: 'm' } },
    target: { provider: { name: 'p' }, model: 'gpt-4o' },
    usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7, ...over.usage },
    costMicros: 'costMicros' in over ? over.costMicros : 18,
    aborted: false,
    status: 200,
  }) as unknown as FinishedRequest

/** A fresh data directory, removed after `use`. */
async function withDataDir(use: (dataDir: string) => Promise<void>) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-sqlite-'))
  try {
    await use(dataDir)
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
}

/** A store on a fresh SQLite file (in `dataDir`), closed and removed after `use`. */
const withSqliteStore = (use: (store: Store, dataDir: string) => Promise<void>) =>
  withDataDir(async (dataDir) => {
    const store = await Store.open({ dataDir })
    try {
      await use(store, dataDir)
    } finally {
      await store.close()
    }
  })

/** An upstream speaking OpenAI's chat format whose usage is scripted: a last message `usage:<json>` gets that object verbatim. */
function startScriptedUsageUpstream() {
  const reported: { prompt_tokens: number; completion_tokens: number }[] = []
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const body = (await req.json()) as any
      const content: string = body.messages.at(-1).content
      const usage = content.startsWith('usage:') ? JSON.parse(content.slice(6)) : { prompt_tokens: 5 + reported.length, completion_tokens: 2 }
      if (typeof usage.prompt_tokens === 'number') reported.push(usage)
      return Response.json({
        id: `chatcmpl-${crypto.randomUUID()}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'Hi' }, finish_reason: 'stop' }],
        usage,
      })
    },
  })
  return { url: `http://127.0.0.1:${server.port}/v1`, reported, stop: () => server.stop(true) }
}

const proxyTo = (database: Database) => {
  const pg = new URL(database.url)
  return startFaultProxy({ hostname: pg.hostname, port: Number(pg.port || 5432) }, { kind: 'pass' }, { postgres: true })
}
/** The database's URL through the proxy. */
const proxied = (database: Database, proxy: FaultProxy) => {
  const url = new URL(database.url)
  url.port = String(proxy.port)
  return url.toString()
}

/** Totals read straight from the table (a PostgreSQL URL, or the SQLite file in a data folder), not through the gateway. */
const countRows = async (where: string) => {
  const direct = where.startsWith('postgres') ? new SQL(where) : new SQL({ adapter: 'sqlite', filename: path.join(where, 'conduit.sqlite') })
  try {
    const [row] = await direct`SELECT COUNT(*) AS n, SUM(cost_micros) AS cost, SUM(prompt_tokens + completion_tokens) AS tokens,
      SUM(aborted) AS aborted, SUM(CASE WHEN status = 503 THEN 1 ELSE 0 END) AS ended FROM spend_ledger`
    const count = (value: unknown) => Number(value ?? 0)
    return { n: count(row.n), cost: count(row.cost), tokens: count(row.tokens), aborted: count(row.aborted), ended: count(row.ended) }
  } finally {
    await direct.close()
  }
}
/** What the fake upstream reported, priced: what the ledger must hold. */
const upstreamCost = (fake: FakeOpenAI, from = 0) => fake.usageLog.slice(from).reduce((sum, u) => sum + u.prompt_tokens * PRICE.input + u.completion_tokens * PRICE.output, 0)

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(engine, () => {
    let database: Database | null = null
    beforeAll(async () => {
      if (engine === 'postgres') database = await createTestDatabase()
    })
    afterAll(async () => {
      await database?.drop()
    })

    test('an upstream answering "prompt_tokens":"abc" costs one estimated row; every other request is written and counted', async () => {
      const upstream = startScriptedUsageUpstream()
      const gw = await startGateway(database ? { databaseURL: database.url, encryptionKey: 'ledger-test-key' } : {})
      try {
        await gw.admin('POST', '/providers', { name: 'scripted', type: 'openai', base_url: upstream.url, api_key: 'sk-upstream-test' })
        await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'scripted', model: 'gpt-4o', price: PRICE }] })
        const { key } = await gw.admin('POST', '/keys', { name: 'abc' })
        const chat = (content: string) =>
          fetch(`${gw.baseURL}/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }] }),
          }).then(async (r) => ({ id: r.headers.get('x-request-id')!, status: r.status, body: await r.text() }))
        // One batch: the bad row sits between good ones, as it would under load.
        const contents = ['a', 'b', 'c', 'usage:{"prompt_tokens":"abc","completion_tokens":2,"total_tokens":"abc"}', 'd', 'e', 'f']
        const results = await Promise.all(contents.map(chat))
        const bad = results[3]!
        expect(results.map((r) => r.status)).toEqual(contents.map(() => 200))
        await gw.gateway.ledger.flush()
        expect(gw.gateway.ledger.pending).toBe(0)

        const usage = await gw.admin('GET', '/usage')
        expect(usage.total.requests).toBe(7)
        const good = upstream.reported.reduce((sum, u) => sum + u.prompt_tokens * PRICE.input + u.completion_tokens * PRICE.output, 0)
        expect(Math.round(Number(usage.total.cost_usd) * 1e6)).toBeGreaterThanOrEqual(good)
        const [row] = await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE request_id = ${bad.id}`
        expect(Number(row.estimated)).toBe(1)
        expect(Number.isInteger(Number(row.prompt_tokens))).toBe(true)

        // The ledger keeps writing afterwards.
        await chat('g')
        await gw.gateway.ledger.flush()
        expect((await gw.admin('GET', '/usage')).total.requests).toBe(8)
      } finally {
        await gw.close()
        upstream.stop()
      }
    })

    describe('the ledger alone, on a real store', () => {
      let store: Store
      let dataDir: string
      beforeAll(async () => {
        dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-ledger-'))
        store = await Store.open({ dataDir, databaseURL: database?.url })
      })
      afterAll(async () => {
        await store.close()
        rmSync(dataDir, { recursive: true, force: true })
      })
      const rows = async (prefix: string) =>
        ((await store.sql`SELECT * FROM spend_ledger WHERE request_id LIKE ${`${prefix}%`} ORDER BY request_id`) as any[]).map((r) => ({
          id: r.request_id as string,
          prompt: Number(r.prompt_tokens),
          completion: Number(r.completion_tokens),
          cost: Number(r.cost_micros),
          estimated: Number(r.estimated),
        }))

      test('amounts that are not non-negative integers become 0, the row says estimated, one warning per row', async () => {
        const { log, parsed } = capture()
        const ledger = new SpendLedger(store, log)
        ledger.record(finished('san-1', { usage: { prompt_tokens: Number.NaN }, costMicros: Number.NaN }))
        ledger.record(finished('san-2', { usage: { prompt_tokens: 'abc', completion_tokens: -5 } }))
        ledger.record(finished('san-3', { usage: { completion_tokens: Number.POSITIVE_INFINITY }, costMicros: 1e300 }))
        ledger.record(finished('san-4', { usage: { prompt_tokens: 2.5 } }))
        await ledger.close()
        expect(ledger.pending).toBe(0)
        expect(await rows('san-')).toEqual([
          { id: 'san-1', prompt: 0, completion: 4, cost: 0, estimated: 1 },
          { id: 'san-2', prompt: 0, completion: 0, cost: 18, estimated: 1 },
          { id: 'san-3', prompt: 3, completion: 0, cost: 0, estimated: 1 },
          { id: 'san-4', prompt: 3, completion: 4, cost: 18, estimated: 0 },
        ])
        const warnings = parsed().filter((l) => l.level === 'warn')
        expect(warnings.map((w) => [w.requestId, w.columns])).toEqual([
          ['san-1', ['prompt_tokens', 'cost_micros']],
          ['san-2', ['prompt_tokens', 'completion_tokens']],
          ['san-3', ['completion_tokens', 'cost_micros']],
        ])
      })

      test('a row the database refuses is set aside with an error naming it; the rest of its batch and later rows are written', async () => {
        const { log, parsed } = capture()
        const ledger = new SpendLedger(store, log)
        // 40 rows: the refused one among the first 32, which SQLite's writer inserts with one statement.
        for (let i = 0; i < 40; i++) ledger.record(finished(`bis-${String(i).padStart(2, '0')}`, i === 13 ? { endpoint: null } : {}))
        await ledger.flush()
        expect(ledger.pending).toBe(0)
        const written = (await rows('bis-')).map((r) => r.id)
        expect(written.length).toBe(39)
        expect(written).not.toContain('bis-13')
        const errors = parsed().filter((l) => l.level === 'error')
        expect(errors.length).toBe(1)
        expect(errors[0]).toMatchObject({ requestId: 'bis-13', msg: expect.stringContaining('set aside') })

        ledger.record(finished('bis-40'))
        await ledger.close()
        expect((await rows('bis-')).length).toBe(40)
      })
    })
  })
}

describe('PostgreSQL behind a fault proxy', () => {
  let fake: FakeOpenAI
  let database: Database
  let proxy: FaultProxy
  let gw: TestGateway
  let key: string
  const logs = { level: 'warn', lines: [] as string[] }

  beforeAll(async () => {
    fake = await startFakeOpenAI()
    database = await createTestDatabase()
    proxy = await proxyTo(database)
    gw = await startGateway({ databaseURL: proxied(database, proxy), encryptionKey: 'ledger-test-key', ledgerMaxQueued: 30 }, logs)
    await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
    await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o', price: PRICE }] })
    key = (await gw.admin('POST', '/keys', { name: 'durable' })).key
  })
  afterAll(async () => {
    await gw.close()
    proxy.stop()
    await fake.stop()
    await database.drop()
  })

  const chat = (i: number) =>
    fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `message ${i}` }], stream: i % 2 === 0, stream_options: { include_usage: true } }),
    }).then(async (r) => (await r.text(), r.status))
  const settle = async () => {
    const deadline = Date.now() + 15_000
    while (gw.gateway.ledger.pending > 0 && Date.now() < deadline) await Bun.sleep(100)
    expect(gw.gateway.ledger.pending).toBe(0)
  }

  test('BU3: the first write of every 5th request commits but its reply is lost; the retry counts it once', async () => {
    let lostWhilePending = 0
    for (let i = 0; i < 20; i++) {
      // The server's reply to the ledger's INSERT (sent after its COMMIT) never reaches the gateway. Only that
      // statement's: the request records and metric buckets answer alike (INSERT 0 1) and flush on their own timers.
      proxy.fault = i % 5 === 4 ? { kind: 'lose-reply', statement: 'spend_ledger', times: 1 } : { kind: 'pass' }
      expect(await chat(i)).toBe(200)
      await gw.gateway.ledger.flush()
      if (i % 5 === 4) {
        // Committed, yet the gateway does not know: the row is in the table and still queued for a retry.
        expect(gw.gateway.ledger.pending).toBe(1)
        expect((await countRows(database.url)).n).toBe(i + 1)
        lostWhilePending++
      }
    }
    proxy.fault = { kind: 'pass' }
    await gw.gateway.ledger.flush()
    await settle()
    expect(lostWhilePending).toBe(4)
    const totals = await countRows(database.url)
    expect(totals.n).toBe(20)
    expect(totals.cost).toBe(upstreamCost(fake))
    expect(logs.lines.filter((l) => l.includes('set aside'))).toEqual([])
  }, 30_000)

  test('BU8 bound: down for longer than the queue holds, the oldest rows are dropped, loudly; the newest are written', async () => {
    expect(await chat(99)).toBe(200) // the key is cached: requests do not need the database
    await gw.gateway.ledger.flush()
    const before = await countRows(database.url)
    logs.lines.length = 0
    proxy.refuse()
    const statuses = await Promise.all(Array.from({ length: 50 }, (_, i) => chat(100 + i)))
    expect(statuses.every((s) => s === 200)).toBe(true)
    await gw.gateway.ledger.flush()
    expect(gw.gateway.ledger.pending).toBe(30)
    const dropped = logs.lines.map((l) => JSON.parse(l)).filter((l) => l.msg?.includes('oldest rows dropped'))
    expect(dropped.reduce((n, l) => n + l.dropped, 0)).toBe(20)
    // The database being down is not a rejection: nothing is split or set aside.
    expect(logs.lines.filter((l) => l.includes('set aside'))).toEqual([])

    proxy.restore()
    await settle()
    expect((await countRows(database.url)).n).toBe(before.n + 30)
  }, 30_000)
})

test('SQLite: the rows every request writes are inserted off the event loop; the shared connection commits without an fsync', async () => {
  // On the event loop a 500-row batch held every request and stream of the process for 2–14 ms; with FULL, each image
  // URL or realtime session the shared connection writes stalled it for an fsync.
  await withSqliteStore(async (store) => {
    const [shared] = await store.sql`PRAGMA synchronous`
    expect(shared.synchronous).toBe(1)

    const rows = Array.from({ length: 20_000 }, (_, i) => spendRow(`off-${i}`))
    let turns = 0
    let written = false
    const written$ = store.insertSpend(rows).then(() => (written = true))
    while (!written) {
      await new Promise((resolve) => setImmediate(resolve))
      turns++
    }
    await written$
    expect(turns).toBeGreaterThan(10) // the loop went on while the thread inserted (tens of milliseconds here)
    const [{ n }] = await store.sql`SELECT COUNT(*) AS n FROM spend_ledger`
    const [{ requests }] = await store.sql`SELECT SUM(requests) AS requests FROM spend_hours`
    expect([Number(n), Number(requests)]).toEqual([20_000, 20_000])
  })
})

test("SQLite: the handoff's JSON is encoded a slice of rows at a time, with turns of the event loop between, each row as its values in column order", async () => {
  const rows = (n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ ...spendRow(`${tag}-${i}`), end_user: i % 3 ? null : `u"\\${i}` }))
  for (const batches of [[], [[]], [rows(1, 'a')], [rows(251, 'b'), []], [rows(600, 'c'), rows(2, 'd')]]) {
    // Another task on the loop, counting the turns it gets while the batches are encoded.
    let turns = 0
    let encoding = true
    const other = () => encoding && (turns++, setImmediate(other))
    setImmediate(other)
    const encoded = await encodeInTurns(batches, batches.map(() => SPEND_COLUMNS))
    encoding = false
    // Each batch: the JSON of its rows 250 at a time, in order (none for an empty batch), a row as its values.
    const values = (row: Record<string, unknown>) => SPEND_COLUMNS.map((c) => row[c] ?? null)
    const expected = batches.map((rows) => Array.from({ length: Math.ceil(rows.length / 250) }, (_, i) => JSON.stringify(rows.slice(i * 250, i * 250 + 250).map(values))))
    expect(encoded).toEqual(expected)
    expect(decodeBatches(encoded)).toEqual(batches.map((rows) => rows.map(values)))
    if (batches[0]?.length === 600) expect(turns).toBeGreaterThanOrEqual(2) // 600 rows: three slices, two turns between
  }
  // A value JSON cannot carry is the TypeError the batch writer sets a row aside for.
  await expect(encodeInTurns([[{ amount: 1n }]], [['amount']])).rejects.toBeInstanceOf(TypeError)
})

test('SQLite: the WAL is checkpointed by the row writer every 10,000 pages, never by the shared connection', async () => {
  // On the event loop, a checkpoint copies every page in the WAL into the database file and fsyncs it twice.
  await withSqliteStore(async (store) => {
    const [shared] = await store.sql`PRAGMA wal_autocheckpoint`
    expect(shared.wal_autocheckpoint).toBe(0)
    for (let batch = 0; batch < 30; batch++) {
      await store.insertSpend(Array.from({ length: 2_000 }, (_, i) => ({ ...spendRow(`wal-${batch}-${i}`), key_id: `k${i % 40}` })))
    }
    // Frames in the WAL since it last started over: at SQLite's default the writer would have started it over
    // after its first commit past 1,000.
    const [{ log }] = await store.sql`PRAGMA wal_checkpoint(PASSIVE)`
    expect(log).toBeGreaterThan(1_000)
  })
})

test("SQLite: the row writer groups a batch's rows by key (each key's rows in their order), and every row and total is kept", async () => {
  // Grouped, a batch's inserts into the indexes led by key_id follow one another: traffic spread over 40 keys cost
  // about a quarter less CPU a request (bench/row-insert-cost.ts).
  await withSqliteStore(async (store) => {
    const keys = ['kc', 'ka', 'kb']
    const spread = Array.from({ length: 12 }, (_, i) => ({ request_id: `g-${String(i).padStart(2, '0')}`, key_id: i % 5 === 4 ? null : keys[i % 3]! }))
    await Promise.all([
      store.insertSpend(spread.map((s) => ({ ...spendRow(s.request_id), key_id: s.key_id }))),
      store.insertRequestRecords(spread.map((s) => ({ ...recordRow(s.request_id), key_id: s.key_id }))),
    ])
    const expected = [...spread].sort((a, b) => (a.key_id ?? '').localeCompare(b.key_id ?? '')).map((s) => `${s.key_id}:${s.request_id}`)
    for (const table of ['spend_ledger', 'request_records']) {
      const rows = (await store.sql.unsafe(`SELECT key_id, request_id FROM ${table} ORDER BY rowid`)) as { key_id: string | null; request_id: string }[]
      expect(rows.map((r) => `${r.key_id}:${r.request_id}`)).toEqual(expected)
    }
    const totals = (await store.sql`SELECT key_id, requests FROM spend_hours ORDER BY key_id`) as { key_id: string; requests: number }[]
    expect(totals.map((t) => [t.key_id, Number(t.requests)])).toEqual([['', 2], ['ka', 3], ['kb', 4], ['kc', 3]])
  })
})

test.skipIf(process.platform !== 'linux')("SQLite: the row writer's thread runs at a background priority (nice 10), the rest of the process as it was", async () => {
  // At the same priority a request's thread woken during a batch's insert waited for the scheduler's slice (1–3 ms).
  const threads = () => threadsOf('self')
  await withSqliteStore(async (store) => {
    const before = threads()
    await store.insertSpend([spendRow('nice-1')])
    const processNice = before.get(String(process.pid))!.nice
    // The writer, and any thread it started (which inherits its priority and its name).
    const started = [...threads()].filter(([tid, t]) => !before.has(tid) && t.name === 'Worker').map(([, t]) => t.nice)
    expect(started.length).toBeGreaterThan(0)
    expect(started.filter((nice) => nice !== Math.max(10, processNice))).toEqual([])
    expect(threads().get(String(process.pid))?.nice).toBe(processNice)
  })
})

describe("several processes on one SQLite file (a cluster's workers)", () => {
  const run = async (dataDir: string, tag: string, ms: number) => {
    const child = Bun.spawn(['bun', path.join(import.meta.dir, '../helpers/sqlite-process.ts'), dataDir, tag, String(ms)], { stdout: 'pipe', stderr: 'inherit' })
    const [out] = await Promise.all([new Response(child.stdout).text(), child.exited])
    return JSON.parse(out) as { opened: boolean; written: number; refused: string[] }
  }

  test('starting at the same moment and writing at once, every process starts and no write is refused', async () => {
    // A cluster's workers start together. Before, 5 of 40 such starts lost a write (or the start) to "database is locked".
    for (let round = 0; round < 5; round++) {
      await withDataDir(async (dataDir) => {
        await run(dataDir, 'first', 0)
        const reports = await Promise.all([1, 2, 3, 4].map((n) => run(dataDir, `p${n}`, 1)))
        expect(reports.map((r) => [r.opened, r.refused])).toEqual(Array(4).fill([true, []]))
      })
    }
  }, 60_000)

  test("the metric buckets wait for another process's write lock off the event loop", async () => {
    // On the event loop their upsert sat in SQLite's busy handler while a writer held the file: 2–4 ms of every
    // request in the process, every 5 s, under load; here, the whole time another process holds the lock.
    await withSqliteStore(async (store, dataDir) => {
      const file = path.join(dataDir, 'conduit.sqlite')
      const holder = Bun.spawn(['bun', '-e', `const db = new (require('bun:sqlite').Database)(${JSON.stringify(file)}); db.exec('PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE'); console.log('locked'); setTimeout(() => db.exec('COMMIT'), 400)`], { stdout: 'pipe' })
      const reader = holder.stdout.getReader()
      await reader.read() // 'locked'
      const minute = Date.now() - (Date.now() % 60_000)
      const row = { minute, instance: 'i', key_id: 'k', model: 'm', requests: 3, errors: 0, prompt_tokens: 1, completion_tokens: 2, cost_micros: 3, latency_hist: '0:3', ttft_hist: '' }
      let done = false
      const upserted = store.upsertMetricBuckets([row, { ...row, requests: 5 }]).then(() => (done = true))
      let longest = 0
      for (let last = performance.now(); !done; ) {
        await Bun.sleep(5)
        longest = Math.max(longest, performance.now() - last)
        last = performance.now()
      }
      await upserted
      await holder.exited
      expect(longest).toBeLessThan(100) // the lock was held for 400 ms
      const [stored] = await store.sql`SELECT requests FROM metric_buckets WHERE minute = ${minute}`
      expect(Number(stored.requests)).toBe(5)
    })
  }, 30_000)

  test('writing at the same time, no batch is refused and every row is in the tables', async () => {
    // A transaction that read before it wrote was refused at once when the other process had committed in between:
    // about one batch in twenty, each logged as "database unreachable" and retried.
    await withDataDir(async (dataDir) => {
      await run(dataDir, 'first', 0)
      const reports = await Promise.all([run(dataDir, 'a', 1_500), run(dataDir, 'b', 1_500)])
      expect(reports.flatMap((r) => r.refused)).toEqual([])
      const written = reports.reduce((n, r) => n + r.written, 0)
      expect(written).toBeGreaterThan(1_000)
      const db = new SQL({ adapter: 'sqlite', filename: path.join(dataDir, 'conduit.sqlite') })
      const [{ ledger }] = await db`SELECT COUNT(*) AS ledger FROM spend_ledger`
      const [{ records }] = await db`SELECT COUNT(*) AS records FROM request_records`
      const [{ totalled }] = await db`SELECT SUM(requests) AS totalled FROM spend_hours`
      await db.close()
      expect([Number(ledger), Number(records), Number(totalled)]).toEqual([written, written, written])
    })
  }, 60_000)
})

test("SQLite: the row writer's thread dies mid-batch: the batch is retried like an unreachable database, every row counts once", async () => {
  await withSqliteStore(async (store) => {
    const { log, parsed } = capture()
    const ledger = new SpendLedger(store, log)
    for (let i = 0; i < 3_000; i++) ledger.record(finished(`die-${i}`))
    const flushed = ledger.flush()
    await new Promise((resolve) => setImmediate(resolve)) // the first batch is on the thread
    ;(store as unknown as { rowWriter: { worker: Worker } }).rowWriter.worker.terminate()
    await flushed
    expect(ledger.pending).toBeGreaterThan(0) // what was on the thread, and what waited behind it, is still queued
    expect(parsed().some((l) => l.msg === 'spend ledger: database unreachable; will retry' && l.err.message === 'row writer thread exited')).toBe(true)

    await ledger.close() // a new thread writes them
    expect(ledger.pending).toBe(0)
    const [{ n }] = await store.sql`SELECT COUNT(*) AS n FROM spend_ledger WHERE request_id LIKE 'die-%'`
    const [{ requests, cost }] = await store.sql`SELECT SUM(requests) AS requests, SUM(cost_micros) AS cost FROM spend_hours WHERE key_id = 'key-1'`
    expect([Number(n), Number(requests), Number(cost)]).toEqual([3_000, 3_000, 3_000 * 18])
    expect(parsed().filter((l) => l.level === 'error')).toEqual([]) // nothing set aside, nothing lost
  })
})

test("SQLite: a budget's spend is summed from an index alone, per key and per end user", async () => {
  // A table row per request, scattered among every other key's, made a busy key's sum tens of milliseconds of stall.
  await withSqliteStore(async (store) => {
    for (const user of [null, 'u-1']) {
      const filter = user === null ? '' : `AND end_user = '${user}'`
      const [plan] = await store.sql.unsafe(`EXPLAIN QUERY PLAN SELECT SUM(cost_micros) FROM spend_ledger WHERE key_id = 'k' ${filter} AND created_at >= 0`)
      expect(plan.detail).toContain('USING COVERING INDEX')
    }
  })
})

test('the database stalls (connection open, no reply): a write times out, its rows stay queued, close() still returns', async () => {
  const database = await createTestDatabase()
  const proxy = await proxyTo(database)
  const store = await Store.open({ dataDir: tmpdir(), databaseURL: proxied(database, proxy) })
  const { log, parsed } = capture()
  const ledger = new SpendLedger(store, log, { writeTimeoutMs: 300 })
  try {
    ledger.record(finished('stall-1'))
    ledger.record(finished('stall-2'))
    proxy.fault = { kind: 'stall', afterBytes: 0 }
    let started = performance.now()
    await ledger.flush()
    expect(performance.now() - started).toBeLessThan(2_000)
    expect(ledger.pending).toBe(2)

    proxy.fault = { kind: 'pass' } // the stalled connection stays stuck; the retry takes another
    await ledger.flush()
    expect(ledger.pending).toBe(0)
    expect((await countRows(database.url)).n).toBe(2)

    // At SIGTERM, a database back within a second (restarting at the same moment): the row is written, not lost.
    ledger.record(finished('stall-3'))
    proxy.fault = { kind: 'stall', afterBytes: 0 }
    setTimeout(() => (proxy.fault = { kind: 'pass' }), 1_000)
    await ledger.close()
    expect(ledger.pending).toBe(0)
    expect((await countRows(database.url)).n).toBe(3)
    expect(parsed().filter((l) => l.level === 'error')).toEqual([])
    // One that stays away: tried for a bounded time, then what could not be written is reported.
    const again = new SpendLedger(store, log, { writeTimeoutMs: 300 })
    again.record(finished('stall-4'))
    proxy.fault = { kind: 'stall', afterBytes: 0 }
    started = performance.now()
    await again.close()
    expect(performance.now() - started).toBeLessThan(7_000)
    expect(parsed().find((l) => l.level === 'error')).toMatchObject({ lost: 1, msg: expect.stringContaining('before exit') })
    expect(parsed().filter((l) => JSON.stringify(l).includes('set aside'))).toEqual([])
  } finally {
    proxy.stop()
    await store.close().catch(() => {})
    await database.drop()
  }
}, 30_000)

describe('a gateway process', () => {
  let fake: FakeOpenAI
  beforeAll(async () => {
    fake = await startFakeOpenAI()
  })
  afterAll(async () => {
    await fake.stop()
  })

  const start = async (env: Record<string, string> & { DATABASE_URL: string }) => {
    const [gateway] = await startInstances(1, { REDIS_URL: '', ...env })
    await gateway!.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
    await gateway!.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o', price: PRICE }] })
    const { key } = await gateway!.admin('POST', '/keys', { name: 'proc' })
    return { gateway: gateway!, key: key as string }
  }
  const chat = (gateway: Instance, key: string, content: string, stream: boolean) =>
    fetch(`${gateway.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], stream, stream_options: stream ? { include_usage: true } : undefined }),
    })
  const rssMB = (pid: number) => rssBytes(pid) / MB

  test('SIGTERM while PostgreSQL accepts and never answers: the process exits 0 within the flush deadline and the close bound, not when the database answers', async () => {
    const database = await createTestDatabase()
    const proxy = await proxyTo(database)
    const { gateway, key } = await start({ DATABASE_URL: proxied(database, proxy), CONDUIT_DRAIN_MS: '500' })
    try {
      expect((await chat(gateway, key, 'before', false)).status).toBe(200)
      // Hung: open connections dropped, new ones accepted and never answered.
      proxy.fault = { kind: 'stall', afterBytes: 0 }
      proxy.refuse()
      proxy.restore()
      const cut = Date.now()
      gateway.proc.kill('SIGTERM')
      const code = await Promise.race([gateway.proc.exited, Bun.sleep(20_000).then(() => 'still running' as const)])
      const seconds = (Date.now() - cut) / 1000
      console.log(`SIGTERM with the database hung: exited ${code} after ${seconds.toFixed(1)} s`)
      expect(code).toBe(0)
      expect(seconds).toBeLessThan(12)
    } finally {
      gateway.proc.kill('SIGKILL')
      await gateway.stop()
      proxy.stop()
      await database.drop()
    }
  }, 60_000)

  test('BU8: PostgreSQL refused for 10 s at 50 req/s: every request is billed after it returns, Σ cost exact; RSS grows ≤ 20 MB', async () => {
    const database = await createTestDatabase()
    const proxy = await proxyTo(database)
    const { gateway, key } = await start({ DATABASE_URL: proxied(database, proxy) })
    const usageFrom = fake.usageLog.length
    try {
      const send = async (count: number, from: number) => {
        const pending: Promise<number>[] = []
        for (let i = 0; i < count; i++) {
          pending.push(chat(gateway, key, `request ${from + i}`, i % 2 === 0).then(async (r) => (await r.text(), r.status)))
          await Bun.sleep(20) // ~50 requests a second
        }
        return Promise.all(pending)
      }
      // Warm up with the database up, so the baseline includes the JIT, pools and caches.
      expect((await send(200, 0)).every((s) => s === 200)).toBe(true)
      await Bun.sleep(500)
      const baseline = rssMB(gateway.proc.pid)

      proxy.refuse()
      let peak = baseline
      const sampler = setInterval(() => (peak = Math.max(peak, rssMB(gateway.proc.pid))), 250)
      const during = await send(500, 200)
      clearInterval(sampler)
      peak = Math.max(peak, rssMB(gateway.proc.pid))
      expect(during.every((s) => s === 200)).toBe(true)
      expect((await countRows(database.url)).n).toBe(200) // nothing written during the outage

      proxy.restore()
      const deadline = Date.now() + 20_000
      let totals = await countRows(database.url)
      while (totals.n < 700 && Date.now() < deadline) {
        await Bun.sleep(200)
        totals = await countRows(database.url)
      }
      console.log(`BU8: RSS ${baseline.toFixed(1)} MB before the outage, peak ${peak.toFixed(1)} MB during it (+${(peak - baseline).toFixed(1)} MB)`)
      expect(totals.n).toBe(700)
      expect(fake.usageLog.length - usageFrom).toBe(700)
      expect(totals.cost).toBe(upstreamCost(fake, usageFrom))
      expect(peak - baseline).toBeLessThanOrEqual(20)
    } finally {
      await gateway.stop()
      proxy.stop()
      await database.drop()
    }
  }, 90_000)

  // Streams still open at the drain deadline are ended by the gateway (a 503 server_shutting_down error event):
  // not aborted by their clients, and billed their input and what they received.
  for (const [name, drainMs, chunkMs, ended] of [
    ['the streams finish within the drain', 5_000, 50, 0],
    ['the drain ends first: the streams are ended and billed', 300, 300, 20],
  ] as const) {
    test.each(['sqlite', 'postgres'] as const)(`BU10 (%s): SIGTERM during 20 streams, ${name}: 20 ledger rows after exit`, async (engine) => {
      const database = engine === 'postgres' ? await createTestDatabase() : null
      // SQLite: a data folder of our own, so the file outlives the process.
      const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-ledger-'))
      const env = { DATABASE_URL: database?.url ?? '', CONDUIT_DATA_DIR: dataDir, CONDUIT_DRAIN_MS: String(drainMs) }
      const { gateway, key } = await start(env)
      const usageFrom = fake.usageLog.length
      try {
        const streams = await Promise.all(Array.from({ length: 20 }, (_, i) => chat(gateway, key, `slow-stream:${chunkMs} ${i}`, true)))
        expect(streams.map((r) => r.status)).toEqual(streams.map(() => 200))
        // Each stream has started: its first chunk is here.
        const readers = streams.map((r) => r.body!.getReader())
        await Promise.all(readers.map((r) => r.read()))
        const rest = readers.map(async (r) => {
          try {
            while (!(await r.read()).done);
          } catch {} // cut by the drain
        })
        expect(await gateway.stop()).toBe(0)
        await Promise.all(rest)
        const totals = await countRows(database?.url ?? dataDir)
        expect(totals.n).toBe(20)
        expect(totals.aborted).toBe(0)
        expect(totals.ended).toBe(ended)
        expect(totals.cost).toBeGreaterThan(0)
        // Finished streams are billed the fake's usage exactly; ended ones their input and what they received.
        if (ended === 0) expect(totals.cost).toBe(upstreamCost(fake, usageFrom))
      } finally {
        await database?.drop()
        rmSync(dataDir, { recursive: true, force: true })
      }
    }, 30_000)
  }

  test('SIGTERM while whole answers are awaited past the drain: each client gets its 503, nothing is sent again, a row each', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-ledger-'))
    const { gateway, key } = await start({ DATABASE_URL: '', CONDUIT_DATA_DIR: dataDir, CONDUIT_DRAIN_MS: '300' })
    try {
      const sentBefore = fake.requests.length
      const answers = Array.from({ length: 5 }, (_, i) => chat(gateway, key, `slow-first-byte:3000 ${i}`, false).then(async (r) => [r.status, ((await r.json()) as any).error?.code]))
      while (fake.requests.length - sentBefore < 5) await Bun.sleep(10)
      expect(await gateway.stop()).toBe(0)
      // The call our drain ended is a 503 of our own: retried, it went to the provider again after the deadline.
      expect(await Promise.all(answers)).toEqual(Array.from({ length: 5 }, () => [503, 'server_shutting_down']))
      expect(fake.requests.length - sentBefore).toBe(5)
      const totals = await countRows(dataDir)
      expect([totals.n, totals.ended]).toEqual([5, 5])
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 30_000)
})
