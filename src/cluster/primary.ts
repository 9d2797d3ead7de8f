import type { Subprocess } from 'bun'
import type { Logger } from '../plugin-sdk/types.ts'
import { Metrics, type MetricsSnapshot } from '../services/metrics.ts'
import { FAN_OUT_TIMEOUT_MS, type PrimaryToWorker, type WorkerToPrimary } from './messages.ts'

export interface PrimaryOptions {
  workers: number
  port: number
  log: Logger
  /** How long SIGTERM waits for workers to drain before killing them. */
  drainMs: number
}

interface Worker {
  index: number
  proc: Subprocess<'ignore', 'inherit', 'inherit'>
  listening: boolean
}

/** A fan-out to every worker, answered when all have replied or the timeout passes. */
class FanOut<T> {
  readonly results: T[] = []
  private readonly waiting: Set<number>
  private done!: (results: T[]) => void
  readonly finished = new Promise<T[]>((resolve) => (this.done = resolve))

  constructor(workers: number[]) {
    this.waiting = new Set(workers)
    if (this.waiting.size === 0) this.done(this.results)
    setTimeout(() => this.done(this.results), FAN_OUT_TIMEOUT_MS)
  }

  answer(worker: number, value: T) {
    if (!this.waiting.delete(worker)) return
    this.results.push(value)
    if (this.waiting.size === 0) this.done(this.results)
  }
}

/**
 * Runs N gateway workers on one port (SO_REUSEPORT: the kernel spreads connections), restarts a worker
 * that dies, relays store changes so every worker's caches follow an admin change before the admin call
 * returns, and sums metrics for a scrape. It serves no traffic itself.
 */
export async function runPrimary(options: PrimaryOptions): Promise<{ port: number }> {
  const workers: Worker[] = []
  const fanOuts = new Map<string, FanOut<unknown>>()
  let refs = 0
  let stopping = false

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
        worker.listening = true
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
      case 'gather-metrics': {
        const snapshots = await fanOut<MetricsSnapshot>(workers.filter((w) => w.listening), (ref) => ({ type: 'collect-metrics', ref }))
        const merged = Metrics.merge(snapshots)
        merged.rssBytes += process.memoryUsage.rss()
        send(worker, { type: 'reply', id: message.id, value: { snapshot: merged, workers: snapshots.length } })
        break
      }
    }
  }

  const spawn = (index: number): Worker => {
    const command = Bun.isStandaloneExecutable ? [process.execPath, ...process.argv.slice(2)] : [process.execPath, Bun.main, ...process.argv.slice(2)]
    const worker: Worker = { index, listening: false } as Worker
    worker.proc = Bun.spawn(command, {
      env: { ...process.env, CONDUIT_WORKER: '1', CONDUIT_WORKER_PORT: String(options.port) },
      stdin: 'ignore',
      stdout: 'inherit',
      stderr: 'inherit',
      ipc: (message) => void onMessage(worker, message as WorkerToPrimary),
      onExit: (_proc, code, signal) => {
        if (stopping) return
        options.log.error({ worker: index, code, signal }, 'worker exited; restarting it')
        setTimeout(() => {
          if (!stopping) workers[index] = spawn(index)
        }, 500)
      },
    }) as Worker['proc']
    return worker
  }

  for (let i = 0; i < options.workers; i++) workers.push(spawn(i))

  const deadline = Date.now() + 30_000
  while (!workers.every((w) => w.listening)) {
    if (workers.some((w) => w.proc.exitCode !== null) || Date.now() > deadline) {
      stopping = true
      for (const w of workers) w.proc.kill()
      throw new Error('A worker failed to start; see its output above.')
    }
    await Bun.sleep(20)
  }

  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    options.log.info({ signal }, 'stopping workers')
    for (const w of workers) w.proc.kill('SIGTERM')
    const exited = Promise.all(workers.map((w) => w.proc.exited))
    const drained = await Promise.race([exited.then(() => true), Bun.sleep(options.drainMs + 2_000).then(() => false)])
    if (!drained) for (const w of workers) w.proc.kill('SIGKILL')
    process.exit(0)
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'))
  process.on('SIGINT', () => void shutdown('SIGINT'))
  return { port: options.port }
}
