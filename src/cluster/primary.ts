import type { Subprocess } from 'bun'
import type { LaunchConfig } from '../config/launch.ts'
import { logLine } from '../services/line-log.ts'
import { Metrics, type MetricsSnapshot } from '../services/metrics.ts'
import { printBanner } from './banner.ts'
import { FAN_OUT_TIMEOUT_MS, type PrimaryToWorker, type WorkerToPrimary } from './messages.ts'
import { ownCommand, startEnv } from './own-command.ts'

type Listening = Extract<WorkerToPrimary, { type: 'listening' }>
type HostedState = import('../plugins/admission/hosted.ts').HostedState

interface Worker {
  index: number
  proc: Subprocess<'ignore', 'inherit', 'inherit'>
  listening: Listening | null
  startedAt: number
  /** How long after its predecessor's exit this one was started (0: the first of its index). */
  restartDelay: number
}

/** A dead worker is started again after this, doubling while each one dies within STABLE_MS, up to MAX_RESTART_MS. */
const RESTART_MS = 500
const STABLE_MS = 60_000
const MAX_RESTART_MS = 30_000

/** A fan-out to every worker, answered when all have replied or the timeout passes. */
class FanOut<T> {
  readonly results: T[] = []
  private readonly waiting: Set<number>
  private resolve!: (results: T[]) => void
  readonly finished = new Promise<T[]>((resolve) => (this.resolve = resolve))
  private readonly timer: Timer

  constructor(workers: number[]) {
    this.waiting = new Set(workers)
    this.timer = setTimeout(() => this.done(), FAN_OUT_TIMEOUT_MS)
    if (this.waiting.size === 0) this.done()
  }

  answer(worker: number, value: T) {
    if (!this.waiting.delete(worker)) return
    this.results.push(value)
    if (this.waiting.size === 0) this.done()
  }

  private done() {
    clearTimeout(this.timer)
    this.resolve(this.results)
  }
}

/**
 * Runs N gateway workers on one port (SO_REUSEPORT: the kernel spreads connections), restarts a worker
 * that dies, relays store changes so every worker's caches follow an admin change before the admin call
 * returns, and sums metrics for a scrape. It serves no traffic and never loads the gateway itself.
 */
export async function runPrimary(config: LaunchConfig) {
  const port = config.port === 0 ? freePort(config.hostname) : ownPort(config.hostname, config.port)
  const workers: Worker[] = []
  const fanOuts = new Map<string, FanOut<unknown>>()
  let refs = 0
  let stopping = false
  /** Every worker has started: from now on one that dies is started again. */
  let serving = false
  /** Wakes `started` when a worker starts listening or exits. */
  let changed = () => {}

  /** The workers' shared limits and budgets without Redis (see WorkerChannel.governance), from the first governed request. */
  let governance: Promise<HostedState> | null = null
  const hosted = () => (governance ??= import('../plugins/admission/hosted.ts').then((m) => new m.HostedState()))
  const send = (worker: Worker, message: PrimaryToWorker) => {
    if (!worker.proc.killed) worker.proc.send(message)
  }
  const fanOut = <T>(targets: Worker[], make: (ref: string) => PrimaryToWorker): Promise<T[]> => {
    const ref = `f${++refs}`
    const pending = new FanOut<T>(targets.map((w) => w.index))
    fanOuts.set(ref, pending as FanOut<unknown>)
    for (const w of targets) send(w, make(ref))
    return pending.finished.finally(() => fanOuts.delete(ref))
  }

  const onMessage = async (worker: Worker, message: WorkerToPrimary) => {
    switch (message.type) {
      case 'listening':
        worker.listening = message
        changed()
        break
      case 'change-applied':
        fanOuts.get(message.ref)?.answer(worker.index, null)
        break
      case 'metrics-snapshot':
        fanOuts.get(message.ref)?.answer(worker.index, message.snapshot)
        break
      case 'publish-change': {
        const others = workers.filter((w) => w !== worker && w.listening)
        await fanOut(others, (ref) => ({ type: 'apply-change', ref, change: message.change }))
        send(worker, { type: 'reply', id: message.id, value: null })
        break
      }
      case 'admin-failure':
        for (const other of workers) if (other !== worker && other.listening) send(other, message)
        break
      case 'govern': {
        const { id, settlements, admissions } = message
        // In arrival order (one promise chain), settlements first: loaded on first use.
        void hosted().then((state) => {
          for (const settlement of settlements) state.settle(worker.index, settlement)
          send(worker, { type: 'reply', id, value: admissions.map((a) => state.admit(worker.index, a.claims, a.shadow, a.loads)) })
        })
        break
      }
      case 'gather-metrics': {
        const snapshots = await fanOut<MetricsSnapshot>(workers.filter((w) => w.listening), (ref) => ({ type: 'collect-metrics', ref }))
        const merged = Metrics.merge(snapshots)
        merged.rssBytes += process.memoryUsage.rss()
        send(worker, { type: 'reply', id: message.id, value: { snapshot: merged, workers: snapshots.length } })
        break
      }
    }
  }

  const spawn = (index: number, leader = false, restartDelay = 0): Worker => {
    const command = ownCommand('worker')
    const worker: Worker = { index, listening: null, startedAt: Date.now(), restartDelay } as Worker
    worker.proc = Bun.spawn(command, {
      // The start settings too, for a primary that did not restart itself with them (see main.ts).
      env: { ...process.env, ...startEnv(process.env, config.workers), CONDUIT_WORKER: '1', CONDUIT_WORKER_PORT: String(port), CONDUIT_WORKER_LEADER: leader ? '1' : '0' },
      stdin: 'ignore',
      stdout: 'inherit',
      stderr: 'inherit',
      ipc: (message) => void onMessage(worker, message as WorkerToPrimary),
      onExit: (_proc, code, signal) => {
        changed()
        // What its requests held in the shared limits would never be settled (in order after its last messages).
        void governance?.then((state) => state.release(index))
        if (stopping) return
        // During start-up, `started` stops the primary with the worker's own message: no restart to announce.
        if (!serving) return
        // A worker that keeps dying (its database unreachable, say) is started again less and less often.
        const delay = Date.now() - worker.startedAt > STABLE_MS ? RESTART_MS : Math.min(MAX_RESTART_MS, Math.max(RESTART_MS, worker.restartDelay * 2))
        logLine('error', { worker: index, code, signal, restartInMs: delay }, 'worker exited; restarting it')
        setTimeout(() => {
          if (!stopping) workers[index] = spawn(index, false, delay)
        }, delay)
      },
    }) as Worker['proc']
    return worker
  }

  /** True once all of `batch` listen; false if the primary is stopping meanwhile. */
  const started = async (batch: Worker[]) => {
    const deadline = Date.now() + 30_000
    while (!batch.every((w) => w.listening)) {
      if (stopping) return false
      if (batch.some((w) => w.proc.exitCode !== null) || Date.now() > deadline) {
        stopping = true
        for (const w of workers) w.proc.kill()
        throw new Error('A worker failed to start; see its output above.')
      }
      // Woken by a worker's news, or after a second to look at the deadline (and at a SIGTERM meanwhile).
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1_000)
        changed = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    return !stopping
  }

  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    logLine('info', { signal }, 'stopping workers')
    // A worker still starting has nothing to drain yet: it exits at once.
    for (const w of workers) w.proc.kill('SIGTERM')
    const exited = Promise.all(workers.map((w) => w.proc.exited))
    // The drain, then up to 5 s to write what is queued (a database restarting at the same moment), and a margin.
    const drained = await Promise.race([exited.then(() => true), Bun.sleep(config.drainMs + 7_000).then(() => false)])
    if (!drained) for (const w of workers) w.proc.kill('SIGKILL')
    process.exit(0)
  }
  // Before the first worker exists: a signal at any later moment reaches every worker. (Any other end of the
  // primary, SIGKILL included, closes the workers' IPC channel, and they stop on their own.)
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => void shutdown(signal))

  // The leader prepares the store (migrations, config file, master key) before the others open it.
  workers.push(spawn(0, true))
  if (!(await started(workers))) return
  for (let i = 1; i < config.workers; i++) workers.push(spawn(i))
  if (!(await started(workers))) return
  serving = true
  printBanner(config, port, workers[0]!.listening!)
}

/**
 * The port, if nothing listens on it. Workers bind it with SO_REUSEPORT, which another process doing the same may
 * share: a second deployment started on the port of a running one would silently get part of its connections.
 */
function ownPort(hostname: string, port: number): number {
  try {
    Bun.listen({ hostname, port, socket: { data() {} } }).stop(true)
  } catch (error) {
    throw new Error(`Cannot listen on ${hostname}:${port}: ${(error as { code?: string }).code === 'EADDRINUSE' ? 'the port is in use' : String(error)}.`)
  }
  return port
}

function freePort(hostname: string): number {
  const probe = Bun.listen({ hostname, port: 0, socket: { data() {} } })
  const port = probe.port
  probe.stop(true)
  return port
}
