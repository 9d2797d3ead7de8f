import { afterAll, beforeAll, expect, test } from 'bun:test'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

/**
 * Secrets never reach a log line, at the most verbose level, through every path that logs: requests,
 * refusals, upstream errors that echo the key, plugin failures and unhandled errors.
 */
const UPSTREAM_SECRET = 'sk-upstream-secret-abcdefghijklmnop'
const logs = { level: 'debug', lines: [] as string[] }
let fake: FakeOpenAI
let gw: TestGateway
let key: string

beforeAll(async () => {
  fake = await startFakeOpenAI({ apiKey: 'sk-the-fake-accepts-only-this' })
  gw = await startGateway(
    {
      plugins: [
        {
          use: {
            name: 'leaky',
            version: '1',
            apiVersion: 1,
            setup: (api) => ({
              onRequestBody(ctx) {
                // A careless plugin: logs the headers it sees, then fails with the key in its message.
                api.log.info({ headers: ctx.request.headers }, 'seen headers')
                if (JSON.stringify(ctx.body).includes('crash')) throw new Error(`bad key ${ctx.request.headers.get('authorization')}`)
              },
            }),
          },
          failureMode: 'open',
        },
      ],
    },
    logs,
  )
  await gw.admin('POST', '/providers', { name: 'wrong', type: 'openai', base_url: fake.url, api_key: UPSTREAM_SECRET })
  await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'wrong', model: 'gpt-4o' }] })
  key = (await gw.admin('POST', '/keys', { name: 'k' })).key
})
afterAll(async () => {
  await gw.close()
  fake.stop()
})

test('no virtual key, master key or provider secret appears in any log line', async () => {
  const call = (content: string, headers: Record<string, string>) =>
    fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }] }),
    })
  // The fake rejects our provider key with OpenAI's message, which quotes the key back.
  const rejected = await call('hi', { authorization: `Bearer ${key}` })
  expect(rejected.status).toBe(502)
  // …and the client never sees any part of the provider key.
  expect(await rejected.text()).not.toMatch(/sk-upst|mnop/)
  // The leaky plugin fails open, so the request goes on and the provider refuses the gateway's key.
  expect((await call('crash', { 'x-api-key': key })).status).toBe(502)
  await call('hi', { authorization: 'Bearer condt_not_a_real_key_but_long_enough' })
  await Bun.sleep(50) // let the batched writer flush

  const text = logs.lines.join('')
  expect(logs.lines.length).toBeGreaterThan(3)
  expect(text).toContain('seen headers')
  for (const secret of [key, UPSTREAM_SECRET, 'test-master-key-0123456789', 'condt_not_a_real_key_but_long_enough']) {
    expect(text).not.toContain(secret)
  }
})
