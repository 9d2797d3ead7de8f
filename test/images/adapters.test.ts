/**
 * Image adapters driven directly: the upstream requests they build (paths, auth, what is dropped and signalled)
 * for Azure and the OpenAI-compatible presets, which the conformance kit does not run against a fake.
 */
import { describe, expect, test } from 'bun:test'
import { Attempt, RequestCtx } from '../../src/core/context.ts'
import type { ImageOperation, ProviderConfig } from '../../src/plugin-sdk/types.ts'
import { azureImages } from '../../src/providers/azure/images.ts'
import { presetPlugins } from '../../src/providers/openai-compatible/presets.ts'
import { createLogger } from '../../src/services/logger.ts'
import { registeredAdapter } from '../helpers/adapter.ts'
import { png } from './pictures.ts'

function attempt(operation: ImageOperation, provider: Partial<ProviderConfig> & Pick<ProviderConfig, 'type'>, model: string, body: Record<string, any>) {
  const ctx = new RequestCtx('images', operation, new Request('http://gateway.test/v1/images/generations'), createLogger('silent'))
  ctx.body = body
  return new Attempt(ctx, { provider: { id: 'p', name: 'p', baseURL: null, apiKey: null, options: {}, ...provider }, model, price: null }, 1)
}

describe('azure', () => {
  const provider = { type: 'azure', baseURL: 'https://res.openai.azure.com/openai/', apiKey: 'azure-key' }

  test('a DALL·E 3 deployment: the deployment path and api-version, the api-key header, GPT-image fields dropped', async () => {
    const body = { model: 'art', prompt: 'a cat', size: '1024x1024', quality: 'hd', output_format: 'png', background: 'auto' }
    const a = attempt('images', provider, 'my-dall-e-3', body)
    const request = await azureImages.buildRequest(body, a)
    expect(request.url).toBe('https://res.openai.azure.com/openai/deployments/my-dall-e-3/images/generations?api-version=2024-10-21')
    expect(request.headers['api-key']).toBe('azure-key')
    expect(JSON.parse(request.body as string)).toEqual({ prompt: 'a cat', size: '1024x1024', quality: 'hd' })
    expect(a.dropped.sort()).toEqual(['background', 'output_format'])
    expect(azureImages.abilities(a.target.provider, 'my-dall-e-3')).toMatchObject({ maxN: 1, returns: 'either', urlHosts: ['*.blob.core.windows.net'] })
  })

  test('an edit on the v1 surface: multipart with the deployment as model, the image streamed from its spool', async () => {
    const image = { blob: new Blob([png(8, 8, [1, 2, 3])]), filename: 'a.png', format: 'png' as const, contentType: 'image/png', size: 0 }
    const body = { model: 'art', prompt: 'greener', image: [image] }
    const a = attempt('image_edits', { ...provider, options: { api_version: 'v1' } }, 'gpt-image-1-prod', body)
    const request = await azureImages.buildRequest(body, a)
    expect(request.url).toBe('https://res.openai.azure.com/openai/v1/images/edits')
    const form = await new Response(request.body as ReadableStream, { headers: { 'content-type': request.headers['content-type']! } }).formData()
    expect(form.get('model')).toBe('gpt-image-1-prod')
    expect(form.get('prompt')).toBe('greener')
    expect((form.get('image') as File).size).toBe(png(8, 8, [1, 2, 3]).length)
  })
})

describe('openai-compatible presets', () => {
  const adapterOf = async (id: string) => registeredAdapter(presetPlugins.find((p) => p.name === `provider-${id}`)!)

  test('xAI: generations only; only prompt, n and response_format travel; URLs from imgen.x.ai', async () => {
    const adapter = await adapterOf('xai')
    expect(adapter.image_edits).toBeUndefined()
    const body = { model: 'grok', prompt: 'a cat', n: 2, size: '1024x1024', quality: 'high', response_format: 'url' }
    const a = attempt('images', { type: 'xai', apiKey: 'xai-key' }, 'grok-2-image', body)
    const request = await adapter.images!.buildRequest(body, a)
    expect(request.url).toBe('https://api.x.ai/v1/images/generations')
    expect(JSON.parse(request.body as string)).toEqual({ model: 'grok-2-image', prompt: 'a cat', n: 2, response_format: 'url' })
    expect(a.dropped.sort()).toEqual(['quality', 'size'])
    expect(adapter.images!.abilities(a.target.provider, 'grok-2-image').urlHosts).toEqual(['imgen.x.ai'])
  })

  test('Together: size becomes width and height', async () => {
    const adapter = await adapterOf('together')
    const body = { model: 'flux', prompt: 'a cat', size: '768x512' }
    const a = attempt('images', { type: 'together' }, 'black-forest-labs/FLUX.1-schnell', body)
    expect(JSON.parse((await adapter.images!.buildRequest(body, a)).body as string)).toEqual({ model: 'black-forest-labs/FLUX.1-schnell', prompt: 'a cat', width: 768, height: 512 })
  })

  test('a server declared in options.images: its abilities win over the defaults', async () => {
    const adapter = await adapterOf('openai-compatible')
    const provider: ProviderConfig = { id: 'p', name: 'p', type: 'openai-compatible', baseURL: 'http://x', apiKey: null, options: { images: { sizes: ['512x512'], max_n: 2, returns: 'url', stream: 'yes' } } }
    expect(adapter.images!.abilities(provider, 'sdxl')).toMatchObject({ sizes: ['512x512'], maxN: 2, returns: 'url', stream: false })
  })
})
