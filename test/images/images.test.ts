/**
 * Images end to end beyond the conformance kit: the gateway-served URL read through a second instance (one
 * PostgreSQL), base64 fetched from a URL-only provider only from its own hosts (a redirect to localhost and a
 * metadata address refused, nothing fetched there), ipm, budgets reserving n × the dearest image, and the pure
 * pieces (format sniffing, per-image prices).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI, { toFile } from 'openai'
import { imageURLRefusal } from '../../src/core/images-fetch.ts'
import { storeImageFile } from '../../src/core/images-files.ts'
import { sniffImage } from '../../src/core/images.ts'
import { worstCaseImageUsage } from '../../src/plugin-sdk/images-usage.ts'
import { costMicros, listPrice } from '../../src/pricing/prices.ts'
import { FAKE_GEMINI_IMAGES_KEY, GEMINI_IMAGE_TOKENS, startFakeGeminiImages } from '../helpers/fake-gemini-images.ts'
import { FAKE_OPENAI_IMAGES_KEY, startFakeOpenAIImages, type FakeOpenAIImages } from '../helpers/fake-openai-images.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { createTestDatabase } from '../helpers/postgres.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { RED, decode, jpg, near, png } from './pictures.ts'
import { failure } from '../helpers/failure.ts'

describe('gateway-served image URLs across instances (PostgreSQL)', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>
  let a: TestGateway
  let b: TestGateway
  let fake: FakeOpenAIImages
  let client: OpenAI

  beforeAll(async () => {
    db = await createTestDatabase()
    fake = await startFakeOpenAIImages()
    a = await startGateway({ databaseURL: db.url })
    b = await startGateway({ databaseURL: db.url })
    await a.admin('POST', '/providers', { name: 'openai', type: 'openai', base_url: fake.url, api_key: FAKE_OPENAI_IMAGES_KEY })
    await a.admin('POST', '/models', { name: 'painter', targets: [{ provider: 'openai', model: 'gpt-image-1' }] })
    client = new OpenAI({ apiKey: (await a.admin('POST', '/keys', { name: 'images' })).key, baseURL: a.baseURL, maxRetries: 0 })
  })
  afterAll(async () => {
    await a?.close()
    await b?.close()
    fake?.stop()
    await db?.drop()
  })

  test('a URL made by one instance is served by the other, without a key, until it expires', async () => {
    const response = await client.images.generate({ model: 'painter', prompt: 'A red square', response_format: 'url' })
    const url = new URL(response.data![0]!.url!)
    expect(url.origin).toBe(a.origin)
    expect(url.pathname).toMatch(/^\/v1\/images\/files\/img_[A-Za-z0-9_-]{43}$/)
    const elsewhere = await fetch(`${b.origin}${url.pathname}`)
    expect(elsewhere.status).toBe(200)
    expect(elsewhere.headers.get('content-type')).toBe('image/png')
    expect(elsewhere.headers.get('x-content-type-options')).toBe('nosniff')
    const picture = decode(new Uint8Array(await elsewhere.arrayBuffer()))
    expect([picture.width, picture.height]).toEqual([1024, 1024])
    expect(near(picture.centre, RED)).toBe(true)
    // An hour later it is gone, on every instance; a guessed or malformed id is a 404 too.
    const old = new URL(await storeImageFile(a.gateway.store, png(8, 8, RED).toString('base64'), a.origin, Date.now() - 61 * 60_000))
    expect((await fetch(`${b.origin}${old.pathname}`)).status).toBe(404)
    expect((await fetch(`${b.origin}/v1/images/files/img_${'A'.repeat(43)}`)).status).toBe(404)
    const bad = await fetch(`${b.origin}/v1/images/files/..%2Fconduit.sqlite`)
    expect(bad.status).toBe(404)
    expect(((await bad.json()) as any).error.code).toBe('image_not_found')
  })
})

describe('base64 from a URL-only provider: fetched from its own hosts only', () => {
  let gw: TestGateway
  let fake: FakeOpenAIImages
  let secret: ReturnType<typeof Bun.serve>
  let secretHits = 0
  let client: OpenAI

  beforeAll(async () => {
    // What a redirect must never reach: a service on the gateway's own loopback.
    secret = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => (secretHits++, new Response(png(4, 4, [0, 0, 0]))) })
    fake = await startFakeOpenAIImages({ redirectTo: `http://localhost:${secret.port}/latest/meta-data` })
    gw = await startGateway()
    // Declared URL-only: the gateway does not ask it for base64, it converts.
    await gw.admin('POST', '/providers', { name: 'urls', type: 'openai-compatible', base_url: fake.url, api_key: FAKE_OPENAI_IMAGES_KEY, options: { images: { returns: 'url' } } })
    await gw.admin('POST', '/models', { name: 'dalle', targets: [{ provider: 'urls', model: 'dall-e-2' }] })
    client = new OpenAI({ apiKey: (await gw.admin('POST', '/keys', { name: 'k', ipm: 100 })).key, baseURL: gw.baseURL, maxRetries: 0 })
  })
  afterAll(async () => {
    await gw?.close()
    fake?.stop()
    secret?.stop(true)
  })

  test('a URL on the provider’s own host is fetched and encoded', async () => {
    const before = fake.fileHits
    const response = await client.images.generate({ model: 'dalle', prompt: 'A red square', size: '256x256', response_format: 'b64_json' })
    expect(fake.requests.at(-1)!.body.response_format).toBeUndefined()
    expect(fake.fileHits).toBe(before + 1)
    expect(response.data![0]!.url).toBeUndefined()
    const picture = decode(Buffer.from(response.data![0]!.b64_json!, 'base64'))
    expect([picture.width, picture.height, near(picture.centre, RED)]).toEqual([256, 256, true])
  })

  test('a URL that redirects to localhost is refused: 502, and nothing reaches the target', async () => {
    const error = await failure(() => client.images.generate({ model: 'dalle', prompt: 'redirect-url please', size: '256x256', response_format: 'b64_json' }))
    expect(error.status).toBe(502)
    expect(error.error.code).toBe('upstream_image_url_refused')
    expect(error.error.message).toContain("'localhost'")
    expect(secretHits).toBe(0)
  })

  test('a crafted URL on a metadata address is refused before any connection', async () => {
    const error = await failure(() => client.images.generate({ model: 'dalle', prompt: 'evil-url please', size: '256x256', response_format: 'b64_json' }))
    expect(error.status).toBe(502)
    expect(error.error.code).toBe('upstream_image_url_refused')
  })

  test('the host rule: the provider’s origin, declared hosts over https on the default port, no credentials', () => {
    const allowed = { baseURL: 'https://api.openai.com/v1', hosts: ['oaidalleapiprodscus.blob.core.windows.net', '*.x.ai'] }
    const refusal = (url: string) => imageURLRefusal(new URL(url), allowed)
    expect(refusal('https://api.openai.com/files/1.png')).toBeNull()
    expect(refusal('https://oaidalleapiprodscus.blob.core.windows.net/private/a.png?sig=1')).toBeNull()
    expect(refusal('https://imgen.x.ai/a.png')).toBeNull()
    expect(refusal('http://oaidalleapiprodscus.blob.core.windows.net/a.png')).toContain('https')
    expect(refusal('https://oaidalleapiprodscus.blob.core.windows.net:8443/a.png')).toContain('port')
    expect(refusal('https://evil.blob.core.windows.net/a.png')).toContain('not one of')
    expect(refusal('https://x.ai.evil.com/a.png')).toContain('not one of')
    expect(refusal('https://user:pw@api.openai.com/a.png')).toContain('credentials')
    expect(refusal('https://169.254.169.254/latest/meta-data')).toContain('not one of')
  })
})

describe('ipm, budgets and billing', () => {
  let gw: TestGateway
  let fake: FakeOpenAIImages

  beforeAll(async () => {
    fake = await startFakeOpenAIImages()
    gw = await startGateway()
    await gw.admin('POST', '/providers', { name: 'openai', type: 'openai', base_url: fake.url, api_key: FAKE_OPENAI_IMAGES_KEY })
    await gw.admin('POST', '/models', { name: 'dalle', targets: [{ provider: 'openai', model: 'dall-e-2' }] })
    await gw.admin('POST', '/models', { name: 'dalle3', targets: [{ provider: 'openai', model: 'dall-e-3' }] })
    await gw.admin('POST', '/models', { name: 'painter', targets: [{ provider: 'openai', model: 'gpt-image-1' }] })
  })
  afterAll(async () => {
    await gw?.close()
    fake?.stop()
  })

  test('ipm counts images, not requests: n is taken, the next one waits, more than the limit can never pass', async () => {
    const key = (await gw.admin('POST', '/keys', { name: 'ipm', ipm: 3 })).key
    expect((await gw.admin('GET', '/keys')).data.find((k: any) => k.name === 'ipm').ipm).toBe(3)
    const client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
    const { response } = await client.images.generate({ model: 'dalle', prompt: 'two', size: '256x256', n: 2, response_format: 'b64_json' }).withResponse()
    expect(response.headers.get('x-ratelimit-limit-images')).toBe('3')
    expect(response.headers.get('x-ratelimit-remaining-images')).toBe('1')
    const before = fake.requests.length
    const limited = await failure(() => client.images.generate({ model: 'dalle', prompt: 'two more', size: '256x256', n: 2 }))
    expect(limited.status).toBe(429)
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
    const never = await failure(() => client.images.generate({ model: 'dalle', prompt: 'four', size: '256x256', n: 4 }))
    expect([never.status, never.error.param, never.error.code]).toEqual([400, 'n', 'request_exceeds_image_limit'])
    expect(fake.requests.length).toBe(before)
    // A limit is a positive integer.
    const bad = await gw.adminRaw('POST', '/keys', { name: 'bad', ipm: 0 })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as any).error.param).toBe('ipm')
  })

  test('what the model cannot do is refused before anything is sent: dall-e-3 edits, gpt-image-1 variations, a mask of another size', async () => {
    const client = new OpenAI({ apiKey: (await gw.admin('POST', '/keys', { name: 'abilities' })).key, baseURL: gw.baseURL, maxRetries: 0 })
    const before = fake.requests.length
    const picture = await toFile(png(256, 256, RED), 'a.png')
    const edit3 = await failure(async () => client.images.edit({ model: 'dalle3', image: await toFile(png(256, 256, RED), 'a.png'), prompt: 'x' }))
    expect([edit3.status, edit3.error.param, edit3.error.code]).toEqual([400, 'model', 'unsupported_endpoint'])
    const vary = await failure(async () => client.images.createVariation({ model: 'painter', image: await toFile(png(256, 256, RED), 'a.png') }))
    expect([vary.status, vary.error.param, vary.error.code]).toEqual([400, 'model', 'unsupported_endpoint'])
    const masked = await failure(async () => client.images.edit({ model: 'dalle', image: picture, mask: await toFile(png(512, 512, RED), 'm.png'), prompt: 'x' }))
    expect([masked.status, masked.error.param, masked.error.message]).toEqual([400, 'mask', 'The mask must be the same size as the image (256x256); it is 512x512.'])
    expect(fake.requests.length).toBe(before)
    // The same mask at the image's size goes through.
    const ok = await client.images.edit({ model: 'dalle', image: await toFile(png(256, 256, RED), 'a.png'), mask: await toFile(png(256, 256, RED), 'm.png'), prompt: 'x', size: '256x256' })
    expect(ok.data).toHaveLength(1)
  })

  test('a provider that cannot stream: n images are n completed events whose usage sums to the request’s, once', async () => {
    const { id, key } = await gw.admin('POST', '/keys', { name: 'streamed-n' })
    const client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
    const stream = await client.images.generate({ model: 'dalle', prompt: 'three red squares', size: '256x256', n: 3, stream: true } as any)
    const events: any[] = []
    for await (const event of stream as any) events.push(event)
    expect(events.map((e) => e.type)).toEqual(Array(3).fill('image_generation.completed'))
    for (const event of events) validateSchema('ImageGenStreamEvent', event)
    const sum = (name: string) => events.reduce((n, e) => n + e.usage[name], 0)
    await gw.gateway.ledger.flush()
    const [row] = (await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE key_id = ${id}`) as any[]
    expect([sum('input_tokens'), sum('output_tokens'), sum('total_tokens')]).toEqual([Number(row.prompt_tokens), Number(row.completion_tokens), Number(row.prompt_tokens) + Number(row.completion_tokens)])
  })

  test('a budget reserves n × the dearest image and settles to the images made', async () => {
    const key = (await gw.admin('POST', '/keys', { name: 'budget', budget: { usd: 0.1, period: 'total' } })).key
    const client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
    // dall-e-3's dearest image is $0.12 (hd, 1792 wide): one is more than the whole budget, whatever size is asked.
    const before = fake.requests.length
    const refused = await failure(() => client.images.generate({ model: 'dalle3', prompt: 'x', size: '1024x1024' }))
    expect(refused.status).toBe(429)
    expect(fake.requests.length).toBe(before)
    // dall-e-2: 4 × $0.02 worst case fits; 256x256 costs $0.016 each.
    const { response } = await client.images.generate({ model: 'dalle', prompt: 'four', size: '256x256', n: 4, response_format: 'b64_json' }).withResponse()
    expect(response.headers.get('x-conduit-cost-usd')).toBe('0.064000')
    const tooMany = await failure(() => client.images.generate({ model: 'dalle', prompt: 'two more', size: '256x256', n: 2 }))
    expect(tooMany.status).toBe(429) // $0.036 left, two may cost $0.04
    await client.images.generate({ model: 'dalle', prompt: 'one more', size: '256x256', n: 1, response_format: 'b64_json' })
  })

  const lastRow = async (keyId: string, count: number) => {
    for (let i = 0; i < 100; i++) {
      await gw.gateway.ledger.flush()
      const rows = (await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE key_id = ${keyId} ORDER BY created_at`) as any[]
      if (rows.length >= count) return rows.at(-1)
      await Bun.sleep(20)
    }
    throw new Error('no ledger row')
  }
  const call = (key: string, body: Record<string, unknown>, signal: AbortSignal) =>
    fetch(`${gw.baseURL}/images/generations`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal })

  test('a client that leaves before its pictures is billed them all: the provider draws the n asked for anyway', async () => {
    const { id, key } = await gw.admin('POST', '/keys', { name: 'leaves' })
    // Before the first byte: three 256x256 pictures at $0.016.
    fake.headersGate.hold()
    const before = fake.requests.length
    const early = new AbortController()
    const sent = call(key, { model: 'dalle', prompt: 'three', size: '256x256', n: 3 }, early.signal).catch(() => null)
    while (fake.requests.length === before) await Bun.sleep(10)
    early.abort()
    await sent
    const unanswered = await lastRow(id, 1)
    fake.headersGate.release()
    expect(unanswered).toMatchObject({ status: 499, aborted: 1, images: 3, cost_micros: 3 * 16_000 })
    // A stream left at its first partial image: the final picture is billed, at low quality's most tokens.
    const late = new AbortController()
    const res = await call(key, { model: 'painter', prompt: 'one', quality: 'low', stream: true, partial_images: 2 }, late.signal)
    const reader = res.body!.getReader()
    let text = ''
    while (!text.includes('partial_image')) text += new TextDecoder().decode((await reader.read()).value)
    late.abort()
    await reader.cancel().catch(() => {})
    const left = await lastRow(id, 2)
    expect(left).toMatchObject({ aborted: 1, estimated: 1, images: 1, completion_tokens: 408 })
    expect(Number(left.cost_micros)).toBe(costMicros(listPrice('openai', 'gpt-image-1')!, { prompt_tokens: Number(left.prompt_tokens), completion_tokens: 408, total_tokens: 0, completion_image_tokens: 408, images: 1, image_size: 'auto', image_quality: 'low' }))
  })
})

describe('pure pieces', () => {
  test('formats by their bytes, with dimensions from the header', () => {
    expect(sniffImage(png(33, 17, RED))).toEqual({ format: 'png', width: 33, height: 17 })
    expect(sniffImage(jpg(40, 24, RED))).toEqual({ format: 'jpeg', width: 40, height: 24 })
    const webp = Buffer.from('RIFF\x24\x00\x00\x00WEBPVP8L\x0a\x00\x00\x00\x2f\x0f\xc0\x07\x00\x00\x00\x00\x00', 'latin1')
    expect(sniffImage(webp)).toEqual({ format: 'webp', width: 16, height: 32 })
    expect(sniffImage(Buffer.from('GIF89a....'))?.format).toBe('gif')
    expect(sniffImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBeNull()
  })

  test('per-image prices by quality and size; tokens at the image rates; the worst case is the dearest entry × n', () => {
    const dalle3 = listPrice('openai', 'dall-e-3')!
    const one = (quality: string, size: string) => costMicros(dalle3, { prompt_tokens: 0, completion_tokens: 0, images: 1, image_quality: quality, image_size: size })
    expect([one('standard', '1024x1024'), one('auto', '1792x1024'), one('hd', '1024x1024'), one('hd', '1024x1792')]).toEqual([40_000, 80_000, 80_000, 120_000])
    const titan = listPrice('bedrock', 'amazon.titan-image-generator-v2:0')!
    expect(costMicros(titan, { prompt_tokens: 0, completion_tokens: 0, images: 3, image_quality: 'hd', image_size: '1024x1024' })).toBe(36_000)
    const gpt = listPrice('openai', 'gpt-image-1')!
    // 100 text + 300 image tokens in, 1000 image tokens out: $5, $10, $40 per million.
    expect(costMicros(gpt, { prompt_tokens: 400, prompt_image_tokens: 300, completion_tokens: 1000, completion_image_tokens: 1000, images: 1 })).toBe(500 + 3000 + 40_000)
    const flash = listPrice('gemini', 'gemini-2.5-flash-image')!
    expect(costMicros(flash, { prompt_tokens: 10, completion_tokens: 1296, completion_image_tokens: 1290, images: 1 })).toBe(Math.ceil(10 * 0.3 + 6 * 2.5 + 1290 * 30))
    const worst = worstCaseImageUsage('images', { prompt: 'x', n: 3 })!
    expect(costMicros(dalle3, worst)).toBe(3 * 120_000)
    expect(worstCaseImageUsage('chat', {})).toBeNull()
  })
})

describe('Gemini image models (generateContent): usage in OpenAI’s shape', () => {
  test('the spec’s ImagesUsage: input and output split into text and image tokens, as Gemini counts them by modality', async () => {
    const fake = await startFakeGeminiImages()
    const gw = await startGateway()
    try {
      await gw.admin('POST', '/providers', { name: 'google', type: 'gemini', base_url: fake.url, api_key: FAKE_GEMINI_IMAGES_KEY })
      await gw.admin('POST', '/models', { name: 'nano', targets: [{ provider: 'google', model: 'gemini-2.5-flash-image' }] })
      const client = new OpenAI({ apiKey: (await gw.admin('POST', '/keys', { name: 'k' })).key, baseURL: gw.baseURL, maxRetries: 0 })
      const response = await client.images.generate({ model: 'nano', prompt: 'A red square', response_format: 'b64_json' })
      validateSchema('ImagesResponse', response)
      expect(response.usage).toMatchObject({
        input_tokens_details: { text_tokens: response.usage!.input_tokens, image_tokens: 0 },
        output_tokens_details: { image_tokens: GEMINI_IMAGE_TOKENS, text_tokens: response.usage!.output_tokens - GEMINI_IMAGE_TOKENS },
      })
    } finally {
      await gw.close()
      fake.stop()
    }
  })
})
