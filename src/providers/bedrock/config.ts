import { GatewayError, type ProviderConfig, type UpstreamRequest } from '../../plugin-sdk/index.ts'

/** The SigV4 signing name of Bedrock Runtime (the host says `bedrock-runtime`, the scope says `bedrock`). */
export const SERVICE = 'bedrock'
export const DEFAULT_REGION = 'us-east-1'
export const regionalBaseURL = (region: string) => `https://bedrock-runtime.${region}.amazonaws.com`

export interface AwsCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

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

/** RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - . _ ~` (encodeURIComponent also spares `!'()*`). */
const uriEncode = (value: string) => encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

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

/**
 * The AWS SDK's signer, loaded with the first signed request (as framer.ts loads its codec): megabytes of code a
 * gateway without Bedrock keys never needs. SHA-256 is node:crypto's (the SDK's own Node hash), native in Bun.
 */
let signerSdk: { SignatureV4: typeof import('@smithy/signature-v4').SignatureV4; Sha256: new (secret?: unknown) => any } | null = null
function awsSigner() {
  if (signerSdk) return signerSdk
  const { SignatureV4 } = require('@smithy/signature-v4') as typeof import('@smithy/signature-v4')
  const { Hash } = require('@smithy/core/serde') as typeof import('@smithy/core/serde')
  class Sha256 extends Hash {
    constructor(secret?: unknown) {
      super('sha256', secret as any)
    }
  }
  return (signerSdk = { SignatureV4, Sha256 })
}

/**
 * SigV4 by the AWS SDK's own signer (`@smithy/signature-v4`; it caches the derived key per day, region and
 * service). Only `host` is handed to it, so it signs host, x-amz-date, x-amz-content-sha256 and, with
 * temporary credentials, x-amz-security-token: headers that proxies or plugins add later cannot break the
 * signature. The path is signed as sent, encoded once more (the non-S3 rule): `…-v1%3A0` → `…-v1%253A0`.
 */
export async function signedHeaders(url: string, body: string, credentials: AwsCredentials, region: string, signingDate?: Date): Promise<Record<string, string>> {
  const target = new URL(url)
  const { SignatureV4, Sha256 } = awsSigner()
  const signer = new SignatureV4({ credentials, region, service: SERVICE, sha256: Sha256 })
  const signed = await signer.sign(
    {
      method: 'POST',
      protocol: target.protocol,
      hostname: target.hostname,
      port: target.port ? Number(target.port) : undefined,
      path: target.pathname,
      query: Object.fromEntries(target.searchParams),
      headers: { host: target.host },
      body,
    },
    { signingDate },
  )
  const { host: _host, ...headers } = signed.headers // fetch sets Host itself
  return headers
}

/** A POST with a JSON body, signed (or carrying the API key) for this connection. */
export async function authorizedRequest(conn: Connection, url: string, body: string, accept: string, trace: string = traceId()): Promise<UpstreamRequest> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept, 'x-amzn-trace-id': trace }
  if (conn.auth?.kind === 'bearer') headers.authorization = `Bearer ${conn.auth.token}`
  else if (conn.auth?.kind === 'sigv4') Object.assign(headers, await signedHeaders(url, body, conn.auth.credentials, conn.region))
  return { url, method: 'POST', headers, body }
}
