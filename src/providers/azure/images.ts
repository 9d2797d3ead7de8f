import {
  declaredImageAbilities,
  imageUpload,
  openAIImageAbilities,
  openAIImageParams,
  type AttemptContext,
  type ImageAbilities,
  type ImagesAdapter,
  type ProviderConfig,
  type UpstreamRequest,
} from '../../plugin-sdk/index.ts'
import { GatewayError } from '../../plugin-sdk/index.ts'
import { parseError } from './response.ts'
import { resourceEndpoint, surfaceOf } from './request.ts'

/**
 * Images on Azure OpenAI: OpenAI's wire format at the deployment's paths (`/openai/deployments/{name}/images/…`,
 * or `/openai/v1/images/…` with the deployment as `model`). A deployment's name says nothing sure about its model,
 * so its abilities are OpenAI's for the model the name contains (`dall-e-3`, `gpt-image-1`, …), else permissive;
 * `options.images` declares them exactly. DALL·E URLs live on Azure blob storage. gpt-image-1 needs an
 * `api_version` of 2025-04-01-preview or later.
 */
const AZURE_IMAGE_HOSTS = ['*.blob.core.windows.net']
const KNOWN = /(dall-e-[23]|gpt-image-[0-9][\w.-]*)/i

export function azureImageAbilities(provider: ProviderConfig, deployment: string): ImageAbilities {
  const model = KNOWN.exec(deployment)?.[1]?.toLowerCase() ?? deployment
  const own = openAIImageAbilities(model)
  return declaredImageAbilities(provider, { ...own, urlHosts: own.returns === 'b64_json' ? undefined : AZURE_IMAGE_HOSTS })
}

const PATHS = { images: '/images/generations', image_edits: '/images/edits', image_variations: '/images/variations' } as const

function buildRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model: deployment } = ctx.target
  const operation = ctx.request.operation as keyof typeof PATHS
  const path = PATHS[operation]
  if (!path) throw new GatewayError(400, 'Azure does not serve this image operation.', { code: 'unsupported_endpoint' })
  const surface = surfaceOf(provider)
  const base = resourceEndpoint(provider)
  const url = surface.v1
    ? `${base}/openai/v1${path}`
    : `${base}/openai/deployments/${encodeURIComponent(deployment)}${path}?api-version=${encodeURIComponent(surface.apiVersion)}`
  const upstream: Record<string, any> = {}
  for (const name in body) if (body[name] !== null && body[name] !== undefined) upstream[name] = body[name]
  const model = KNOWN.exec(deployment)?.[1]?.toLowerCase() ?? deployment
  for (const [name, policy] of Object.entries(openAIImageParams(model))) {
    if (!(name in upstream)) continue
    const action = typeof policy === 'function' ? policy(upstream[name]) : policy
    if (action === 'pass') continue
    if (action === 'refuse') throw new GatewayError(400, `The provider '${provider.name}' does not support the '${name}' parameter.`, { param: name, code: 'unsupported_parameter' })
    delete upstream[name]
    ctx.dropParam(name)
  }
  const headers: Record<string, string> = provider.apiKey ? { 'api-key': provider.apiKey } : {}
  const accept = upstream.stream ? 'text/event-stream' : 'application/json'
  if (operation !== 'images') {
    const upload = imageUpload(upstream, deployment, surface.v1 ? [] : ['model'])
    return { url, headers: { ...headers, ...upload.headers, accept }, body: upload.body }
  }
  if (surface.v1) upstream.model = deployment
  else delete upstream.model
  return { url, headers: { ...headers, 'content-type': 'application/json', accept }, body: JSON.stringify(upstream) }
}

export const azureImages: ImagesAdapter = { abilities: azureImageAbilities, buildRequest, parseError }
