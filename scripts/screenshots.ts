/**
 * `bun scripts/screenshots.ts` → docs/screenshots/<page>-desktop.png (1280×800) and <page>-phone.png (390 px wide)
 * for every page of the Web UI, in light mode (and the Overview in dark mode too). A gateway runs in-process on
 * a temporary folder with a fake OpenAI upstream, a few providers, models and keys, some real traffic and a day
 * of seeded history (see test/ui/seed.ts), so the pages show what a running gateway shows.
 */
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import { startFakeOpenAI } from '../test/helpers/fake-openai.ts'
import { startGateway } from '../test/helpers/gateway.ts'
import { DESKTOP, PHONE, go, launch, openPage, signIn, type Page } from '../test/ui/browser.ts'
import { seedHistory } from '../test/ui/seed.ts'

process.env.CONDUIT_EGRESS_ALLOW ??= '127.0.0.0/8'
const OUT = path.resolve(import.meta.dir, '../docs/screenshots')
mkdirSync(OUT, { recursive: true })

const fake = await startFakeOpenAI()
const gw = await startGateway({ requestLog: { retentionDays: 7, recordBodies: true } })
const browser = await launch()
try {
  await gw.admin('POST', '/providers', { name: 'openai-main', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'groq-fallback', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test-2' })
  await gw.admin('POST', '/models', {
    name: 'gpt-4o-mini',
    targets: [
      { provider: 'openai-main', model: 'gpt-4o-mini', weight: 3, price: { input: 0.15, output: 0.6 } },
      { provider: 'groq-fallback', model: 'llama-3.1-8b-instant', weight: 1, priority: -1, price: { input: 0.05, output: 0.08 } },
    ],
    limits: { rpm: 600 },
    routing: { strategy: 'weighted', retries: 2 },
  })
  await gw.admin('POST', '/models', { name: 'claude-sonnet', targets: [{ provider: 'openai-main', model: 'gpt-4o', price: { input: 3, output: 15 } }], routing: { strategy: 'lowest-latency' } })
  const keys = [
    await gw.admin('POST', '/keys', { name: 'team-a', budget: { usd: 200, period: 'monthly' }, rpm: 120 }),
    await gw.admin('POST', '/keys', { name: 'team-b', allowed_models: ['gpt-4o-mini'], budget: { usd: 25, period: 'daily' } }),
    await gw.admin('POST', '/keys', { name: 'batch-jobs', tpm: 200_000 }),
  ]
  await gw.admin('PATCH', `/keys/${keys[2].id}`, { enabled: false })
  await seedHistory(gw, { requests: 20_000, spanMs: 86_400_000, keys, models: ['gpt-4o-mini', 'claude-sonnet'], ledger: true })
  for (const content of ['Summarise this ticket', 'Write a haiku']) {
    await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys[0].key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], user: 'alice@example.com' }),
    })
  }
  await gw.gateway.records!.flush()
  await gw.gateway.timeseries.flush()
  await gw.gateway.ledger.flush()

  const shoot = async (page: Page, name: string) => {
    await page.waitForLoadState('networkidle')
    await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: false })
    console.log(`docs/screenshots/${name}.png`)
  }
  for (const [device, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
    const { page, context } = await openPage(browser, gw.origin, viewport)
    await page.goto('/ui/')
    await shoot(page, `sign-in-${device}`)
    await signIn(page)
    await page.locator('figure.chart canvas').nth(5).waitFor()
    await page.getByLabel('Time range').selectOption('day')
    await page.waitForTimeout(300)
    await shoot(page, `overview-${device}`)
    for (const label of ['Providers', 'Models', 'Keys', 'Usage', 'Requests']) {
      await go(page, label)
      await page.waitForTimeout(200)
      await shoot(page, `${label.toLowerCase()}-${device}`)
    }
    await page.locator('tbody tr a').first().click()
    await page.getByRole('heading', { level: 1, name: 'Request' }).waitFor()
    await shoot(page, `request-detail-${device}`)
    await go(page, 'Playground')
    await page.getByLabel('Virtual key').fill(keys[0].key)
    await page.getByLabel('Message').fill('Say hello in two languages')
    await page.getByRole('button', { name: 'Send' }).click()
    await page.locator('.message.assistant', { hasText: 'Hello' }).waitFor()
    await page.getByLabel('Virtual key').fill('')
    await shoot(page, `playground-${device}`)
    await go(page, 'Keys')
    await page.getByRole('button', { name: 'New key' }).click()
    await page.getByLabel('Key name').fill(`new-service-${device}`)
    await page.getByRole('button', { name: 'Create key' }).click()
    await page.getByRole('dialog', { name: 'Key created' }).waitFor()
    await shoot(page, `key-created-${device}`)
    await context.close()
  }
  const dark = await openPage(browser, gw.origin, DESKTOP, 'dark')
  await signIn(dark.page)
  await dark.page.locator('figure.chart canvas').nth(5).waitFor()
  await dark.page.getByLabel('Time range').selectOption('day')
  await dark.page.waitForTimeout(300)
  await shoot(dark.page, 'overview-desktop-dark')
} finally {
  await browser.close()
  await gw.close()
  await fake.stop()
}
