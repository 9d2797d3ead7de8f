import type { Logger } from '../plugin-sdk/types.ts'

/** Work that still owes rows (requests answered but not yet accounted: see Pipeline.settle), done before any flush. */
const owing = new Set<() => void>()

/** Runs `settleUp` before every flush, so what a flush writes includes everything answered so far; returns the undo. */
export function beforeFlush(settleUp: () => void): () => void {
  owing.add(settleUp)
  return () => owing.delete(settleUp)
}

/** Accounts now for every request answered so far (see beforeFlush). */
export function settleOwing() {
  for (const settleUp of owing) settleUp()
}

/** How long the writes at exit are tried again while the database is unreachable, and how often. */
const CLOSE_RETRY_MS = 5_000
const CLOSE_RETRY_EVERY_MS = 250

/**
 * A queue written in batches off the request path, for rows whose writes are idempotent (keyed by request id):
 * bounded (past `maxQueued` the oldest are dropped, loudly), retried with backoff while the database is
 * unreachable (no write attempt per row meanwhile), each write under a timeout (Bun.SQL has none: a black-holed
 * connection would hold the queue, and the flush at SIGTERM, for ever), and a batch the database refuses split
 * down to the one row at fault, which is logged and set aside so it cannot hold back the others. The spend
 * ledger, the request records and the metric buckets are each one of these.
 */
export class BatchWriter<T> {
  private queue: T[] = []
  private writing = 0
  private dropped = 0
  private timer: Timer | null = null
  private flushing: Promise<void> | null = null
  private failures = 0
  private soon = false
  /**
   * How many rows at the front of the queue the flush in progress must still write: those queued when a flush was
   * asked for. Rows that arrive while it writes wait for the next one (the timer or a full batch); a drain that took
   * them too never ended under steady traffic, and wrote a transaction of one or two rows a millisecond.
   */
  private due = 0

  constructor(
    private readonly name: string,
    private readonly insert: (rows: T[]) => Promise<unknown>,
    private readonly log: Logger,
    private readonly o: {
      batch: number
      flushEveryMs: number
      maxQueued: number
      writeTimeoutMs?: number
      /** Fields that name a row in the log line that sets it aside (the request id, say). */
      describe?: (row: T) => Record<string, unknown>
    },
  ) {}

  push(row: T) {
    this.queue.push(row)
    const over = this.queue.length + this.writing - this.o.maxQueued
    if (over > 0) this.dropped += this.queue.splice(0, over).length
    if (this.queue.length >= this.o.batch && this.failures === 0) this.flushSoon()
    else this.timer ??= setTimeout(() => void this.flush(), this.o.flushEveryMs)
  }

  /**
   * A full batch is written on the loop's next turn, not inside push(): push runs as a request ends, before its
   * response is handed to Bun, and SQLite writes a batch synchronously (2–14 ms for 500 rows, measured at c=1).
   * After the response, the write falls in the gap before the next request when there is one.
   */
  private flushSoon() {
    if (this.soon) return
    this.soon = true
    setImmediate(() => {
      this.soon = false
      void this.flush()
    })
  }

  get pending() {
    return this.queue.length + this.writing
  }

  /** Writes every row queued so far; a flush already writing takes these rows on, and callers share it. */
  flush(): Promise<void> {
    settleOwing()
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.due = this.queue.length
    return (this.flushing ??= this.drain().finally(() => (this.flushing = null)))
  }

  private async drain() {
    while (this.due > 0 && this.queue.length > 0) {
      const batch = this.queue.splice(0, Math.min(this.o.batch, this.due))
      this.due -= batch.length
      this.writing = batch.length
      const settled = { rows: 0 }
      try {
        await this.write(batch, settled)
        this.failures = 0
      } catch (error) {
        this.queue.unshift(...batch.slice(settled.rows))
        this.failures++
        this.log.warn({ err: error, queued: this.queue.length }, `${this.name}: database unreachable; will retry`)
        this.timer ??= setTimeout(() => void this.flush(), Math.min(5_000, 100 * 2 ** this.failures))
        return
      } finally {
        this.writing = 0
        if (this.dropped > 0) {
          this.log.error({ dropped: this.dropped, maxQueued: this.o.maxQueued }, `${this.name}: queue full, oldest rows dropped`)
          this.dropped = 0
        }
      }
    }
  }

  private async write(rows: T[], settled: { rows: number }): Promise<void> {
    try {
      await this.timed(rows)
    } catch (error) {
      if (!isRejection(error)) throw error
      if (rows.length === 1) this.log.error({ err: error, ...this.o.describe?.(rows[0]!), row: rows[0] }, `${this.name}: the database refused this row; set aside`)
      else {
        const half = Math.ceil(rows.length / 2)
        await this.write(rows.slice(0, half), settled)
        await this.write(rows.slice(half), settled)
        return
      }
    }
    settled.rows += rows.length
  }

  private async timed(rows: T[]) {
    const ms = this.o.writeTimeoutMs ?? 5_000
    let timer: Timer | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} write not answered within ${ms} ms`)), ms)
    })
    try {
      await Promise.race([this.insert(rows), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * At exit: what is queued is written, tried again for up to CLOSE_RETRY_MS while the database is unreachable (a
   * database restarting at the same moment lost every row queued behind it), then what is left is reported lost.
   */
  async close() {
    const deadline = performance.now() + CLOSE_RETRY_MS
    await this.flush()
    while (this.pending > 0 && performance.now() + CLOSE_RETRY_EVERY_MS < deadline) {
      await Bun.sleep(CLOSE_RETRY_EVERY_MS)
      await this.flush()
    }
    if (this.timer) clearTimeout(this.timer)
    if (this.pending > 0) this.log.error({ lost: this.pending }, `${this.name}: rows could not be written before exit`)
  }
}

/**
 * True when the database answered and refused the data (the same statement would fail again), as opposed to
 * being unreachable, shutting down or busy (worth retrying as is). PostgreSQL: SQLSTATE class 22 (data
 * exception) or 23 (integrity constraint); SQLite: a constraint, type or size error; either: the driver could not
 * encode a value.
 */
function isRejection(error: unknown): boolean {
  if (error instanceof TypeError) return true
  const { code, errno } = (error ?? {}) as { code?: unknown; errno?: unknown }
  if (code === 'ERR_POSTGRES_SERVER_ERROR') return /^2[23]/.test(String(errno))
  return typeof code === 'string' && /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/.test(code)
}
