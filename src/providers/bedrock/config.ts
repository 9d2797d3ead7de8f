import { GatewayError, type ProviderConfig, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { sign, uriEncode, type AwsCredentials } from './sigv4.ts'

/** The SigV4 signing name of Bedrock Runtime (the host says `bedrock-runtime`, the scope says `bedrock`). */
export const SERVICE = 'bedrock'
export const DEFAULT_REGION = 'us-east-1'
export const regionalBaseURL = (region: string) => `https://bedrock-runtime.${region}.amazonaws.com`

export type Auth = { kind: 'sigv4'; credentials: AwsCredentials } | { kind: 'bearer'; token: string } | null

export interface Connection {
  baseURL: string
  region: string
  auth: Auth
}

const REGION = /^[a-z0-9-]{1,32}$/
// bedrock-runtime.eu-west-1.amazonaws.com, bedrock-runtime-fips.us-east-1…, vpce-….bedrock-runtime.us-east-1.vpce.amazonaws.com
const HOST_REGION = /(?:^|\.)bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$/

const misconfigured = (provider: ProviderConfig, detail: string) =>
  new GatewayError(500, `The provider '${provider.name}' is misconfigured: ${detail}`, { code: 'provider_misconfigured' })

/** Where to send a provider's requests and how to authenticate them; see index.ts for the configuration. */
export function connection(provider: ProviderConfig): Connection {
  const configured = provider.options.region
  if (configured !== undefined && (typeof configured !== 'string' || !REGION.test(configured))) {
    throw misconfigured(provider, `options.region must be an AWS region name such as 'us-east-1'.`)
  }
  let region = configured as string | undefined
  let baseURL: string
  if (provider.baseURL) {
    baseURL = provider.baseURL.replace(/\/+$/, '')
    // A regional endpoint names its region; signing with another one is a guaranteed 403.
    if (!region) {
      try {
        region = HOST_REGION.exec(new URL(baseURL).hostname)?.[1]
      } catch {
        throw misconfigured(provider, 'base_url is not a URL.')
      }
    }
    region ??= DEFAULT_REGION
  } else {
    region ??= DEFAULT_REGION
    baseURL = regionalBaseURL(region)
  }
  return { baseURL, region, auth: parseAuth(provider) }
}

/**
 * `api_key` holds `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]` (none of the three contains a colon) or a
 * Bedrock API key, which has none. No key: requests go unsigned (for a proxy that signs them itself).
 */
function parseAuth(provider: ProviderConfig): Auth {
  const key = provider.apiKey?.trim()
  if (!key) return null
  const parts = key.split(':')
  if (parts.length === 1) return { kind: 'bearer', token: key }
  if (parts.length > 3 || parts.some((p) => p === '')) {
    throw misconfigured(provider, 'api_key must be ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN] or a Bedrock API key.')
  }
  const [accessKeyId, secretAccessKey, sessionToken] = parts as [string, string, string | undefined]
  return { kind: 'sigv4', credentials: sessionToken ? { accessKeyId, secretAccessKey, sessionToken } : { accessKeyId, secretAccessKey } }
}

/** `/model/{modelId}`: ids hold `:` and ARNs `/`, both percent-encoded into one path segment. */
export const modelURL = (conn: Connection, model: string, action: string) => `${conn.baseURL}/model/${uriEncode(model)}/${action}`

/**
 * An AWS X-Ray trace header (`Root=1-<epoch hex>-<96 random bits>`): AWS-side logs of the calls made for one
 * client request (several for a multi-input embeddings request) share it. Not signed, so it costs nothing.
 */
export function traceId(): string {
  const random = crypto.getRandomValues(new Uint8Array(12))
  return `Root=1-${Math.floor(Date.now() / 1000).toString(16).padStart(8, '0')}-${Buffer.from(random).toString('hex')}`
}

/** A POST with a JSON body, signed (or carrying the API key) for this connection. */
export function authorizedRequest(conn: Connection, url: string, body: string, accept: string, trace: string = traceId()): UpstreamRequest {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept, 'x-amzn-trace-id': trace }
  if (conn.auth?.kind === 'bearer') headers.authorization = `Bearer ${conn.auth.token}`
  else if (conn.auth?.kind === 'sigv4') Object.assign(headers, sign({ method: 'POST', url, body }, conn.auth.credentials, conn.region, SERVICE).headers)
  return { url, method: 'POST', headers, body }
}
