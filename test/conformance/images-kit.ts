/**
 * Images conformance kit: one suite every images adapter must pass, like `kit.ts` for chat and `audio-kit.ts`.
 *
 * An `images-<name>.test.ts` file starts the subject's fake (its provider's real wire format, real PNG/JPEG
 * pictures) and calls `runImagesConformance(subject)`. The kit starts a real gateway, configures the provider under
 * virtual model names, and drives it with the official `openai` SDK. Pictures are checked by decoding them (pngjs,
 * jpeg-js): size and colour, never length. Checks are numbered I1–I9 so results can be tabulated per subject.
 *
 * Fakes answer a prompt holding `forbidden-content` with their provider's content-policy refusal.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI, { toFile } from 'openai'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { decode, jpg, near, png, type RGB } from '../images/pictures.ts'
import type { ProviderFields } from './kit.ts'
import { failure } from '../helpers/failure.ts'

export interface ImagesFake {
  url: string
  requests: unknown[]
  stop(): unknown
}

export interface ImagesSubject {
  name: string
  providerType: string
  startFake(): Promise<ImagesFake>
  provider: ProviderFields
  generation: {
    model: string
    /** A size it makes, and the pixels that come back for it. */
    size: string
    pixels: [number, number]
    colour: RGB
    /** Its most images per request. */
    maxN: number
    /** A size OpenAI's API knows that this model does not make. */
    badSize: string
    /** The cost of one image at `size` (default quality), USD. */
    costUsd: number
  }
  /** The provider streams partial images itself; otherwise only the final images come, as completed events. */
  streams: boolean
  edit?: { model: string; colour: RGB; maxImages: number; maxUploadBytes: number }
  variation?: { model: string; colour: RGB }
  /** A content-policy refusal: the code the client gets, and words of the provider's message. */
  refusal: { code: string; message: RegExp }
}

const GEN = 'images-gen'
const EDIT = 'images-edit'
const VARY = 'images-vary'

export function runImagesConformance(subject: ImagesSubject): void {
  describe(`images conformance: ${subject.name}`, () => {
    let fake: ImagesFake
    let gw: TestGateway
    let client: OpenAI
    let key: string
    const g = subject.generation

    const upstreamUntouched = async (call: () => Promise<unknown>) => {
      const before = fake.requests.length
      const error = await failure(call)
      expect(fake.requests.length).toBe(before)
      return error
    }
    const b64 = (item: { b64_json?: string } | undefined) => decode(Buffer.from(item!.b64_json!, 'base64'))

    beforeAll(async () => {
      fake = await subject.startFake()
      gw = await startGateway()
      await gw.admin('POST', '/providers', { name: 'images-subject', type: subject.providerType, base_url: fake.url, ...subject.provider })
      await gw.admin('POST', '/models', { name: GEN, targets: [{ provider: 'images-subject', model: g.model }] })
      if (subject.edit) await gw.admin('POST', '/models', { name: EDIT, targets: [{ provider: 'images-subject', model: subject.edit.model }] })
      if (subject.variation) await gw.admin('POST', '/models', { name: VARY, targets: [{ provider: 'images-subject', model: subject.variation.model }] })
      key = (await gw.admin('POST', '/keys', { name: 'images-conformance' })).key
      client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
    })

    afterAll(async () => {
      await gw?.close()
      await fake?.stop()
    })

    test('I1 images.generate b64_json: real pictures of the size asked, OpenAI’s schema, priced per image', async () => {
      const { data: response, response: raw } = await client.images.generate({ model: GEN, prompt: 'A red square', size: g.size as any, response_format: 'b64_json' }).withResponse()
      validateSchema('ImagesResponse', response)
      expect(response.data).toHaveLength(1)
      const picture = b64(response.data![0])
      expect([picture.width, picture.height]).toEqual(g.pixels)
      expect(near(picture.centre, g.colour)).toBe(true)
      expect(Number(raw.headers.get('x-conduit-cost-usd'))).toBeCloseTo(g.costUsd, 6)
    })

    test('I2 images.generate url: a URL anyone can fetch for an hour, holding the same picture', async () => {
      const response = await client.images.generate({ model: GEN, prompt: 'A red square', size: g.size as any, response_format: 'url', n: Math.min(2, g.maxN) })
      validateSchema('ImagesResponse', response)
      expect(response.data).toHaveLength(Math.min(2, g.maxN))
      for (const item of response.data!) {
        expect(item.b64_json).toBeUndefined()
        const fetched = await fetch(item.url!) // no key: the URL is the capability
        expect(fetched.status).toBe(200)
        expect(fetched.headers.get('content-type')).toMatch(/^image\//)
        const picture = decode(new Uint8Array(await fetched.arrayBuffer()))
        expect([picture.width, picture.height]).toEqual(g.pixels)
        expect(near(picture.centre, g.colour)).toBe(true)
      }
    })

    test(`I3 streamed generation: ${subject.streams ? 'partial images as they come, then the final one' : 'the final image as a completed event (partial_images dropped)'}`, async () => {
      const stream = await client.images.generate({ model: GEN, prompt: 'A red square', size: g.size as any, stream: true, partial_images: 2 })
      const events: any[] = []
      for await (const event of stream) events.push(event)
      for (const event of events) validateSchema('ImageGenStreamEvent', event)
      const partials = events.filter((e) => e.type === 'image_generation.partial_image')
      const completed = events.filter((e) => e.type === 'image_generation.completed')
      expect(partials).toHaveLength(subject.streams ? 2 : 0)
      for (const p of partials) expect(b64(p).width).toBe(g.pixels[0])
      expect(completed).toHaveLength(1)
      expect(events.at(-1)).toBe(completed[0])
      expect(near(b64(completed[0]).centre, g.colour)).toBe(true)
      expect(completed[0].usage.total_tokens).toBeGreaterThan(0)
    })

    if (subject.edit) {
      const e = subject.edit
      test('I4 images.edit with toFile: the upload reaches the provider, a real picture comes back', async () => {
        const images = [await toFile(png(256, 256, [200, 200, 200]), 'photo.png', { type: 'image/png' })]
        if (e.maxImages > 1) images.push(await toFile(jpg(256, 256, [10, 10, 10]), 'second.jpg', { type: 'image/jpeg' }))
        const response = await client.images.edit({ model: EDIT, image: images.length === 1 ? images[0]! : images, prompt: 'Paint it green', response_format: 'b64_json' } as any)
        validateSchema('ImagesResponse', response)
        expect(near(b64(response.data![0]).centre, e.colour)).toBe(true)
      })

      test('I5 bad uploads are refused before any call: not an image (400), over the limit (413)', async () => {
        const text = await upstreamUntouched(async () => client.images.edit({ model: EDIT, image: await toFile(Buffer.from('just some text, not a picture'), 'notes.png'), prompt: 'x' } as any))
        expect(text.status).toBe(400)
        expect(text.error.param).toBe('image')
        expect(text.error.code).toBe('invalid_image_format')
        const gif = await upstreamUntouched(async () => client.images.edit({ model: EDIT, image: await toFile(Buffer.from('GIF89a\x01\x00\x01\x00\x00\x00\x00;'), 'a.gif'), prompt: 'x' } as any))
        expect(gif.status).toBe(400)
        // A real PNG header on enough bytes to pass the provider's limit.
        const big = Buffer.concat([png(16, 16, [1, 2, 3]), Buffer.alloc(e.maxUploadBytes + 1)])
        const tooLarge = await upstreamUntouched(async () => client.images.edit({ model: EDIT, image: await toFile(big, 'big.png'), prompt: 'x' } as any))
        expect(tooLarge.status).toBe(413)
        expect(tooLarge.error.param).toBe('image')
      })
    }

    if (subject.variation) {
      const v = subject.variation
      test('I6 images.createVariation: a real picture comes back', async () => {
        const response = await client.images.createVariation({ model: VARY, image: await toFile(png(256, 256, [120, 120, 120]), 'photo.png'), response_format: 'b64_json' })
        validateSchema('ImagesResponse', response)
        expect(near(b64(response.data![0]).centre, v.colour)).toBe(true)
      })
    } else {
      test('I6 variations are refused with a 400 naming the model: the provider cannot make them', async () => {
        const error = await upstreamUntouched(async () => client.images.createVariation({ model: GEN, image: await toFile(png(64, 64, [1, 1, 1]), 'p.png') }))
        expect(error.status).toBe(400)
        expect(error.error.param).toBe('model')
      })
    }

    test('I7 bad input, each a 400 naming its param, nothing sent upstream', async () => {
      const noPrompt = await upstreamUntouched(async () => client.images.generate({ model: GEN } as any))
      expect([noPrompt.status, noPrompt.error.param, noPrompt.error.code]).toEqual([400, 'prompt', 'missing_required_parameter'])
      const tooMany = await upstreamUntouched(async () => client.images.generate({ model: GEN, prompt: 'x', n: g.maxN + 1 }))
      expect([tooMany.status, tooMany.error.param]).toEqual([400, 'n'])
      const outOfRange = await upstreamUntouched(async () => client.images.generate({ model: GEN, prompt: 'x', n: 11 }))
      expect([outOfRange.status, outOfRange.error.param]).toEqual([400, 'n'])
      const size = await upstreamUntouched(async () => client.images.generate({ model: GEN, prompt: 'x', size: g.badSize as any }))
      expect([size.status, size.error.param]).toEqual([400, 'size'])
      const format = await upstreamUntouched(async () => client.images.generate({ model: GEN, prompt: 'x', response_format: 'base64' as any }))
      expect([format.status, format.error.param]).toEqual([400, 'response_format'])
    })

    test('I8 a content-policy refusal is a 400 with the provider’s code and message in our envelope', async () => {
      const error = await failure(() => client.images.generate({ model: GEN, prompt: 'forbidden-content please', size: g.size as any }))
      expect(error.status).toBe(400)
      expect(error.error.code).toBe(subject.refusal.code)
      expect(error.error.message).toMatch(subject.refusal.message)
      expect(Object.keys(error.error).sort()).toEqual(['code', 'message', 'param', 'type'])
    })

    test('I9 the ledger holds one row per request with its images and cost', async () => {
      const before = Date.now()
      const { response: raw } = await client.images.generate({ model: GEN, prompt: 'A red square', size: g.size as any, response_format: 'b64_json' }).withResponse()
      const id = raw.headers.get('x-request-id')!
      let row: any
      for (let i = 0; i < 50 && !row; i++) {
        await Bun.sleep(50)
        ;[row] = await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE request_id = ${id}`
      }
      expect(row).toBeDefined()
      expect(row.endpoint).toBe('images')
      expect(Number(row.images)).toBe(1)
      expect(Number(row.cost_micros)).toBe(Math.round(g.costUsd * 1_000_000))
      expect(Number(row.created_at)).toBeGreaterThanOrEqual(before)
    })
  })
}
