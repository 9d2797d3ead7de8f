import { BLUE, GREEN, RED, decode, dims, jpg, png, type RGB } from '../images/pictures.ts'
import { Gate } from './fake-audio-common.ts'

/**
 * A fake OpenAI images API speaking its wire format (the API reference and the openai SDK's fixtures): JSON
 * generations, multipart edits (`image` or `image[]`, `mask`) and variations, OpenAI's error envelope and its
 * refusals (unknown parameters per model, sizes, content policy), DALL·E URLs it serves itself (as OpenAI's blob
 * host does), and gpt-image-1 SSE streams of partial images. Every image is a real PNG (or JPEG when asked):
 * generations red, edits green, variations blue, partial images a darker shade.
 *
 * Scripted prompts: `forbidden-content` → 400 content_policy_violation; `fail-500`/`fail-503` → that status;
 * `redirect-url` → a URL on the fake that redirects to `redirectTo`; `evil-url` → a URL on a metadata address.
 */

export const FAKE_OPENAI_IMAGES_KEY = 'sk-fake-images-key'

export interface FakeOpenAIImages {
  url: string
  requests: { path: string; headers: Record<string, string>; body: any; files?: { name: string; filename: string; type: string; bytes: Uint8Array }[] }[]
  /** Hits on the fake's own file URLs. */
  fileHits: number
  /** Close to hold every answer before its headers: a provider still drawing. */
  headersGate: Gate
  stop(): void
}

const MODELS: Record<string, { sizes: string[]; maxN: number; gpt: boolean }> = {
  'dall-e-2': { sizes: ['256x256', '512x512', '1024x1024'], maxN: 10, gpt: false },
  'dall-e-3': { sizes: ['1024x1024', '1792x1024', '1024x1792'], maxN: 1, gpt: false },
  'gpt-image-1': { sizes: ['auto', '1024x1024', '1536x1024', '1024x1536'], maxN: 10, gpt: true },
}
const GPT_ONLY = ['output_format', 'output_compression', 'background', 'moderation', 'stream', 'partial_images', 'input_fidelity']

const error = (status: number, message: string, param: string | null = null, code: string | null = null, type = 'invalid_request_error') =>
  Response.json({ error: { message, type, param, code } }, { status })

const darker = (rgb: RGB): RGB => rgb.map((v) => Math.floor(v / 2)) as RGB

export async function startFakeOpenAIImages(options: { redirectTo?: string } = {}): Promise<FakeOpenAIImages> {
  const requests: FakeOpenAIImages['requests'] = []
  const headersGate = new Gate()
  const files = new Map<string, Buffer>()
  let fileHits = 0
  let origin = ''

  const picture = (size: string | undefined, rgb: RGB, format: string | undefined, fallback: [number, number] = [1024, 1024]) => {
    const [w, h] = dims(size, fallback)
    return format === 'jpeg' ? jpg(w, h, rgb) : png(w, h, rgb)
  }

  const answer = (body: Record<string, any>, rgb: RGB, fallback: [number, number] = [1024, 1024], inputImages = 0): Response => {
    const model = MODELS[body.model]!
    const n = body.n ?? 1
    const prompt = String(body.prompt ?? '')
    const useURL = !model.gpt && (body.response_format ?? 'url') === 'url'
    const data = Array.from({ length: n }, () => {
      const bytes = picture(body.size, rgb, body.output_format, fallback)
      if (!useURL) return { b64_json: bytes.toString('base64') }
      const id = crypto.randomUUID()
      files.set(id, bytes)
      let url = `${origin}/files/${id}.png`
      if (prompt.includes('redirect-url')) url = `${origin}/redirect-out`
      if (prompt.includes('evil-url')) url = 'http://169.254.169.254/latest/meta-data/iam/security-credentials/'
      return { url }
    })
    if (body.model === 'dall-e-3') for (const d of data) Object.assign(d, { revised_prompt: `A vivid rendering of: ${prompt}` })
    const response: Record<string, any> = { created: Math.floor(Date.now() / 1000), data }
    if (model.gpt) {
      const text = Math.ceil(prompt.length / 4)
      const image = inputImages * 323
      Object.assign(response, {
        background: body.background === 'transparent' ? 'transparent' : 'opaque',
        output_format: body.output_format ?? 'png',
        quality: body.quality && body.quality !== 'auto' ? body.quality : 'medium',
        size: body.size && body.size !== 'auto' ? body.size : '1024x1024',
        usage: { input_tokens: text + image, input_tokens_details: { text_tokens: text, image_tokens: image }, output_tokens: 1056 * n, total_tokens: text + image + 1056 * n },
      })
    }
    return Response.json(response)
  }

  /** gpt-image-1's stream: `partial_images` partial events, then the completed one with usage, per image. */
  const stream = (body: Record<string, any>, prefix: string, rgb: RGB, inputImages = 0): Response => {
    const prompt = String(body.prompt ?? '')
    const text = Math.ceil(prompt.length / 4)
    const image = inputImages * 323
    const n = body.n ?? 1
    const common = {
      size: body.size && body.size !== 'auto' ? body.size : '1024x1024',
      quality: body.quality && body.quality !== 'auto' ? body.quality : 'medium',
      background: body.background === 'transparent' ? 'transparent' : 'opaque',
      output_format: body.output_format ?? 'png',
    }
    const events: string[] = []
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < (body.partial_images ?? 0); i++) {
        const partial = { type: `${prefix}.partial_image`, b64_json: picture(body.size, darker(rgb), body.output_format).toString('base64'), created_at: Math.floor(Date.now() / 1000), ...common, partial_image_index: i }
        events.push(`event: ${partial.type}\ndata: ${JSON.stringify(partial)}\n\n`)
      }
      const usage = { input_tokens: text + image, input_tokens_details: { text_tokens: text, image_tokens: image }, output_tokens: 1056 * n, total_tokens: text + image + 1056 * n }
      const done = { type: `${prefix}.completed`, b64_json: picture(body.size, rgb, body.output_format).toString('base64'), created_at: Math.floor(Date.now() / 1000), ...common, usage }
      events.push(`event: ${done.type}\ndata: ${JSON.stringify(done)}\n\n`)
    }
    const encoder = new TextEncoder()
    return new Response(
      new ReadableStream({
        async pull(controller) {
          const next = events.shift()
          if (next === undefined) return controller.close()
          // Held between events: a partial image reaches the client before the final one is made.
          await Bun.sleep(20)
          controller.enqueue(encoder.encode(next))
        },
      }),
      { headers: { 'content-type': 'text/event-stream; charset=utf-8' } },
    )
  }

  /** What OpenAI refuses before drawing, shared by the three endpoints. */
  const refuse = (body: Record<string, any>, operation: 'generations' | 'edits' | 'variations'): Response | null => {
    const model = MODELS[body.model]
    if (!model) return error(400, `Invalid value for 'model': '${body.model}' is not an image model.`, 'model', 'invalid_value')
    if (operation !== 'variations' && (typeof body.prompt !== 'string' || body.prompt === '')) return error(400, "Missing required parameter: 'prompt'.", 'prompt', 'missing_required_parameter')
    if (model.gpt && body.response_format !== undefined) return error(400, "Unknown parameter: 'response_format'.", 'response_format', 'unknown_parameter')
    if (!model.gpt) for (const name of GPT_ONLY) if (body[name] !== undefined) return error(400, `Unknown parameter: '${name}'.`, name, 'unknown_parameter')
    if (body.model !== 'dall-e-3' && body.style !== undefined) return error(400, "Unknown parameter: 'style'.", 'style', 'unknown_parameter')
    if (body.size !== undefined && !model.sizes.includes(body.size)) return error(400, `Invalid value: '${body.size}'. Supported values are: ${model.sizes.map((s) => `'${s}'`).join(', ')}.`, 'size', 'invalid_value')
    if ((body.n ?? 1) > model.maxN) return error(400, `Invalid 'n': integer above maximum value. Expected a value <= ${model.maxN}.`, 'n', 'integer_above_max_value')
    const prompt = String(body.prompt ?? '')
    if (prompt.includes('forbidden-content')) {
      return error(400, 'Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.', null, 'content_policy_violation')
    }
    const status = Number(/fail-(\d{3})/.exec(prompt)?.[1])
    if (status) return error(status, `The server had an error while processing your request (fail-${status}).`, null, null, 'server_error')
    return null
  }

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const url = new URL(req.url)
      if (req.method === 'GET' && url.pathname.startsWith('/files/')) {
        fileHits++
        const bytes = files.get(url.pathname.slice(7).replace(/\.png$/, ''))
        return bytes ? new Response(bytes, { headers: { 'content-type': 'image/png' } }) : new Response('not found', { status: 404 })
      }
      if (req.method === 'GET' && url.pathname === '/redirect-out') {
        fileHits++
        return new Response(null, { status: 302, headers: { location: options.redirectTo ?? 'http://localhost:9/' } })
      }
      const headers = Object.fromEntries(req.headers)
      if (req.headers.get('authorization') !== `Bearer ${FAKE_OPENAI_IMAGES_KEY}`) {
        requests.push({ path: url.pathname, headers, body: null })
        return error(401, 'Incorrect API key provided: sk-wr***. You can find your API key at https://platform.openai.com/account/api-keys.', null, 'invalid_api_key')
      }
      const route = /^\/v1\/images\/(generations|edits|variations)$/.exec(url.pathname)
      if (req.method !== 'POST' || !route) return error(404, `Invalid URL (${req.method} ${url.pathname})`)
      const operation = route[1] as 'generations' | 'edits' | 'variations'
      if (operation === 'generations') {
        const body = (await req.json()) as Record<string, any>
        requests.push({ path: url.pathname, headers, body })
        const refused = refuse(body, operation)
        if (refused) return refused
        await headersGate.wait()
        if (body.stream === true && MODELS[body.model]!.gpt) return stream(body, 'image_generation', RED)
        return answer(body, RED)
      }
      // Multipart, as the SDK sends it: the files checked like OpenAI does (decodable images only).
      const form = await req.formData()
      const body: Record<string, any> = {}
      const uploads: { name: string; filename: string; type: string; bytes: Uint8Array }[] = []
      for (const [name, value] of form.entries()) {
        if (typeof value === 'string') body[name] = ['n', 'partial_images', 'output_compression'].includes(name) ? Number(value) : name === 'stream' ? value === 'true' : value
        else uploads.push({ name, filename: value.name, type: value.type, bytes: new Uint8Array(await value.arrayBuffer()) })
      }
      requests.push({ path: url.pathname, headers, body, files: uploads })
      const refused = refuse(body, operation)
      if (refused) return refused
      const images = uploads.filter((u) => u.name === 'image' || u.name === 'image[]')
      if (images.length === 0) return error(400, "Missing required parameter: 'image'.", 'image', 'missing_required_parameter')
      let first: ReturnType<typeof decode>
      try {
        first = decode(images[0]!.bytes)
        for (const u of uploads) decode(u.bytes)
      } catch {
        return error(400, 'Invalid image file or mode for image 1, please check your image file.', 'image', 'invalid_image_file')
      }
      const rgb = operation === 'edits' ? GREEN : BLUE
      if (operation === 'edits' && body.stream === true && MODELS[body.model]!.gpt) return stream(body, 'image_edit', rgb, images.length)
      return answer(body, rgb, [first.width, first.height], images.length)
    },
  })
  origin = `http://127.0.0.1:${server.port}`
  return {
    url: `${origin}/v1`,
    requests,
    get fileHits() {
      return fileHits
    },
    headersGate,
    stop: () => void server.stop(true),
  }
}
