import { usd } from '../../src/ui/format.ts'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { DEFAULT_API_KEY, DEFAULT_REPLY, startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'
import { PHONE, go, launch, openPage, signIn, type Browser, type Page } from './browser.ts'

/**
 * The whole flow in a real Chromium: sign in; create a provider, a model and a key through the forms;
 * copy the key and call the gateway with the openai SDK through a fake upstream; see the request on Requests
 * and the spend on Overview and Usage; disable the key and see the next call refused; sign out and see the
 * admin API refuse the old cookie. The key is named like an XSS probe all the way through; the phone width and
 * dark mode get their own pass.
 */
const XSS = '<img src=x onerror=alert(1)>'
const PROVIDER = 'fake-openai'
const MODEL = 'chat-model'

let browser: Browser
let fake: FakeOpenAI
let gw: TestGateway
let page: Page
let problems: string[]
let virtualKey = ''
let oldCookie = ''

beforeAll(async () => {
  ;[browser, fake, gw] = await Promise.all([launch(), startFakeOpenAI(), startGateway()])
  ;({ page, problems } = await openPage(browser, gw.origin))
})

afterAll(async () => {
  await browser?.close()
  await gw?.close()
  await fake?.stop()
})

/** The writers batch off the request path; the test waits for them instead of for their timers. */
const settle = async () => {
  await gw.gateway.records!.flush()
  await gw.gateway.timeseries.flush()
}

const client = () => new OpenAI({ apiKey: virtualKey, baseURL: gw.baseURL, maxRetries: 0 })

describe('the console, end to end', () => {
  test('a wrong key is refused with a message on the page; the master key signs in to an HttpOnly, SameSite=Strict cookie and nothing in storage', async () => {
    await page.goto('/ui/')
    expect(await page.title()).toBe('Conduit')
    await page.getByLabel('Master key or virtual key').fill('not-the-master-key')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await expect(page.getByRole('alert').textContent()).resolves.toContain('That key is not valid')

    await signIn(page)
    const [cookie] = await page.context().cookies()
    expect(cookie).toMatchObject({ name: 'conduit_session', httpOnly: true, sameSite: 'Strict', path: '/', secure: false })
    expect(cookie!.value).not.toContain(MASTER_KEY)
    oldCookie = `${cookie!.name}=${cookie!.value}`
    const storage = await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }))
    expect(storage).toBe('{"local":{},"session":{}}')
    expect(await page.content()).not.toContain(MASTER_KEY)
  }, 20_000)

  test('a provider through its form (the API key write-only, last four shown), and its Test action reports the latency', async () => {
    await go(page, 'Providers')
    await page.getByRole('button', { name: 'New provider' }).click()
    const dialog = page.getByRole('dialog', { name: 'New provider' })
    await dialog.getByLabel('Name').fill(PROVIDER)
    await dialog.getByLabel('Type').selectOption('openai')
    await dialog.getByLabel('Base URL').fill(fake.url)
    await dialog.getByLabel('API key').fill(DEFAULT_API_KEY)
    await dialog.getByRole('button', { name: 'Create provider' }).click()
    const row = page.getByRole('row', { name: new RegExp(PROVIDER) })
    await expect(row.textContent()).resolves.toContain(`…${DEFAULT_API_KEY.slice(-4)}`)
    expect(await page.content()).not.toContain(DEFAULT_API_KEY)

    await page.getByRole('button', { name: `Test ${PROVIDER}` }).click()
    const test = page.getByRole('dialog', { name: `Test ${PROVIDER}` })
    await test.getByLabel('Upstream model').fill('gpt-4o-mini')
    await test.getByRole('button', { name: 'Run test' }).click()
    // The status region is there from the start ("Testing…"): wait for the answer, not for the region.
    await test.getByRole('status').getByText(/^OK: gpt-4o-mini answered in (\d+ ms|\d+\.\d\d s)\.$/).waitFor()
    await test.getByRole('button', { name: 'Close' }).click()
  }, 20_000)

  test('a model through its form: target, weight, priority, price, limits, routing', async () => {
    await go(page, 'Models')
    await page.getByRole('button', { name: 'New model' }).click()
    const dialog = page.getByRole('dialog', { name: 'New model' })
    await dialog.getByLabel('Model name').fill(MODEL)
    await dialog.getByLabel('Target 1 provider').selectOption({ label: PROVIDER })
    await dialog.getByLabel('Target 1 upstream model').fill('gpt-4o-mini')
    await dialog.getByLabel('Target 1 priority').fill('1')
    // Dear on purpose, so a handful of tokens is visible spend.
    await dialog.getByLabel('Target 1 input price (USD per 1M tokens)').fill('1000')
    await dialog.getByLabel('Target 1 output price (USD per 1M tokens)').fill('2000')
    await dialog.getByLabel('Model rpm').fill('600')
    await dialog.getByLabel('Routing strategy').selectOption('least-busy')
    await dialog.getByRole('button', { name: 'Create model' }).click()
    await expect(page.getByRole('row', { name: new RegExp(MODEL) }).textContent()).resolves.toContain('least-busy')
    const [stored] = (await gw.admin('GET', '/models')).data
    expect(stored).toMatchObject({ name: MODEL, limits: { rpm: 600 }, routing: { strategy: 'least-busy' } })
    expect(stored.targets[0]).toMatchObject({ model: 'gpt-4o-mini', priority: 1, price: { input: 1000, output: 2000 } })
  }, 20_000)

  test('a model saved unchanged in its form keeps what the form does not show: image and audio prices, ipm', async () => {
    const price = { input: 0, output: 0, images: { 'hd/1024x1792': 0.12 }, image: 0.04, audio_hour: 0.36 }
    const { id } = await gw.admin('POST', '/models', { name: 'painter-ui', targets: [{ provider: PROVIDER, model: 'dall-e-3', price }], limits: { ipm: 10 } })
    await page.reload() // the list as it is now
    await go(page, 'Models')
    await page.getByRole('button', { name: 'Edit painter-ui' }).click()
    const dialog = page.getByRole('dialog', { name: 'Edit model painter-ui' })
    await dialog.getByRole('button', { name: 'Save' }).click()
    await dialog.waitFor({ state: 'detached' })
    const saved = await gw.admin('GET', `/models/${id}`)
    expect(saved.targets[0].price).toEqual(price)
    expect(saved.limits).toEqual({ ipm: 10 })

    // A price with one side left empty is refused, not saved with that side at $0.
    await page.getByRole('button', { name: 'Edit painter-ui' }).click()
    await dialog.getByLabel('Target 1 input price (USD per 1M tokens)').fill('')
    await dialog.getByLabel('Target 1 output price (USD per 1M tokens)').fill('2')
    await dialog.getByRole('button', { name: 'Save' }).click()
    await dialog.getByText('Target 1: fill in both the input and the output price (0 is free), or neither.').waitFor()
    await dialog.getByRole('button', { name: 'Cancel' }).click()
    expect((await gw.admin('GET', `/models/${id}`)).targets[0].price).toEqual(price)
    await gw.admin('DELETE', `/models/${id}`)
  }, 20_000)

  test('a key saved unchanged in its form keeps its expiry to the second', async () => {
    const { id } = await gw.admin('POST', '/keys', { name: 'expiring-ui', expires_at: '2031-01-01T12:34:56Z' })
    await page.reload()
    await go(page, 'Keys')
    await page.getByRole('button', { name: 'Edit expiring-ui' }).click()
    const dialog = page.getByRole('dialog', { name: 'Edit key expiring-ui' })
    await dialog.getByRole('button', { name: 'Save' }).click()
    await dialog.waitFor({ state: 'detached' })
    expect((await gw.admin('GET', `/keys/${id}`)).expires_at).toBe(Date.parse('2031-01-01T12:34:56Z') / 1000)
    await gw.admin('DELETE', `/keys/${id}`)
  }, 20_000)

  test('a key named like an XSS probe: shown once with a warning, copied with the Copy button; its name stays text', async () => {
    await go(page, 'Keys')
    await page.getByRole('button', { name: 'New key' }).click()
    const form = page.getByRole('dialog', { name: 'New key' })
    await form.getByLabel('Key name').fill(XSS)
    await form.getByLabel('Budget (USD)').fill('50')
    await form.getByRole('button', { name: 'Create key' }).click()
    const reveal = page.getByRole('dialog', { name: 'Key created' })
    await expect(reveal.getByRole('alert').textContent()).resolves.toContain('shown only this once')
    const shown = (await reveal.getByTestId('new-key').textContent())!
    await reveal.getByRole('button', { name: 'Copy' }).click()
    // The copy is asynchronous (the clipboard API): wait for its confirmation rather than read it at once.
    await reveal.getByRole('status').filter({ hasText: 'Copied to the clipboard.' }).waitFor()
    virtualKey = await page.evaluate(() => (globalThis as any).navigator.clipboard.readText())
    expect(virtualKey).toBe(shown)
    expect(virtualKey).toMatch(/^condt_/)
    await reveal.getByRole('button', { name: 'I have copied it' }).click()

    // The name is the literal characters, in a cell, with no element made of them.
    const cell = page.getByRole('cell', { name: XSS, exact: true })
    await expect(cell.textContent()).resolves.toBe(XSS)
    expect(await page.locator('main img').count()).toBe(0)
    // The plaintext is gone from the page once the dialog is closed.
    expect(await page.content()).not.toContain(virtualKey)
  }, 20_000)

  test('the copied key calls /v1/chat/completions with the openai SDK through the fake upstream, streamed and not', async () => {
    const openai = client()
    const completion = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], user: 'ui-user' })
    expect(completion.choices[0]!.message.content).toBe(DEFAULT_REPLY)
    const stream = openai.chat.completions.stream({ model: MODEL, messages: [{ role: 'user', content: 'Stream please' }] })
    const final = await stream.finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(DEFAULT_REPLY)
    // A streamed call is recorded as its stream closes, which can be just after the client has its last chunk.
    for (let tries = 0; (await gw.admin('GET', '/requests')).data.length < 2 && tries < 50; tries++) {
      await settle()
      await Bun.sleep(20)
    }
    await settle()
  }, 20_000)

  test('Requests lists both calls with key, model, provider, status, latency, TTFT, tokens, cost; the detail view opens', async () => {
    await go(page, 'Requests')
    const rows = page.locator('tbody tr')
    await rows.nth(1).waitFor() // the list loads after the heading shows
    await expect(rows.count()).resolves.toBe(2)
    const first = await rows.first().textContent()
    for (const text of [XSS, MODEL, PROVIDER, '200']) expect(first).toContain(text)
    expect(first).toMatch(/\$0\.\d{2}/)
    await page.getByLabel('Status').selectOption('5xx')
    await page.getByText('No requests match.').waitFor()
    await page.getByLabel('Status').selectOption('2xx')
    await rows.nth(1).waitFor()
    await expect(rows.count()).resolves.toBe(2)
    await rows.first().getByRole('link').click()
    await page.getByRole('heading', { level: 1, name: 'Request' }).waitFor()
    const details = (await page.locator('dl.details').textContent())!
    expect(details).toContain('gpt-4o-mini')
    expect(details).toContain('Time to first token')
    expect(details).toContain('127.0.0.1') // the client address the recorder noted
    await expect(page.getByText('Bodies are not recorded.').count()).resolves.toBe(1)
    // One step back is the list (the link was routed twice: Back stayed on the detail).
    await page.goBack()
    await page.getByRole('heading', { level: 1, name: 'Requests' }).waitFor()
  }, 20_000)

  test('a Delete refused for one row does not show its refusal for the next row', async () => {
    const { id } = await gw.admin('POST', '/providers', { name: 'spare-ui', type: 'openai', api_key: 'sk-spare' })
    await page.reload()
    await go(page, 'Providers')
    const dialog = page.getByRole('dialog', { name: 'Delete provider' })
    await page.getByRole('button', { name: `Delete ${PROVIDER}` }).click()
    await dialog.getByRole('button', { name: 'Delete' }).click()
    await dialog.getByRole('alert').waitFor() // in use by a model
    await dialog.getByRole('button', { name: 'Cancel' }).click()
    await page.getByRole('button', { name: 'Delete spare-ui' }).click()
    await dialog.getByText('"spare-ui"').waitFor()
    await expect(dialog.getByRole('alert').count()).resolves.toBe(0)
    await dialog.getByRole('button', { name: 'Cancel' }).click()
    await gw.admin('DELETE', `/providers/${id}`)
  }, 20_000)

  test('the spend shows on Overview (charts drawn) and on Usage (chart, table, CSV export)', async () => {
    const { total } = await gw.admin('GET', '/usage')
    expect(Number(total.cost_usd)).toBeGreaterThan(0)
    const spend = usd(total.cost_usd)

    await go(page, 'Overview')
    // The page draws in steps after its heading: wait for each thing to show, then look at it.
    await page.getByTestId('overview-spend').filter({ hasText: spend }).waitFor()
    await page.locator('figure.chart canvas').nth(5).waitFor()
    await expect(page.locator('figure.chart canvas').count()).resolves.toBe(6)
    for (const title of ['Requests per second', 'Tokens per second', 'Error rate', 'Latency', 'Time to first token']) {
      await page.getByRole('figure', { name: title, exact: true }).waitFor()
    }
    await page.getByLabel('Time range').selectOption('day')
    await page.getByTestId('overview-spend').filter({ hasText: spend }).waitFor()

    await go(page, 'Usage')
    await page.getByTestId('usage-spend').filter({ hasText: spend }).waitFor()
    await expect(page.getByRole('row', { name: new RegExp(XSS.replace(/[()]/g, '\\$&')) }).textContent()).resolves.toContain(spend)
    await page.getByRole('figure', { name: 'Spend per day (USD)' }).locator('canvas').first().waitFor()
    await page.getByLabel('Group by').selectOption('user')
    await page.getByRole('row', { name: /ui-user/ }).waitFor()
    await expect(page.getByRole('row', { name: /ui-user/ }).count()).resolves.toBe(1)
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export CSV' }).click()])
    const csv = await Bun.file((await download.path())!).text()
    expect(csv.split('\r\n')[0]).toBe('user,key,requests,prompt_tokens,completion_tokens,cost_usd,unpriced_requests,audio_seconds,characters,images')
    expect(csv).toMatch(/\r\nui-user,key_[\w-]+,1,/)
    // By key, the key is the row's own column, once, with the name the page shows beside it.
    const byKey = await (await gw.adminRaw('GET', '/usage?format=csv&by=key')).text()
    expect(byKey.split('\r\n')[0]).toBe('key,name,requests,prompt_tokens,completion_tokens,cost_usd,unpriced_requests,audio_seconds,characters,images')
    const names = (await gw.admin('GET', '/keys')).data.map((k: any) => k.name)
    expect(byKey.split('\r\n').slice(1, -1).every((line) => names.some((name: string) => line.includes(name.includes(',') || name.includes('"') ? `"${name.replaceAll('"', '""')}"` : name)))).toBe(true)

    // A range the server refuses shows its error, and no longer the totals of the range before.
    await page.getByLabel('From').fill('2099-01-02')
    await page.getByRole('alert').filter({ hasText: "'from' must be before 'to'." }).waitFor()
    await expect(page.getByTestId('usage-spend').count()).resolves.toBe(0)
    await expect(page.getByRole('row', { name: /ui-user/ }).count()).resolves.toBe(0)
  }, 20_000)

  test('the Playground streams a reply through the gateway with a chosen key', async () => {
    await go(page, 'Playground')
    await page.getByLabel('Virtual key').fill(virtualKey)
    await page.getByLabel('Model').selectOption(MODEL)
    await page.getByLabel('Message').fill('Hi from the playground')
    await page.getByRole('button', { name: 'Send' }).click()
    await page.locator('.message.assistant', { hasText: DEFAULT_REPLY }).waitFor()
  }, 20_000)

  test('a virtual key’s read-only session has no Providers page, even by its URL', async () => {
    const own = await openPage(browser, gw.origin)
    try {
      await signIn(own.page, virtualKey)
      await expect(own.page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Providers' }).count()).resolves.toBe(0)
      await own.page.goto('/ui/providers')
      await own.page.getByText('Providers are managed with the master key.').waitFor()
      await expect(own.page.getByRole('button', { name: 'New provider' }).count()).resolves.toBe(0)
    } finally {
      await own.context.close()
    }
  }, 20_000)

  test('a sign-in in another tab of the browser: this tab shows whose session it now is, not the identity it started with', async () => {
    const { key } = await gw.admin('POST', '/keys', { name: 'second-tab' })
    const other = await openPage(browser, gw.origin)
    try {
      await signIn(other.page)
      const tab = await other.context.newPage()
      await tab.goto('/ui/')
      await tab.getByRole('navigation', { name: 'Main' }).waitFor()
      await tab.getByRole('button', { name: 'Sign out' }).click()
      await signIn(tab, key)
      // The first tab reloads and shows the read-only session, not "Administrator" over another key's data.
      await other.page.getByText('Key: second-tab (read-only)').waitFor()
      await expect(other.page.getByText('Administrator').count()).resolves.toBe(0)
    } finally {
      await other.context.close()
    }
  }, 20_000)

  test('a session the server has ended brings the sign-in back, saying why', async () => {
    const other = await openPage(browser, gw.origin)
    try {
      await signIn(other.page)
      await other.context.clearCookies() // as when the session expires: the next call is refused with a 401
      // That call is the Keys page's, or one the Overview was still making: then the sign-in is back before the click.
      await other.page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Keys' }).click({ timeout: 3_000 }).catch(() => {})
      await other.page.getByRole('status').filter({ hasText: 'Your session has ended: it expired or was signed out.' }).waitFor()
      await other.page.getByLabel('Master key or virtual key').waitFor()
      expect(other.problems).toEqual([])
    } finally {
      await other.context.close()
    }
  }, 20_000)

  test('disabling the key in the UI refuses its next call', async () => {
    await go(page, 'Keys')
    await page.getByRole('button', { name: `Disable ${XSS}` }).click()
    await page.getByRole('button', { name: `Enable ${XSS}` }).waitFor()
    await expect(page.locator('tbody .badge').first().textContent()).resolves.toBe('disabled')
    const refused = await client()
      .chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'again' }] })
      .then(() => null, (error) => error)
    expect(refused?.status).toBe(401)
  }, 20_000)

  test('signing out revokes the session: the admin API refuses the old cookie', async () => {
    const before = await fetch(`${gw.origin}/admin/v1/keys`, { headers: { cookie: oldCookie } })
    expect(before.status).toBe(200)
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByLabel('Master key or virtual key').waitFor()
    const after = await fetch(`${gw.origin}/admin/v1/keys`, { headers: { cookie: oldCookie } })
    expect(after.status).toBe(401)
    expect(((await after.json()) as any).error.code).toBe('session_expired')
    expect(problems).toEqual([])
  }, 20_000)

  test('at 390 px, in dark mode: every page fits the width, the navigation stays reachable, tables scroll in place', async () => {
    const phone = await openPage(browser, gw.origin, PHONE, 'dark')
    await signIn(phone.page)
    const background = await phone.page.evaluate(() => (globalThis as any).getComputedStyle((globalThis as any).document.body).backgroundColor)
    expect(background).toBe('rgb(17, 20, 24)') // the dark palette
    for (const label of ['Overview', 'Providers', 'Models', 'Keys', 'Usage', 'Requests', 'Playground']) {
      await go(phone.page, label)
      const width = await phone.page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth)
      expect({ label, width }).toEqual({ label, width: PHONE.width })
    }
    // Keyboard alone: from a fresh load, Tab reaches the navigation's Usage link and Enter follows it.
    await phone.page.goto('/ui/keys')
    await phone.page.getByRole('heading', { level: 1, name: 'Keys' }).waitFor()
    let focused = ''
    for (let presses = 0; presses < 12 && focused !== 'Usage'; presses++) {
      await phone.page.keyboard.press('Tab')
      focused = await phone.page.evaluate(() => (globalThis as any).document.activeElement?.textContent ?? '')
    }
    expect(focused).toBe('Usage')
    await phone.page.keyboard.press('Enter')
    await phone.page.getByRole('heading', { level: 1, name: 'Usage' }).waitFor()
    expect(phone.problems).toEqual([])
    await phone.context.close()
  }, 30_000)
})
