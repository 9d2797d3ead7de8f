import type { SpendRow } from './ledger.ts'

/**
 * Per-hour totals of the spend ledger, which usage reports read instead of the ledger: summing a month of ledger
 * rows took about a second per million rows and per grouping, on SQLite's event loop, and any key holder may ask
 * for its own report. They are written with the ledger's rows, in the same transaction, from the rows new to the
 * ledger only, so a retried batch adds nothing. Hours, not minutes: keys that send less than a request a minute would
 * have a row per request. Two tables, since end users can be many and would multiply the other grouping. '' stands
 * for NULL in their keys.
 */
export const HOUR_MS = 3_600_000

export const ROLLUPS = [
  { table: 'spend_hours', dimensions: ['key_id', 'model', 'provider'] },
  { table: 'spend_user_hours', dimensions: ['key_id', 'end_user'] },
] as const satisfies readonly { table: string; dimensions: readonly (keyof SpendRow)[] }[]

export type Rollup = (typeof ROLLUPS)[number]

const SUMS = ['requests', 'prompt_tokens', 'completion_tokens', 'cost_micros', 'unpriced', 'audio_ms', 'characters'] as const

const columns = (r: Rollup) => ['hour', ...r.dimensions, ...SUMS]
const addOnConflict = (r: Rollup) =>
  `ON CONFLICT (${r.dimensions[0]}, hour, ${r.dimensions.slice(1).join(', ')}) DO UPDATE SET ${SUMS.map((c) => `${c} = ${r.table}.${c} + excluded.${c}`).join(', ')}`

/** SQLite: adds one total (bound in the order of `totals`). */
export const upsertTotal = (r: Rollup) => `INSERT INTO ${r.table} (${columns(r).join(', ')}) VALUES (${columns(r).map(() => '?').join(', ')}) ${addOnConflict(r)}`

/** PostgreSQL: follows `WITH inserted AS (INSERT INTO spend_ledger … RETURNING *)`, adding the new rows in that statement. */
export const ADD_INSERTED = ROLLUPS.map((r, i) => {
  const keys = [`created_at - created_at % ${HOUR_MS}`, ...r.dimensions.map((d) => `COALESCE(${d}, '')`)]
  const sums = SUMS.map((c) => (c === 'requests' ? 'COUNT(*)' : `SUM(${c})`))
  const upsert = `INSERT INTO ${r.table} (${columns(r).join(', ')}) SELECT ${[...keys, ...sums].join(', ')} FROM inserted GROUP BY ${keys.map((_, n) => n + 1).join(', ')} ${addOnConflict(r)}`
  return i < ROLLUPS.length - 1 ? `, rollup_${i} AS (${upsert})` : upsert
}).join(' ')

/** SQLite: the rows totalled per hour and dimension, each as the values upsertTotal binds. */
export function totals(r: Rollup, rows: readonly SpendRow[]): (string | number)[][] {
  const byGroup = new Map<string, (string | number)[]>()
  const first = 1 + r.dimensions.length
  for (const row of rows) {
    const hour = row.created_at - (row.created_at % HOUR_MS)
    const dimensions = r.dimensions.map((d) => row[d] ?? '')
    const group = `${hour}\n${dimensions.join('\n')}`
    let total = byGroup.get(group)
    if (!total) byGroup.set(group, (total = [hour, ...dimensions, ...SUMS.map(() => 0)]))
    ;(total[first] as number) += 1
    for (let i = 1; i < SUMS.length; i++) (total[first + i] as number) += row[SUMS[i] as Exclude<(typeof SUMS)[number], 'requests'>]
  }
  return [...byGroup.values()]
}
