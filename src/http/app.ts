import { Elysia } from 'elysia'
import type { Server } from 'bun'
import { GatewayError } from '../plugin-sdk/errors.ts'
import type { Gateway } from '../core/gateway.ts'
import type { Transport } from '../core/pipeline.ts'
import { adminRoutes } from './admin-routes.ts'

/** The only Elysia-aware code: routes map to the framework-free pipeline and admin service. */

export const errorResponse = (error: GatewayError) =>
  new Response(JSON.stringify(error.toJSON()), { status: error.status, headers: { 'content-type': 'application/json', ...error.headers } })

/** Elysia's own failures (validation, parse, unknown route) rendered in the one envelope. */
function renderFrameworkError(code: string | number, error: any, request: Request): Response {
  if (GatewayError.is(error)) return errorResponse(error)
  if (code === 'VALIDATION') {
    const first = error.all?.[0]
    const param = typeof first?.path === 'string' ? first.path.replace(/^\//, '').replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.') : null
    const message = first?.summary ?? first?.message ?? 'Invalid request body.'
    return errorResponse(new GatewayError(400, param ? `Invalid '${param}': ${message}` : message, { param: param || null, code: 'invalid_value' }))
  }
  if (code === 'PARSE') return errorResponse(new GatewayError(400, 'We could not parse the JSON body of your request.', { code: 'invalid_json' }))
  if (code === 'NOT_FOUND') {
    const url = new URL(request.url)
    return errorResponse(new GatewayError(404, `Unknown request URL: ${request.method} ${url.pathname}.`, { code: 'unknown_url' }))
  }
  return errorResponse(new GatewayError(500, 'The gateway hit an internal error.', { code: 'internal_error' }))
}

export function createApp(gw: Gateway) {
  const transport = (server: Server<unknown> | null, request: Request): Transport => ({
    disableIdleTimeout: () => server?.timeout(request, 0),
  })

  return new Elysia({ name: 'conduit' })
    .onError({ as: 'global' }, ({ code, error, request }) => {
      if (!GatewayError.is(error) && code !== 'VALIDATION' && code !== 'PARSE' && code !== 'NOT_FOUND') {
        gw.log.error({ err: error, code }, 'unhandled HTTP error')
      }
      return renderFrameworkError(code, error, request)
    })
    .get('/health', () => Response.json({ status: 'ok' }))
    .get('/ready', async () => {
      const { ready, checks } = await gw.readiness()
      return Response.json({ status: ready ? 'ready' : 'unavailable', checks }, { status: ready ? 200 : 503 })
    })
    .get('/metrics', async () => new Response(await gw.metricsText(), { headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' } }))
    .post('/v1/chat/completions', ({ request, server }) => gw.pipeline.handle('chat', request, transport(server, request)))
    .post('/v1/completions', ({ request, server }) => gw.pipeline.handle('completions', request, transport(server, request)))
    .post('/v1/embeddings', ({ request, server }) => gw.pipeline.handle('embeddings', request, transport(server, request)))
    .get('/v1/models', ({ request }) => gw.pipeline.handle('models', request))
    .get('/v1/models/*', ({ request, params }) => gw.pipeline.handle('models', request, {}, { model: decodeURIComponent(params['*']) }))
    .get('/v1/conduit/usage', ({ request }) => gw.pipeline.handle('usage', request))
    .use(adminRoutes(gw))
}
