import { FAKE_API_KEY } from './fake-gemini.ts'
import { BLUE, GREEN, RED, decode, jpg, png, type RGB } from '../images/pictures.ts'

/**
 * A fake Gemini API for images, in its wire format: Imagen's `:predict` (`instances[].prompt`,
 * `parameters.sampleCount|aspectRatio|imageSize|outputOptions|includeRaiReason` → `predictions[].bytesBase64Encoded`,
 * filtered prompts as `raiFilteredReason`) and the Gemini image models' `:generateContent` (text and `inlineData`
 * parts in, a text part and an `inlineData` PNG out, `usageMetadata` with IMAGE token details, `IMAGE_SAFETY`
 * refusals). Google's error envelope, `x-goog-api-key` auth. Real PNG/JPEG pictures of Imagen's sizes.
 */

export { FAKE_API_KEY as FAKE_GEMINI_IMAGES_KEY }

const IMAGEN_PIXELS: Record<string, [number, number]> = { '1:1': [1024, 1024], '3:4': [896, 1280], '4:3': [1280, 896], '9:16': [768, 1408], '16:9': [1408, 768] }
const GEMINI_PIXELS: Record<string, [number, number]> = { '1:1': [1024, 1024], '2:3': [832, 1248], '3:2': [1248, 832], '16:9': [1344, 768], '9:16': [768, 1344] }
export const GEMINI_IMAGE_TOKENS = 1290

const googleError = (code: number, status: string, message: string, details: unknown[] = []) => Response.json({ error: { code, message, status, details } }, { status: code })

export interface FakeGeminiImages {
  url: string
  requests: { path: string; body: any }[]
  stop(): void
}

export async function startFakeGeminiImages(): Promise<FakeGeminiImages> {
  const requests: FakeGeminiImages['requests'] = []
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const url = new URL(req.url)
      const body = (await req.json().catch(() => null)) as any
      requests.push({ path: url.pathname, body })
      if ((req.headers.get('x-goog-api-key') ?? url.searchParams.get('key')) !== FAKE_API_KEY) {
        return googleError(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
          { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com' },
        ])
      }
      const route = /^\/v1beta\/models\/([^/:]+):(predict|generateContent)$/.exec(url.pathname)
      if (req.method !== 'POST' || !route) return googleError(404, 'NOT_FOUND', `Method not found: ${url.pathname}`)
      const [, model, method] = route as unknown as [string, string, string]
      if (method === 'predict') {
        if (!model.startsWith('imagen-')) return googleError(400, 'INVALID_ARGUMENT', `models/${model} is not found for API version v1beta, or is not supported for predict.`)
        const prompt = body?.instances?.[0]?.prompt
        if (typeof prompt !== 'string' || !prompt) return googleError(400, 'INVALID_ARGUMENT', 'Invalid value at instances[0].prompt: a prompt is required.')
        const p = body.parameters ?? {}
        const count = p.sampleCount ?? 4
        if (!Number.isInteger(count) || count < 1 || count > 4) return googleError(400, 'INVALID_ARGUMENT', 'sampleCount must be between 1 and 4.')
        const ratio = p.aspectRatio ?? '1:1'
        const pixels = IMAGEN_PIXELS[ratio]
        if (!pixels) return googleError(400, 'INVALID_ARGUMENT', `Unsupported aspect ratio: ${ratio}.`)
        const status = Number(/fail-(\d{3})/.exec(prompt)?.[1])
        if (status) return googleError(status, status === 429 ? 'RESOURCE_EXHAUSTED' : 'INTERNAL', `Scripted failure (fail-${status}).`)
        if (prompt.includes('forbidden-content')) {
          // Imagen filters rather than fails: the reason only when asked for.
          return Response.json({ predictions: p.includeRaiReason ? [{ raiFilteredReason: "Your current prompt may violate our policies. If you think this was an error, send feedback. Support codes: 58061214" }] : [] })
        }
        const jpeg = p.outputOptions?.mimeType === 'image/jpeg'
        const bytes = jpeg ? jpg(pixels[0], pixels[1], RED) : png(pixels[0], pixels[1], RED)
        return Response.json({ predictions: Array.from({ length: count }, () => ({ mimeType: jpeg ? 'image/jpeg' : 'image/png', bytesBase64Encoded: bytes.toString('base64') })) })
      }
      if (!model.includes('image')) return googleError(400, 'INVALID_ARGUMENT', 'Model does not support the requested response modalities: image,text')
      const parts: any[] = body?.contents?.at(-1)?.parts ?? []
      const prompt = parts.map((x) => x.text ?? '').join(' ')
      const modalities: string[] = body?.generationConfig?.responseModalities ?? []
      if (!modalities.includes('IMAGE')) return Response.json({ candidates: [{ content: { role: 'model', parts: [{ text: 'I can only describe it.' }] }, finishReason: 'STOP' }] })
      let rgb: RGB = RED
      const inline = parts.filter((x) => x.inlineData)
      for (const x of inline) {
        try {
          decode(Buffer.from(x.inlineData.data, 'base64'))
        } catch {
          return googleError(400, 'INVALID_ARGUMENT', 'Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting')
        }
        rgb = GREEN
      }
      if (prompt.includes('forbidden-content')) {
        return Response.json({ candidates: [{ finishReason: 'IMAGE_SAFETY', finishMessage: 'Unable to show the generated image: it was filtered for safety.', index: 0 }], usageMetadata: { promptTokenCount: 12, totalTokenCount: 12 } })
      }
      const ratio = body?.generationConfig?.imageConfig?.aspectRatio ?? '1:1'
      const [w, h] = GEMINI_PIXELS[ratio] ?? [1024, 1024]
      const promptTokens = Math.ceil(prompt.length / 4) + inline.length * 258
      return Response.json({
        candidates: [
          {
            content: { role: 'model', parts: [{ text: 'Here is your picture.' }, { inlineData: { mimeType: 'image/png', data: png(w, h, inline.length ? rgb : BLUE).toString('base64') } }] },
            finishReason: 'STOP',
            index: 0,
          },
        ],
        usageMetadata: {
          promptTokenCount: promptTokens,
          candidatesTokenCount: GEMINI_IMAGE_TOKENS + 6,
          totalTokenCount: promptTokens + GEMINI_IMAGE_TOKENS + 6,
          candidatesTokensDetails: [
            { modality: 'TEXT', tokenCount: 6 },
            { modality: 'IMAGE', tokenCount: GEMINI_IMAGE_TOKENS },
          ],
        },
        modelVersion: model,
      })
    },
  })
  return { url: `http://127.0.0.1:${server.port}/v1beta`, requests, stop: () => void server.stop(true) }
}
