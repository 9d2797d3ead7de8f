import { SPEND_COLUMNS } from './ledger.ts'
import { RECORD_COLUMNS } from './request-records.ts'
import { BUCKET_COLUMNS, STORED_ITEM_COLUMNS, STORED_RESPONSE_COLUMNS } from './tables.ts'

/** What the row writer thread writes, each batch in one transaction (see row-writer-thread.ts). */
export type RowWriteOp = 'spend' | 'records' | 'stored' | 'buckets'
/** The columns of each batch an op carries, in order: a row travels as its values in this order. */
export const OP_COLUMNS: Record<RowWriteOp, readonly (readonly string[])[]> = {
  spend: [SPEND_COLUMNS],
  records: [RECORD_COLUMNS],
  stored: [STORED_RESPONSE_COLUMNS, STORED_ITEM_COLUMNS],
  buckets: [BUCKET_COLUMNS],
}
/** Each batch as the JSON texts of its slices of rows (see encodeInTurns). */
export type RowWriterCommand = { op: 'open'; file: string } | { op: RowWriteOp; id: number; batches: string[][] }
export type RowWriterReply = { id: number; error?: { name: string; message: string; code: unknown; errno: unknown } }

/** How long close() waits for writes still on the thread. */
const CLOSE_WAIT_MS = 5_000

/**
 * SQLite only: the rows every request writes (the ledger, request records, stored responses), and the metric buckets
 * they add up to, are inserted on a thread of their own, through a second connection. bun:sqlite runs a statement on
 * the thread that calls it, and on the event loop these inserts were 13% of a plain request's CPU (15–30 µs a row
 * here), a 500-row batch held every request and stream of the process for 2–14 ms (the p99 at c=1), and so did a WAL
 * checkpoint's fsync. Handing a batch over costs its JSON, about 1.3 µs a row, encoded a slice at a time (see
 * encodeInTurns). The thread starts with the first write: a gateway that serves nothing does not carry its ~5 MB.
 */
export class RowWriter {
  private worker: Worker | null = null
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>()
  private nextId = 0
  private drained: (() => void) | null = null

  constructor(private readonly file: string) {}

  /** Resolves once the batches are committed; rejects with the database's error (its `code` kept) or the thread's. */
  write(op: RowWriteOp, ...batches: readonly object[][]): Promise<void> {
    const worker = (this.worker ??= this.start())
    const id = this.nextId++
    const committed = new Promise<void>((resolve, reject) => {
      if (this.waiting.size === 0) worker.ref() // a write on its way keeps the process alive, as an await on the database did
      this.waiting.set(id, { resolve, reject })
    })
    encodeInTurns(batches, OP_COLUMNS[op]).then(
      // Unless the thread was lost meanwhile (its waiters, this one too, have their error).
      (encoded) => this.waiting.has(id) && worker.postMessage({ op, id, batches: encoded } satisfies RowWriterCommand),
      (error) => this.answer(worker, { id, error }),
    )
    return committed
  }

  private answer(worker: Worker, reply: { id: number; error?: Error }) {
    const waiter = this.waiting.get(reply.id)
    this.waiting.delete(reply.id)
    if (reply.error) waiter?.reject(reply.error)
    else waiter?.resolve()
    if (this.waiting.size === 0) this.idle(worker)
  }

  private start(): Worker {
    const worker = new Worker(new URL('./row-writer-thread.ts', import.meta.url).href)
    worker.unref()
    worker.onmessage = ({ data: reply }: MessageEvent<RowWriterReply>) => this.answer(worker, { id: reply.id, error: reply.error && revive(reply.error) })
    // Uncaught in the thread (each command catches its own errors) or the thread gone: the next write starts another.
    worker.onerror = (event) => this.lose(worker, new Error(`row writer thread failed: ${event.message}`))
    worker.addEventListener('close', () => this.lose(worker, new Error('row writer thread exited')))
    worker.postMessage({ op: 'open', file: this.file } satisfies RowWriterCommand)
    return worker
  }

  private idle(worker: Worker) {
    worker.unref()
    this.drained?.()
  }

  private lose(worker: Worker, error: Error) {
    if (this.worker !== worker) return
    this.worker = null
    worker.terminate()
    for (const waiter of this.waiting.values()) waiter.reject(error)
    this.waiting.clear()
    this.idle(worker)
  }

  /** After the writes on their way have committed (or CLOSE_WAIT_MS), the thread closes its connection and ends. */
  async close() {
    const worker = this.worker
    if (!worker) return
    if (this.waiting.size > 0) {
      let timer: Timer | undefined
      await Promise.race([new Promise<void>((resolve) => (this.drained = resolve)), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)))])
      clearTimeout(timer)
    }
    this.lose(worker, new Error('row writer closed'))
  }
}

/** The thread's error as one the batch writer can judge (see isRejection): a TypeError, or the SQLite code. */
function revive({ name, message, code, errno }: NonNullable<RowWriterReply['error']>): Error {
  return Object.assign(name === 'TypeError' ? new TypeError(message) : new Error(message), { code, errno })
}

/**
 * Rows encoded for the handoff in one turn of the event loop. A ledger batch and a records batch of 2,000 rows,
 * encoded whole, held it 1.8–4.0 ms (timed alone; 0.3 ms in slices), and the slices cost less CPU, not more: the
 * gateway's CPU a request 0.945 and 0.953 of encoding whole (`bench/ab.ts`, 14 rounds each way, c=64). At c=1 the
 * rounds' p99 and the p99.9 were lower in three pairs of three (`C1=1 bench/profile.sh`).
 */
const ROWS_PER_TURN = 250

/**
 * Each batch as the JSON texts of its slices of rows, one slice a turn of the loop, each row as the array of its
 * values in `columns` order (an absent one null): named, a row's JSON was half names, encoded here and parsed into
 * objects of twenty-odd properties on the thread. They go to the thread as they are: joined into one text, every
 * row's JSON was copied twice more (1,520 against 1,140 bytes allocated a row, with the message's copy, in a
 * microbenchmark of 2,000-row ledger and records batches).
 */
export async function encodeInTurns(batches: readonly object[][], columns: readonly (readonly string[])[]): Promise<string[][]> {
  const encoded: string[][] = []
  for (const [b, rows] of batches.entries()) {
    const names = columns[b]!
    const slices: string[] = []
    for (let from = 0; from < rows.length; from += ROWS_PER_TURN) {
      if (from > 0) await new Promise((resolve) => setImmediate(resolve))
      const to = Math.min(from + ROWS_PER_TURN, rows.length)
      const values = new Array<unknown[]>(to - from)
      for (let r = from; r < to; r++) {
        const row = rows[r] as Record<string, unknown>
        const value = new Array<unknown>(names.length)
        for (let c = 0; c < names.length; c++) value[c] = row[names[c]!] ?? null
        values[r - from] = value
      }
      slices.push(JSON.stringify(values))
    }
    encoded.push(slices)
  }
  return encoded
}

/** The thread's side of encodeInTurns: each batch's rows again, as arrays of values, its slices parsed one by one. */
export function decodeBatches(encoded: readonly string[][]): unknown[][][] {
  return encoded.map((slices) => slices.flatMap((slice) => JSON.parse(slice) as unknown[][]))
}
