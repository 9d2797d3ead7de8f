import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { exchange } from '../helpers/raw-http.ts'
import { startFakeAnthropic, type FakeAnthropic } from '../helpers/fake-anthropic.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

const OPENAI_KEY = 'sk-upstream-test'
const ANTHROPIC_KEY = 'sk-ant-test'

/**
 * Headers a client may send that must never reach a provider: our own namespace (`x-conduit-*`, which the
 * gateway sets on responses and a plugin could trust on requests), the client's network identity as it claims
 * it (`x-forwarded-*`, `forwarded`, `x-real-ip`), its browser session (`cookie`), credentials meant for a
 * proxy, the provider-side account selectors a client could use to bill another organisation or project, and
 * hop-by-hop headers (including one the client names in `Connection`). Each value is unique, so a leak
 * anywhere in the upstream request is found by value.
 */
const SPOOFED: Record<string, string> = {
  'x-conduit-key-id': 'spoof-key-id',
  'x-conduit-provider': 'spoof-provider',
  'x-conduit-cost-usd': 'spoof-cost',
  'x-conduit-admin': 'spoof-admin',
  'x-forwarded-for': '203.0.113.7',
  'x-forwarded-host': 'spoof-forwarded-host.example',
  'x-forwarded-proto': 'spoof-proto',
  'x-real-ip': '203.0.113.8',
  forwarded: 'for=203.0.113.9;host=spoof-forwarded.example',
  cookie: 'session=spoof-cookie',
  'proxy-authorization': 'Basic spoof-proxy-credential',
  'openai-organization': 'org-spoof',
  'openai-project': 'proj_spoof',
  'keep-alive': 'timeout=99, spoof-keep-alive',
  'x-hop-spoof': 'spoof-hop-by-hop',
  te: 'trailers, spoof-te',
  upgrade: 'spoof-upgrade/1',
}

/** What a provider may see: framing and content negotiation, then its own credential and protocol version. */
const TRANSPORT = ['host', 'content-type', 'content-length', 'accept', 'accept-encoding', 'user-agent', 'connection']
const ALLOWED = new Set([...TRANSPORT, 'authorization', 'x-api-key', 'anthropic-version'])

/** The three places a client may put its virtual key. */
const CARRIERS = [
  ['authorization', (key: string) => `Bearer ${key}`],
  ['x-api-key', (key: string) => key],
  ['api-key', (key: string) => key],
] as const

/**
 * One request on a fresh connection, written byte for byte: a fetch client would drop or rewrite some of
 * these headers (hop-by-hop ones, `Connection`) before the gateway ever saw them.
 */
async function rawPost(port: number, path: string, headers: Record<string, string>, body: string): Promise<{ status: number; text: string }> {
  const framing = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }
  const head = Object.entries({ host: `127.0.0.1:${port}`, ...headers, ...framing })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')
  // `Connection: close` ends the exchange; it also names a header, which makes that header hop-by-hop.
  const text = await exchange(port, `POST ${path} HTTP/1.1\r\n${head}connection: close, x-hop-spoof\r\n\r\n${body}`)
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }
}

let openai: FakeOpenAI
let anthropic: FakeAnthropic
let gw: TestGateway
let key: string

beforeAll(async () => {
  openai = await startFakeOpenAI({ apiKey: OPENAI_KEY })
  anthropic = await startFakeAnthropic({ apiKey: ANTHROPIC_KEY })
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'oa', type: 'openai', base_url: openai.url, api_key: OPENAI_KEY })
  await gw.admin('POST', '/providers', { name: 'an', type: 'anthropic', base_url: anthropic.url, api_key: ANTHROPIC_KEY })
  await gw.admin('POST', '/models', { name: 'via-openai', targets: [{ provider: 'oa', model: 'gpt-4o' }] })
  await gw.admin('POST', '/models', { name: 'via-anthropic', targets: [{ provider: 'an', model: 'claude-sonnet-4-5' }] })
  key = (await gw.admin('POST', '/keys', { name: 'se8' })).key
})

afterAll(async () => {
  await gw.close()
  await openai.stop()
  anthropic.stop()
})

const chat = (model: string, stream: boolean) =>
  ['/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 50, stream }] as const
const CALLS = {
  openai: [
    chat('via-openai', false),
    chat('via-openai', true),
    ['/v1/embeddings', { model: 'via-openai', input: 'hi' }],
    ['/v1/completions', { model: 'via-openai', prompt: 'hi' }],
  ],
  anthropic: [chat('via-anthropic', false), chat('via-anthropic', true)],
} as const

/**
 * SE8: for each place the client puts its key, each endpoint and both response modes, the upstream request
 * carries the provider's credential and nothing of the client's: not its key (in any header, the path or the
 * body), not one spoofed header by name or by value. The query string carries the key too, to be sure the
 * path the provider sees is built, not copied.
 */
describe('SE8: the client key and spoofed internal headers never reach the provider', () => {
  for (const type of ['openai', 'anthropic'] as const) {
    for (const [carrier, encode] of CARRIERS) {
      test(`${type} adapter, key in ${carrier}`, async () => {
        const fake = type === 'openai' ? openai : anthropic
        const port = Number(new URL(gw.origin).port)
        for (const [path, body] of CALLS[type]) {
          const before = fake.requests.length
          const res = await rawPost(port, `${path}?api-key=${key}&key=${key}`, { ...SPOOFED, [carrier]: encode(key) }, JSON.stringify(body))
          expect(res.status, res.text.slice(0, 500)).toBe(200)
          expect(fake.requests.length).toBe(before + 1)
          const upstream = fake.requests.at(-1)!
          const names = Object.keys(upstream.headers)
          expect(names.filter((name) => !ALLOWED.has(name))).toEqual([])
          if (type === 'openai') expect(upstream.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`)
          else expect([upstream.headers['x-api-key'], upstream.headers.authorization]).toEqual([ANTHROPIC_KEY, undefined])
          const seen = JSON.stringify([upstream.path, upstream.headers, upstream.body])
          expect(seen).not.toContain(key)
          expect(Object.values(SPOOFED).filter((value) => seen.includes(value))).toEqual([])
        }
      })
    }
  }
})
