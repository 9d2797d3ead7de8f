import { GatewayError, badRequest, type AttemptContext, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { baseURL, headers } from './request.ts'
import type { CohereEmbedRequest, CohereEmbedResponse, CohereInputType } from './types.ts'

const INPUT_TYPES = new Set<CohereInputType>(['search_document', 'search_query', 'classification', 'clustering'])

/**
 * OpenAI embeddings request → Cohere `POST /v2/embed`. Cohere's v3+ models need an `input_type`, which OpenAI
 * has no field for: `options.embed_input_type` sets it per provider (default `search_document`). Floats are
 * always asked for; the core encodes base64 when the client wants it.
 */
export function buildEmbedRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model } = ctx.target
  const input = body.input
  const texts = typeof input === 'string' ? [input] : Array.isArray(input) && input.every((item) => typeof item === 'string') ? [...input] : null
  if (!texts) throw badRequest('This provider embeds text only: input must be a string or an array of strings.', 'input', 'unsupported_value')
  const configured = provider.options.embed_input_type
  const inputType = typeof configured === 'string' && INPUT_TYPES.has(configured as CohereInputType) ? (configured as CohereInputType) : 'search_document'
  const request: CohereEmbedRequest = { model, texts, input_type: inputType, embedding_types: ['float'] }
  if (typeof body.dimensions === 'number') request.output_dimension = body.dimensions
  for (const name in body) {
    if (['model', 'input', 'dimensions', 'encoding_format'].includes(name) || body[name] == null) continue
    ctx.dropParam(name)
  }
  return { url: `${baseURL(provider)}/v2/embed`, headers: headers(provider, false), body: JSON.stringify(request) }
}

/** Cohere embed response → OpenAI's list; usage from the billed input tokens (Cohere reports no other count). */
export function parseEmbedResponse(body: CohereEmbedResponse, ctx: AttemptContext): Record<string, any> {
  const vectors = body?.embeddings?.float
  if (!Array.isArray(vectors)) {
    throw new GatewayError(502, 'The upstream provider returned an embed response without float embeddings.', { code: 'upstream_bad_response' })
  }
  const tokens = body.meta?.billed_units?.input_tokens ?? 0
  return {
    object: 'list',
    data: vectors.map((embedding, index) => ({ object: 'embedding', index, embedding })),
    model: ctx.target.model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  }
}
