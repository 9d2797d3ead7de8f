import { afterAll, beforeAll, expect, test } from 'bun:test'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { go, launch, openPage, signIn, type Browser } from './browser.ts'
import { seedHistory } from './seed.ts'

/**
 * How long the Overview takes with 100,000 request records in the store (spread over the last day, as 1-minute
 * buckets too), in Chromium, from the click on "Overview" to the totals and all six charts drawn; the Requests
 * page's first page as well. Prints the figures; the bounds only catch a collapse (a scan of the records table).
 */
const RECORDS = 100_000
let browser: Browser
let gw: TestGateway

beforeAll(async () => {
  ;[browser, gw] = await Promise.all([launch(), startGateway()])
  const keys = await Promise.all(['team-a', 'team-b', 'batch'].map((name) => gw.admin('POST', '/keys', { name })))
  const started = performance.now()
  await seedHistory(gw, { requests: RECORDS, spanMs: 86_400_000, keys, models: ['gpt-4o-mini', 'claude-sonnet'] })
  console.log(`seeded ${RECORDS} request records and a day of buckets in ${Math.round(performance.now() - started)} ms`)
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await gw?.close()
})

test(`the Overview loads with ${RECORDS.toLocaleString('en-US')} request records in the store`, async () => {
  const [{ count }] = await gw.gateway.store.sql`SELECT COUNT(*) AS count FROM request_records`
  expect(Number(count)).toBe(RECORDS)
  const { page, problems } = await openPage(browser, gw.origin)
  await signIn(page) // lands on the Overview once (bundle, fonts, first query warm)
  await page.locator('figure.chart canvas').nth(5).waitFor()

  const timings: Record<string, number> = {}
  for (const range of ['hour', 'day'] as const) {
    await go(page, 'Keys')
    const started = performance.now()
    await go(page, 'Overview')
    if (range === 'day') await page.getByLabel('Time range').selectOption('day')
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('figure.chart canvas').length === 6 && (globalThis as any).document.querySelector('[data-testid="overview-spend"]')?.textContent?.includes('$'))
    // The day's totals count every seeded request (the first tile is Requests).
    if (range === 'day') await page.waitForFunction((n) => ((globalThis as any).document.querySelector('.stat .value')?.textContent ?? '').replaceAll(',', '') === String(n), RECORDS)
    timings[`overview (last ${range})`] = Math.round(performance.now() - started)
  }
  const api = performance.now()
  const now = Math.floor(Date.now() / 1000)
  await gw.admin('GET', `/metrics/timeseries?from=${now - 86_400}&to=${now + 1}&step=600`)
  timings['GET /metrics/timeseries (day)'] = Math.round(performance.now() - api)

  const started = performance.now()
  await go(page, 'Requests')
  await page.locator('tbody tr').nth(49).waitFor()
  timings['requests page (first 50)'] = Math.round(performance.now() - started)
  const paged = performance.now()
  await page.getByRole('button', { name: 'Load more' }).click()
  await page.locator('tbody tr').nth(99).waitFor()
  timings['requests page (next 50, cursor)'] = Math.round(performance.now() - paged)

  console.log(`UI load times with ${RECORDS} request records:`, JSON.stringify(timings))
  expect(problems).toEqual([])
  for (const [what, ms] of Object.entries(timings)) expect({ what, fast: ms < 5_000 }).toEqual({ what, fast: true })
}, 60_000)
