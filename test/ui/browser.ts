import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { MASTER_KEY } from '../helpers/gateway.ts'

/** Debian's Chromium (.ci/run installs it when missing); CHROMIUM_PATH points elsewhere. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export const launch = (): Promise<Browser> => chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] })

export const DESKTOP = { width: 1280, height: 800 }
export const PHONE = { width: 390, height: 844 }

/**
 * A page that fails the test on what a user would never see reported: an uncaught error, a console error (a CSP
 * violation is one), a file of the page that does not load (the favicon too), or an alert() (the XSS probe's payload).
 */
export async function openPage(browser: Browser, origin: string, viewport = DESKTOP, colorScheme: 'light' | 'dark' = 'light') {
  const context = await browser.newContext({ viewport, colorScheme, baseURL: origin })
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  page.on('console', (message) => {
    // A refused sign-in or admin call is logged by Chromium as a failed resource load: expected.
    if (message.type() === 'error' && !/Failed to load resource/.test(message.text())) problems.push(`console: ${message.text()}`)
  })
  page.on('response', (response) => {
    // Refused API calls are the UI's to report; any other failed load is a broken page.
    const { pathname } = new URL(response.url())
    if (response.status() >= 400 && !/^\/(admin|v1|ui\/api)\//.test(pathname)) problems.push(`load: ${response.status()} ${pathname}`)
  })
  page.on('dialog', (dialog) => {
    problems.push(`dialog: ${dialog.type()} ${dialog.message()}`)
    void dialog.dismiss()
  })
  return { context, page, problems }
}

export async function signIn(page: Page, key = MASTER_KEY) {
  await page.goto('/ui/')
  await page.getByLabel('Master key or virtual key').fill(key)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('navigation', { name: 'Main' }).waitFor()
}

export async function go(page: Page, label: string) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label }).click()
  await page.getByRole('heading', { level: 1, name: label }).waitFor()
}

export type { Browser, BrowserContext, Page }
