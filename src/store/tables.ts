/** The tables written in batches: what the row writer thread inserts and what the store purges in chunks. */
import type { BucketRow } from '../core/timeseries.ts'

/** A kept Responses API object (migration 11); its JSON columns as text. */
export interface StoredResponseRow {
  id: string
  key_id: string
  created_at: number
  response: string
  input_items: string
  context: string
}
/** One of its input or output items, by id, for `item_reference`s. */
export interface StoredItemRow {
  key_id: string
  item_id: string
  response_id: string
  created_at: number
  item: string
}
export const STORED_RESPONSE_COLUMNS = Object.keys({ id: 1, key_id: 1, created_at: 1, response: 1, input_items: 1, context: 1 } satisfies Record<keyof StoredResponseRow, 1>)
export const STORED_ITEM_COLUMNS = Object.keys({ key_id: 1, item_id: 1, response_id: 1, created_at: 1, item: 1 } satisfies Record<keyof StoredItemRow, 1>)

/** `metric_buckets`' columns (a row is one minute of one instance, key and model: see timeseries.ts). */
export const BUCKET_COLUMNS = Object.keys({
  minute: 1, instance: 1, key_id: 1, model: 1, requests: 1, errors: 1, prompt_tokens: 1, completion_tokens: 1, cost_micros: 1, latency_hist: 1, ttft_hist: 1,
} satisfies Record<keyof BucketRow, 1>)

/** The key of each table written in batches or purged in chunks: a retried batch conflicts on it, a purge deletes by it. */
export const TABLE_KEYS = {
  spend_ledger: 'request_id',
  request_records: 'request_id',
  stored_responses: 'id',
  stored_response_items: 'key_id, item_id',
  image_files: 'id',
  metric_buckets: 'minute, instance, key_id, model',
}

/**
 * The ON CONFLICT clause of a batched insert into `table`: a row whose key is already stored is skipped (a retried
 * batch), or with `replace` takes the stored row's place.
 */
export function onConflict(table: keyof typeof TABLE_KEYS, columns: readonly string[], mode: 'skip' | 'replace' = 'skip'): string {
  const key = TABLE_KEYS[table]
  if (mode === 'skip') return `ON CONFLICT (${key}) DO NOTHING`
  const keyColumns = key.split(', ')
  return `ON CONFLICT (${key}) DO UPDATE SET ${columns.filter((c) => !keyColumns.includes(c)).map((c) => `${c} = excluded.${c}`).join(', ')}`
}
