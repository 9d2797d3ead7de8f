/**
 * throughput: a closed-loop wrk ladder (`wrk -t1 -cC -dD --latency -s post.lua`), every arm at every rung, in
 * rounds: each round runs every arm once, in a shuffled order, so an arm is compared with a floor measured within
 * the same half minute (see summarizeThroughput). Per cell: req/s, p50, p99, non-2xx, socket errors, CPU of the
 * arm's process tree (primary and workers) per request from /proc, the mock's CPU, TIME_WAIT after the cell, and
 * the arm's RSS sampled at 1 Hz (the peak feeds the memory scenario).
 */
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Arm } from '../arms.ts'
import { chatBody } from '../clients/http.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { shuffled, spreadOf, type Spread } from '../stats.ts'
import { cpuSeconds, foreignCpuMeter, processTree, RssSampler, timeWaitCount } from '../sys.ts'

export interface ThroughputOptions {
  ladder: number[]
  /** Cells per arm and rung, interleaved: this box's speed drifts from minute to minute. */
  rounds: number
  durationSec: number
  warmupSec: number
  timing: MockTiming
  workDir: string
  mockPid: number
  /** What each request sends (default: the one-line chat question) and the scenario's name in progress lines. */
  body?: string
  scenario?: string
}

export interface WrkResult {
  requests: number
  seconds: number
  rps: number
  p50: number
  p99: number
  non2xx: number
  socketErrors: { connect: number; read: number; write: number; timeout: number }
  raw?: string
}

export interface ThroughputCell extends WrkResult {
  arm: string
  connections: number
  /** CPU µs per request of the arm's processes (null for direct) and of the mock. */
  cpuUsPerReq: number | null
  armCores: number | null
  mockCpuUsPerReq: number
  /** The tree's highest RSS, and that of its largest process (a worker, with several). */
  peakRss: number | null
  peakRssProcess: number | null
  /** TIME_WAIT sockets on the box before and after the cell (they live 60 s, so earlier cells show too). */
  timeWaitBefore: number
  timeWait: number
  /** Cores used meanwhile by processes outside the benchmark (another job on the box). */
  foreignCores: number
}

export interface ThroughputResult {
  durationSec: number
  ladder: number[]
  rounds: number
  /** Every cell, in the order run (`round` from 1). */
  cells: (ThroughputCell & { round: number })[]
  /** Highest RSS of each arm's tree seen during its cells, and of one of its processes, bytes. */
  peakRss: Record<string, number>
  peakRssProcess: Record<string, number>
}

/** A real .lua file: wrk reads `-s` twice, so process substitution silently drops the POST body. */
export function writeLua(workDir: string, arm: Arm, body: string): string {
  const lua = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
  const lines = ['wrk.method = "POST"', `wrk.body = ${lua(body)}`, 'wrk.headers["Content-Type"] = "application/json"']
  for (const [name, value] of Object.entries(arm.headers)) lines.push(`wrk.headers[${lua(name)}] = ${lua(value)}`)
  const file = path.join(workDir, `post-${arm.name}.lua`)
  writeFileSync(file, lines.join('\n') + '\n')
  return file
}

const toMs = (value: string, unit: string) => Number(value) * ({ us: 0.001, ms: 1, s: 1000, m: 60_000 }[unit] ?? NaN)

export function parseWrk(text: string): WrkResult {
  const latency = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(text)
    return m ? toMs(m[1]!, m[2]!) : NaN
  }
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(text)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  return {
    requests: Number(total?.[1] ?? 0),
    seconds: total ? toMs(total[2]!, total[3]!) / 1000 : NaN,
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN),
    p50: latency('50'),
    p99: latency('99'),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
    socketErrors: { connect: Number(sock?.[1] ?? 0), read: Number(sock?.[2] ?? 0), write: Number(sock?.[3] ?? 0), timeout: Number(sock?.[4] ?? 0) },
  }
}

export async function wrk(url: string, lua: string, connections: number, durationSec: number): Promise<WrkResult> {
  const proc = Bun.spawn(['wrk', '-t1', `-c${connections}`, `-d${durationSec}s`, '--latency', '--timeout', '5s', '-s', lua, url], { stdout: 'pipe', stderr: 'pipe' })
  const killer = setTimeout(() => proc.kill('SIGKILL'), (durationSec + 20) * 1000)
  const [text, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()])
  await proc.exited
  clearTimeout(killer)
  const result = parseWrk(text)
  if (!(result.requests > 0)) result.raw = (text + err).slice(0, 2000)
  return result
}

/** One wrk cell with the CPU and memory of the arm's processes measured around it. */
export async function measureCell(arm: Arm, lua: string, connections: number, durationSec: number, mockPid: number, route = '/chat/completions'): Promise<ThroughputCell> {
  const root = arm.process?.pid ?? null
  const tree = root ? processTree(root) : []
  const cpu0 = root ? cpuSeconds(tree) : 0
  const mock0 = cpuSeconds([mockPid])
  const timeWaitBefore = timeWaitCount()
  const sampler = root ? new RssSampler(root, 1000) : null
  const foreign = foreignCpuMeter()
  const started = performance.now()
  const r = await wrk(`${arm.baseURL}${route}`, lua, connections, durationSec)
  const elapsed = (performance.now() - started) / 1000
  const foreignCores = foreign()
  sampler?.stop()
  // Workers can be restarted during a cell: count the tree as it is now, too.
  const cpu = root ? cpuSeconds([...new Set([...tree, ...processTree(root)])]) - cpu0 : NaN
  const mockCpu = cpuSeconds([mockPid]) - mock0
  return {
    ...r,
    arm: arm.name,
    connections,
    cpuUsPerReq: root && r.requests > 0 ? (cpu / r.requests) * 1e6 : null,
    armCores: root ? cpu / elapsed : null,
    mockCpuUsPerReq: r.requests > 0 ? (mockCpu / r.requests) * 1e6 : NaN,
    peakRss: sampler ? sampler.peak : null,
    peakRssProcess: sampler ? sampler.peakProcess : null,
    timeWaitBefore,
    timeWait: timeWaitCount(),
    foreignCores,
  }
}

export async function runThroughput(arms: Arm[], o: ThroughputOptions, progress: (m: string) => void): Promise<ThroughputResult> {
  const body = o.body ?? chatBody(mockModel(o.timing), false)
  const scenario = o.scenario ?? 'throughput'
  const scripts = new Map(arms.map((arm) => [arm.name, writeLua(o.workDir, { ...arm, name: `${arm.name}-${scenario}` }, body)]))
  for (const arm of arms) await wrk(`${arm.baseURL}/chat/completions`, scripts.get(arm.name)!, 32, o.warmupSec)

  const cells: ThroughputResult['cells'] = []
  const peakRss: Record<string, number> = {}
  const peakRssProcess: Record<string, number> = {}
  for (const c of o.ladder) {
    for (let round = 1; round <= o.rounds; round++) {
      for (const arm of shuffled(arms)) {
        const cell = { ...(await measureCell(arm, scripts.get(arm.name)!, c, o.durationSec, o.mockPid)), round }
        cells.push(cell)
        if (cell.peakRss !== null) peakRss[arm.name] = Math.max(peakRss[arm.name] ?? 0, cell.peakRss)
        if (cell.peakRssProcess !== null) peakRssProcess[arm.name] = Math.max(peakRssProcess[arm.name] ?? 0, cell.peakRssProcess)
        progress(`${scenario} c=${c} round ${round}/${o.rounds} ${arm.name}: ${cell.rps.toFixed(0)} req/s, p99 ${cell.p99.toFixed(2)} ms${cell.non2xx ? `, ${cell.non2xx} non-2xx` : ''}`)
        if (cell.raw) progress(`wrk output: ${cell.raw}`)
      }
    }
  }
  return { durationSec: o.durationSec, ladder: o.ladder, rounds: o.rounds, cells, peakRss, peakRssProcess }
}

export interface ThroughputSummary {
  arm: string
  connections: number
  /** Medians over the rounds. */
  rps: number
  p50: number
  p99: number
  cpuUsPerReq: number | null
  armCores: number | null
  mockCpuUsPerReq: number
  /** Per round, the arm's req/s over the floor's (or direct's) in the same round; median and extremes. */
  vsFloor: Spread | null
  vsDirect: Spread | null
  /** Per round, the arm's CPU per request over the floor's. */
  cpuVsFloor: Spread | null
  /** Summed over the rounds. */
  non2xx: number
  socketErrors: number
  peakRss: number | null
  /** The last round's TIME_WAIT after the cell, and the change during it. */
  timeWait: number
  timeWaitDelta: number
  /** The most cores used by other processes during one of the arm's cells. */
  foreignCores: number
}

const finiteOrNull = (spread: Spread) => (Number.isFinite(spread.median) ? spread : null)

/** One row per arm and rung: the rounds' medians, and each ratio taken within a round before its median. */
export function summarizeThroughput(t: ThroughputResult): ThroughputSummary[] {
  const out: ThroughputSummary[] = []
  for (const c of t.ladder) {
    const atRung = t.cells.filter((x) => x.connections === c)
    const sameRound = (arm: string, round: number) => atRung.find((x) => x.arm === arm && x.round === round)
    for (const arm of [...new Set(atRung.map((x) => x.arm))]) {
      const mine = atRung.filter((x) => x.arm === arm)
      // A round without the base arm, or a value missing on either side, gives NaN, which spreadOf leaves out.
      const ratios = (base: string, value: (x: ThroughputCell) => number | null) =>
        finiteOrNull(spreadOf(mine.map((x) => {
          const b = sameRound(base, x.round)
          return (value(x) ?? NaN) / (b ? (value(b) ?? NaN) : NaN)
        })))
      const med = (value: (x: ThroughputCell) => number | null) => finiteOrNull(spreadOf(mine.map((x) => value(x) ?? NaN)))?.median ?? null
      const last = mine[mine.length - 1]!
      out.push({
        arm,
        connections: c,
        rps: med((x) => x.rps) ?? NaN,
        p50: med((x) => x.p50) ?? NaN,
        p99: med((x) => x.p99) ?? NaN,
        cpuUsPerReq: med((x) => x.cpuUsPerReq),
        armCores: med((x) => x.armCores),
        mockCpuUsPerReq: med((x) => x.mockCpuUsPerReq) ?? NaN,
        vsFloor: ratios('floor', (x) => x.rps),
        vsDirect: ratios('direct', (x) => x.rps),
        cpuVsFloor: ratios('floor', (x) => x.cpuUsPerReq),
        non2xx: mine.reduce((n, x) => n + x.non2xx, 0),
        socketErrors: mine.reduce((n, x) => n + x.socketErrors.connect + x.socketErrors.read + x.socketErrors.write + x.socketErrors.timeout, 0),
        peakRss: mine.some((x) => x.peakRss !== null) ? Math.max(...mine.map((x) => x.peakRss ?? 0)) : null,
        timeWait: last.timeWait,
        timeWaitDelta: last.timeWait - last.timeWaitBefore,
        foreignCores: Math.max(...mine.map((x) => x.foreignCores)),
      })
    }
  }
  return out
}
