import { badRequest } from '../plugin-sdk/errors.ts'
import { microsToUsd } from '../pricing/prices.ts'
import type { Store, UsageTotals } from '../store/store.ts'
import { HOUR_MS } from '../store/spend-rollup.ts'

const DAY = 86_400_000
/** 9999-12-31T23:59:59.999Z: the last instant an ISO 8601 date (and our report) can name. */
const LAST_MS = 253_402_300_799_999

/**
 * `from`/`to` as ISO dates or unix seconds between 1970 and 9999; by default the last 30 days up to now. Spend is
 * totalled per hour (spend-rollup.ts), so the range widens to the whole hours (UTC) it touches; the report says so.
 */
export function usageRange(params: URLSearchParams): { from: number; to: number } {
  const parse = (name: string, fallback: number) => {
    const raw = params.get(name)
    if (raw === null || raw === '') return fallback
    const ms = /^\d+$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw)
    if (!Number.isFinite(ms) || ms < 0 || ms > LAST_MS) {
      throw badRequest(`'${name}' must be an ISO 8601 date or unix seconds, between 1970 and 9999.`, name)
    }
    return ms
  }
  const to = parse('to', Date.now() + 1)
  const from = parse('from', Math.max(0, to - 30 * DAY))
  if (from >= to) throw badRequest("'from' must be before 'to'.", 'from')
  return { from: from - (from % HOUR_MS), to: Math.ceil(to / HOUR_MS) * HOUR_MS }
}

type Group = 'key' | 'model' | 'provider' | 'day' | 'user'

/**
 * Totals from the spend ledger over a range, for one key or all, grouped the requested ways. `by_user` groups by
 * the request's `user` (null: requests that named none), and over all keys by key and user (each row names its
 * `key`); it lists the USAGE_USER_ROWS dearest users, since a client may send any number of distinct values.
 * `unpriced_requests` counts requests served by a target with no price, recorded at $0.
 */
export async function usageReport(store: Store, range: { from: number; to: number }, keyId: string | null, groups: Group[]) {
  const view = (r: UsageTotals) => ({
    requests: r.requests,
    prompt_tokens: r.prompt_tokens,
    completion_tokens: r.completion_tokens,
    cost_usd: microsToUsd(r.cost_micros),
    unpriced_requests: r.unpriced,
    audio_seconds: r.audio_ms / 1000,
    characters: r.characters,
    images: r.images,
  })
  const [total] = await store.usage('all', range.from, range.to, keyId)
  const report: Record<string, unknown> = {
    object: 'usage',
    from: new Date(range.from).toISOString(),
    to: new Date(range.to).toISOString(),
    total: view(total ?? { bucket: null, requests: 0, prompt_tokens: 0, completion_tokens: 0, cost_micros: 0, unpriced: 0, audio_ms: 0, characters: 0, images: 0 }),
  }
  for (const group of groups) {
    report[`by_${group}`] = (await store.usage(group, range.from, range.to, keyId)).map((r) => ({ [group]: r.bucket, ...(r.key !== undefined ? { key: r.key } : {}), ...view(r) }))
  }
  return report
}
