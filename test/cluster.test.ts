import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startEnv } from '../src/cluster/own-command.ts'
import { startFakeOpenAI, type FakeOpenAI } from './helpers/fake-openai.ts'
import { ROOT, startProcess, stopProcess, type RunningGateway } from './helpers/process.ts'

/** Several worker processes on one port behave as one gateway: state that must be shared is shared. */
const MASTER = 'cluster-master-key'
let fake: FakeOpenAI
let dataDir: string

beforeAll(async () => {
  fake = await startFakeOpenAI()
  dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-cluster-'))
})
afterAll(() => {
  fake.stop()
  rmSync(dataDir, { recursive: true, force: true })
})

async function setUp(gw: RunningGateway) {
  const admin = async (method: string, p: string, body?: unknown) =>
    (await (
      await fetch(`${gw.origin}/admin/v1${p}`, {
        method,
        headers: { authorization: `Bearer ${MASTER}`, 'content-type': 'application/json', connection: 'close' },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
    ).json()) as any
  if ((await admin('GET', '/providers')).data.length === 0) {
    await admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
    await admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  }
  const key = await admin('POST', '/keys', { name: `k${Date.now()}` })
  /** Another key, with `policy` (limits, a budget). */
  const newKey = async (policy: Record<string, unknown>) => (await admin('POST', '/keys', { name: `k${Math.random()}`, ...policy })).key as string
  return { admin, newKey, key: key.key as string, keyId: key.id as string }
}

/** `--workers 2` on this file's data folder (with `env` too) for `run`; stopped after it, and it must exit 0. */
async function withTwoWorkers(run: (gw: RunningGateway) => Promise<void>, env: Record<string, string> = {}) {
  const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER, ...env }, ['--workers', '2'])
  try {
    await run(gw)
  } finally {
    expect(await stopProcess(gw.proc)).toBe(0)
  }
}

/** The pids a process started (`bun run start` → the primary → its workers). */
const children = (pid: string | number) => Bun.spawnSync(['pgrep', '-P', String(pid)]).stdout.toString().trim().split('\n').filter(Boolean)
/** A process's command line or environment, as it runs. */
const procList = (pid: string | number, file: 'cmdline' | 'environ') => readFileSync(`/proc/${pid}/${file}`, 'utf8').split('\0')

/** A port nothing listens on now (for an inspector: Bun takes the port it is given). */
function freePort() {
  const probe = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  probe.stop(true)
  return probe.port
}

/** Connects to a waiting inspector as a debugger does, retrying until it listens, and lets the program run. */
async function attachDebugger(url: string, giveUpMs = 15_000): Promise<WebSocket> {
  const deadline = Date.now() + giveUpMs
  for (;;) {
    const socket = new WebSocket(url)
    const opened = await new Promise<boolean>((resolve) => {
      socket.onopen = () => resolve(true)
      socket.onerror = () => resolve(false)
    })
    if (opened) {
      // What Bun's own debug adapter sends; `Inspector.initialized` ends the wait.
      for (const [id, method] of ['Inspector.enable', 'Runtime.enable', 'Inspector.initialized'].entries()) socket.send(JSON.stringify({ id, method }))
      return socket
    }
    if (Date.now() > deadline) throw new Error(`no inspector at ${url}`)
    await Bun.sleep(50)
  }
}

/** A fresh connection per request, so the kernel spreads them over the workers. */
const chat = (gw: RunningGateway, key: string, content = 'hi', stream = false) =>
  fetch(`${gw.origin}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', connection: 'close' },
    body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content }] }),
  })

describe('--workers 2', () => {
  test('an admin change is in force on every worker when the admin call returns; metrics cover all workers', async () => {
    await withTwoWorkers(async (gw) => {
      expect(gw.output).toContain('2 workers')
      const { admin, key, keyId } = await setUp(gw)
      const before = await Promise.all(Array.from({ length: 20 }, () => chat(gw, key)))
      expect(before.map((r) => r.status)).toEqual(new Array(20).fill(200))

      await admin('PATCH', `/keys/${keyId}`, { enabled: false })
      const after = await Promise.all(Array.from({ length: 20 }, () => chat(gw, key)))
      expect(after.map((r) => r.status)).toEqual(new Array(20).fill(401))

      const other = (await admin('POST', '/keys', { name: 'other' })).key
      await admin('PATCH', '/models/m', { name: 'renamed' })
      const renamed = await Promise.all(Array.from({ length: 10 }, () => chat(gw, other)))
      expect(renamed.map((r) => r.status)).toEqual(new Array(10).fill(404))
      await admin('PATCH', '/models/renamed', { name: 'm' })

      const metrics = await (await fetch(`${gw.origin}/metrics`, { headers: { connection: 'close' } })).text()
      expect(metrics).toContain('conduit_workers 2')
      const count = (status: string) =>
        Number(new RegExp(`conduit_requests_total\\{endpoint="chat",model="m",provider="fake",status="${status}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0) +
        Number(new RegExp(`conduit_requests_total\\{endpoint="chat",model="",provider="",status="${status}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0)
      expect(count('200')).toBe(20)
      expect(count('401')).toBe(20)
    })
  }, 30_000)

  test('wrong master keys from one address count on every worker: past 10 the address is locked out whichever worker answers', async () => {
    await withTwoWorkers(async (gw) => {
      const keys = (key: string) => fetch(`${gw.origin}/admin/v1/keys`, { headers: { authorization: `Bearer ${key}`, connection: 'close' } })
      const wrong: number[] = []
      for (let i = 0; i < 12; i++) wrong.push((await keys(`wrong-master-key-${i}`)).status)
      // Past the 10th they are over the limit, wherever they land (a worker hears of the other's within a moment).
      expect(wrong.slice(0, 10)).toEqual(Array(10).fill(401))
      expect(wrong.at(-1)).toBe(429)
      await Bun.sleep(50)
      // The right key too, on both workers (the kernel spreads new connections over them).
      const right = await Promise.all(Array.from({ length: 8 }, () => keys(MASTER)))
      expect(right.map((r) => r.status)).toEqual(Array(8).fill(429))
    })
  }, 30_000)

  test('without Redis, limits and budgets hold across the workers: a key gets its rpm, max_parallel and budget once, not once a worker', async () => {
    await withTwoWorkers(async (gw) => {
      const { newKey } = await setUp(gw)
      /** One at a time, each on a new connection: the kernel spreads them over both workers. */
      const oneByOne = async (key: string, n: number, body: Record<string, unknown> = {}) => {
        const answers: Response[] = []
        for (let i = 0; i < n; i++) {
          const res = await fetch(`${gw.origin}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', connection: 'close' },
            body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }),
          })
          await res.arrayBuffer()
          answers.push(res)
        }
        return answers
      }
      const served = (answers: Response[]) => answers.filter((r) => r.status === 200)
      // Request ids begin with the id of the process that served them.
      const workers = (answers: Response[]) => new Set(answers.map((r) => r.headers.get('x-request-id')!.slice(0, 16))).size

      const rpm = await oneByOne(await newKey({ rpm: 10 }), 30)
      expect(workers(rpm)).toBe(2)
      expect([served(rpm).length, rpm.filter((r) => r.status === 429).length]).toEqual([10, 20])

      // A slot is back before its client has the answer, wherever the next request lands.
      const parallel = await oneByOne(await newKey({ max_parallel: 1 }), 40)
      expect(workers(parallel)).toBe(2)
      expect(served(parallel).length).toBe(40)

      const budget = await oneByOne(await newKey({ budget: { usd: 0.002, period: 'daily' } }), 40, { max_tokens: 50 })
      const spent = served(budget).reduce((sum, r) => sum + Math.round(Number(r.headers.get('x-conduit-cost-usd')) * 1e6), 0)
      expect(workers(budget)).toBe(2)
      expect(budget.at(-1)!.status).toBe(429)
      // Within the budget (each worker on its own had spent up to it), and used up: less than a request's worst case left.
      expect(spent).toBeLessThanOrEqual(2000)
      const worstCase = Math.ceil(JSON.stringify([{ role: 'user', content: 'hi' }]).length * 2.5 + 50 * 10)
      expect(2000 - spent).toBeLessThan(worstCase)
    })
  }, 60_000)
})

describe('supervision', () => {
  test('workers that die holding requests give back their max_parallel slot and budget hold (no Redis)', async () => {
    await withTwoWorkers(async (gw) => {
      const { newKey } = await setUp(gw)
      // One stream holds the only slot; the other, most of a $0.05 budget (its worst case: 4,096 tokens at gpt-4o's price).
      const keys = [await newKey({ max_parallel: 1 }), await newKey({ budget: { usd: 0.05, period: 'daily' } })]
      const streams = await Promise.all(keys.map((key) => chat(gw, key, 'slow-stream:300', true)))
      await Promise.all(streams.map((s) => s.body!.getReader().read()))
      expect((await Promise.all(keys.map((key) => chat(gw, key)))).map((r) => r.status)).toEqual([429, 429])
      const [primary] = children(gw.proc.pid)
      const before = children(primary!)
      for (const pid of before) process.kill(Number(pid), 'SIGKILL')
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline && !(children(primary!).length === 2 && children(primary!).every((pid) => !before.includes(pid)))) await Bun.sleep(100)
      let statuses: number[] = []
      while (Date.now() < deadline) {
        statuses = await Promise.all(keys.map((key) => chat(gw, key).then((r) => r.status, () => 0)))
        if (!statuses.includes(502) && !statuses.includes(503) && !statuses.some((s) => s === 0)) break
        await Bun.sleep(200)
      }
      expect(statuses).toEqual([200, 200])
    }, { CONDUIT_LOG_LEVEL: 'silent' })
  }, 30_000)

  test('a worker that dies is restarted and the port keeps serving', async () => {
    await withTwoWorkers(async (gw) => {
      const { key } = await setUp(gw)
      const [primary] = children(gw.proc.pid)
      const workers = () => children(primary!)
      const before = workers()
      expect(before.length).toBe(2)
      process.kill(Number(before[0]), 'SIGKILL')
      // Replaced: two workers, the killed one not among them, and still so a moment later (a worker seen while it is
      // starting must not pass for one that runs).
      const replaced = () => {
        const now = workers()
        return now.length === 2 && !now.includes(before[0]!)
      }
      const deadline = Date.now() + 5000
      let stable = 0
      while (Date.now() < deadline && stable < 3) {
        await Bun.sleep(100)
        stable = replaced() ? stable + 1 : 0
      }
      expect(workers().length).toBe(2)
      expect(workers()).not.toContain(before[0])
      await Bun.sleep(300)
      const statuses = await Promise.all(Array.from({ length: 20 }, () => chat(gw, key).then((r) => r.status)))
      expect(statuses).toEqual(new Array(20).fill(200))
    }, { CONDUIT_LOG_LEVEL: 'silent' })
  }, 30_000)

  test('an address that cannot be listened on stops the start with one line naming the settings, in one process too', async () => {
    const other = mkdtempSync(path.join(tmpdir(), 'conduit-badhost-'))
    try {
      const start = Bun.spawn(['bun', 'src/main.ts', '--workers', '1', '--port', '6999', '--host', '256.1.1.1'], {
        cwd: ROOT,
        env: { ...process.env, CONDUIT_DATA_DIR: other, CONDUIT_MASTER_KEY: MASTER, CONDUIT_LOG_LEVEL: 'silent' },
        stdout: 'ignore',
        stderr: 'pipe',
      })
      const timer = setTimeout(() => start.kill('SIGKILL'), 15_000)
      expect(await start.exited).toBe(1)
      clearTimeout(timer)
      expect(await new Response(start.stderr).text()).toContain('Cannot listen on 256.1.1.1:6999 (see HOST and PORT)')
    } finally {
      rmSync(other, { recursive: true, force: true })
    }
  }, 30_000)

  test("a second deployment started on a running one's port refuses to start: workers share a port with whoever else sets SO_REUSEPORT", async () => {
    const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER, CONDUIT_LOG_LEVEL: 'silent' }, ['--workers', '2'])
    const other = mkdtempSync(path.join(tmpdir(), 'conduit-second-'))
    try {
      const port = new URL(gw.origin).port
      const second = Bun.spawn(['bun', 'src/main.ts', '--workers', '2', '--port', port, '--host', '127.0.0.1'], {
        cwd: ROOT,
        env: { ...process.env, CONDUIT_DATA_DIR: other, CONDUIT_MASTER_KEY: 'another-deployments-master-key' },
        stdout: 'ignore',
        stderr: 'pipe',
      })
      const timer = setTimeout(() => second.kill('SIGKILL'), 15_000)
      expect(await second.exited).toBe(1)
      clearTimeout(timer)
      expect(await new Response(second.stderr).text()).toContain(`Cannot listen on 127.0.0.1:${port}: the port is in use.`)
      // The first still answers every admin call with its own key.
      const statuses = await Promise.all(Array.from({ length: 10 }, () => fetch(`${gw.origin}/admin/v1/keys`, { headers: { authorization: `Bearer ${MASTER}`, connection: 'close' } }).then((r) => r.status)))
      expect(statuses).toEqual(new Array(10).fill(200))
    } finally {
      expect(await stopProcess(gw.proc)).toBe(0)
      rmSync(other, { recursive: true, force: true })
    }
  }, 30_000)

  test('a worker that cannot start (a plugin that is not there) stops the primary with its message, without waiting out the 30 s a worker has', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conduit-bad-start-'))
    try {
      const config = path.join(dir, 'conduit.yaml')
      await Bun.write(config, 'plugins:\n  - use: ./no-such-plugin.ts\n')
      const started = performance.now()
      const proc = Bun.spawn(['bun', 'src/main.ts', '--workers', '2', '--port', '0', '--config', config], {
        cwd: ROOT,
        env: { ...process.env, CONDUIT_DATA_DIR: dir, CONDUIT_MASTER_KEY: MASTER },
        stdout: 'ignore',
        stderr: 'pipe',
      })
      expect(await proc.exited).toBe(1)
      expect(performance.now() - started).toBeLessThan(10_000)
      const stderr = await new Response(proc.stderr).text()
      expect(stderr).toContain('no-such-plugin')
      expect(stderr).toContain('conduit: A worker failed to start; see its output above.')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 30_000)
})

describe('start environment', () => {
  const GiB = 1024 ** 3

  test("JSC paces a worker's heap by its share of the memory, kept under the 16 GB of its aggressive growth; what the operator set stays", () => {
    expect(startEnv({}, 1, 24 * GiB)).toEqual({ BUN_CONFIG_MAX_HTTP_REQUESTS: '65535', BUN_JSC_forceRAMSize: String(8 * GiB) })
    expect(startEnv({}, 4, 8 * GiB).BUN_JSC_forceRAMSize).toBe(String(2 * GiB))
    expect(startEnv({ BUN_JSC_forceRAMSize: '536870912', BUN_CONFIG_MAX_HTTP_REQUESTS: '4096' }, 2, 8 * GiB)).toEqual({})
    // Unknown memory (0, or no number at all): JSC keeps its own sizing rather than being handed "0" or "NaN".
    expect(startEnv({}, 1, 0)).toEqual({ BUN_CONFIG_MAX_HTTP_REQUESTS: '65535' })
    expect(startEnv({}, 1, NaN)).toEqual({ BUN_CONFIG_MAX_HTTP_REQUESTS: '65535' })
  })

  test('the primary and each worker run with both set: the program started itself again with them', async () => {
    await withTwoWorkers(async (gw) => {
      const [primary] = children(gw.proc.pid)
      const processes = [primary!, ...children(primary!)]
      expect(processes.length).toBe(3)
      const share = startEnv({}, 2).BUN_JSC_forceRAMSize
      for (const pid of processes) {
        const environ = procList(pid, 'environ')
        expect(environ).toContain(`BUN_JSC_forceRAMSize=${share}`)
        expect(environ).toContain('BUN_CONFIG_MAX_HTTP_REQUESTS=65535')
      }
    })
  }, 30_000)

  test("Bun's own flags survive the restart: `bun --smol` is still --smol once the start settings are set", async () => {
    const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER }, ['--workers', '1'], ['bun', '--smol', 'src/main.ts'])
    try {
      // Started without `bun run`: the process started is the one that restarted itself (same pid).
      expect(procList(gw.proc.pid, 'cmdline')).toContain('--smol')
      expect(procList(gw.proc.pid, 'environ')).toContain(`BUN_JSC_forceRAMSize=${startEnv({}, 1).BUN_JSC_forceRAMSize}`)
    } finally {
      expect(await stopProcess(gw.proc)).toBe(0)
    }
  }, 30_000)

  test('a profiled gateway (`--cpu-prof`) is not restarted, says so, and writes its profile', async () => {
    // The restart raced the sampler's signals: a fast sampling interval made it die at start most of the time.
    const profiles = mkdtempSync(path.join(tmpdir(), 'conduit-cpu-prof-'))
    try {
      const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER }, ['--workers', '1'], ['bun', '--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${profiles}`, 'src/main.ts'])
      expect(procList(gw.proc.pid, 'environ').some((entry) => entry.startsWith('BUN_JSC_forceRAMSize='))).toBe(false)
      expect(await stopProcess(gw.proc)).toBe(0)
      expect(await new Response(gw.proc.stderr as ReadableStream).text()).toContain('not restarted under --cpu-prof, so BUN_CONFIG_MAX_HTTP_REQUESTS and BUN_JSC_forceRAMSize stay unset')
      expect(readdirSync(profiles).filter((f) => f.endsWith('.cpuprofile'))).toHaveLength(1)
    } finally {
      rmSync(profiles, { recursive: true, force: true })
    }
  }, 30_000)

  test('a gateway waiting for its debugger (`--inspect-wait`) is not restarted: the debugger stays attached and it serves', async () => {
    // Restarted, the program dropped the debugger and waited for another one: it never served.
    const inspector = `127.0.0.1:${freePort()}/conduit`
    const starting = startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER }, ['--workers', '1'], ['bun', `--inspect-wait=${inspector}`, 'src/main.ts'])
    const debuggerSocket = await attachDebugger(`ws://${inspector}`)
    const gw = await starting
    try {
      expect((await fetch(`${gw.origin}/health`)).status).toBe(200)
      expect(debuggerSocket.readyState).toBe(WebSocket.OPEN)
      expect(procList(gw.proc.pid, 'environ').some((entry) => entry.startsWith('BUN_JSC_forceRAMSize='))).toBe(false)
    } finally {
      debuggerSocket.close()
      expect(await stopProcess(gw.proc)).toBe(0)
    }
    expect(await new Response(gw.proc.stderr as ReadableStream).text()).toContain('not restarted under --inspect-wait')
  }, 30_000)

  test("the primary's inspector and watch mode stay its own: one inspector port cannot serve three processes", async () => {
    const inspector = `--inspect=127.0.0.1:${freePort()}`
    const profiles = mkdtempSync(path.join(tmpdir(), 'conduit-cpu-prof-'))
    const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER }, ['--workers', '2'], ['bun', inspector, '--watch', '--cpu-prof', `--cpu-prof-dir=${profiles}`, 'src/main.ts'])
    try {
      const args = (pid: string | number) => procList(pid, 'cmdline')
      // Started without `bun run`: the process started is the primary.
      expect(args(gw.proc.pid)).toEqual(expect.arrayContaining([inspector, '--watch', '--cpu-prof']))
      const workers = children(gw.proc.pid)
      expect(workers).toHaveLength(2)
      for (const worker of workers) {
        // The profiled primary did not restart itself: its workers get the start settings from it.
        expect(procList(worker, 'environ')).toContain(`BUN_JSC_forceRAMSize=${startEnv({}, 2).BUN_JSC_forceRAMSize}`)
        expect(args(worker)).toContain('--cpu-prof')
        expect(args(worker)).not.toContain(inspector)
        expect(args(worker)).not.toContain('--watch')
      }
      expect((await fetch(`${gw.origin}/health`)).status).toBe(200)
    } finally {
      expect(await stopProcess(gw.proc)).toBe(0)
      rmSync(profiles, { recursive: true, force: true })
    }
  }, 30_000)
})

describe('fetch in-flight limit', () => {
  test('300 concurrent streams through one worker all start at once (Bun caps fetch at 256 unless told)', async () => {
    const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER }, ['--workers', '1'])
    try {
      const { key } = await setUp(gw)
      // The client runs in its own process with the cap lifted, so only the gateway's own limit is measured.
      const client = `
        const started = performance.now()
        const ttft = await Promise.all(Array.from({ length: 300 }, async () => {
          const res = await fetch('${gw.origin}/v1/chat/completions', { method: 'POST',
            headers: { authorization: 'Bearer ${key}', 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'slow-stream:100' }] }) })
          const reader = res.body.getReader(); await reader.read(); const at = performance.now() - started
          while (!(await reader.read()).done); return at }))
        console.log(JSON.stringify({ max: Math.max(...ttft) }))`
      // Asynchronous: the fake upstream lives in this process and must keep answering.
      const run = Bun.spawn(['bun', '-e', client], { env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: '4096' }, stdout: 'pipe', stderr: 'inherit' })
      expect(await run.exited).toBe(0)
      const { max } = JSON.parse(await new Response(run.stdout).text())
      // Queued behind the cap, the last 44 streams would wait for a whole 2-second stream to finish.
      expect(max).toBeLessThan(1000)
    } finally {
      await stopProcess(gw.proc)
    }
  }, 30_000)
})

/** Whether a TCP connection to `origin` is accepted (it is closed at once). */
function accepts(origin: string) {
  const { hostname, port } = new URL(origin)
  return Bun.connect({ hostname, port: Number(port), socket: { data() {}, open: (socket) => void socket.end() } }).then(
    () => true,
    () => false,
  )
}

/** Milliseconds from `since` to the first TCP connect to `origin` that is refused, trying every ~10 ms. */
async function firstRefusal(origin: string, since: number, giveUpMs = 5_000): Promise<number> {
  while (performance.now() - since < giveUpMs) {
    const attemptAt = performance.now()
    if (!(await accepts(origin))) return attemptAt - since
    await Bun.sleep(10)
  }
  return Infinity
}

describe('graceful shutdown (PR17)', () => {
  const DRAIN_MS = 10_000
  // SIGHUP too: the terminal a gateway was started from closing must not cut its streams.
  for (const [workers, signal] of [['1', 'SIGTERM'], ['2', 'SIGTERM'], ['1', 'SIGHUP']] as const) {
    const label = `${workers} worker${workers === '1' ? '' : 's'}`
    test(`${signal} (${label}) with 20 streams in flight: 20/20 finish, new connections refused within 100 ms, exit 0 within the drain + 2 s`, async () => {
      const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER, CONDUIT_DRAIN_MS: String(DRAIN_MS) }, ['--workers', workers])
      const { key } = await setUp(gw)
      // 20 chunks 100 ms apart: each stream still has about 2 s to go when the signal comes.
      const streams = await Promise.all(Array.from({ length: 20 }, () => chat(gw, key, 'slow-stream:100', true)))
      const bodies = streams.map((r) => r.text())
      await Bun.sleep(100)
      expect(await accepts(gw.origin)).toBe(true)
      const signalledAt = performance.now()
      gw.proc.kill(signal)
      const exited = gw.proc.exited.then((code) => ({ code, after: performance.now() - signalledAt }))
      // The row's 100 ms, doubled for a shared 2-core machine (the signal goes through `bun run` first).
      const refusedAfter = await firstRefusal(gw.origin, signalledAt)
      expect(refusedAfter).toBeLessThan(200)
      for (const body of await Promise.all(bodies)) {
        expect(body).toContain('data: [DONE]')
        expect(body).not.toContain('"error"')
      }
      const { code, after } = await exited
      expect(code).toBe(0)
      expect(after).toBeLessThan(DRAIN_MS + 2_000)
      console.log(`PR17 (${label}): first connection refused ${refusedAfter.toFixed(0)} ms after ${signal}, exit after ${after.toFixed(0)} ms`)
    }, 30_000)
  }

  test('a stream longer than the drain timeout is cut when it expires, and the process still exits', async () => {
    const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER, CONDUIT_DRAIN_MS: '300' }, ['--workers', '1'])
    const { key } = await setUp(gw)
    const res = await chat(gw, key, 'slow-stream:1000', true)
    const body = res.text().catch(() => 'cut')
    const started = performance.now()
    gw.proc.kill('SIGTERM')
    expect(await gw.proc.exited).toBe(0)
    expect(performance.now() - started).toBeLessThan(3000)
    expect(await body).not.toContain('data: [DONE]')
  }, 30_000)

  // PR17's alternative to finishing: a stream still open at the drain deadline ends with an error event (it
  // was a reset connection after the last chunk).
  test('a stream cut at the drain deadline ends with an SSE error event, not a reset', async () => {
    const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER, CONDUIT_DRAIN_MS: '300' }, ['--workers', '1'])
    const { key } = await setUp(gw)
    const res = await chat(gw, key, 'slow-stream:200', true)
    const body = res.text()
    await Bun.sleep(300)
    gw.proc.kill('SIGTERM')
    expect(await gw.proc.exited).toBe(0)
    const text = await body
    expect(text).not.toContain('data: [DONE]')
    expect(text).toContain('"code":"server_shutting_down"')
  }, 30_000)
})
