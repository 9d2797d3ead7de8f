import { BLUE, GREEN, RED, decode, dims, jpg, png } from '../images/pictures.ts'
import { startFakeBedrock, type FakeBedrock } from './fake-bedrock.ts'

/**
 * Bedrock's image models on the fake Bedrock Runtime (which verifies SigV4 like AWS): Titan Image Generator's
 * InvokeModel body (`taskType` TEXT_IMAGE / IMAGE_VARIATION, `imageGenerationConfig`) answered `{images, error}`,
 * and Stability's (`prompt`, `aspect_ratio`, `output_format`) answered `{seeds, finish_reasons, images}`. Errors as
 * Bedrock sends them (`x-amzn-ErrorType`, `{"message"}`): Titan's content filter is a 400 ValidationException;
 * Stability's filter is a 200 with a finish reason. Real PNG/JPEG pictures: generations red, variations blue
 * (green when steered by a prompt, i.e. an edit).
 */

const TITAN_SIZES = new Set(['1024x1024', '768x768', '512x512', '768x1152', '1152x768', '768x1280', '1280x768', '896x1152', '1152x896', '768x1408', '1408x768'])
const STABILITY_RATIOS: Record<string, [number, number]> = { '1:1': [1024, 1024], '16:9': [1344, 768], '9:16': [768, 1344], '3:2': [1216, 832], '2:3': [832, 1216] }
export const TITAN_FILTER_MESSAGE = 'This request has been blocked by our content filters. Our filters automatically flagged this prompt because it may conflict our AUP or AWS Responsible AI Policy.'

const fail = (status: number, type: string, message: string) =>
  Response.json({ message }, { status, headers: { 'x-amzn-ErrorType': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`, 'x-amzn-RequestId': crypto.randomUUID() } })

export function bedrockImageInvoke(modelId: string, body: any): Response | null {
  if (modelId.startsWith('amazon.titan-image-generator')) {
    const config = body.imageGenerationConfig ?? {}
    const n = config.numberOfImages ?? 1
    if (!Number.isInteger(n) || n < 1 || n > 5) return fail(400, 'ValidationException', 'Malformed input request: #/imageGenerationConfig/numberOfImages: 6 is not less or equal to 5, please reformat your input and try again.')
    const size = `${config.width ?? 1024}x${config.height ?? 1024}`
    if (!TITAN_SIZES.has(size)) return fail(400, 'ValidationException', `Malformed input request: width and height ${size} are not a supported combination, please reformat your input and try again.`)
    if (config.quality && !['standard', 'premium'].includes(config.quality)) return fail(400, 'ValidationException', 'Malformed input request: #/imageGenerationConfig/quality: standard|premium, please reformat your input and try again.')
    const [w, h] = dims(size)
    let rgb = RED
    let text: string
    if (body.taskType === 'TEXT_IMAGE') {
      text = body.textToImageParams?.text
      if (typeof text !== 'string' || !text) return fail(400, 'ValidationException', 'Malformed input request: #/textToImageParams: required key [text] not found, please reformat your input and try again.')
    } else if (body.taskType === 'IMAGE_VARIATION') {
      const images: unknown[] = body.imageVariationParams?.images ?? []
      if (images.length < 1 || images.length > 5) return fail(400, 'ValidationException', 'Malformed input request: #/imageVariationParams/images: expected 1 to 5 images, please reformat your input and try again.')
      try {
        for (const image of images) decode(Buffer.from(String(image), 'base64'))
      } catch {
        return fail(400, 'ValidationException', 'The provided image is not a valid PNG or JPEG image.')
      }
      text = body.imageVariationParams.text ?? ''
      rgb = text ? GREEN : BLUE
    } else return fail(400, 'ValidationException', `Malformed input request: taskType ${body.taskType} is not supported by this fake.`)
    if (text.includes('forbidden-content')) return fail(400, 'ValidationException', TITAN_FILTER_MESSAGE)
    const picture = png(w, h, rgb).toString('base64')
    return Response.json({ images: Array.from({ length: n }, () => picture), error: null })
  }
  if (modelId.startsWith('stability.')) {
    if (typeof body.prompt !== 'string' || !body.prompt) return fail(400, 'ValidationException', 'Malformed input request: #: required key [prompt] not found, please reformat your input and try again.')
    const allowed = new Set(['prompt', 'aspect_ratio', 'output_format', 'seed', 'negative_prompt', 'mode', 'image', 'strength'])
    const extra = Object.keys(body).find((k) => !allowed.has(k))
    if (extra) return fail(400, 'ValidationException', `Malformed input request: #: extraneous key [${extra}] is not permitted, please reformat your input and try again.`)
    const pixels = STABILITY_RATIOS[body.aspect_ratio ?? '1:1']
    if (!pixels) return fail(400, 'ValidationException', `Malformed input request: #/aspect_ratio: ${body.aspect_ratio} is not a valid enum value, please reformat your input and try again.`)
    if (body.prompt.includes('forbidden-content')) return Response.json({ seeds: [42], finish_reasons: ['Filter reason: prompt'], images: [] })
    const bytes = body.output_format === 'jpeg' ? jpg(pixels[0], pixels[1], RED) : png(pixels[0], pixels[1], RED)
    return Response.json({ seeds: [42], finish_reasons: [null], images: [bytes.toString('base64')] })
  }
  return null
}

export const startFakeBedrockImages = (): Promise<FakeBedrock> => startFakeBedrock({ invoke: bedrockImageInvoke })
