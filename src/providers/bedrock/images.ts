import { GatewayError, type AttemptContext, type ImageAbilities, type ImagesAdapter, type ImagesResult, type ImageUpload, type ProviderConfig, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { authorizedRequest, connection, modelURL } from './config.ts'
import { parseError } from './response.ts'

/**
 * Images through InvokeModel (signed like every Bedrock call): Amazon Titan Image Generator (v1, v2) and Stability's
 * models (Stable Image Core and Ultra, SD3.5 Large). Base64 only (the gateway serves URLs), no streaming.
 *
 * Titan: generations (`TEXT_IMAGE`, up to 5 images, its fixed sizes, `hd`/`high` quality → premium), variations
 * (`IMAGE_VARIATION` of the upload), and edits without a mask as a variation steered by the prompt (Titan's
 * inpainting wants a black-and-white mask, not OpenAI's transparent one: a mask is refused). Stability: generations
 * only, one image a call, sizes by aspect ratio.
 */

/** Titan Image Generator's sizes (its documented width × height pairs). */
const TITAN_SIZES = [
  '1024x1024', '768x768', '512x512', '768x1152', '384x576', '1152x768', '576x384', '768x1280', '384x640', '1280x768', '640x384',
  '896x1152', '448x576', '1152x896', '576x448', '768x1408', '384x704', '1408x768', '704x384', '640x1408', '320x704', '1408x640',
  '704x320', '1152x640', '1173x640',
]
/** Stability's aspect ratios at about a megapixel. */
const STABILITY_SIZES: Record<string, string> = {
  '1024x1024': '1:1',
  '1344x768': '16:9',
  '768x1344': '9:16',
  '1536x640': '21:9',
  '640x1536': '9:21',
  '1216x832': '3:2',
  '832x1216': '2:3',
  '1088x896': '5:4',
  '896x1088': '4:5',
}

const isTitan = (model: string) => model.startsWith('amazon.titan-image-generator')
const isStability = (model: string) => model.startsWith('stability.')

export function bedrockImageAbilities(_provider: ProviderConfig, model: string): ImageAbilities {
  if (isTitan(model)) {
    return { sizes: ['auto', ...TITAN_SIZES], maxN: 5, returns: 'b64_json', stream: false, inputFormats: ['png', 'jpeg'], maxUploadBytes: 5 * 1024 * 1024, maxImages: 5, mask: false }
  }
  return { sizes: ['auto', ...Object.keys(STABILITY_SIZES)], maxN: 1, returns: 'b64_json', stream: false, inputFormats: [], maxUploadBytes: 0, maxImages: 0, mask: false }
}

const TITAN_FIELDS = new Set(['model', 'prompt', 'n', 'size', 'quality', 'image', 'response_format'])
const STABILITY_FIELDS = new Set(['model', 'prompt', 'n', 'size', 'output_format', 'response_format'])

function dropOthers(body: Record<string, any>, handled: Set<string>, ctx: AttemptContext) {
  for (const name in body) if (!handled.has(name) && body[name] !== undefined && body[name] !== null) ctx.dropParam(name)
}

const base64Of = async (upload: ImageUpload) => Buffer.from(await upload.blob.arrayBuffer()).toString('base64')

async function titanBody(body: Record<string, any>, ctx: AttemptContext): Promise<Record<string, unknown>> {
  dropOthers(body, TITAN_FIELDS, ctx)
  const config: Record<string, unknown> = { numberOfImages: body.n ?? 1 }
  const size = /^(\d+)x(\d+)$/.exec(String(body.size ?? ''))
  if (size) Object.assign(config, { width: Number(size[1]), height: Number(size[2]) })
  config.quality = body.quality === 'hd' || body.quality === 'high' ? 'premium' : 'standard'
  const uploads: ImageUpload[] = Array.isArray(body.image) ? body.image : body.image ? [body.image] : []
  if (ctx.request.operation === 'images') return { taskType: 'TEXT_IMAGE', textToImageParams: { text: body.prompt }, imageGenerationConfig: config }
  const params: Record<string, unknown> = { images: await Promise.all(uploads.map(base64Of)) }
  if (typeof body.prompt === 'string') params.text = body.prompt
  return { taskType: 'IMAGE_VARIATION', imageVariationParams: params, imageGenerationConfig: config }
}

function stabilityBody(body: Record<string, any>, ctx: AttemptContext): Record<string, unknown> {
  dropOthers(body, STABILITY_FIELDS, ctx)
  const out: Record<string, unknown> = { prompt: body.prompt, output_format: body.output_format === 'jpeg' ? 'jpeg' : 'png' }
  if (body.output_format === 'webp') ctx.dropParam('output_format')
  const ratio = STABILITY_SIZES[body.size]
  if (ratio) out.aspect_ratio = ratio
  if (ctx.target.model.startsWith('stability.sd3')) out.mode = 'text-to-image'
  return out
}

async function buildRequest(body: Record<string, any>, ctx: AttemptContext): Promise<UpstreamRequest> {
  const conn = connection(ctx.target.provider)
  const model = ctx.target.model
  const payload = isStability(model) ? stabilityBody(body, ctx) : await titanBody(body, ctx)
  return authorizedRequest(conn, modelURL(conn, model, 'invoke'), JSON.stringify(payload), 'application/json')
}

function parseResponse(body: any, ctx: AttemptContext): ImagesResult {
  const created = Math.floor(Date.now() / 1000)
  const images: unknown[] = Array.isArray(body?.images) ? body.images : []
  if (isStability(ctx.target.model)) {
    // Stability answers 200 and says in finish_reasons when its filter stopped the image.
    const reason = Array.isArray(body?.finish_reasons) ? body.finish_reasons.find((r: unknown) => typeof r === 'string' && r) : undefined
    if (reason) throw new GatewayError(400, `The model refused to draw this: ${reason}.`, { code: 'content_policy_violation', param: 'prompt' })
  } else if (typeof body?.error === 'string' && body.error) {
    throw new GatewayError(400, body.error, { code: 'ValidationException' })
  }
  const data = images.filter((i): i is string => typeof i === 'string' && i.length > 0).map((b64_json) => ({ b64_json }))
  if (data.length === 0) throw new GatewayError(502, 'The upstream provider returned no image.', { code: 'upstream_no_image' })
  return { created, data }
}

export const bedrockImages: ImagesAdapter = { abilities: bedrockImageAbilities, buildRequest, parseResponse, parseError }
