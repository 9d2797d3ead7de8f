/** What the benchmark reads from the machine: process trees, CPU time, RSS, sockets, versions. */
import { readdirSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { median } from './stats.ts'

const CLK_TCK = Number(Bun.spawnSync(['getconf', 'CLK_TCK']).stdout.toString().trim()) || 100

interface Stat {
  pid: number
  ppid: number
  /** utime + stime, seconds. */
  cpu: number
  /** cutime + cstime: children that have exited and were waited for, seconds. */
  reaped: number
}

function readStat(pid: number, file = `/proc/${pid}/stat`): Stat | null {
  try {
    const text = readFileSync(file, 'utf8')
    // The command name is in parentheses and may contain spaces: fields are counted after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return { pid, ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / CLK_TCK, reaped: (Number(fields[13]) + Number(fields[14])) / CLK_TCK }
  } catch {
    return null // exited meanwhile
  }
}

/** Each process's children, from one pass over /proc. */
function childrenByParent(): Map<number, number[]> {
  const children = new Map<number, number[]>()
  for (const name of readdirSync('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid)) continue
    const stat = readStat(pid)
    if (!stat) continue
    const list = children.get(stat.ppid)
    if (list) list.push(pid)
    else children.set(stat.ppid, [pid])
  }
  return children
}

/** The root and every process below it (a gateway with workers is a primary and its children). */
export function processTree(root: number): number[] {
  const children = childrenByParent()
  const out: number[] = []
  const queue = [root]
  while (queue.length > 0 && out.length < 10_000) {
    const pid = queue.shift()!
    out.push(pid)
    queue.push(...(children.get(pid) ?? []))
  }
  return out
}

/** The processes `parent` started (a primary's workers). */
export function childrenOf(parent: number): number[] {
  return childrenByParent().get(parent) ?? []
}

/** CPU seconds (user + system) used so far by the given processes. */
export function cpuSeconds(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + (readStat(pid)?.cpu ?? 0), 0)
}

/**
 * CPU seconds used so far by the JIT compiler threads of the given processes (JSC names its thread `JITWorker`); 0 for
 * a process without one (Node's V8 names its threads otherwise).
 */
export function jitCpuSeconds(pids: readonly number[]): number {
  let sum = 0
  for (const pid of pids) {
    let tasks: string[]
    try {
      tasks = readdirSync(`/proc/${pid}/task`)
    } catch {
      continue // exited meanwhile
    }
    for (const tid of tasks) {
      try {
        if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== 'JITWorker') continue
        sum += readStat(Number(tid), `/proc/${pid}/task/${tid}/stat`)?.cpu ?? 0
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return sum
}

/** Busy CPU seconds of the whole machine, all cores (/proc/stat: everything but idle and iowait). */
export function systemBusySeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields
  return (user + nice + system + irq + softirq + steal) / CLK_TCK
}

/** CPU seconds of this process and everything it started, including the ones that already exited. */
function benchCpuSeconds(): number {
  return processTree(process.pid).reduce((sum, pid) => {
    const stat = readStat(pid)
    return sum + (stat ? stat.cpu + stat.reaped : 0)
  }, 0)
}

/**
 * CPU used during a window by processes the benchmark did not start (another build or test run on the box):
 * machine busy time minus the benchmark's own process tree, in cores (NaN for a window under 1 s). High values
 * make a window noisy.
 */
export function foreignCpuMeter(): () => number {
  const started = performance.now()
  const busy0 = systemBusySeconds()
  const own0 = benchCpuSeconds()
  return () => {
    const elapsed = (performance.now() - started) / 1000
    const foreign = systemBusySeconds() - busy0 - (benchCpuSeconds() - own0)
    // CPU time is counted in clock ticks: a window shorter than a second says nothing.
    return elapsed >= 1 ? Math.max(0, foreign / elapsed) : NaN
  }
}

/** Resident set size in bytes, summed over the given processes (VmRSS). */
export function rssBytes(pids: readonly number[]): number {
  let total = 0
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (m) total += Number(m[1]) * 1024
    } catch {
      // exited meanwhile
    }
  }
  return total
}

/**
 * The memory a process tree costs the machine, from `/proc/<pid>/smaps_rollup`: PSS splits every shared page
 * among the processes that map it (most of a Bun process's RSS is the `bun` executable's own code, mapped from
 * the page cache and shared by every Bun process), and anonymous memory is what a process holds itself.
 */
export function proportionalBytes(pids: readonly number[]): { pss: number; anon: number } {
  const total = { pss: 0, anon: 0 }
  for (const pid of pids) {
    try {
      const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
      total.pss += Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024
      total.anon += Number(/^Pss_Anon:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024
    } catch {
      // exited meanwhile
    }
  }
  return total
}

export const MiB = 1024 * 1024

/** Samples the RSS of a process tree at a fixed interval until stopped. */
export class RssSampler {
  readonly samples: { t: number; rss: number }[] = []
  /** The largest RSS of any one process of the tree in a sample (a worker's, with several). */
  peakProcess = 0
  private timer: ReturnType<typeof setInterval> | null = null
  private readonly started = performance.now()

  constructor(
    private readonly root: number,
    intervalMs = 1000,
    private readonly limit = 100_000,
  ) {
    this.sample()
    this.timer = setInterval(() => this.sample(), intervalMs)
  }

  private sample() {
    if (this.samples.length >= this.limit) return
    const each = processTree(this.root).map((pid) => rssBytes([pid]))
    this.peakProcess = Math.max(this.peakProcess, ...each)
    this.samples.push({ t: (performance.now() - this.started) / 1000, rss: each.reduce((a, b) => a + b, 0) })
  }

  stop() {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    this.sample()
    return this.samples
  }

  get peak() {
    return this.samples.reduce((m, s) => Math.max(m, s.rss), 0)
  }
}

/** Sockets in TIME_WAIT on this machine (all of them: every arm shares the loopback). */
export function timeWaitCount(): number {
  const out = Bun.spawnSync(['ss', '-tanH', 'state', 'time-wait']).stdout.toString()
  return out.split('\n').filter((l) => l.trim() !== '').length
}

const run = (cmd: string[], cwd?: string) => {
  try {
    const r = Bun.spawnSync(cmd, { cwd, stderr: 'pipe' })
    return (r.stdout.toString() || r.stderr.toString()).trim()
  } catch {
    return ''
  }
}
const firstLine = (s: string) => s.split('\n')[0] ?? ''
const readOr = (file: string, fallback = '') => {
  try {
    return readFileSync(file, 'utf8').trim()
  } catch {
    return fallback
  }
}

export interface MachineFacts {
  cpuModel: string
  nproc: number
  memTotalGiB: number
  kernel: string
  os: string
  bun: string
  node: string
  wrk: string
  gitCommit: string
  gitDirty: boolean
  openFilesLimit: string
  tcpTwReuse: string
  ephemeralPorts: string
  /** See wakePenalty: the same work back to back and after 20 ms asleep, µs. */
  wake?: { warmUs: number; afterIdleUs: number }
}

export function machineFacts(root: string): MachineFacts {
  const cpuinfo = readOr('/proc/cpuinfo')
  const osRelease = readOr('/etc/os-release')
  return {
    cpuModel: /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown',
    nproc: Number(run(['nproc'])) || os.availableParallelism(),
    memTotalGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    os: /PRETTY_NAME="?([^"\n]+)"?/.exec(osRelease)?.[1] ?? '',
    bun: Bun.version,
    node: run(['node', '--version']) || 'not installed',
    wrk: firstLine(run(['wrk', '-v'])).replace(/\s+Copyright.*/, '') || 'not installed',
    gitCommit: run(['git', 'rev-parse', '--short=12', 'HEAD'], root),
    gitDirty: run(['git', 'status', '--porcelain', '--untracked-files=no', '--', 'src'], root) !== '',
    openFilesLimit: run(['sh', '-c', 'ulimit -n']),
    tcpTwReuse: readOr('/proc/sys/net/ipv4/tcp_tw_reuse'),
    ephemeralPorts: readOr('/proc/sys/net/ipv4/ip_local_port_range').replace(/\s+/, '–'),
  }
}

/**
 * How much slower the same small piece of work runs right after the thread slept (`idleMs`) than back to back, in
 * this process: on a virtual machine an idle core may be given away and its caches refilled by someone else. A c=1
 * request, and the first token of a stream whose chunks come milliseconds apart, meet the gateway after such a
 * sleep: their added latencies carry this factor, which differs from host to host (4× on one, seen by this probe).
 */
export async function wakePenalty(idleMs = 20, samples = 100): Promise<{ warmUs: number; afterIdleUs: number }> {
  const text = JSON.stringify({ model: 'x', messages: Array.from({ length: 10 }, (_, i) => ({ role: 'user', content: `hello ${i}` })) })
  const work = () => {
    let n = 0
    for (let i = 0; i < 20; i++) n += JSON.parse(text).messages.length
    return n
  }
  for (let i = 0; i < 2_000; i++) work()
  const timed = async (pause: () => Promise<unknown>) => {
    const us: number[] = []
    for (let i = 0; i < samples; i++) {
      await pause()
      const started = performance.now()
      work()
      us.push((performance.now() - started) * 1000)
    }
    return median(us)
  }
  return { warmUs: await timed(async () => {}), afterIdleUs: await timed(() => Bun.sleep(idleMs)) }
}

export const benchDir = import.meta.dir
export const repoRoot = path.resolve(import.meta.dir, '..')
