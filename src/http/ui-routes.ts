import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { Elysia } from 'elysia'
import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import type { Gateway } from '../core/gateway.ts'
import { readJsonBody } from '../core/body.ts'
import { isWellFormedKey, secretEquals, sha256 } from '../store/crypto.ts'
import type { SessionRow } from '../store/store.ts'
import page from '../ui/index.html'
import { errorResponse } from './error-response.ts'

/*
 * The Web UI: static files built by Bun from src/ui (HTML import), and the sign-in that turns a master key or a
 * virtual key into a session cookie. The admin API accepts that cookie (see admin-routes.ts), so the UI is a
 * client of the public admin API like any script.
 */

export const SESSION_COOKIE = 'conduit_session'
export const CSRF_HEADER = 'x-conduit-csrf'
export const SESSION_MS = 12 * 3_600_000
const SIGN_IN_MAX_BYTES = 16 * 1024

/**
 * No inline script or style anywhere (the bundle has none): scripts, styles, fetches and images come from this
 * origin only, and no page may frame the UI.
 */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; " +
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
}

// Sessions ------------------------------------------------------------------------------------------------

export interface UiSession {
  role: 'admin' | 'key'
  /** The virtual key a read-only session belongs to. */
  keyId: string | null
  keyName: string | null
  csrf: string
  expiresAt: number
}

/** The CSRF token is derived from the cookie (which scripts cannot read): nothing more to store. */
const csrfFor = (token: string) => sha256(`conduit-csrf:${token}`)
const tokenHash = (token: string) => sha256(`conduit-session:${token}`)

function cookieToken(request: Request): string | null {
  const header = request.headers.get('cookie')
  if (!header) return null
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim() || null
  }
  return null
}

/** Behind TLS, directly or at a proxy that says so. */
const isHttps = (request: Request) =>
  request.url.startsWith('https:') || request.headers.get('x-forwarded-proto')?.split(',')[0]?.trim().toLowerCase() === 'https'

function sessionCookie(request: Request, token: string, maxAgeSec: number) {
  return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSec}${isHttps(request) ? '; Secure' : ''}`
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

const expired = () => new GatewayError(401, 'Your session has ended; sign in again.', { code: 'session_expired' })

export class UiSessions {
  constructor(private readonly gw: Gateway) {}

  /** Whether the request carries a session cookie at all (a bearer token takes precedence over it). */
  static carries(request: Request) {
    return cookieToken(request) !== null
  }

  /**
   * The master key or an enabled virtual key → a new session (its token goes only into the cookie). Wrong
   * secrets count against the address in the admin API's brute-force throttle (more than 10 a minute: 429).
   */
  async signIn(secret: string, address: string | null): Promise<{ token: string; session: UiSession }> {
    const guard = this.gw.adminGuard
    guard.refuseLockedOut(address)
    const now = Date.now()
    let row: SessionRow | null = null
    const token = randomBytes(32).toString('base64url')
    const base = { token_hash: tokenHash(token), created_at: now, expires_at: now + SESSION_MS }
    let keyName: string | null = null
    if (this.gw.isMasterKey(secret)) row = { ...base, role: 'admin', key_id: null, principal: this.gw.masterFingerprint }
    else if (isWellFormedKey(secret)) {
      const key = await this.gw.store.findKeyByHash(sha256(secret))
      if (key && key.enabled && (key.expiresAt === null || key.expiresAt > now)) {
        row = { ...base, role: 'key', key_id: key.id, principal: key.id }
        keyName = key.name
      }
    }
    if (!row) {
      guard.countFailure(address) // throws the 429 once over the limit
      throw new GatewayError(401, 'That key is not valid. Use the master key, or an enabled virtual key (condt_…).', { code: 'invalid_api_key' })
    }
    await this.gw.store.insertSession(row)
    return { token, session: { role: row.role, keyId: row.key_id, keyName, csrf: csrfFor(token), expiresAt: row.expires_at } }
  }

  /**
   * The session the cookie names, still valid: not expired, not signed out, granted by the current master key
   * or by a key that is still enabled. A state-changing method also needs the CSRF header. Throws 401/403.
   */
  async verify(request: Request): Promise<UiSession> {
    const token = cookieToken(request)
    if (!token) throw new GatewayError(401, 'Sign in first.', { code: 'missing_session' })
    const row = await this.gw.store.getSession(tokenHash(token))
    if (!row || row.expires_at <= Date.now()) throw expired()
    let keyName: string | null = null
    if (row.role === 'admin') {
      if (row.principal !== this.gw.masterFingerprint) throw expired()
    } else {
      const [key] = await this.gw.store.findKeys(row.principal)
      if (!key || key.id !== row.key_id || !key.enabled || (key.expiresAt !== null && key.expiresAt <= Date.now())) throw expired()
      keyName = key.name
    }
    const csrf = csrfFor(token)
    if (UNSAFE.has(request.method) && !secretEquals(request.headers.get(CSRF_HEADER) ?? '', csrf)) {
      throw new GatewayError(403, `A change made with a session cookie needs the "${CSRF_HEADER}" header the session gave out.`, { code: 'csrf_failed' })
    }
    return { role: row.role as 'admin' | 'key', keyId: row.key_id, keyName, csrf, expiresAt: row.expires_at }
  }

  async signOut(request: Request) {
    await this.verify(request) // the CSRF header too: another site cannot sign a user out
    await this.gw.store.deleteSession(tokenHash(cookieToken(request)!))
  }
}

// Static files ---------------------------------------------------------------------------------------------

interface Asset {
  body: Blob | string
  type: string
  etag: string
}

/**
 * The bundle: inside `dist/conduit` Bun built it ahead of time (`page.files`); from source it is built here,
 * once, on the first request for /ui. Asset references in the HTML are pointed at /ui/assets/.
 */
async function buildAssets(): Promise<{ html: string; assets: Map<string, Asset> }> {
  const assets = new Map<string, Asset>()
  let html = ''
  if (page.files?.length) {
    for (const file of page.files) {
      const name = path.basename(file.path)
      if (file.loader === 'html') html = await Bun.file(file.path).text()
      else assets.set(name, { body: Bun.file(file.path), type: file.headers['content-type'], etag: `"${file.headers.etag}"` })
    }
  } else {
    const result = await Bun.build({ entrypoints: [page.index], target: 'browser', minify: true, sourcemap: 'none' })
    if (!result.success) throw new AggregateError(result.logs, 'The Web UI did not build')
    for (const output of result.outputs) {
      const name = path.basename(output.path)
      if (name.endsWith('.html')) html = await output.text()
      else assets.set(name, { body: output, type: output.type, etag: `"${output.hash ?? sha256(await output.text()).slice(0, 16)}"` })
    }
  }
  for (const name of assets.keys()) html = html.replace(new RegExp(`(["'])(?:\\./|/)?${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\1`, 'g'), `$1/ui/assets/${name}$1`)
  return { html, assets }
}

let bundle: Promise<{ html: string; assets: Map<string, Asset> }> | null = null
const loadBundle = () => (bundle ??= buildAssets().catch((error) => {
  bundle = null
  throw error
}))

// Routes ---------------------------------------------------------------------------------------------------

const sessionView = (s: UiSession) => ({
  object: 'session',
  role: s.role,
  key: s.keyId ? { id: s.keyId, name: s.keyName } : null,
  csrf_token: s.csrf,
  expires_at: Math.floor(s.expiresAt / 1000),
})

/**
 * Another site's page can post a form to the sign-in (as text/plain it needs no CORS preflight) and so replace the
 * user's session with one of its choosing. A sign-in is JSON, which a form cannot send, and when the browser names the
 * page's origin, it is this host.
 */
function refuseCrossSite(request: Request) {
  if (!(request.headers.get('content-type') ?? '').toLowerCase().startsWith('application/json')) {
    throw new GatewayError(415, 'Sign in with a JSON body (content-type: application/json).', { code: 'unsupported_media_type' })
  }
  const origin = request.headers.get('origin')
  if (origin && URL.parse(origin)?.host !== request.headers.get('host')) {
    throw new GatewayError(403, "Sign in from the Web UI's own page.", { code: 'cross_origin_sign_in' })
  }
}

export function uiRoutes(gw: Gateway, sessions: UiSessions) {
  const index = async () => {
    const { html } = await loadBundle()
    return new Response(html, { headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS } })
  }
  return (
    new Elysia({ name: 'routes/ui' })
      // The recorder notes each client's address while the request is live; it needs the server for that.
      .onStart(({ server }) => {
        if (server) gw.attachServer(server)
      })
      .onParse(({ request, path: route }) =>
        route.startsWith('/ui/api/') ? readJsonBody(request, SIGN_IN_MAX_BYTES, 10_000, () => null) : undefined,
      )
      .get('/ui', index)
      .get('/ui/', index)
      .get('/ui/assets/:name', async ({ params, request }) => {
        const asset = (await loadBundle()).assets.get(params.name)
        if (!asset) return errorResponse(new GatewayError(404, `No UI asset '${params.name}'.`, { code: 'not_found' }))
        const headers = { 'content-type': asset.type, etag: asset.etag, 'cache-control': 'public, max-age=31536000, immutable', ...SECURITY_HEADERS }
        if (request.headers.get('if-none-match') === asset.etag) return new Response(null, { status: 304, headers })
        return new Response(asset.body, { headers })
      })
      .post('/ui/api/session', async ({ body, request, server }) => {
        refuseCrossSite(request)
        const key = (body as { key?: unknown } | null)?.key
        if (typeof key !== 'string' || key.trim() === '') throw badRequest("Send the key to sign in with as {\"key\": \"…\"}.", 'key', 'missing_required_parameter')
        const { token, session } = await sessions.signIn(key.trim(), server?.requestIP(request)?.address ?? null)
        return new Response(JSON.stringify(sessionView(session)), {
          status: 201,
          headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'set-cookie': sessionCookie(request, token, SESSION_MS / 1000) },
        })
      })
      .get('/ui/api/session', async ({ request }) => {
        const session = await sessions.verify(request)
        return new Response(JSON.stringify(sessionView(session)), { headers: { 'content-type': 'application/json', 'cache-control': 'no-store' } })
      })
      .delete('/ui/api/session', async ({ request }) => {
        await sessions.signOut(request)
        return new Response(JSON.stringify({ object: 'session', deleted: true }), {
          headers: { 'content-type': 'application/json', 'set-cookie': sessionCookie(request, '', 0) },
        })
      })
      // Client-side routes (/ui/keys, /ui/requests/…) all load the one page.
      .get('/ui/*', index)
  )
}
