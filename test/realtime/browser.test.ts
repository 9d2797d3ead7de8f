import { afterAll, beforeAll, expect, test } from 'bun:test'
import { chromium, type Browser } from 'playwright-core'
import { CHROMIUM } from '../ui/browser.ts'
import { realtimeSetup, type RealtimeSetup } from './setup.ts'
import { selfSignedCert } from '../helpers/tls.ts'

/**
 * A real Chromium page as a browser client: a tiny page server (its own origin) mints an ephemeral secret with the
 * real key, server-side; the page gets only the secret and opens wss://gateway/v1/realtime with it in the
 * `openai-insecure-api-key.` subprotocol, as OpenAI's browser SDK does. Browsers drop a handshake whose offered
 * subprotocols get no answer: the gateway must answer `realtime`.
 */
let s: RealtimeSetup
let browser: Browser
let page: ReturnType<typeof Bun.serve>
let key: string

const APP = `
const out = document.getElementById('out')
const { value } = await (await fetch('/token', { method: 'POST' })).json()
const ws = new WebSocket(document.body.dataset.gateway + '/v1/realtime?model=voice', ['realtime', 'openai-insecure-api-key.' + value])
let transcript = ''
ws.onmessage = (message) => {
  const event = JSON.parse(message.data)
  if (event.type === 'session.created') {
    out.dataset.model = event.session.model
    out.dataset.protocol = ws.protocol
    ws.send(JSON.stringify({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello?' }] } }))
    ws.send(JSON.stringify({ type: 'response.create', response: { output_modalities: ['text'] } }))
  }
  if (event.type === 'response.output_text.delta') transcript += event.delta
  if (event.type === 'response.done') {
    out.textContent = transcript
    ws.close(1000, 'done')
  }
}
ws.onerror = () => (out.textContent = 'websocket error')
`

beforeAll(async () => {
  const tls = selfSignedCert()
  ;[s, browser] = await Promise.all([realtimeSetup({ tls }), chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--ignore-certificate-errors'] })])
  key = await s.key()
  const gateway = s.wsOrigin
  page = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    routes: {
      // No inline script: the page loads its module from the same origin.
      '/': () => new Response(`<!doctype html><html><body data-gateway="${gateway}"><p id="out">waiting</p><script type="module" src="/app.js"></script></body></html>`, { headers: { 'content-type': 'text/html' } }),
      '/app.js': () => new Response(APP, { headers: { 'content-type': 'text/javascript' } }),
      // The page's backend holds the real key; the browser only ever sees the short-lived secret.
      '/token': {
        POST: async () => {
          const res = await fetch(`${s.origin}/v1/realtime/client_secrets`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ session: { type: 'realtime', model: 'voice', instructions: 'Answer briefly.' } }),
            tls: { rejectUnauthorized: false },
          } as RequestInit)
          const body: any = await res.json()
          return Response.json({ value: body.value })
        },
      },
    },
  })
}, 30_000)
afterAll(async () => {
  await browser?.close()
  page?.stop(true)
  await s?.close()
})

test('a Chromium page talks to the gateway with an ephemeral secret in the subprotocol', async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  const tab = await context.newPage()
  const problems: string[] = []
  tab.on('pageerror', (error) => problems.push(error.message))
  await tab.goto(`http://127.0.0.1:${page.port}/`)
  const out = tab.locator('#out')
  await expect(out).toBeDefined()
  await tab.waitForFunction("document.getElementById('out').textContent !== 'waiting'", undefined, { timeout: 10_000 })
  expect(await out.textContent()).toBe('Hello from the fake realtime model.')
  expect(await out.getAttribute('data-model')).toBe('voice')
  expect(await out.getAttribute('data-protocol')).toBe('realtime')
  expect(problems).toEqual([])
  // The secret's session carried the settings the page's backend chose.
  const upstream = s.fake.sessions.at(-1)!
  expect(upstream.events[0]).toMatchObject({ type: 'session.update', session: { instructions: 'Answer briefly.' } })
  await context.close()
})
