import type { StoreChange } from '../plugin-sdk/types.ts'
import type { Metrics, MetricsSnapshot } from '../services/metrics.ts'
import type { ChangeBus } from '../store/store.ts'
import { FAN_OUT_TIMEOUT_MS, type GovernAdmission, type PrimaryToWorker, type WorkerToPrimary } from './messages.ts'
import type { Outcome, ScopeClaim, Settlement } from '../plugins/admission/claims.ts'

/** This process's channel when it is one of a primary's workers. */
let current: WorkerChannel | null = null
/** The state kept by the primary for all its workers (see `governance`); null outside a primary's workers. */
export const primaryGovernance = () => current?.governance ?? null

/** A worker→primary message that expects a reply, before the channel numbers it. */
type Request = WorkerToPrimary extends infer M ? (M extends { id: number } ? Omit<M, 'id'> : never) : never

/** A worker's line to the primary: store changes for the other workers, cluster-wide metrics, shared limits. */
export class WorkerChannel implements ChangeBus {
  private sequence = 0
  private readonly pending = new Map<number, (value: unknown) => void>()
  private readonly changeListeners: ((change: StoreChange) => void)[] = []
  private metrics: Metrics | null = null

  constructor() {
    process.on('message', (message: PrimaryToWorker) => this.receive(message))
    current = this
  }

  private readonly failureListeners: ((client: string) => void)[] = []
  /** Wrong admin keys, counted by every worker (see AdminGuard). */
  readonly adminFailures = {
    publish: (client: string) => this.send({ type: 'admin-failure', client }),
    subscribe: (listener: (client: string) => void) => void this.failureListeners.push(listener),
  }

  /** Limits and budgets without Redis, decided by the primary for every worker. */
  readonly governance = new GovernanceLine((settlements, admissions) => this.request<Outcome[]>({ type: 'govern', settlements, admissions }))

  static available() {
    return typeof process.send === 'function' && process.env.CONDUIT_WORKER === '1'
  }

  send(message: WorkerToPrimary) {
    process.send!(message)
  }

  private request<T>(message: Request): Promise<T> {
    const id = ++this.sequence
    return new Promise<T>((resolve, reject) => {
      // The primary answers within its own fan-out timeout; this one only guards against a lost primary.
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`the primary did not answer '${message.type}'`))
      }, FAN_OUT_TIMEOUT_MS * 3)
      this.pending.set(id, (value) => {
        clearTimeout(timer)
        resolve(value as T)
      })
      this.send({ ...message, id } as WorkerToPrimary)
    })
  }

  publish(change: StoreChange): Promise<void> {
    return this.request({ type: 'publish-change', change })
  }

  subscribe(listener: (change: StoreChange) => void) {
    this.changeListeners.push(listener)
  }

  serveMetrics(metrics: Metrics) {
    this.metrics = metrics
  }

  /** Every worker's metrics, summed by the primary. */
  gatherMetrics(): Promise<{ snapshot: MetricsSnapshot; workers: number }> {
    return this.request({ type: 'gather-metrics' })
  }

  private receive(message: PrimaryToWorker) {
    switch (message.type) {
      case 'reply':
        this.pending.get(message.id)?.(message.value)
        this.pending.delete(message.id)
        break
      case 'apply-change':
        for (const listener of this.changeListeners) listener(message.change)
        this.send({ type: 'change-applied', ref: message.ref })
        break
      case 'admin-failure':
        for (const listener of this.failureListeners) listener(message.client)
        break
      case 'collect-metrics':
        if (this.metrics) this.send({ type: 'metrics-snapshot', ref: message.ref, snapshot: this.metrics.snapshot() })
        break
    }
  }
}

/**
 * Limits and budgets without Redis: decided by the primary for every worker, as one process decides them
 * (LocalState), so that N workers do not each grant a key its whole rpm, max_parallel or budget. As with Redis
 * (SharedState), while one message is out what arrives waits for the next, so under load one round trip serves
 * many requests; settlements leave at once when nothing is out (another worker may be waiting for the slot or the
 * money), and before the admissions that came after them.
 */
class GovernanceLine {
  private admissions: (GovernAdmission & { resolve(outcome: Outcome): void; reject(error: unknown): void })[] = []
  private settlements: Settlement[] = []
  private out = false

  constructor(private readonly ask: (settlements: Settlement[], admissions: GovernAdmission[]) => Promise<Outcome[]>) {}

  admit(claims: ScopeClaim[], shadow: boolean, loads: Map<string, number> | null): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      this.admissions.push({ claims, shadow, loads, resolve, reject })
      this.pump()
    })
  }

  settle(settlement: Settlement) {
    this.settlements.push(settlement)
    this.pump()
  }

  private pump() {
    if (this.out || (this.admissions.length === 0 && this.settlements.length === 0)) return
    const waiting = this.admissions
    const settlements = this.settlements
    this.admissions = []
    this.settlements = []
    this.out = true
    this.ask(settlements, waiting.map(({ claims, shadow, loads }) => ({ claims, shadow, loads })))
      .then(
        (outcomes) => waiting.forEach((w, i) => w.resolve(outcomes[i]!)),
        (error) => waiting.forEach((w) => w.reject(error)),
      )
      .finally(() => {
        this.out = false
        this.pump()
      })
  }
}
