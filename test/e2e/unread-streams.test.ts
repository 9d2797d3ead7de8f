import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { FLOOD, openUnreadStreams, unreadStreamsPeak } from '../../bench/scenarios/memory.ts'
import { mockModel } from '../../bench/mock-upstream.ts'
import { MASTER_KEY } from '../helpers/gateway.ts'
import { ROOT, startProcess, stopProcess, type RunningGateway } from '../helpers/process.ts'
import { openFds } from '../helpers/proc-stats.ts'

/**
 * Clients that open a stream and never read it must not cost the gateway the stream: the relay pulls from the
 * upstream only while the client's socket takes more, and passes OpenAI bytes on without re-encoding them.
 * Measured from outside, as an operator sees it: the RSS of a real gateway process in front of an upstream
 * process that streams as fast as it can (bench/mock-upstream.ts, one OpenAI chunk per write), next to the
 * thinnest Bun passthrough (bench/floor.ts) under the same clients.
 */
const STREAMS = 100
/** The mock reads its timing from the model name: FLOOD is ~8 MB per stream, as fast as it goes. */
const UPSTREAM_MODEL = mockModel(FLOOD)
/** The bar for one unread stream at peak, in MiB (the bare passthrough measures about 1.2 here). */
const MAX_MIB_PER_STREAM = 2.5
const MiB = 1024 * 1024


/** Starts a bench script that prints its `http://127.0.0.1:<port>/v1` address, and returns its process and port. */
async function startScript(script: string, env: Record<string, string> = {}) {
  const proc = Bun.spawn(['bun', script], { cwd: ROOT, env: { PATH: process.env.PATH!, PORT: '0', ...env }, stdout: 'pipe' })
  const reader = proc.stdout.getReader()
  let output = ''
  while (!/\/v1\n/.test(output)) {
    const read = await reader.read()
    if (read.done) throw new Error(`${script} did not start: ${output}`)
    output += new TextDecoder().decode(read.value)
  }
  reader.releaseLock()
  return { proc, port: Number(/:(\d+)\/v1/.exec(output)![1]) }
}

/**
 * RSS growth per stream at its peak while STREAMS unread streams are open, over a baseline taken after a few
 * streams read to the end (so that the code paths are warm). The streams are left open.
 */
async function peakPerUnreadStream(pid: number, port: number, headers: Record<string, string>, model: string) {
  const url = `http://127.0.0.1:${port}/v1/chat/completions`
  const body = JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'stream a lot' }] })
  for (let i = 0; i < 3; i++) {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
    expect(res.status).toBe(200)
    await res.arrayBuffer()
  }
  await Bun.sleep(500)
  const result = await unreadStreamsPeak(pid, () => openUnreadStreams(url, headers, body, STREAMS))
  expect(result.statuses).toEqual(new Array(STREAMS).fill('HTTP/1.1 200 OK'))
  return result
}

/** Polls `probe` until it returns true or `ms` have passed; returns the last answer. */
async function eventually(probe: () => boolean | Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms
  while (!(await probe()) && Date.now() < deadline) await Bun.sleep(100)
  return probe()
}

let upstream: Awaited<ReturnType<typeof startScript>>
let gateway: RunningGateway
let dataDir: string
let key: string
const admin = async (method: string, p: string, body?: unknown) => {
  const res = await fetch(`${gateway.origin}/admin/v1${p}`, {
    method,
    headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  expect(res.status).toBeLessThan(300)
  return (await res.json()) as any
}

beforeAll(async () => {
  upstream = await startScript('bench/mock-upstream.ts')
  dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-unread-'))
  gateway = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER_KEY, CONDUIT_WORKERS: '1' }, [], ['bun', 'src/main.ts'])
  await admin('POST', '/providers', { name: 'mock', type: 'openai', base_url: `http://127.0.0.1:${upstream.port}/v1`, api_key: 'sk-upstream-test' })
  await admin('POST', '/models', { name: 'm', targets: [{ provider: 'mock', model: UPSTREAM_MODEL }] })
  key = (await admin('POST', '/keys', { name: 'unread' })).key
}, 30_000)

afterAll(async () => {
  await stopProcess(gateway.proc)
  upstream.proc.kill()
  await upstream.proc.exited
  rmSync(dataDir, { recursive: true, force: true })
})

describe('unread streams', () => {
  test(`${STREAMS} streams nobody reads cost ≤ ${MAX_MIB_PER_STREAM} MiB each at peak; when they go, the upstream calls end and are billed`, async () => {
    const floor = await startScript('bench/floor.ts', { UPSTREAM: `http://127.0.0.1:${upstream.port}/v1` })
    let bare
    try {
      bare = await peakPerUnreadStream(floor.proc.pid, floor.port, {}, UPSTREAM_MODEL)
      bare.close()
    } finally {
      floor.proc.kill()
      await floor.proc.exited
    }
    const ours = await peakPerUnreadStream(gateway.proc.pid, Number(new URL(gateway.origin).port), { authorization: `Bearer ${key}` }, 'm')
    console.log(
      `${STREAMS} unread streams: gateway +${(ours.perStream / MiB).toFixed(2)} MiB/stream at peak (RSS ${(ours.before / MiB).toFixed(0)} → ${(ours.peak / MiB).toFixed(0)} MiB); ` +
        `bare Bun passthrough +${(bare.perStream / MiB).toFixed(2)} MiB/stream (${(bare.before / MiB).toFixed(0)} → ${(bare.peak / MiB).toFixed(0)} MiB)`,
    )
    const upstreamFds = openFds(upstream.proc.pid) // every stream is still open upstream
    ours.close()

    // The clients went away: every upstream call is cancelled (its connection closes) and every stream is billed.
    expect(await eventually(() => openFds(upstream.proc.pid) <= upstreamFds - STREAMS, 10_000)).toBe(true)
    expect(await eventually(async () => (await admin('GET', '/usage')).total.requests === 3 + STREAMS, 15_000)).toBe(true)
    expect(ours.perStream / MiB).toBeLessThanOrEqual(MAX_MIB_PER_STREAM)
  }, 120_000)
})
