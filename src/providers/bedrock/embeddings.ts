import { GatewayError, badRequest, type AttemptContext, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { authorizedRequest, connection, modelURL, traceId } from './config.ts'
import { parseError } from './response.ts'
import type { TitanEmbeddingRequest, TitanEmbeddingResponse } from './types.ts'

/** Request fields translated below (or owned by the core: the gateway base64-encodes floats itself). */
const HANDLED = new Set(['model', 'input', 'encoding_format', 'dimensions'])
/** Titan calls in flight at once for one request: many inputs must not turn into a self-inflicted throttle. */
const DEFAULT_CONCURRENCY = 16
const DEFAULT_TIMEOUT_MS = 300_000

/** Titan v1 takes `inputText` only; v2 also `dimensions` and `normalize`. */
const isTitanV1 = (model: string) => /titan-embed-(?:text-v1|g1-text)/.test(model)

/** What the fan-out hands to `parseResponse`: one Titan response per input, in input order. */
interface Combined {
  results: TitanEmbeddingResponse[]
}

/**
 * OpenAI embeddings → Amazon Titan Text Embeddings via InvokeModel, which embeds one text per call.
 *
 * One input is one upstream request, made by the core like any other. Several inputs are sent here, in
 * parallel (bounded), because the core makes a single upstream call per attempt; their combined result is
 * handed to the core as a `data:` URL, so usage, base64 encoding, plugins and logging stay the core's. A
 * failed call fails the whole request the way the core would have reported it.
 */
export async function buildRequest(body: Record<string, any>, ctx: AttemptContext): Promise<UpstreamRequest> {
  const { provider, model } = ctx.target
  const inputs = embeddingInputs(body.input)
  const conn = connection(provider)
  const v1 = isTitanV1(model)
  for (const name in body) {
    if (HANDLED.has(name) || body[name] === undefined || body[name] === null) continue
    ctx.dropParam(name)
  }
  if (v1 && body.dimensions != null) ctx.dropParam('dimensions')
  const trace = traceId() // one per client request, shared by its calls
  const requestFor = (inputText: string) => {
    const titan: TitanEmbeddingRequest = { inputText }
    if (!v1) {
      if (typeof body.dimensions === 'number') titan.dimensions = body.dimensions
      titan.normalize = true // OpenAI's embeddings are unit length; similarity code relies on it
    }
    return authorizedRequest(conn, modelURL(conn, model, 'invoke'), JSON.stringify(titan), 'application/json', trace)
  }
  if (inputs.length === 1) return requestFor(inputs[0]!)

  // Signed as each call starts: a long queue of inputs must not outlive the signatures' five minutes.
  const results = await fanOut(inputs.length, (i) => requestFor(inputs[i]!), ctx)
  const combined: Combined = { results }
  return { url: `data:application/json;base64,${Buffer.from(JSON.stringify(combined)).toString('base64')}`, method: 'GET', headers: {} }
}

function embeddingInputs(input: unknown): string[] {
  if (typeof input === 'string') return [input]
  if (Array.isArray(input) && input.length > 0 && input.every((item) => typeof item === 'string')) return input as string[]
  if (Array.isArray(input) && input.length === 0) throw badRequest('input must not be empty.', 'input', 'invalid_value')
  throw badRequest('This provider embeds text only: input must be a string or an array of strings (token arrays are not supported).', 'input', 'unsupported_value')
}

async function fanOut(count: number, requestFor: (i: number) => Promise<UpstreamRequest>, ctx: AttemptContext): Promise<TitanEmbeddingResponse[]> {
  const { provider } = ctx.target
  const options = provider.options as { timeouts?: { first_byte_ms?: number }; embedding_concurrency?: number }
  const timeoutMs = options.timeouts?.first_byte_ms ?? DEFAULT_TIMEOUT_MS
  const concurrency = Math.max(1, options.embedding_concurrency ?? DEFAULT_CONCURRENCY)
  const controller = new AbortController()
  const clientSignal = ctx.request.signal
  const onClientLeft = () => controller.abort(clientSignal.reason)
  clientSignal.addEventListener('abort', onClientLeft, { once: true })
  const timer = setTimeout(() => controller.abort(new DOMException('upstream timeout', 'TimeoutError')), timeoutMs)

  const failure = (error: unknown): GatewayError => {
    if (GatewayError.is(error)) return error
    if (clientSignal.aborted) return new GatewayError(499, 'The client closed the request.', { code: 'client_closed_request' })
    if (controller.signal.aborted) {
      return new GatewayError(504, `The upstream provider '${provider.name}' did not respond in time.`, { code: 'upstream_timeout' })
    }
    // The transport's words can name internal hosts: the log has them, the client does not.
    ctx.request.log.warn({ provider: provider.name, detail: error instanceof Error ? error.message : String(error) }, 'upstream call failed')
    return new GatewayError(502, `Could not reach the upstream provider '${provider.name}'.`, { code: 'upstream_unreachable' })
  }

  const call = async (request: UpstreamRequest): Promise<TitanEmbeddingResponse> => {
    const response = await ctx.fetch(request, controller.signal)
    const text = await response.text()
    let json: any = text
    try {
      json = JSON.parse(text)
    } catch {}
    if (!response.ok) {
      const error = parseError(response.status, json, response.headers)
      if (error.status === 401 || error.status === 403) {
        // As the core does for a single call: our credentials were refused, and the text may quote them.
        ctx.request.log.warn({ provider: provider.name, status: error.status, upstreamMessage: error.message }, 'provider rejected the gateway credentials')
        throw new GatewayError(502, `The provider '${provider.name}' rejected the gateway's credentials (HTTP ${error.status}).`, { code: 'upstream_auth_failed' })
      }
      const retryAfter = response.headers.get('retry-after')
      if (retryAfter && !error.headers['retry-after']) error.headers['retry-after'] = retryAfter
      throw error
    }
    if (!Array.isArray(json?.embedding)) {
      throw new GatewayError(502, `The upstream provider '${provider.name}' returned a response that is not a Titan embedding.`, { code: 'upstream_bad_response' })
    }
    return json as TitanEmbeddingResponse
  }

  const results: TitanEmbeddingResponse[] = new Array(count)
  let next = 0
  const worker = async () => {
    while (next < count && !controller.signal.aborted) {
      const i = next++
      results[i] = await call(await requestFor(i))
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
    // Workers also stop quietly between calls on a timeout or a departed client: never return the holes.
    if (controller.signal.aborted) throw new DOMException('aborted', 'AbortError')
    return results
  } catch (error) {
    const mapped = failure(error)
    controller.abort() // the first failure decides; stop the calls still running
    throw mapped
  } finally {
    clearTimeout(timer)
    clientSignal.removeEventListener('abort', onClientLeft)
  }
}

/** Titan response (one input) or the fan-out's combined results → OpenAI's embeddings list. */
export function parseResponse(body: TitanEmbeddingResponse | Combined, ctx: AttemptContext): Record<string, any> {
  const results = body && typeof body === 'object' && 'results' in body && Array.isArray(body.results) ? body.results : [body as TitanEmbeddingResponse]
  let tokens = 0
  const data = results.map((result, index) => {
    if (!Array.isArray(result?.embedding)) {
      throw new GatewayError(502, 'The upstream provider returned a response that is not a Titan embedding.', { code: 'upstream_bad_response' })
    }
    tokens += Number(result.inputTextTokenCount ?? 0)
    return { object: 'embedding', index, embedding: result.embedding }
  })
  return { object: 'list', data, model: ctx.target.model, usage: { prompt_tokens: tokens, total_tokens: tokens } }
}
