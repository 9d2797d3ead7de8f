/**
 * The benchmark suite: every arm (direct → mock, the Bun floor, Conduit with 1 and 2 workers, optionally
 * Portkey) against one mock upstream, in one run, side by side. See bench/README.md.
 *
 *   bun run bench                       # default scenarios, about 8 minutes
 *   bun run bench --only latency-c1,sse # a selection
 *   bun run bench --long                # adds the soak (10 min; --soak-seconds N)
 *   bun run bench --portkey             # adds the Portkey arm (installed on demand into bench/.cache/)
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { directArm, preflight, startAudioMock, startConduit, startFloor, startMock, startPortkey, startRedis, stopAll, type Arm, type ProcessDiagnostics } from './arms.ts'
import { chatBody } from './clients/http.ts'
import { mockModel, type MockTiming } from './mock-upstream.ts'
import { checkTargets, renderMarkdown, type ArmInfo, type BenchResults } from './report.ts'
import { runAudio } from './scenarios/audio.ts'
import { runRealtime } from './scenarios/realtime.ts'
import { runLatency } from './scenarios/latency.ts'
import { runMemory } from './scenarios/memory.ts'
import { runRedisCost } from './scenarios/redis-cost.ts'
import { runSoak } from './scenarios/soak.ts'
import { runSse } from './scenarios/sse.ts'
import { runStreams } from './scenarios/streams.ts'
import { runThroughput, writeLua } from './scenarios/throughput.ts'
import { settle } from './settle.ts'
import { runFrontDoors } from './scenarios/front-doors.ts'
import { runLargeBody } from './scenarios/large-body.ts'
import { benchDir, childrenOf, foreignCpuMeter, machineFacts, processTree, proportionalBytes, repoRoot, rssBytes, wakePenalty } from './sys.ts'

const SCENARIOS = ['latency-c1', 'throughput', 'large-body', 'front-doors', 'sse', 'streams-1000', 'memory', 'audio', 'realtime', 'soak'] as const
type Scenario = (typeof SCENARIOS)[number]

const USAGE = `Usage: bun run bench [options]
  --only a,b,…            scenarios: ${SCENARIOS.join(', ')} (default: all but soak)
  --long                  add the soak
  --portkey               add the Portkey arm (npm install into bench/.cache/ on first use)
  --plugins               add 1-worker arms with one optional built-in plugin switched off each (rate-limit,
                          budget, request-log): a capability that is not configured should cost nothing
  --limits                add two 1-worker arms whose key has rpm, tpm, max_parallel and a budget: limits kept
                          in-process (conduit-w1-limits-local) and in Redis (conduit-w1-limits-redis, a private
                          redis-server), and measure the Redis cost per governed request (INFO commandstats)
  --workers 1,2           Conduit arms, by worker count (default 1,2)
  --binary                build dist/conduit (bun run build) and add an arm of it per worker count
                          (conduit-bin-w1, …): the executable that ships, its memory per process included
  --duration S            seconds per throughput cell (default 4)
  --ladder 16,32,…        throughput concurrencies (default 16,32,64,128,256)
  --throughput-rounds N   throughput cells per arm and rung, interleaved (default 3)
  --rounds N              latency-c1 rounds (default 9)      --per-round N   requests per arm per round (default 300)
  --sse-rounds N          sse rounds (default 7)             --sse-per-round N  streams per arm per round (default 8)
  --sse-chunks N          chunks per stream (default 64)     --sse-interval MS  mock interval (default 3)
  --streams N             simultaneous streams (default 1000)
  --soak-seconds S        soak duration (default 600)        --soak-workers N   workers of the soaked Conduit (default 1)
  --out DIR               results folder (default bench/results)`

const { values: args } = parseArgs({
  args: process.argv.slice(2),
  options: {
    only: { type: 'string' },
    long: { type: 'boolean', default: false },
    portkey: { type: 'boolean', default: false },
    limits: { type: 'boolean', default: false },
    plugins: { type: 'boolean', default: false },
    binary: { type: 'boolean', default: false },
    workers: { type: 'string', default: '1,2' },
    duration: { type: 'string', default: '4' },
    ladder: { type: 'string', default: '16,32,64,128,256' },
    'throughput-rounds': { type: 'string', default: '3' },
    rounds: { type: 'string', default: '9' },
    'per-round': { type: 'string', default: '300' },
    'sse-rounds': { type: 'string', default: '7' },
    'sse-per-round': { type: 'string', default: '8' },
    'sse-chunks': { type: 'string', default: '64' },
    'sse-interval': { type: 'string', default: '3' },
    streams: { type: 'string', default: '1000' },
    'soak-seconds': { type: 'string', default: '600' },
    'soak-workers': { type: 'string', default: '1' },
    out: { type: 'string', default: path.join(benchDir, 'results') },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) {
  console.log(USAGE)
  process.exit(0)
}

const int = (name: keyof typeof args, min = 1) => {
  const v = Number(args[name])
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer ≥ ${min}`)
  return v
}
const ints = (name: 'workers' | 'ladder') => String(args[name]).split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0)

const selected = new Set<Scenario>()
if (args.only) {
  for (const name of args.only.split(',').map((s) => s.trim())) {
    if (!SCENARIOS.includes(name as Scenario)) throw new Error(`unknown scenario '${name}'; known: ${SCENARIOS.join(', ')}`)
    selected.add(name as Scenario)
  }
  if (args.long && !args.only.includes('soak')) selected.add('soak')
} else {
  for (const s of SCENARIOS) if (s !== 'soak' || args.long) selected.add(s)
}

const timings = {
  json: { chunks: 0, intervalMs: 0, delayMs: 0 },
  preflight: { chunks: 3, intervalMs: 0, delayMs: 0 },
  sse: { chunks: int('sse-chunks'), intervalMs: int('sse-interval', 0), delayMs: 0 },
  streams: { chunks: 20, intervalMs: 100, delayMs: 0 },
  soak: { chunks: 20, intervalMs: 50, delayMs: 0 },
} satisfies Record<string, MockTiming>

const started = performance.now()
const startedAt = new Date().toISOString()
const progress = (message: string) => process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}\n`)
const workDir = mkdtempSync(path.join(tmpdir(), 'conduit-bench-'))
const notes: string[] = []
const armInfos: ArmInfo[] = []
const commands = new Map<string, string>()
const foreignCores: Record<string, number> = {}
/** Built-ins a deployment may switch off (auth and the providers always load). */
const OPTIONAL_BUILTINS = ['rate-limit', 'budget', 'request-log']

/** The governed arm's Redis (--limits). */
let governedRedis: string | undefined

let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return
    interrupted = true
    progress(`${signal}: stopping every process started by the benchmark`)
    void stopAll().finally(() => {
      rmSync(workDir, { recursive: true, force: true })
      process.exit(130)
    })
  })
}

/** What the mock printed and whether it died, reported with the direct arm (which has no process of its own). */
let mockDiagnostics: ProcessDiagnostics | undefined

function describe(arm: Arm): ArmInfo {
  return {
    name: arm.name,
    kind: arm.kind,
    command: commands.get(arm.name) ?? '',
    workers: arm.workers ?? null,
    processes: arm.processes ?? null,
    streams: arm.streams,
    notes: arm.notes,
    diagnostics: arm.kind === 'direct' ? (mockDiagnostics ?? null) : (arm.process?.diagnostics ?? null),
  }
}

/** Runs one scenario; a failure becomes a note instead of ending the run. */
async function scenario<T>(name: Scenario, run: () => Promise<T>): Promise<T | null> {
  if (!selected.has(name) || interrupted) return null
  progress(`── ${name}`)
  const foreign = foreignCpuMeter()
  try {
    return await run()
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
    notes.push(`scenario ${name} failed: ${message.split('\n').slice(0, 3).join(' ')}`)
    progress(`${name} failed: ${message}`)
    return null
  } finally {
    foreignCores[name] = foreign()
    await Bun.sleep(1500) // let the box settle between scenarios
  }
}

try {
  progress(`scenarios: ${[...selected].join(', ')}; work dir ${workDir}`)
  const machine = { ...machineFacts(repoRoot), wake: await wakePenalty() }
  const mock = await startMock()
  mockDiagnostics = mock.process.diagnostics
  commands.set('direct', 'bun bench/mock-upstream.ts')
  const arms: Arm[] = [directArm(mock.url)]

  const needsGateways = [...selected].some((s) => s !== 'soak' && s !== 'audio' && s !== 'realtime')
  if (needsGateways) {
    arms.push(await startFloor(mock.url))
    commands.set('floor', 'BUN_CONFIG_MAX_HTTP_REQUESTS=65535 bun bench/floor.ts')
  }
  for (const workers of needsGateways ? ints('workers') : []) {
    try {
      const arm = await startConduit({ workers, mockURL: mock.url, timings: Object.values(timings), workDir })
      commands.set(arm.name, `bun src/main.ts --workers ${workers}`)
      arms.push(arm)
      progress(`${arm.name} ready at ${arm.baseURL} (${arm.processes} process(es))`)
    } catch (error) {
      notes.push(`conduit --workers ${workers} could not be started: ${error instanceof Error ? error.message : error}`)
      progress(`conduit --workers ${workers} failed to start: ${error}`)
    }
  }
  if (args.binary && needsGateways) {
    const build = Bun.spawnSync(['bun', 'run', 'build'], { cwd: repoRoot, stdout: 'pipe', stderr: 'pipe' })
    if (build.exitCode !== 0) notes.push(`bun run build failed, no binary arms: ${build.stderr.toString().trim()}`)
    for (const workers of build.exitCode === 0 ? ints('workers') : []) {
      const arm = await startConduit({ workers, mockURL: mock.url, timings: Object.values(timings), workDir, name: `conduit-bin-w${workers}`, command: [path.join(repoRoot, 'dist/conduit')] })
      commands.set(arm.name, `dist/conduit --workers ${workers}`)
      arms.push(arm)
      progress(`${arm.name} ready at ${arm.baseURL} (${arm.processes} process(es))`)
    }
  }
  if (args.plugins && needsGateways) {
    // The plain key configures no limit and no budget: with their plugins off the arm should cost the same.
    for (const plugin of OPTIONAL_BUILTINS) {
      const arm = await startConduit({ workers: 1, mockURL: mock.url, timings: Object.values(timings), workDir, name: `conduit-w1-no-${plugin}`, disabled: [plugin] })
      commands.set(arm.name, `bun src/main.ts --workers 1 --config <builtin:${plugin} enabled: false>`)
      arms.push(arm)
      progress(`${arm.name} ready at ${arm.baseURL}`)
    }
    // The Web UI's request records (a row per request) and metric buckets, switched off.
    const arm = await startConduit({ workers: 1, mockURL: mock.url, timings: Object.values(timings), workDir, name: 'conduit-w1-no-request-records', config: { request_log: { retention_days: 0 } } })
    commands.set(arm.name, 'bun src/main.ts --workers 1 --config <request_log: { retention_days: 0 }>')
    arms.push(arm)
    progress(`${arm.name} ready at ${arm.baseURL}`)
  }
  if (args.limits && needsGateways) {
    // The same key policy enforced in-process and in Redis: the difference is the price of sharing limits.
    const keyPolicy = { rpm: 100_000_000, tpm: 1_000_000_000, max_parallel: 100_000, budget: { usd: 1_000_000, period: 'monthly' } }
    // A private Redis, so that its command statistics are this arm's alone.
    governedRedis = await startRedis().then(
      (r) => r.url,
      (error) => (notes.push(`no private redis-server (${error}); the governed arm uses REDIS_URL, whose statistics others may share`), process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'),
    )
    for (const [mode, redisURL] of [['local', undefined], ['redis', governedRedis]] as const) {
      const arm = await startConduit({ workers: 1, mockURL: mock.url, timings: Object.values(timings), workDir, name: `conduit-w1-limits-${mode}`, redisURL, keyPolicy })
      commands.set(arm.name, `${redisURL ? `REDIS_URL=${redisURL} ` : ''}bun src/main.ts --workers 1 (key with rpm, tpm, max_parallel, budget)`)
      arms.push(arm)
      progress(`${arm.name} ready at ${arm.baseURL}`)
    }
  }
  if (args.portkey && needsGateways) {
    try {
      const arm = await startPortkey(mock.url, path.join(benchDir, '.cache'))
      commands.set('portkey', 'node @portkey-ai/gateway/build/start-server.js --headless')
      arms.push(arm)
      progress(`portkey ready at ${arm.baseURL}`)
    } catch (error) {
      notes.push(`portkey arm skipped: ${error instanceof Error ? error.message : error}`)
      progress(`portkey arm skipped: ${error}`)
    }
  }

  // Idle RSS after start and setup, before any chat traffic.
  await Bun.sleep(1000)
  const idle: Record<string, number> = {}
  const idleProportional: Record<string, { pss: number; anon: number }> = {}
  // Per process, as the targets are set: a worker (the largest of them), and the primary that supervises several.
  const idleRoles: Record<string, { worker: number; primary: number | null }> = {}
  for (const arm of arms) {
    if (!arm.process) continue
    const tree = processTree(arm.process.pid)
    idle[arm.name] = rssBytes(tree)
    idleProportional[arm.name] = proportionalBytes(tree)
    const root = arm.process.pid
    idleRoles[arm.name] = (arm.workers ?? 1) === 1 ? { worker: rssBytes([root]), primary: null } : { worker: Math.max(...childrenOf(root).map((w) => rssBytes([w]))), primary: rssBytes([root]) }
  }

  const usable: Arm[] = []
  for (const arm of arms) {
    try {
      await preflight(arm, timings.json, timings.preflight)
      usable.push(arm)
    } catch (error) {
      notes.push(`${arm.name} left out: ${error instanceof Error ? error.message : error}`)
      await arm.process?.stop()
    }
  }
  if (!usable.some((a) => a.kind === 'direct')) throw new Error('the direct arm failed its preflight: the mock is broken')
  const streaming = usable.filter((a) => a.streams)

  // Every arm is measured running, not starting: loaded until its JIT has settled (bench/settle.ts).
  if (!interrupted) progress('── settle')
  for (const arm of usable) {
    if (!arm.process || interrupted) continue
    const lua = writeLua(workDir, { ...arm, name: `${arm.name}-settle` }, chatBody(mockModel(timings.json), false))
    const s = await settle(arm.process.pid, lua, `${arm.baseURL}/chat/completions`)
    const note = `warmed ${s.seconds.toFixed(0)} s until its JIT settled (${(s.jitCores * 100).toFixed(1)}% of a core in the last 2 s${s.settled ? '' : ', not quiet within 30 s'})`
    arm.notes.push(note)
    progress(`${arm.name}: ${note}`)
  }

  const latency = await scenario('latency-c1', () => runLatency(usable, { rounds: int('rounds'), perRound: int('per-round'), warmupMs: 3_000, timing: timings.json }, progress))
  const sse = await scenario('sse', () => runSse(streaming, { rounds: int('sse-rounds'), perRound: int('sse-per-round'), warmup: 400, timing: timings.sse }, progress))
  const throughput = await scenario('throughput', () =>
    runThroughput(usable, { ladder: ints('ladder'), rounds: int('throughput-rounds'), durationSec: int('duration'), warmupSec: 1, timing: timings.json, workDir, mockPid: mock.process.pid }, progress),
  )
  const plain = usable.find((a) => a.name === 'conduit-w1')
  const largeArms = usable.filter((a) => a.kind === 'direct' || a.kind === 'floor' || a === plain)
  const largeBody = plain
    ? await scenario('large-body', () =>
        runLargeBody(largeArms, { kilobytes: 64, connections: 64, rounds: 2, durationSec: int('duration'), warmupSec: 1, timing: timings.json, workDir, mockPid: mock.process.pid }, progress),
      )
    : null
  const frontDoors = plain
    ? await scenario('front-doors', () => runFrontDoors(plain, { connections: 64, durationSec: int('duration'), timing: timings.json, workDir, mockPid: mock.process.pid }, progress))
    : null
  const governed = usable.find((a) => a.name === 'conduit-w1-limits-redis')
  let redisCost = null
  if (governed && governedRedis && !interrupted) {
    progress('── redis-cost')
    redisCost = await runRedisCost(governed, { redisURL: governedRedis, requests: 1000, durationSec: int('duration'), timing: timings.json, workDir }, progress).catch((error) => {
      notes.push(`redis-cost failed: ${error instanceof Error ? error.message : error}`)
      return null
    })
  }
  const streamArms = streaming.filter((a) => a.kind !== 'portkey')
  const streams = await scenario('streams-1000', () => runStreams(streamArms, { count: int('streams'), timing: timings.streams }, progress))
  const memory = await scenario('memory', () =>
    runMemory(
      usable.filter((a) => a.kind === 'conduit' || a.kind === 'floor'),
      { idle, idleProportional, idleRoles, throughput, streams, workDir, mockPid: mock.process.pid, json: timings.json, stream: timings.streams, streamCount: int('streams'), durationSec: int('duration') },
      progress,
    ),
  )
  for (const arm of arms) armInfos.push(describe(arm))

  // Audio: its own mock and a Conduit of its own (1 worker), so the chat arms' figures are not disturbed.
  const audio = await scenario('audio', async () => {
    const audioMock = await startAudioMock()
    const arm = await startConduit({ workers: 1, mockURL: mock.url, timings: [], workDir, name: 'conduit-w1-audio', audioMockURL: audioMock.url })
    commands.set(arm.name, 'bun src/main.ts --workers 1 (audio models on bench/audio-mock.ts)')
    try {
      return await runAudio(arm, audioMock.url, { speechRequests: 200, convertedRequests: 15 }, progress)
    } finally {
      await arm.process?.stop()
      await audioMock.process.stop()
      armInfos.push(describe(arm))
    }
  })

  // Realtime: its own WebSocket mock and Conduit (bench/scenarios/realtime.ts, also runnable alone).
  const realtime = await scenario('realtime', () => runRealtime({ idle: 1000, stream: 200, seconds: 10, pings: 2000 }))

  let soak = null
  if (selected.has('soak') && !interrupted) {
    // A fresh gateway, alone with the mock: the other arms are stopped first.
    for (const arm of arms) await arm.process?.stop()
    const workers = int('soak-workers')
    const seconds = int('soak-seconds', 10)
    soak = await scenario('soak', async () => {
      const arm = await startConduit({ workers, mockURL: mock.url, timings: Object.values(timings), workDir, name: `conduit-soak-w${workers}` })
      commands.set(arm.name, `bun src/main.ts --workers ${workers}`)
      try {
        await preflight(arm, timings.json, timings.preflight)
        await Bun.sleep(1000)
        return await runSoak(arm, { durationSec: seconds, jsonPerSec: 1000, streamsPerSec: 50, abortRatio: 0.1, json: timings.json, stream: timings.soak }, progress)
      } finally {
        await arm.process?.stop()
        armInfos.push(describe(arm))
      }
    })
  }

  const partial: Omit<BenchResults, 'targets'> = {
    startedAt,
    wallSec: (performance.now() - started) / 1000,
    argv: process.argv.slice(2),
    machine,
    arms: armInfos,
    notes,
    foreignCores,
    latency,
    throughput,
    largeBody,
    frontDoors,
    sse,
    streams,
    memory,
    audio,
    realtime,
    soak,
    redisCost,
  }
  const results: BenchResults = { ...partial, targets: checkTargets(partial) }
  const markdown = renderMarkdown(results)

  const outDir = path.resolve(String(args.out))
  mkdirSync(outDir, { recursive: true })
  const write = (file: string, text: string) => {
    writeFileSync(`${file}.tmp`, text)
    renameSync(`${file}.tmp`, file)
  }
  const json = JSON.stringify(results, null, 2) + '\n'
  // A partial run (--only) is an experiment: it is printed and kept as .tmp, never mistaken for the report.
  const stamp = startedAt.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')
  if (args.only) {
    write(path.join(outDir, `${stamp}.partial.json.tmp`), json)
  } else {
    write(path.join(outDir, `${stamp}.json`), json)
    write(path.join(outDir, 'latest.json'), json)
    write(path.join(outDir, 'latest.md'), markdown + '\n')
  }
  console.log(markdown)
  progress(`done in ${((performance.now() - started) / 60_000).toFixed(1)} min${args.only ? ' (partial run: latest.* left as they were)' : `; written to ${path.relative(process.cwd(), outDir) || '.'}/latest.md and latest.json`}`)
} finally {
  await stopAll()
  rmSync(workDir, { recursive: true, force: true })
}
