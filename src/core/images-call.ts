import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import type { ImageOperation, ImagesAdapter, ImagesResult } from '../plugin-sdk/types.ts'
import type { Store } from '../store/store.ts'
import { SSE_HEADERS, firstBytes, relayBytes, sseEventWatcher, streamEnd, wholeText, type OperationCall } from './upstream-body.ts'
import type { Attempt, RequestCtx } from './context.ts'
import { fetchProviderImage } from './images-fetch.ts'
import { publicOrigin, storeImageFile } from './images-files.ts'
import { abandonedImageUsage, imageUsage, openAIImagesUsage, requestedImages } from '../plugin-sdk/images-usage.ts'
import { IMAGE_MAX_UPLOAD_BYTES, MAX_EDIT_IMAGES, STREAM_PREFIX, checkImageRequest, completedEvents, describeImage, imageFormBody } from './images.ts'
import { validateRequest } from './request-schemas.ts'
import type { AttemptLease } from './router.ts'
import { readMultipart } from './spool.ts'
import type { Timeouts, UpstreamCall } from './upstream.ts'

/** What an images attempt needs from the pipeline, which owns the accounting. */
export interface ImagesCallDeps {
  store: Store
  maxUpstreamBodyBytes: number
  settle(ctx: RequestCtx, response: Response): Response
  report(ctx: RequestCtx, aborted: boolean): void
  /** The onResponse plugins, on the final body. */
  response(attempt: Attempt, body: Record<string, any>): Promise<Record<string, any>>
}

/** Every upload of an edit together (16 images at the per-image limit would be 800 MB: more than any real edit). */
const IMAGE_MAX_BODY_BYTES = 128 * 1024 * 1024
/** A partial image of a 1536x1024 PNG is a few MB of base64: an event is allowed far more before the stream is refused. */
const MAX_IMAGE_EVENT_BYTES = 96 * 1024 * 1024

/**
 * An edit or a variation: the form's fields checked like a JSON body, then its images (`image`, `image[]`) and
 * `mask` spooled and identified by their bytes — anything but PNG, JPEG or WebP is a 400 before any call.
 */
export async function readImageForm(ctx: RequestCtx, request: Request, operation: ImageOperation, o: { idleMs: number; memoryBytes: number }): Promise<Record<string, any>> {
  const form = await readMultipart(
    request,
    { maxFileBytes: IMAGE_MAX_UPLOAD_BYTES, maxBodyBytes: IMAGE_MAX_BODY_BYTES, idleMs: o.idleMs, memoryBytes: o.memoryBytes },
    (fn) => ctx.onEnd(fn),
  )
  const body = imageFormBody(form.fields)
  validateRequest(operation, body)
  const images = form.files.filter((f) => f.name === 'image')
  if (images.length === 0) throw badRequest("Missing required parameter: 'image'.", 'image', 'missing_required_parameter')
  const most = operation === 'image_edits' ? MAX_EDIT_IMAGES : 1
  if (images.length > most) throw badRequest(`At most ${most} image${most === 1 ? '' : 's'} may be sent here; got ${images.length}.`, 'image', 'invalid_value')
  const uploads = await Promise.all(images.map((f) => describeImage(f, 'image')))
  body.image = operation === 'image_edits' ? uploads : uploads[0]
  const mask = form.files.find((f) => f.name === 'mask')
  if (mask && operation === 'image_edits') {
    body.mask = await describeImage(mask, 'mask')
    // Its alpha channel is the mask: only a PNG has one the providers read.
    if (body.mask.format !== 'png') throw new GatewayError(400, 'The mask must be a PNG image (its transparent pixels mark what to edit).', { param: 'mask', code: 'invalid_image_format' })
  }
  return body
}

/**
 * One attempt at an images target: the request checked against what the target makes (400 naming the param
 * before any call), the response turned into what the client asked — URLs the gateway serves for base64-only
 * providers, base64 fetched (safely) from URL-only ones, partial images relayed as they come or the final images as
 * events for providers that do not stream — and the usage in images, sizes, qualities and tokens.
 */
export async function prepareImagesCall(ctx: RequestCtx, attempt: Attempt, adapter: ImagesAdapter, deps: ImagesCallDeps): Promise<OperationCall> {
  const operation = ctx.operation as ImageOperation
  const body = ctx.body!
  const { provider, model } = attempt.target
  const abilities = adapter.abilities(provider, model)
  checkImageRequest(operation, body, abilities, provider, model)
  const streamUp = ctx.stream && abilities.stream
  const upstreamBody: Record<string, any> = { ...body }
  // A provider that returns one form only is not asked for the other: the gateway converts.
  if (abilities.returns !== 'either') delete upstreamBody.response_format
  if (!streamUp) {
    delete upstreamBody.stream
    if (upstreamBody.partial_images) attempt.dropParam('partial_images') // the final images still come as events
    delete upstreamBody.partial_images
  }
  // Streamed images are always base64 (OpenAI's events carry nothing else); otherwise what the client asked, or
  // whatever the provider gives when it did not say.
  const wanted: 'url' | 'b64_json' | undefined = ctx.stream ? 'b64_json' : body.response_format
  const prefix = STREAM_PREFIX[operation]

  const convert = async (result: ImagesResult, providerOrigin: string) => {
    const hosts = { baseURL: providerOrigin, hosts: abilities.urlHosts ?? [] }
    const origin = publicOrigin(ctx.request)
    await Promise.all(
      result.data.map(async (item) => {
        if (wanted === 'url' && !item.url && typeof item.b64_json === 'string') {
          item.url = await storeImageFile(deps.store, item.b64_json, origin)
          delete item.b64_json
        } else if (wanted === 'b64_json' && !item.b64_json && typeof item.url === 'string') {
          item.b64_json = Buffer.from(await fetchProviderImage(item.url, hosts, ctx.signal)).toString('base64')
          delete item.url
        }
      }),
    )
  }

  return {
    body: upstreamBody,
    abandoned: () => abandonedImageUsage(body),
    async respond(response, call, lease, timeouts, started) {
      const name = provider.name
      const type = response.headers.get('content-type') ?? ''
      if (streamUp && prefix && type.includes('text/event-stream') && response.body) {
        const { reader, first } = await firstBytes(ctx, response.body, call, lease, started, name, true)
        let images = 0
        let reported: unknown = null
        const stream = relayBytes(reader, first, call, timeouts.idleMs, {
          sse: false,
          // The bytes go as they came; only the completed events are parsed, for the usage and the count.
          onBytes: sseEventWatcher(
            `${prefix}.completed`,
            (event) => {
              images++
              if (event.usage) reported = event.usage
            },
            MAX_IMAGE_EVENT_BYTES,
          ),
          // A client that leaves before its last picture came is billed them all: the provider makes them anyway.
          onFinish: streamEnd(ctx, attempt, lease, deps.report, (aborted) =>
            aborted && images < requestedImages(body) ? abandonedImageUsage(body) : imageUsage(body, images, reported),
          ),
        })
        ctx.status = 200
        return new Response(stream, { status: 200, headers: { ...SSE_HEADERS, ...ctx.headers } })
      }
      const text = await wholeText(response, call, lease, started, deps.maxUpstreamBodyBytes, name)
      let result: ImagesResult
      try {
        const parsed = JSON.parse(text)
        result = adapter.parseResponse ? adapter.parseResponse(parsed, attempt) : parsed
      } catch (error) {
        if (GatewayError.is(error)) throw error
        throw new GatewayError(502, `The upstream provider '${name}' returned a response that is not JSON.`, { code: 'upstream_bad_response' })
      }
      if (!result || !Array.isArray(result.data)) throw new GatewayError(502, `The upstream provider '${name}' returned no images.`, { code: 'upstream_bad_response' })
      await convert(result, new URL(response.url || 'http://invalid').origin)
      ctx.usage = imageUsage(body, result.data.length, result.usage)
      ctx.priceAnswer()
      ctx.firstByteMs = performance.now() - ctx.startedAt
      if (ctx.stream && prefix) {
        const events = completedEvents(operation, body, result, openAIImagesUsage(ctx.usage))
        return deps.settle(ctx, new Response(new Blob(events), { status: 200, headers: { ...SSE_HEADERS, ...ctx.headers } }))
      }
      const out: Record<string, any> = { ...result, created: result.created ?? Math.floor(Date.now() / 1000) }
      const final = await deps.response(attempt, out)
      return deps.settle(ctx, new Response(JSON.stringify(final), { status: 200, headers: { 'content-type': 'application/json', ...ctx.headers } }))
    },
  }
}
