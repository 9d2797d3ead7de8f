import { GatewayError, type AttemptContext, type ImageAbilities, type ImagesAdapter, type ImagesResult, type ImageUpload, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { DEFAULT_BASE_URL } from './request.ts'
import { parseError } from './response.ts'

/**
 * Images on the Gemini API, two ways: Imagen models through `:predict` (generations only: the Gemini API has no
 * Imagen editing), and Gemini's image models (`gemini-2.5-flash-image`, …) through `:generateContent`, whose
 * answer carries the picture as inline data — generations and edits (the images go as inline parts). Both return
 * base64 only (the gateway serves URLs), neither streams partial images, neither takes a mask or makes variations.
 */

/** Imagen's aspect ratios and the pixels it makes for each, at 1K and (Imagen 4 Standard and Ultra) 2K. */
const IMAGEN_SIZES: Record<string, { aspectRatio: string; imageSize?: '2K' }> = {
  '1024x1024': { aspectRatio: '1:1' },
  '896x1280': { aspectRatio: '3:4' },
  '1280x896': { aspectRatio: '4:3' },
  '768x1408': { aspectRatio: '9:16' },
  '1408x768': { aspectRatio: '16:9' },
  '2048x2048': { aspectRatio: '1:1', imageSize: '2K' },
  '1792x2560': { aspectRatio: '3:4', imageSize: '2K' },
  '2560x1792': { aspectRatio: '4:3', imageSize: '2K' },
  '1536x2816': { aspectRatio: '9:16', imageSize: '2K' },
  '2816x1536': { aspectRatio: '16:9', imageSize: '2K' },
}
/** gemini-2.5-flash-image's aspect ratios and their pixels (its image generation guide). */
const GEMINI_SIZES: Record<string, string> = {
  '1024x1024': '1:1',
  '832x1248': '2:3',
  '1248x832': '3:2',
  '864x1184': '3:4',
  '1184x864': '4:3',
  '896x1152': '4:5',
  '1152x896': '5:4',
  '768x1344': '9:16',
  '1344x768': '16:9',
  '1536x672': '21:9',
}

const isImagen = (model: string) => model.replace(/^models\//, '').startsWith('imagen-')

/** Imagen makes 1-4 images a call; a Gemini image model one per answer. */
export function geminiImageAbilities(_provider: unknown, model: string): ImageAbilities {
  if (isImagen(model)) {
    return { sizes: ['auto', ...Object.keys(IMAGEN_SIZES)], maxN: 4, returns: 'b64_json', stream: false, inputFormats: [], maxUploadBytes: 0, maxImages: 0, mask: false }
  }
  // Inline data shares the 20 MB request limit; the model works best with up to three input images.
  return { sizes: ['auto', ...Object.keys(GEMINI_SIZES)], maxN: 1, returns: 'b64_json', stream: false, inputFormats: ['png', 'jpeg', 'webp'], maxUploadBytes: 7 * 1024 * 1024, maxImages: 3, mask: false }
}

const base = (ctx: AttemptContext) => (ctx.target.provider.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '')
const resource = (model: string) => (model.includes('/') ? model : `models/${model}`)
const headers = (ctx: AttemptContext): Record<string, string> => ({
  'content-type': 'application/json',
  ...(ctx.target.provider.apiKey ? { 'x-goog-api-key': ctx.target.provider.apiKey } : {}),
})

/** Fields each API takes (or the core owns); any other set field is dropped and signalled. */
const IMAGEN_FIELDS = new Set(['model', 'prompt', 'n', 'size', 'output_format', 'output_compression', 'response_format'])
const GEMINI_FIELDS = new Set(['model', 'prompt', 'n', 'size', 'image', 'response_format'])

function dropOthers(body: Record<string, any>, handled: Set<string>, ctx: AttemptContext) {
  for (const name in body) {
    if (handled.has(name) || body[name] === undefined || body[name] === null) continue
    if (name === 'output_format' && body[name] === 'png') continue // what it makes anyway
    ctx.dropParam(name)
  }
}

async function buildRequest(body: Record<string, any>, ctx: AttemptContext): Promise<UpstreamRequest> {
  const model = ctx.target.model
  if (isImagen(model)) {
    dropOthers(body, IMAGEN_FIELDS, ctx)
    const parameters: Record<string, unknown> = { sampleCount: body.n ?? 1, includeRaiReason: true }
    const size = IMAGEN_SIZES[body.size]
    if (size) {
      parameters.aspectRatio = size.aspectRatio
      if (size.imageSize) parameters.imageSize = size.imageSize
    }
    if (body.output_format === 'jpeg') {
      parameters.outputOptions = { mimeType: 'image/jpeg', ...(body.output_compression != null ? { compressionQuality: body.output_compression } : {}) }
    } else if (body.output_format === 'webp' || (body.output_compression != null && body.output_format !== 'jpeg')) {
      if (body.output_format === 'webp') ctx.dropParam('output_format') // Imagen makes PNG or JPEG
      if (body.output_compression != null) ctx.dropParam('output_compression')
    }
    return { url: `${base(ctx)}/${resource(model)}:predict`, headers: headers(ctx), body: JSON.stringify({ instances: [{ prompt: body.prompt }], parameters }) }
  }
  dropOthers(body, GEMINI_FIELDS, ctx)
  const parts: Record<string, unknown>[] = [{ text: body.prompt }]
  const images: ImageUpload[] = Array.isArray(body.image) ? body.image : body.image ? [body.image] : []
  for (const image of images) parts.push({ inlineData: { mimeType: image.contentType, data: Buffer.from(await image.blob.arrayBuffer()).toString('base64') } })
  const generationConfig: Record<string, unknown> = { responseModalities: ['TEXT', 'IMAGE'], candidateCount: 1 }
  const ratio = GEMINI_SIZES[body.size]
  if (ratio) generationConfig.imageConfig = { aspectRatio: ratio }
  return {
    url: `${base(ctx)}/${resource(model)}:generateContent`,
    headers: headers(ctx),
    body: JSON.stringify({ contents: [{ role: 'user', parts }], generationConfig }),
  }
}

const refusal = (message: string, code = 'content_policy_violation') => new GatewayError(400, message, { code, param: 'prompt' })
const formatOf = (mime: unknown) => (mime === 'image/jpeg' ? 'jpeg' : mime === 'image/webp' ? 'webp' : 'png')
/** Why Gemini did not draw: the finish reasons that mean a safety or policy stop. */
const BLOCKED = new Set(['SAFETY', 'IMAGE_SAFETY', 'PROHIBITED_CONTENT', 'IMAGE_PROHIBITED_CONTENT', 'BLOCKLIST', 'SPII', 'RECITATION', 'IMAGE_RECITATION'])

function parseResponse(body: any, ctx: AttemptContext): ImagesResult {
  const created = Math.floor(Date.now() / 1000)
  if (isImagen(ctx.target.model)) {
    const predictions: any[] = Array.isArray(body?.predictions) ? body.predictions : []
    const images = predictions.filter((p) => typeof p?.bytesBase64Encoded === 'string')
    if (images.length === 0) {
      // Imagen filters images rather than failing the call: no image at all is the prompt refused.
      const reason = predictions.find((p) => typeof p?.raiFilteredReason === 'string')?.raiFilteredReason
      throw refusal(reason ?? 'Imagen returned no image: the prompt or every image was filtered by its safety rules.')
    }
    return { created, data: images.map((p) => ({ b64_json: p.bytesBase64Encoded })), output_format: formatOf(images[0].mimeType) }
  }
  const blocked = body?.promptFeedback?.blockReason
  if (typeof blocked === 'string') throw refusal(body.promptFeedback.blockReasonMessage ?? `Gemini blocked the prompt (${blocked}).`, blocked.toLowerCase())
  const candidate = body?.candidates?.[0]
  const parts: any[] = Array.isArray(candidate?.content?.parts) ? candidate.content.parts : []
  const images = parts.filter((p) => typeof p?.inlineData?.data === 'string')
  if (images.length === 0) {
    const reason = candidate?.finishReason
    if (typeof reason === 'string' && BLOCKED.has(reason)) throw refusal(candidate.finishMessage ?? `Gemini refused to draw this (${reason}).`, reason.toLowerCase())
    const said = parts.map((p) => (typeof p?.text === 'string' ? p.text : '')).join('').trim()
    throw new GatewayError(502, `The model returned no image${said ? `: "${said.slice(0, 300)}"` : ''}.`, { code: 'upstream_no_image' })
  }
  const meta = body.usageMetadata
  // Gemini counts tokens by modality; OpenAI's usage splits them into text and image, in and out (both required).
  const ofModality = (details: unknown, modality: string) =>
    Array.isArray(details) ? details.filter((d: any) => d?.modality === modality).reduce((sum: number, d: any) => sum + (Number(d.tokenCount) || 0), 0) : undefined
  const input = meta?.promptTokenCount ?? 0
  const output = meta?.candidatesTokenCount ?? 0
  const imagesIn = ofModality(meta?.promptTokensDetails, 'IMAGE') ?? 0
  const imagesOut = ofModality(meta?.candidatesTokensDetails, 'IMAGE')
  const usage = meta
    ? {
        input_tokens: input,
        output_tokens: output,
        total_tokens: meta.totalTokenCount ?? input + output,
        input_tokens_details: { text_tokens: Math.max(0, input - imagesIn), image_tokens: imagesIn },
        ...(imagesOut !== undefined ? { output_tokens_details: { image_tokens: imagesOut, text_tokens: Math.max(0, output - imagesOut) } } : {}),
      }
    : undefined
  return { created, data: images.map((p) => ({ b64_json: p.inlineData.data })), output_format: formatOf(images[0].inlineData.mimeType), ...(usage ? { usage } : {}) }
}

export const geminiImages: ImagesAdapter = { abilities: geminiImageAbilities, buildRequest, parseResponse, parseError }

/** Edits go to the Gemini image models only; an Imagen target answers with the core's 400 through its abilities (no uploads). */
export const geminiImageEdits: ImagesAdapter = geminiImages
