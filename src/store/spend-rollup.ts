import type { SpendRow } from './ledger.ts'

/**
 * Per-hour totals of the spend ledger, which usage reports read instead of the ledger: summing a month of ledger
 * rows took about a second per million rows and per grouping, on SQLite's event loop, and any key holder may ask
 * for its own report. They are added with the ledger's rows, in the same transaction, from the rows new to the
 * ledger only, so a retried batch adds nothing. Hours, not minutes: keys that send less than a request a minute would
 * have a row per request. Two tables, since end users can be many and would multiply the other grouping. '' stands
 * for NULL in their keys.
 */
export const HOUR_MS = 3_600_000

export const BY_MODEL = { table: 'spend_hours', dimensions: ['key_id', 'model', 'provider'] } as const
export const BY_USER = { table: 'spend_user_hours', dimensions: ['key_id', 'end_user'] } as const
const ROLLUPS: readonly { table: string; dimensions: readonly (keyof SpendRow)[] }[] = [BY_MODEL, BY_USER]

const SUMS = ['requests', 'prompt_tokens', 'completion_tokens', 'cost_micros', 'unpriced', 'audio_ms', 'characters', 'images'] as const

/** Upserts adding the totals of the ledger rows `source` selects (a table or CTE name, with a WHERE if any). */
function addTotals(rollup: (typeof ROLLUPS)[number], source: string) {
  const keys = [`created_at - created_at % ${HOUR_MS}`, ...rollup.dimensions.map((d) => `COALESCE(${d}, '')`)]
  const sums = SUMS.map((c) => (c === 'requests' ? 'COUNT(*)' : `SUM(${c})`))
  return `INSERT INTO ${rollup.table} (hour, ${[...rollup.dimensions, ...SUMS].join(', ')})
    SELECT ${[...keys, ...sums].join(', ')} FROM ${source} GROUP BY ${keys.map((_, n) => n + 1).join(', ')}
    ON CONFLICT (${rollup.dimensions[0]}, hour, ${rollup.dimensions.slice(1).join(', ')})
    DO UPDATE SET ${SUMS.map((c) => `${c} = ${rollup.table}.${c} + excluded.${c}`).join(', ')}`
}

/** PostgreSQL: follows `WITH inserted AS (INSERT INTO spend_ledger … RETURNING *)`, in that one statement. */
export const ADD_INSERTED = ROLLUPS.map((r, i) => (i < ROLLUPS.length - 1 ? `, rollup_${i} AS (${addTotals(r, 'inserted')})` : addTotals(r, 'inserted'))).join(' ')

/**
 * SQLite (which has no INSERT in a WITH): one statement per table, for the rows above the ledger's highest rowid
 * before the batch (`?1`), read in the batch's transaction: a new row's rowid is above every row already there, and
 * a row that conflicted was not inserted.
 */
export const ADD_AFTER_ROWID = ROLLUPS.map((r) => addTotals(r, 'spend_ledger WHERE rowid > ?1'))
