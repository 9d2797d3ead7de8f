import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import OpenAI from 'openai'
import { adminClient } from '../helpers/admin-client.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { MASTER_KEY } from '../helpers/gateway.ts'
import { startProcess, stopProcess, type RunningGateway } from '../helpers/process.ts'

/**
 * Behind an HTTP proxy (HTTP_PROXY / HTTPS_PROXY, read once at start), every upstream call goes through fetch, which
 * speaks to proxies: streamed ones included, which otherwise take the gateway's own connections (src/core/http1.ts),
 * and those would go around the proxy to the provider directly.
 */
let fake: FakeOpenAI
let proxy: ReturnType<typeof Bun.serve>
let gateway: RunningGateway
let dataDir: string
let client: OpenAI
/** What reached the proxy: the request line's absolute URL and the coding asked for. */
const proxied: { url: string; acceptEncoding: string | null }[] = []

beforeAll(async () => {
  fake = await startFakeOpenAI()
  // A forward proxy: the request line carries the absolute URL, which it fetches (this test process has no proxy set).
  proxy = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (request) => {
      proxied.push({ url: request.url, acceptEncoding: request.headers.get('accept-encoding') })
      const headers = new Headers(request.headers)
      headers.delete('host')
      return fetch(request.url, { method: request.method, headers, body: request.body, redirect: 'manual' })
    },
  })
  dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-proxy-'))
  gateway = await startProcess(
    { CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER_KEY, CONDUIT_WORKERS: '1', HTTP_PROXY: `http://127.0.0.1:${proxy.port}` },
    [],
    ['bun', 'src/main.ts'],
  )
  for (const stream of [gateway.proc.stdout, gateway.proc.stderr] as ReadableStream<Uint8Array>[]) void Array.fromAsync(stream)
  const admin = adminClient(gateway.origin)
  await admin('POST', '/providers', { name: 'fake-openai', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await admin('POST', '/models', { name: 'my-gpt4', targets: [{ provider: 'fake-openai', model: 'gpt-4o' }] })
  const { key } = (await admin('POST', '/keys', { name: 'proxied' })) as { key: string }
  client = new OpenAI({ apiKey: key, baseURL: `${gateway.origin}/v1`, maxRetries: 0 })
}, 30_000)

afterAll(async () => {
  if (gateway) await stopProcess(gateway.proc)
  proxy?.stop(true)
  fake?.stop()
  rmSync(dataDir, { recursive: true, force: true })
})

test('a whole answer and a streamed one both go through the proxy', async () => {
  const whole = await client.chat.completions.create({ model: 'my-gpt4', messages: [{ role: 'user', content: 'Hi' }] })
  expect(whole.choices[0]!.message.content).toBe('Hello from fake OpenAI! 你好，世界 🌍✨')

  const stream = await client.chat.completions.create({ model: 'my-gpt4', messages: [{ role: 'user', content: 'Hi' }], stream: true })
  let text = ''
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
  expect(text).toBe('Hello from fake OpenAI! 你好，世界 🌍✨')

  const chat = `${fake.url}/chat/completions`
  // Both reached the provider by way of the proxy, as fetch sends them (its codings, not the own client's identity).
  expect(proxied).toEqual([
    { url: chat, acceptEncoding: 'gzip, deflate, br, zstd' },
    { url: chat, acceptEncoding: 'gzip, deflate, br, zstd' },
  ])
  expect(fake.requests.map((r) => r.body.stream ?? false)).toEqual([false, true])
})
