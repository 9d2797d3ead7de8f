/**
 * The SQLite row writer's thread (see row-writer.ts): its own connection, each insert prepared once, each batch one
 * transaction. Commands arrive in order; each is answered once its transaction has committed, or with the error.
 * bun:sqlite, not Bun.SQL: Bun.SQL prepares a multi-row statement anew for every batch (9.2 µs a row against 5.0).
 */
import { Database } from 'bun:sqlite'
import { getPriority, setPriority } from 'node:os'
import { ADD_AFTER_ROWID } from './spend-rollup.ts'
import { TABLE_KEYS, onConflict } from './tables.ts'
import { OP_COLUMNS, decodeBatches, type RowWriteOp, type RowWriterCommand, type RowWriterReply } from './row-writer.ts'

declare const self: Worker

/**
 * This thread runs at nice 10, or at the process's own if that is lower still. On Linux a thread has a nice value of
 * its own; elsewhere the call would lower the whole process, so it is not made. At the requests' priority, a
 * request's thread woken during a batch's insert could wait behind it for the scheduler's slice, 1–3 ms: most of the
 * p99 at c=1. The writer still keeps up on a saturated machine (it writes what the requests made, a batch at a time).
 */
const BACKGROUND_NICE = 10
if (process.platform === 'linux') {
  try {
    setPriority(Math.max(getPriority(), BACKGROUND_NICE))
  } catch {
    // A sandbox that forbids it: the rows are written either way.
  }
}

/** Rows as the arrays of their values, in their table's column order (see encodeInTurns). */
type Rows = readonly (readonly unknown[])[]
let write: Record<RowWriteOp, (...batches: Rows[]) => void> | null = null
let file = ''

function open() {
  const db = new Database(file)
  try {
    // NORMAL: a commit does not wait for an fsync (WAL: a power cut may roll back the last commits, never corrupt the file).
    db.exec('PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL')
    // This connection checkpoints the WAL for the process (the shared one never does: see Store.open), every 10,000
    // pages (40 MB) rather than SQLite's 1,000: a page that batches rewrite (an index's leaf per key) is copied into
    // the database file once per checkpoint. With traffic over 40 keys, 16.6–18.1 → 14.9–15.8 µs of this thread's CPU
    // a request (three interleaved `KEYS=40 bench/profile.sh` runs); with one key, no change.
    db.exec('PRAGMA wal_autocheckpoint = 10000')
    const lastRowid = db.prepare('SELECT COALESCE(MAX(rowid), 0) AS last FROM spend_ledger')
    const addTotals = ADD_AFTER_ROWID.map((text) => db.prepare(text))
    // Each in the column order its rows arrive in.
    const ledger = inserter(db, 'spend_ledger', OP_COLUMNS.spend[0]!)
    const records = inserter(db, 'request_records', OP_COLUMNS.records[0]!)
    const responses = inserter(db, 'stored_responses', OP_COLUMNS.stored[0]!)
    const items = inserter(db, 'stored_response_items', OP_COLUMNS.stored[1]!)
    // An instance rewrites its current buckets whole at each flush (see store.ts).
    const buckets = inserter(db, 'metric_buckets', OP_COLUMNS.buckets[0]!, 'replace')
    // BEGIN IMMEDIATE: the write lock is taken first, waiting out another process's writer (busy_timeout). A
    // transaction begun deferred reads first (the ledger's highest rowid) and is refused at once with "database is
    // locked" when another connection committed in between, since waiting there could deadlock: with two workers
    // on one file, about one batch in twenty was.
    write = {
      // Ledger rows and the per-hour totals of those new to it (spend-rollup.ts), together.
      spend: db.transaction((rows: Rows) => {
        const { last } = lastRowid.get() as { last: number }
        ledger(rows)
        for (const statement of addTotals) statement.run(last)
      }).immediate,
      records: db.transaction((rows: Rows) => records(rows)).immediate,
      // Items first: a response is never found without them.
      stored: db.transaction((kept: Rows, keptItems: Rows) => {
        items(keptItems)
        responses(kept)
      }).immediate,
      buckets: db.transaction((rows: Rows) => buckets(rows)).immediate,
    }
  } catch (error) {
    db.close()
    throw error
  }
}

/**
 * Rows per INSERT statement: binding and stepping once for 32 rows, not once per row, took 500-row batches from about
 * 9.3 to 7.7 µs of this thread's CPU per request (a ledger row and a request record; a microbenchmark).
 */
const ROWS_PER_INSERT = 32

/**
 * Inserts rows into `table` (an absent field is NULL), 32 a statement; a row whose key is stored: see onConflict.
 * A table with a `key_id` gets its rows grouped by key first, by a stable sort (a key's rows keep their order, so a
 * later row still replaces an earlier one). Every such table has an index led by the key: with traffic spread over
 * many keys, rows in arrival order send each insert to another part of it, and grouped they follow one another.
 * 40 keys: 18–26 → 15–17 µs of CPU a request (a ledger row and a record; 40 keys and 7 models: 22–26 → 16–20;
 * three interleaved pairs of bench/row-insert-cost.ts); one key: the same.
 */
function inserter(db: Database, table: keyof typeof TABLE_KEYS, columns: readonly string[], mode: 'skip' | 'replace' = 'skip') {
  const conflict = onConflict(table, columns, mode)
  const keyAt = columns.indexOf('key_id')
  const byKey = (a: Rows[number], b: Rows[number]) => compareKeys(a[keyAt], b[keyAt])
  const prepare = (rows: number) => {
    const row = `(${columns.map(() => '?').join(', ')})`
    const sql = `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${Array(rows).fill(row).join(', ')} ${conflict}`
    return { statement: db.prepare(sql), values: new Array<unknown>(rows * columns.length) }
  }
  const many = prepare(ROWS_PER_INSERT)
  const one = prepare(1)
  const width = columns.length
  const insert = ({ statement, values }: typeof one, rows: Rows, from: number, count: number) => {
    let at = 0
    for (let r = from; r < from + count; r++) {
      const row = rows[r]!
      for (let c = 0; c < width; c++) values[at++] = row[c]
    }
    statement.run(...(values as any[]))
  }
  return (arrived: Rows) => {
    const rows = keyAt >= 0 ? arrived.toSorted(byKey) : arrived
    let next = 0
    for (; next + ROWS_PER_INSERT <= rows.length; next += ROWS_PER_INSERT) insert(many, rows, next, ROWS_PER_INSERT)
    for (; next < rows.length; next++) insert(one, rows, next, 1)
  }
}

/** Orders rows by `key_id` (none, a request refused before its key was known, first). */
function compareKeys(a: unknown, b: unknown): number {
  const x = (a ?? '') as string
  const y = (b ?? '') as string
  return x < y ? -1 : x > y ? 1 : 0
}

self.onmessage = ({ data: command }: MessageEvent<RowWriterCommand>) => {
  if (command.op === 'open') {
    file = command.file
    return
  }
  let reply: RowWriterReply
  try {
    // Opened by the first write, and again by the next one if that failed (its error is the write's: retried).
    if (!write) open()
    write![command.op](...decodeBatches(command.batches))
    reply = { id: command.id }
  } catch (error) {
    const { name, message, code, errno } = error as { name?: string; message?: string; code?: unknown; errno?: unknown }
    reply = { id: command.id, error: { name: String(name), message: String(message), code, errno } }
  }
  self.postMessage(reply)
}
