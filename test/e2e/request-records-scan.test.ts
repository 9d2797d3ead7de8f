import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { RequestRecordRow } from '../../src/store/request-records.ts'
import { RECORD_SCAN_ROWS } from '../../src/store/store.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/**
 * A filter no index serves (status, user, provider; a model beside a key) examines at most RECORD_SCAN_ROWS records
 * per page: one that few records match read the whole table, on SQLite's event loop. Paging on must still find every
 * match exactly once, newest first, including records that share the millisecond where a page's examination ended.
 */
const COUNT = RECORD_SCAN_ROWS * 2 + 4_321
const NOW = Date.now()
/** The oldest record the first page examines; the records of its millisecond, older ones too, belong to that page. */
const EDGE = COUNT - RECORD_SCAN_ROWS
const RARE = new Set([3, EDGE - (EDGE % 10), EDGE, EDGE + 4, COUNT - 2])

/** Ten records a millisecond (so a page's examination ends inside one), three keys, two models; rare 503s and a rare user. */
function record(i: number): RequestRecordRow {
  return {
    request_id: `req_scan_${String(i).padStart(6, '0')}`,
    created_at: NOW - 60_000_000 + Math.floor(i / 10),
    key_id: `key-${i % 3}`,
    endpoint: 'chat',
    model: i % 2 ? 'm1' : 'm2',
    provider: 'fake',
    upstream_model: 'x',
    status: i % 4_999 === 7 ? 503 : 200,
    error_code: null,
    stream: 0,
    aborted: 0,
    attempts: 1,
    latency_ms: 5,
    ttft_ms: null,
    prompt_tokens: 1,
    completion_tokens: 1,
    cost_micros: 1,
    estimated: 0,
    end_user: RARE.has(i) ? 'rare-user' : null,
    client_ip: '127.0.0.1',
    request_body: null,
  }
}

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`${engine}: request-log filters examine a bounded number of records per page`, () => {
    let gw: TestGateway
    let database: Awaited<ReturnType<typeof createTestDatabase>> | null = null
    const rows = Array.from({ length: COUNT }, (_, i) => record(i))

    beforeAll(async () => {
      if (engine === 'postgres') database = await createTestDatabase()
      gw = await startGateway({ ...(database ? { databaseURL: database.url, encryptionKey: 'records-scan-key' } : {}), requestLog: { retentionDays: 7, recordBodies: false } })
      for (let at = 0; at < rows.length; at += 1_000) await gw.gateway.store.insertRequestRecords(rows.slice(at, at + 1_000))
    }, 60_000)
    afterAll(async () => {
      await gw.close()
      await database?.drop()
    })

    /** Every page of a query: the ids each holds. */
    const walk = async (query: string) => {
      const pages: string[][] = []
      let cursor: string | null = null
      do {
        const page: any = await gw.admin('GET', `/requests?limit=50&${query}${cursor ? `&cursor=${cursor}` : ''}`)
        expect(page.has_more).toBe(page.next_cursor !== null)
        pages.push(page.data.map((r: any) => r.id))
        cursor = page.next_cursor
      } while (cursor)
      return pages
    }
    const newestFirst = (match: (r: RequestRecordRow) => boolean) =>
      rows
        .filter(match)
        .sort((a, b) => b.created_at - a.created_at || (b.request_id < a.request_id ? -1 : 1))
        .map((r) => r.request_id)

    test('status and user: every match once, in order, over pages that each examined at most RECORD_SCAN_ROWS', async () => {
      for (const [query, match] of [
        ['status=5xx', (r) => r.status >= 500],
        ['user=rare-user', (r) => r.end_user === 'rare-user'],
      ] as [string, (r: RequestRecordRow) => boolean][]) {
        const pages = await walk(query)
        expect({ query, ids: pages.flat() }).toEqual({ query, ids: newestFirst(match) })
        // A handful of matches, yet one page per RECORD_SCAN_ROWS records examined: short pages, and more to come.
        expect({ query, pages: pages.length }).toEqual({ query, pages: Math.ceil(COUNT / RECORD_SCAN_ROWS) })
      }
    })

    test('a model beside a key is matched among the key\'s records', async () => {
      const pages = await walk('key=key-1&model=m1&status=200')
      expect(pages.flat()).toEqual(newestFirst((r) => r.key_id === 'key-1' && r.model === 'm1' && r.status === 200))
    }, 30_000)

    test('filters an index serves still fill whole pages, and paging them skips nothing', async () => {
      const pages = await walk('key=key-2')
      expect(pages.slice(0, -1).every((ids) => ids.length === 50)).toBe(true)
      expect(pages.flat()).toEqual(newestFirst((r) => r.key_id === 'key-2'))
    }, 30_000)
  })
}
