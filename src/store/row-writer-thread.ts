/**
 * The SQLite row writer's thread (see row-writer.ts): its own connection, each insert prepared once, each batch one
 * transaction. Commands arrive in order; each is answered once its transaction has committed, or with the error.
 */
import { Database } from 'bun:sqlite'
import { SPEND_COLUMNS } from './ledger.ts'
import { RECORD_COLUMNS } from './request-records.ts'
import { ADD_AFTER_ROWID } from './spend-rollup.ts'
import { STORED_ITEM_COLUMNS, STORED_RESPONSE_COLUMNS, TABLE_KEYS } from './tables.ts'
import type { RowWriteOp, RowWriterCommand, RowWriterReply } from './row-writer.ts'

declare const self: Worker

let db: Database | null = null
type Rows = readonly Record<string, unknown>[]
let write: Record<RowWriteOp, (...batches: Rows[]) => void> | null = null
/** Why the database could not be opened: every write fails with it (and is retried by its queue). */
let openError: unknown = null

function open(file: string) {
  db = new Database(file)
  // NORMAL: a commit does not wait for an fsync (WAL: a power cut may roll back the last commits, never corrupt the file).
  db.exec('PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL')
  const lastRowid = db.prepare('SELECT COALESCE(MAX(rowid), 0) AS last FROM spend_ledger')
  const addTotals = ADD_AFTER_ROWID.map((text) => db!.prepare(text))
  const ledger = inserter('spend_ledger', SPEND_COLUMNS)
  const records = inserter('request_records', RECORD_COLUMNS)
  const responses = inserter('stored_responses', STORED_RESPONSE_COLUMNS)
  const items = inserter('stored_response_items', STORED_ITEM_COLUMNS)
  write = {
    // Ledger rows and the per-hour totals of those new to it (spend-rollup.ts), together.
    spend: db.transaction((rows: Rows) => {
      const { last } = lastRowid.get() as { last: number }
      ledger(rows)
      for (const statement of addTotals) statement.run(last)
    }),
    records: db.transaction((rows: Rows) => records(rows)),
    // Items first: a response is never found without them.
    stored: db.transaction((kept: Rows, keptItems: Rows) => {
      items(keptItems)
      responses(kept)
    }),
  }
}

/** Inserts rows into `table` through one prepared statement (an absent field is NULL); a repeated key is skipped. */
function inserter(table: keyof typeof TABLE_KEYS, columns: readonly string[]) {
  const statement = db!.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) ON CONFLICT (${TABLE_KEYS[table]}) DO NOTHING`)
  const values: unknown[] = new Array(columns.length)
  return (rows: Rows) => {
    for (const row of rows) {
      for (let i = 0; i < columns.length; i++) values[i] = row[columns[i]!] ?? null
      statement.run(...(values as any[]))
    }
  }
}

self.onmessage = ({ data: command }: MessageEvent<RowWriterCommand>) => {
  if (command.op === 'open') {
    try {
      open(command.file)
    } catch (error) {
      openError = error
    }
    return
  }
  let reply: RowWriterReply
  try {
    if (!write) throw openError
    write[command.op](...(JSON.parse(command.batches) as Rows[]))
    reply = { id: command.id }
  } catch (error) {
    const { name, message, code, errno } = error as { name?: string; message?: string; code?: unknown; errno?: unknown }
    reply = { id: command.id, error: { name: String(name), message: String(message), code, errno } }
  }
  self.postMessage(reply)
}
