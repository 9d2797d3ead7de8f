import type { FinishedRequest, Logger } from '../plugin-sdk/types.ts'
import type { Store } from './store.ts'

export interface SpendRow {
  request_id: string
  key_id: string | null
  endpoint: string
  model: string | null
  provider: string | null
  upstream_model: string | null
  prompt_tokens: number
  completion_tokens: number
  cost_micros: number
  estimated: number
  aborted: number
  status: number
  created_at: number
}

const FLUSH_EVERY_MS = 200
const BATCH = 500
/** Rows kept while the database is unreachable; past this the oldest are dropped, loudly. */
const MAX_QUEUED = 100_000

/**
 * The spend ledger: one row per request that reached a provider (aborted streams included), written in
 * batches off the request path. Writes are idempotent (the request id is the key), so a batch retried after a
 * database blip never double-counts; rows wait in a bounded queue until the database is back, and `close()`
 * (SIGTERM) flushes what is left.
 */
export class SpendLedger {
  private queue: SpendRow[] = []
  private timer: Timer | null = null
  private flushing: Promise<void> | null = null
  private failures = 0

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  record(f: FinishedRequest) {
    if (!f.target) return // refused before any provider was called: nothing was spent
    this.queue.push({
      request_id: f.ctx.id,
      key_id: f.ctx.principal?.keyId ?? null,
      endpoint: f.ctx.endpoint,
      model: f.ctx.model?.name ?? null,
      provider: f.target.provider.name,
      upstream_model: f.target.model,
      prompt_tokens: f.usage?.prompt_tokens ?? 0,
      completion_tokens: f.usage?.completion_tokens ?? 0,
      cost_micros: f.costMicros,
      estimated: f.usage?.estimated ? 1 : 0,
      aborted: f.aborted ? 1 : 0,
      status: f.status,
      created_at: Date.now(),
    })
    if (this.queue.length > MAX_QUEUED) {
      const dropped = this.queue.splice(0, this.queue.length - MAX_QUEUED)
      this.log.error({ dropped: dropped.length }, 'spend ledger queue full: oldest rows dropped')
    }
    if (this.queue.length >= BATCH) void this.flush()
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_EVERY_MS)
  }

  /** Writes everything queued; concurrent callers share one flush. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    return (this.flushing ??= this.drain().finally(() => (this.flushing = null)))
  }

  private async drain() {
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, BATCH)
      try {
        await this.store.insertSpend(batch)
        this.queue.splice(0, batch.length)
        this.failures = 0
      } catch (error) {
        this.failures++
        this.log.warn({ err: error, queued: this.queue.length }, 'spend ledger write failed; will retry')
        // Back off, then try again on the next timer; the rows stay queued.
        this.timer ??= setTimeout(() => void this.flush(), Math.min(5_000, 100 * 2 ** this.failures))
        return
      }
    }
  }

  get pending() {
    return this.queue.length
  }

  async close() {
    await this.flush()
    if (this.queue.length > 0) this.log.error({ lost: this.queue.length }, 'spend ledger rows could not be written before exit')
    if (this.timer) clearTimeout(this.timer)
  }
}
