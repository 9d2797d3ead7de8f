import { Elysia } from 'elysia'
import type { Server } from 'bun'
import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import type { Gateway } from '../core/gateway.ts'
import type { Logger } from '../plugin-sdk/types.ts'
import { readJsonBody } from '../core/body.ts'
import type { Route, Transport } from '../core/pipeline.ts'
import type { UpgradeTransport } from '../realtime/service.ts'
import { secretEquals } from '../store/crypto.ts'
import { storeUnavailable } from '../store/store.ts'
import { adminRoutes } from './admin-routes.ts'
import { errorResponse } from './error-response.ts'
import { serveImageFile } from '../core/images-files.ts'
import { UiSessions, uiRoutes } from './ui-routes.ts'

/** The only Elysia-aware code: routes map to the framework-free pipeline and admin service. */

export interface EdgeOptions {
  /** Largest request body, and how long it may take to arrive: the admin bodies Elysia parses are held to both. */
  maxBodyBytes: number
  bodyTimeoutMs: number
  /** When set, `/metrics` needs `Authorization: Bearer <token>`; unset, it is open (scrapers sit on a private network). */
  metricsToken?: string
  /** Browser origins (`https://app.example.com`) that may call `/v1/*`; none: no CORS headers and no hook at all. */
  corsOrigins?: readonly string[]
}

/** POST routes the pipeline answers whole; `/v1/audio/speech/stream` is speech whose SSE form `Accept` may choose. */
const PROXIED: Record<string, Route> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
  '/v1/audio/transcriptions': 'transcriptions',
  '/v1/audio/translations': 'translations',
  '/v1/audio/speech': 'speech',
  '/v1/audio/speech/stream': 'speech',
  '/v1/realtime/sessions': 'realtime_sessions',
  '/v1/realtime/client_secrets': 'realtime_sessions',
  '/v1/images/generations': 'images',
  '/v1/images/edits': 'image_edits',
  '/v1/images/variations': 'image_variations',
  '/v1/responses': 'responses',
  '/v1/messages': 'messages',
  '/v1/messages/count_tokens': 'messages_count_tokens',
}

/** Elysia's own failures (parse, unknown route) rendered in the one envelope; admin bodies are validated by the core. */
function renderFrameworkError(code: string | number, error: any, request: Request, gw: Gateway): Response {
  const log = gw.log
  if (GatewayError.is(error)) return errorResponse(error)
  // Elysia wraps whatever a parser throws, our own 413 included.
  if (code === 'PARSE') return errorResponse(GatewayError.is(error.cause) ? error.cause : badRequest('We could not parse the JSON body of your request.', null, 'invalid_json'))
  if (code === 'NOT_FOUND') {
    const url = new URL(request.url)
    const unknown = new GatewayError(404, `Unknown request URL: ${request.method} ${url.pathname}.`, { code: 'unknown_url' })
    // A route's path with a method it does not take (GET /v1/messages): refused in the route's protocol.
    const route = PROXIED[url.pathname]
    return route ? gw.pipeline.refusal(route, unknown) : errorResponse(unknown)
  }
  return renderThrown(error, log, code)
}

/** What a route threw: a GatewayError in its own envelope; anything else is a bug, logged, and a 500 with no detail. */
function renderThrown(error: unknown, log: Logger, code?: string | number): Response {
  if (GatewayError.is(error)) return errorResponse(error)
  const unavailable = storeUnavailable(error)
  if (unavailable) {
    log.warn({ err: error }, 'database unreachable')
    return errorResponse(unavailable)
  }
  log.error({ err: error, code }, 'unhandled HTTP error')
  return errorResponse(new GatewayError(500, 'The gateway hit an internal error.', { code: 'internal_error' }))
}

export function createApp(gw: Gateway, options: EdgeOptions) {
  const transport = (server: Server<unknown> | null, request: Request): Transport => ({
    disableIdleTimeout: () => server?.timeout(request, 0),
  })

  const proxy = (route: Route, path: string) => {
    const params = path.endsWith('/speech/stream') ? { speechStream: true } : path.endsWith('/client_secrets') ? { gaShape: true } : {}
    return (request: Request, server: Server<unknown> | null) => refuseInvalidHost({ request }) ?? gw.pipeline.handle(route, request, transport(server, request), params)
  }
  const proxies = Object.entries(PROXIED).map(([path, route]) => [path, proxy(route, path)] as const)
  // The proxied routes are exact paths the pipeline answers whole (it never throws): without CORS no Elysia hook
  // has anything to do for them, so Bun's router calls the pipeline directly and Elysia builds no context.
  const nativeRoutes = options.corsOrigins?.length
    ? undefined
    : Object.fromEntries(proxies.map(([path, handler]) => [path, { POST: handler }]))

  const serve = {
    routes: { ...nativeRoutes, ...realtimeRoutes(gw) },
    // Bun's answer when a native route throws (our code never means to). Its default depends on NODE_ENV, which Elysia
    // passes on as `development`: unset, it was an HTML page carrying the error's message and stack to the client.
    development: false,
    error: (error: unknown) => renderThrown(error, gw.log),
  }
  const app = new Elysia({ name: 'conduit', serve }).onError({ as: 'global' }, ({ code, error, request }) => renderFrameworkError(code, error, request, gw))
  // A URL without its origin would break every hook below (CORS's included): refused before them.
  app.onRequest(refuseInvalidHost)
  // Then, so that every response below (errors included) carries the CORS headers.
  if (options.corsOrigins?.length) app.onRequest(corsForV1(options.corsOrigins))
  for (const [path, handler] of proxies) app.post(path, ({ request, server }) => handler(request, server))
  return app
    .onRequest(refuseUndecodablePath)
    .get('/health', () => Response.json({ status: 'ok' }))
    .get('/ready', async () => {
      const { ready, checks } = await gw.readiness()
      return Response.json({ status: ready ? 'ready' : 'unavailable', checks }, { status: ready ? 200 : 503 })
    })
    .get('/metrics', async ({ request }) => {
      const refused = options.metricsToken ? checkBearer(request, options.metricsToken, 'metrics token') : undefined
      return refused ?? new Response(await gw.metricsText(), { headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' } })
    })
    .get('/v1/models', ({ request }) => gw.pipeline.handle('models', request))
    // Bun hands wildcards over still encoded; refuseUndecodablePath has made sure this decodes.
    .get('/v1/models/*', ({ request, params }) => gw.pipeline.handle('models', request, {}, { model: decodeURIComponent(params['*']) }))
    .get('/v1/conduit/usage', ({ request }) => gw.pipeline.handle('usage', request))
    // Stored responses, answered from the gateway's own store (whichever provider made them).
    .get('/v1/responses/:id', ({ request, params }) => gw.pipeline.handle('responses_stored', request, {}, { id: params.id }))
    .delete('/v1/responses/:id', ({ request, params }) => gw.pipeline.handle('responses_stored', request, {}, { id: params.id }))
    .get('/v1/responses/:id/input_items', ({ request, params }) => gw.pipeline.handle('responses_stored', request, {}, { id: params.id, part: 'input_items' }))
    // Images the gateway keeps for an hour for clients that asked for URLs: the unguessable id is the capability.
    .get('/v1/images/files/:id', ({ params }) => serveImageFile(gw.store, params.id))
    // Admin bodies go through the core's bounded reader too (after the master key was checked): Elysia would read
    // any size whole. No body is null, so a route needing one answers 400 and one that does not reads nothing.
    .use(
      new Elysia({ name: 'admin-body-limit' })
        .onParse(({ request }) => readJsonBody(request, options.maxBodyBytes, options.bodyTimeoutMs, () => null))
        .use(adminRoutes(gw)),
    )
    .use(uiRoutes(gw, new UiSessions(gw)))
}

/**
 * Realtime WebSockets, always as native Bun routes: the pipeline admits the request, opens the provider's socket,
 * then upgrades this very request (Bun's own WebSocket handlers, see server.ts). Refusals are plain HTTP in our
 * envelope; after an upgrade Bun wants nothing returned. CORS does not apply to WebSockets.
 */
function realtimeRoutes(gw: Gateway) {
  const handler = (request: Request & { params?: Record<string, string> }, server: Server<unknown>) => {
    const refused = refuseInvalidHost({ request }) ?? refuseUndecodablePath({ request })
    if (refused) return refused
    const transport: UpgradeTransport = {
      upgraded: false,
      upgrade: (data, headers) => server.upgrade(request, { data, headers }),
    }
    const sessionId = request.params?.id
    return gw.pipeline
      .handle('realtime', gw.pipeline.realtime.prepare(request), {}, { realtime: { sessionId: sessionId === undefined ? undefined : decodeURIComponent(sessionId), transport } })
      .then((response) => (transport.upgraded ? undefined : response))
  }
  return { '/v1/realtime': { GET: handler }, '/v1/realtime/sessions/:id/ws': { GET: handler } }
}

/**
 * A request whose Host header is missing or not a host (`x/y`, `a?`, empty) reaches us with only its path for a URL:
 * HTTP/1.1 says answer 400 (RFC 9112 §3.2), and no hook below has to make sense of such a URL.
 */
function refuseInvalidHost({ request }: { request: Request }) {
  if (request.url.charCodeAt(0) === 47 /* '/' */) return errorResponse(badRequest('The Host header is missing or is not a valid host.', null, 'invalid_host'))
}

/**
 * `%ZZ` or a broken UTF-8 sequence in the path: Bun's router hands such params over raw (wildcards) or with
 * U+FFFD in place (`:id`), so no route can look them up honestly. A 400 before auth, never an error log.
 */
function refuseUndecodablePath({ request }: { request: Request }) {
  const url = request.url
  if (!url.includes('%')) return
  try {
    decodeURIComponent(new URL(url).pathname)
  } catch {
    return errorResponse(badRequest('The request path is not valid percent-encoded UTF-8: each "%" must start two hex digits of a UTF-8 byte.', null, 'invalid_url'))
  }
}

/** A 401 in our envelope unless the request carries `Authorization: Bearer <expected>` (compared in constant time). */
function checkBearer(request: Request, expected: string, what: string): Response | undefined {
  const token = /^Bearer\s+(.+)$/i.exec(request.headers.get('authorization') ?? '')?.[1]?.trim()
  if (token && secretEquals(token, expected)) return undefined
  const message = token ? `Incorrect ${what}.` : `This endpoint needs "Authorization: Bearer <${what}>".`
  return errorResponse(new GatewayError(401, message, { code: token ? 'invalid_api_key' : 'missing_api_key' }))
}

/** What our responses carry beyond the CORS-safelisted headers, for browser code to read. */
const EXPOSED_HEADERS = [
  'x-request-id',
  ...['requests', 'tokens'].flatMap((unit) => ['limit', 'remaining', 'reset'].map((what) => `x-ratelimit-${what}-${unit}`)),
  'x-ratelimit-degraded',
  'retry-after',
  // The SDKs read it to leave a spent budget (429 insufficient_quota) unretried.
  'x-should-retry',
  ...['provider', 'model', 'attempts', 'cost-usd', 'dropped-params', 'budget-remaining-usd', 'budget-degraded', 'audio-sample-rate'].map((name) => `x-conduit-${name}`),
].join(', ')

/** Header names a preflight may ask for: tokens separated by commas (echoed back, so nothing else). */
const HEADER_NAME_LIST = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/

/**
 * CORS for browser clients on the configured origins, `/v1/*` only (the admin API stays same-origin). The allowed
 * origin is echoed exactly, never `*`, and credentials are never allowed: keys travel in `Authorization`.
 * Headers go through Elysia's `set.headers`, which it merges into every response of the request, errors and
 * streams included (a new Response around the same body: it still streams). That costs ~3 µs a response where
 * setting them on our Response would cost ~1 µs, but one hook then covers the errors Elysia renders too.
 */
function corsForV1(origins: readonly string[]) {
  const allowed = new Set(origins)
  return ({ request, set }: { request: Request; set: { headers: Record<string, string | number> } }) => {
    const origin = request.headers.get('origin')
    if (origin === null || !new URL(request.url).pathname.startsWith('/v1/')) return
    const preflight = request.method === 'OPTIONS' && request.headers.has('access-control-request-method')
    if (!allowed.has(origin)) {
      // Answered, but without an allow-origin the browser refuses: the evil page learns nothing.
      if (preflight) return new Response(null, { status: 204, headers: { vary: 'Origin' } })
      set.headers.vary = 'Origin'
      return
    }
    if (preflight) {
      const requested = request.headers.get('access-control-request-headers') ?? ''
      return new Response(null, {
        status: 204,
        headers: {
          'access-control-allow-origin': origin,
          'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
          ...(HEADER_NAME_LIST.test(requested) ? { 'access-control-allow-headers': requested } : {}),
          'access-control-max-age': '600',
          vary: 'Origin, Access-Control-Request-Headers',
        },
      })
    }
    set.headers['access-control-allow-origin'] = origin
    set.headers['access-control-expose-headers'] = EXPOSED_HEADERS
    set.headers.vary = 'Origin'
  }
}
