import { estimateTokens } from './tokens.ts'
import type { ImageUpload, Operation, Usage } from './types.ts'

/**
 * Usage of image requests in the units they are priced in: images by size and quality (DALL·E, Imagen, Titan,
 * Stability), image and text tokens (gpt-image-1, Gemini's image models). For the core (what a request used)
 * and the budget plugin (what it may use at worst).
 */

/**
 * The most output tokens one image costs: gpt-image-1 at high quality, 1536x1024 (OpenAI's image generation
 * guide). Gemini's image models spend 1,290 a 1K image; a partial image adds 100 more.
 */
export const MAX_IMAGE_OUTPUT_TOKENS = 6240
const PARTIAL_IMAGE_TOKENS = 100
/** An input image at high fidelity costs at most this many tokens (bounded like an output image). */
export const MAX_IMAGE_INPUT_TOKENS = 6240

const count = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : null)

/**
 * A finished request's usage: the images it made, at the size and quality asked; tokens as the provider reported
 * them (OpenAI's `ImageGenUsage`: `input_tokens`, `output_tokens`, `input_tokens_details.image_tokens`,
 * `output_tokens_details.image_tokens`), else the prompt estimated and no output tokens.
 */
export function imageUsage(body: Record<string, any>, images: number, reported: any): Usage {
  const size = typeof body.size === 'string' ? body.size : 'auto'
  const quality = typeof body.quality === 'string' ? body.quality : 'auto'
  const input = count(reported?.input_tokens ?? reported?.prompt_tokens)
  const output = count(reported?.output_tokens ?? reported?.completion_tokens)
  if (input !== null && output !== null) {
    const usage: Usage = { prompt_tokens: input, completion_tokens: output, total_tokens: input + output, images, image_size: size, image_quality: quality }
    const inImage = count(reported.input_tokens_details?.image_tokens)
    if (inImage !== null) usage.prompt_image_tokens = Math.min(inImage, input)
    // GPT image models' output is all image tokens unless they say otherwise.
    const outImage = count(reported.output_tokens_details?.image_tokens) ?? output
    usage.completion_image_tokens = Math.min(outImage, output)
    return usage
  }
  const prompt = estimateTokens(String(body.prompt ?? ''))
  return { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt, images, image_size: size, image_quality: quality, estimated: true }
}

/** Pictures a request asks for (`n`, 1 when unset). */
export const requestedImages = (body: Record<string, any>) => Math.max(1, Number(body.n) || 1)

/** gpt-image-1's output tokens a picture at each quality, the larger of its sizes (OpenAI's image generation guide). */
const OUTPUT_TOKENS_BY_QUALITY: Record<string, number> = { low: 408, medium: 1584, high: MAX_IMAGE_OUTPUT_TOKENS }

/**
 * A request the provider was sent but whose pictures the client left before: the provider makes and bills them all,
 * `n` at the size and quality asked; where a model prices tokens, each at the most its quality costs. Estimated.
 */
export function abandonedImageUsage(body: Record<string, any>): Usage {
  const n = requestedImages(body)
  const usage = imageUsage(body, n, null)
  const completion = n * (OUTPUT_TOKENS_BY_QUALITY[body.quality] ?? MAX_IMAGE_OUTPUT_TOKENS)
  return { ...usage, completion_tokens: completion, completion_image_tokens: completion, total_tokens: usage.prompt_tokens + completion }
}

/** Our usage in OpenAI's `ImagesUsage` shape (the completed event of a stream we made up must carry one). */
export function openAIImagesUsage(usage: Usage) {
  const image = usage.prompt_image_tokens ?? 0
  return {
    total_tokens: usage.total_tokens,
    input_tokens: usage.prompt_tokens,
    output_tokens: usage.completion_tokens,
    input_tokens_details: { text_tokens: usage.prompt_tokens - image, image_tokens: image },
  }
}

/** The most an image request can use: `n` images at the dearest size and quality, each at the most tokens. Null for other operations. */
export function worstCaseImageUsage(operation: Operation | null, body: Record<string, any>): Usage | null {
  if (operation !== 'images' && operation !== 'image_edits' && operation !== 'image_variations') return null
  const n = requestedImages(body)
  const uploads: ImageUpload[] = Array.isArray(body.image) ? body.image : body.image ? [body.image] : []
  const inputImage = uploads.length * MAX_IMAGE_INPUT_TOKENS
  const prompt = Buffer.byteLength(String(body.prompt ?? '')) + inputImage
  const completion = n * (MAX_IMAGE_OUTPUT_TOKENS + PARTIAL_IMAGE_TOKENS * Math.max(0, Number(body.partial_images) || 0))
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_image_tokens: inputImage,
    completion_image_tokens: completion,
    images: n,
    // The dearest entry of a per-image price table applies: see costMicros' `worst`.
    image_size: '*',
    image_quality: '*',
    estimated: true,
  }
}
