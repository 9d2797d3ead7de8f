/**
 * Process management for the arms: the mock upstream, the floor, Conduit (one process or a primary with
 * workers) and, optionally, Portkey. Every process is started here, watched, and stopped with its whole tree.
 */
import type { Subprocess } from 'bun'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { chatBody } from './clients/http.ts'
import { mockModel, type MockTiming } from './mock-upstream.ts'
import { processTree, repoRoot } from './sys.ts'

export type ArmKind = 'direct' | 'floor' | 'conduit' | 'portkey'

export interface Arm {
  name: string
  kind: ArmKind
  /** Ends with /v1. */
  baseURL: string
  headers: Record<string, string>
  /** The process tree that serves this arm; null for direct (the mock itself is not the subject). */
  process: ManagedProcess | null
  /** Worker processes requested (Conduit only). */
  workers?: number
  /** Processes found in the tree once ready. */
  processes?: number
  /** Whether a streaming request came back complete in the preflight. */
  streams: boolean
  notes: string[]
}

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`)

/** Where warnings and errors printed by a process are counted, with a few samples kept. */
export interface ProcessDiagnostics {
  warnLines: number
  errorLines: number
  /** Request-log lines with a 5xx status. */
  serverErrors: number
  samples: string[]
  stderrTail: string
  unexpectedExit: string | null
}

interface StartOptions {
  cwd?: string
  env: Record<string, string | undefined>
  /** A line on stdout that announces readiness; its first group is returned. */
  ready?: RegExp
  /** Or a URL polled until it answers 2xx. */
  probe?: string
  timeoutMs?: number
}

/**
 * A child process whose stdout is drained for its whole life (a chatty gateway must never block on a full
 * pipe; Conduit's request log goes there) and scanned for warning/error log lines.
 */
export class ManagedProcess {
  readonly diagnostics: ProcessDiagnostics = { warnLines: 0, errorLines: 0, serverErrors: 0, samples: [], stderrTail: '', unexpectedExit: null }
  private stopping = false

  private constructor(
    readonly name: string,
    readonly proc: Subprocess<'ignore', 'pipe', 'pipe'>,
  ) {}

  get pid() {
    return this.proc.pid
  }

  static async start(name: string, cmd: string[], o: StartOptions): Promise<{ process: ManagedProcess; match: string }> {
    const proc = Bun.spawn(cmd, { cwd: o.cwd ?? repoRoot, env: o.env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
    const managed = new ManagedProcess(name, proc)
    running.add(managed)
    const timeoutMs = o.timeoutMs ?? 30_000
    let resolveReady!: (match: string) => void
    const ready = new Promise<string>((resolve) => (resolveReady = resolve))
    managed.drain(o.ready ?? null, resolveReady)
    managed.collectStderr()
    void proc.exited.then((code) => {
      if (!managed.stopping) managed.diagnostics.unexpectedExit = `exited with code ${code} while the benchmark ran`
    })
    if (o.probe) void managed.poll(o.probe, timeoutMs).then(resolveReady, () => {})
    const timeout = Bun.sleep(timeoutMs).then(() => null)
    const exited = proc.exited.then(() => null)
    const match = await Promise.race([ready, timeout, exited])
    if (match === null) {
      await managed.stop()
      throw new Error(`${name} did not become ready within ${timeoutMs} ms: ${managed.diagnostics.stderrTail.slice(-2000) || '(no stderr)'}`)
    }
    return { process: managed, match }
  }

  private async poll(url: string, timeoutMs: number): Promise<string> {
    const deadline = performance.now() + timeoutMs
    while (performance.now() < deadline && this.proc.exitCode === null) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(1000) })
        await res.arrayBuffer()
        if (res.ok) return url
      } catch {
        // not listening yet
      }
      await Bun.sleep(100)
    }
    throw new Error('not ready')
  }

  /** Reads stdout until EOF: first looking for the ready line, then only counting warn/error log lines. */
  private async drain(ready: RegExp | null, onReady: (match: string) => void) {
    const reader = this.proc.stdout.getReader()
    const decoder = new TextDecoder()
    let head = ''
    let waiting = ready !== null
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      const text = decoder.decode(value, { stream: true })
      if (waiting && ready) {
        head = (head + text).slice(-65_536)
        const m = ready.exec(head)
        if (m) {
          waiting = false
          onReady(m[1] ?? m[0])
        }
      }
      this.scan(text)
    }
  }

  /** pino writes `"level":"warn"` / `"level":"error"`; the request log `"status":5xx`. A line split across reads may be missed. */
  private scan(text: string) {
    for (const [level, key] of [
      ['"level":"warn"', 'warnLines'],
      ['"level":"error"', 'errorLines'],
      ['"level":"fatal"', 'errorLines'],
      ['"status":5', 'serverErrors'],
    ] as const) {
      let at = text.indexOf(level)
      while (at !== -1) {
        this.diagnostics[key]++
        if (this.diagnostics.samples.length < 6) {
          const start = text.lastIndexOf('\n', at) + 1
          const end = text.indexOf('\n', at)
          this.diagnostics.samples.push(text.slice(start, end === -1 ? undefined : end).slice(0, 600))
        }
        at = text.indexOf(level, at + level.length)
      }
    }
  }

  private async collectStderr() {
    const reader = this.proc.stderr.getReader()
    const decoder = new TextDecoder()
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      this.diagnostics.stderrTail = (this.diagnostics.stderrTail + decoder.decode(value, { stream: true })).slice(-16_384)
    }
  }

  /** SIGTERM to the root, then SIGKILL to whatever of its tree is left after the grace period. */
  async stop(graceMs = 5000) {
    if (this.stopping) return
    this.stopping = true
    running.delete(this)
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    const tree = processTree(this.pid)
    this.proc.kill('SIGTERM')
    await Promise.race([this.proc.exited, Bun.sleep(graceMs)])
    for (const pid of tree) {
      if (existsSync(`/proc/${pid}`)) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
    }
    await Promise.race([this.proc.exited, Bun.sleep(1000)])
  }
}

/** Every process started and not yet stopped, for the runner's cleanup on exit or interrupt. */
const running = new Set<ManagedProcess>()
export async function stopAll() {
  await Promise.all([...running].map((p) => p.stop(3000)))
}

/** The environment of a process under test, without the fetch cap the user's shell may carry. */
function baseEnv(extra: Record<string, string | undefined>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env }
  delete env.BUN_CONFIG_MAX_HTTP_REQUESTS
  return { ...env, ...extra }
}

export function freePort(): number {
  const probe = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = probe.port
  probe.stop(true)
  return port
}

export async function startAudioMock(): Promise<{ process: ManagedProcess; url: string }> {
  const { process, match } = await ManagedProcess.start('audio-mock', ['bun', 'bench/audio-mock.ts'], { env: baseEnv({}), ready: /audio mock listening on (\S+)/ })
  return { process, url: match }
}

export async function startMock(): Promise<{ process: ManagedProcess; url: string }> {
  const { process, match } = await ManagedProcess.start('mock', ['bun', 'bench/mock-upstream.ts'], { env: baseEnv({}), ready: /mock upstream on (\S+)/ })
  return { process, url: match }
}

/**
 * A private redis-server on a free port for the governed arm: `INFO commandstats` and `INFO cpu` then count
 * that arm's commands alone, not those of whatever else uses the machine's Redis.
 */
export async function startRedis(): Promise<{ process: ManagedProcess; url: string }> {
  const port = freePort()
  const { process } = await ManagedProcess.start('redis', ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    env: baseEnv({}),
    ready: /Ready to accept connections/,
  })
  return { process, url: `redis://127.0.0.1:${port}` }
}

export function directArm(mockURL: string): Arm {
  return { name: 'direct', kind: 'direct', baseURL: mockURL, headers: {}, process: null, streams: true, notes: [] }
}

export async function startFloor(mockURL: string): Promise<Arm> {
  const { process, match } = await ManagedProcess.start('floor', ['bun', 'bench/floor.ts'], {
    env: baseEnv({ UPSTREAM: mockURL, BUN_CONFIG_MAX_HTTP_REQUESTS: '65535' }),
    ready: /floor on (\S+)/,
  })
  return { name: 'floor', kind: 'floor', baseURL: match, headers: {}, process, processes: 1, streams: true, notes: [] }
}

/**
 * Conduit as it ships: `bun src/main.ts --workers N` (or the built executable, `command`), request logging on
 * (info), auth through a real virtual key, a provider of type openai pointing at the mock, and one model per mock
 * timing the scenarios use (name = upstream model, so every arm sends the same body).
 */
export async function startConduit(o: {
  workers: number
  mockURL: string
  timings: MockTiming[]
  workDir: string
  name?: string
  /** Shared limit state in Redis instead of this process. */
  redisURL?: string
  /** The bench key's policy (rpm, tpm, max_parallel, budget …); none by default. */
  keyPolicy?: Record<string, unknown>
  /** Built-in plugins switched off through the config file (`builtin:<name>`, `enabled: false`). */
  disabled?: string[]
  /** More of the config file (e.g. `request_log: { retention_days: 0 }`). */
  config?: Record<string, unknown>
  /** Adds the audio mock's models: `tts` (mp3 as asked), `tts-pcm-only` (a provider that makes only PCM), `stt`. */
  audioMockURL?: string
  /** What runs the gateway (default `bun src/main.ts`); e.g. the executable `bun run build` makes. */
  command?: string[]
}): Promise<Arm> {
  const name = o.name ?? `conduit-w${o.workers}`
  const master = `bench-master-${crypto.randomUUID()}`
  const dataDir = path.join(o.workDir, name)
  mkdirSync(dataDir, { recursive: true })
  const args = ['--workers', String(o.workers)]
  if (o.disabled?.length || o.config) {
    const config = path.join(dataDir, 'conduit.json')
    writeFileSync(config, JSON.stringify({ ...o.config, plugins: (o.disabled ?? []).map((plugin) => ({ use: `builtin:${plugin}`, enabled: false })) }))
    args.push('--config', config)
  }
  const { process, match } = await ManagedProcess.start(name, [...(o.command ?? ['bun', 'src/main.ts']), ...args], {
    env: baseEnv({
      PORT: '0',
      HOST: '127.0.0.1',
      CONDUIT_DATA_DIR: dataDir,
      CONDUIT_MASTER_KEY: master,
      CONDUIT_LOG_LEVEL: 'info',
      REDIS_URL: o.redisURL,
      // The mock upstream is on loopback, which the egress policy refuses unless allowed.
      CONDUIT_EGRESS_ALLOW: '127.0.0.1,localhost,::1',
    }),
    ready: /Conduit listening on (http:\/\/\S+?)\/v1\b/,
    timeoutMs: 60_000,
  })
  const origin = match.replace('//localhost:', '//127.0.0.1:')
  const admin = async (route: string, body: unknown) => {
    const res = await fetch(`${origin}/admin/v1${route}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${master}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    })
    const json = (await res.json().catch(() => null)) as any
    if (!res.ok) throw new Error(`${name}: POST /admin/v1${route} → ${res.status} ${JSON.stringify(json)}`)
    return json
  }
  try {
    await admin('/providers', { name: 'mock', type: 'openai', base_url: o.mockURL, api_key: 'sk-bench-mock' })
    // A price, so a budget has real money to reserve and settle.
    const price = { input: 1, output: 1 }
    for (const model of new Set(o.timings.map(mockModel))) await admin('/models', { name: model, targets: [{ provider: 'mock', model, price }] })
    if (o.audioMockURL) {
      await admin('/providers', { name: 'audio', type: 'openai', base_url: o.audioMockURL, api_key: 'sk-bench-mock' })
      await admin('/providers', { name: 'audio-pcm', type: 'openai-compatible', base_url: o.audioMockURL, api_key: 'sk-bench-mock', options: { audio: { output_formats: ['pcm'] } } })
      await admin('/models', { name: 'tts', targets: [{ provider: 'audio', model: 'tts-1' }] })
      await admin('/models', { name: 'tts-pcm-only', targets: [{ provider: 'audio-pcm', model: 'tts-1' }] })
      await admin('/models', { name: 'stt', targets: [{ provider: 'audio', model: 'whisper-1' }] })
    }
    const key = (await admin('/keys', { name: 'bench', ...o.keyPolicy })).key as string
    if (!key) throw new Error(`${name}: the key create response carried no key`)
    await Bun.sleep(300) // let every worker come up and apply the admin changes
    const processes = processTree(process.pid).length
    const notes: string[] = []
    if (o.workers > 1 && processes < o.workers + 1) notes.push(`asked for --workers ${o.workers} but found ${processes} process(es): the flag seems to be ignored`)
    return { name, kind: 'conduit', baseURL: `${origin}/v1`, headers: { authorization: `Bearer ${key}` }, process, workers: o.workers, processes, streams: true, notes }
  } catch (error) {
    await process.stop()
    throw error
  }
}

export const PORTKEY_VERSION = '1.15.2'
/**
 * @hono/node-server 1.x (1.14.4 and 1.19.19 checked) keeps the immutable headers of the upstream fetch
 * response in its lightweight Response; Portkey then fails every OpenAI stream with "TypeError: immutable"
 * while appending its own headers. 2.x copies the headers, so the install pins it.
 */
const PORTKEY_OVERRIDES = { '@hono/node-server': '2.1.9' }

/** Installs @portkey-ai/gateway into bench/.cache/portkey once; returns the path of its server script. */
async function ensurePortkey(cacheDir: string): Promise<string> {
  if (Bun.spawnSync(['node', '--version']).exitCode !== 0) throw new Error('node is not installed')
  const dir = path.join(cacheDir, 'portkey')
  const pkgFile = path.join(dir, 'node_modules/@portkey-ai/gateway/package.json')
  const manifest = { name: 'conduit-bench-portkey', private: true, overrides: PORTKEY_OVERRIDES }
  const installed = () => {
    try {
      return JSON.parse(readFileSync(pkgFile, 'utf8')) as { version: string; bin: string | Record<string, string> }
    } catch {
      return null
    }
  }
  const current = installed()
  const honoVersion = (() => {
    try {
      return JSON.parse(readFileSync(path.join(dir, 'node_modules/@hono/node-server/package.json'), 'utf8')).version as string
    } catch {
      return null
    }
  })()
  if (current?.version !== PORTKEY_VERSION || honoVersion !== PORTKEY_OVERRIDES['@hono/node-server']) {
    mkdirSync(dir, { recursive: true })
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify(manifest, null, 2) + '\n')
    log(`installing @portkey-ai/gateway@${PORTKEY_VERSION} into ${path.relative(repoRoot, dir)} …`)
    const npm = Bun.spawn(['npm', 'install', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error', `@portkey-ai/gateway@${PORTKEY_VERSION}`], {
      cwd: dir,
      stdout: 'pipe',
      stderr: 'pipe',
    })
    const code = await Promise.race([npm.exited, Bun.sleep(240_000).then(() => 'timeout' as const)])
    if (code !== 0) {
      npm.kill('SIGKILL')
      throw new Error(`npm install failed (${code}): ${(await new Response(npm.stderr).text()).slice(-500)}`)
    }
  }
  const pkg = installed()
  if (!pkg) throw new Error('the package is missing after npm install')
  const bin = typeof pkg.bin === 'string' ? pkg.bin : Object.values(pkg.bin)[0]
  if (!bin) throw new Error('the package declares no bin')
  return path.join(dir, 'node_modules/@portkey-ai/gateway', bin)
}

/**
 * Portkey's OSS gateway on Node, pointed at the mock with its custom-host headers (`x-portkey-provider`,
 * `x-portkey-custom-host`, read from its source: `x-${"portkey"}-custom-host`; 127.0.0.1 is a trusted
 * custom host by default). It listens on every interface by default; a preload binds it to 127.0.0.1.
 */
export async function startPortkey(mockURL: string, cacheDir: string): Promise<Arm> {
  const script = await ensurePortkey(cacheDir)
  const port = freePort()
  const { process } = await ManagedProcess.start('portkey', ['node', '--require', path.join(import.meta.dir, 'portkey-loopback.cjs'), script, `--port=${port}`, '--headless'], {
    cwd: path.dirname(script),
    env: baseEnv({}),
    probe: `http://127.0.0.1:${port}/`,
    timeoutMs: 30_000,
  })
  return {
    name: 'portkey',
    kind: 'portkey',
    baseURL: `http://127.0.0.1:${port}/v1`,
    headers: { 'x-portkey-provider': 'openai', 'x-portkey-custom-host': mockURL, authorization: 'Bearer sk-bench-mock' },
    process,
    processes: 1,
    streams: true,
    notes: [
      `@portkey-ai/gateway ${PORTKEY_VERSION} on Node, with @hono/node-server pinned to 2.1.9 (1.x breaks its streaming)`,
      'its stream handler sleeps 25 ms before relaying the first event (by design, in its source), so its TTFT carries +25 ms',
    ],
  }
}

/** One JSON and one streaming request through the arm; a failed stream takes the arm out of SSE scenarios. */
export async function preflight(arm: Arm, json: MockTiming, stream: MockTiming): Promise<void> {
  const url = `${arm.baseURL}/chat/completions`
  const headers = { ...arm.headers, 'content-type': 'application/json' }
  const res = await fetch(url, { method: 'POST', headers, body: chatBody(mockModel(json), false), signal: AbortSignal.timeout(10_000) })
  const text = await res.text()
  if (res.status !== 200 || !text.includes('"choices"')) throw new Error(`${arm.name}: preflight JSON request → ${res.status} ${text.slice(0, 300)}`)
  const sres = await fetch(url, { method: 'POST', headers, body: chatBody(mockModel(stream), true), signal: AbortSignal.timeout(10_000) })
  const stext = await sres.text()
  if (sres.status !== 200 || !stext.trimEnd().endsWith('data: [DONE]')) {
    arm.streams = false
    arm.notes.push(`streaming preflight failed (${sres.status}: ${stext.slice(0, 200).replace(/\s+/g, ' ')}); left out of the streaming scenarios`)
  }
}
