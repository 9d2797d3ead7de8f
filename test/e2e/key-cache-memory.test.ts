import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { adminClient } from '../helpers/admin-client.ts'
import { MASTER_KEY } from '../helpers/gateway.ts'
import { collectGarbage, inspectorArgs, MB, rssFloor } from '../helpers/proc-stats.ts'
import { startEnv } from '../../src/cluster/own-command.ts'
import { startProcess, stopProcess, type RunningGateway } from '../helpers/process.ts'

/**
 * SK2, bytes per cached virtual key: a fresh gateway process (one worker, SQLite) learns 10,000 keys (the auth
 * cache's default size), each authenticated once; its memory after a full collection (through Bun's inspector)
 * is compared before and after. Bytes per held stream are SK2's other half, in unread-streams.test.ts.
 */
const KEYS = 10_000
/** Keys authenticated before the baseline, so the lookup path (store query, hash, cache insert) is warm. */
const WARM_KEYS = 500
const CONCURRENCY = 20
/**
 * The goldens, twice what Bun 1.4.5 measured (630-670 bytes of RSS per key; 320 bytes and 7.4 objects of JS heap:
 * the presented key, the entry, the principal with its limits and metadata; the rest is allocator overhead and
 * SQLite's page cache): a shared machine moves RSS by a few MB, and a regression that keeps a whole row, a
 * promise or a copy per key still crosses them.
 */
const MAX_BYTES_PER_KEY = 1_300
const MAX_OBJECTS_PER_KEY = 15

let gw: RunningGateway
let inspector: ReturnType<typeof inspectorArgs>
let admin: ReturnType<typeof adminClient>
let dataDir: string
const plaintexts: string[] = []

/** Runs `task(i)` for i in [from, to) from `CONCURRENCY` clients. */
async function each(from: number, to: number, task: (i: number) => Promise<void>) {
  let next = from
  const client = async () => {
    while (next < to) await task(next++)
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, client))
}

/** One authenticated request: `GET /v1/models` costs the gateway a key lookup and nothing upstream. */
async function authenticate(key: string) {
  const res = await fetch(`${gw.origin}/v1/models`, { headers: { authorization: `Bearer ${key}` } })
  await res.arrayBuffer()
  if (res.status !== 200) throw new Error(`GET /v1/models → ${res.status}`)
}

/** RSS and JS heap once the garbage is collected. */
async function memory() {
  const heap = await collectGarbage(inspector.url)
  return { ...heap, rss: await rssFloor(gw.proc.pid) }
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-keys-'))
  inspector = inspectorArgs()
  // The start environment as main.ts would set it: under --inspect the gateway does not restart itself to set it.
  const env = { CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER_KEY, CONDUIT_WORKERS: '1', CONDUIT_LOG_LEVEL: 'error' }
  gw = await startProcess({ ...env, ...startEnv({}, 1) }, [], ['bun', ...inspector.args, 'src/main.ts'])
  admin = adminClient(gw.origin)
  // Read what the gateway prints (a full pipe would block it).
  for (const stream of [gw.proc.stdout, gw.proc.stderr] as ReadableStream<Uint8Array>[]) void Array.fromAsync(stream)
})

afterAll(async () => {
  if (gw) await stopProcess(gw.proc)
  rmSync(dataDir, { recursive: true, force: true })
})

test('SK2: 10,000 cached virtual keys cost the gateway at most 1,300 bytes of RSS and 15 JS objects each', async () => {
  const started = performance.now()
  await each(0, KEYS, async (i) => {
    plaintexts[i] = (await admin('POST', '/keys', { name: `key-${i}`, rpm: 1_000 + i, metadata: { team: `team-${i % 50}` } })).key
  })
  const created = performance.now()
  // Warm-up: the request path with one cached key as many times as the measured keys, then the first keys.
  await each(0, KEYS - WARM_KEYS, () => authenticate(plaintexts[0]!))
  await each(0, WARM_KEYS, (i) => authenticate(plaintexts[i]!))
  const before = await memory()
  await each(WARM_KEYS, KEYS, (i) => authenticate(plaintexts[i]!))
  const after = await memory()

  const learned = KEYS - WARM_KEYS
  const perKey = (after.rss - before.rss) / learned
  const objectsPerKey = (after.objectCount - before.objectCount) / learned
  const mb = (bytes: number) => (bytes / MB).toFixed(1)
  console.log(
    `SK2: ${KEYS} keys created in ${((created - started) / 1000).toFixed(1)} s; RSS ${mb(before.rss)} → ${mb(after.rss)} MB: ` +
      `${Math.round(perKey)} bytes per cached key (bound ${MAX_BYTES_PER_KEY}); ` +
      `JS heap ${Math.round((after.heapSize - before.heapSize) / learned)} bytes and ${objectsPerKey.toFixed(1)} objects per key (bound ${MAX_OBJECTS_PER_KEY})`,
  )
  expect(perKey).toBeLessThanOrEqual(MAX_BYTES_PER_KEY)
  expect(objectsPerKey).toBeLessThanOrEqual(MAX_OBJECTS_PER_KEY)
}, 120_000)
