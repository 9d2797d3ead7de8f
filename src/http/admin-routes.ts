import { Elysia } from 'elysia'
import { AdminGuard, KeyInput, KeyPatch, ModelInput, ModelPatch, ProviderInput, ProviderPatch, ProviderTestInput, validateAdminBody as valid } from '../core/admin.ts'
import type { Gateway } from '../core/gateway.ts'
import { allowedBy } from '../core/glob.ts'
import { timeseriesRange } from '../core/timeseries.ts'
import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import { UiSessions } from './ui-routes.ts'

const PREFIX = '/admin/v1'
/**
 * Whether a request URL may be on the admin API, without parsing it (this runs for every request): the prefix
 * anywhere before the query. Any reading of the URL that routes it to an admin handler (Bun's router, Elysia's
 * path taken from the first '/' after the 11th character, a URL without its origin) finds the prefix there, so
 * the key is always checked; a /v1 path that merely contains it is refused without the master key, which is fine.
 */
function isAdminURL(url: string) {
  const at = url.indexOf(PREFIX)
  if (at === -1) return false
  const query = url.indexOf('?')
  return query === -1 || at < query
}

/** What a virtual-key session (read-only, its own key's data) may ask for: GETs of these paths, filtered by the handlers. */
const KEY_SESSION_PATHS = /^\/admin\/v1\/(?:models|keys|keys\/[^/]+|usage|requests|requests\/[^/]+|metrics\/timeseries)$/
const readOnly = () =>
  new GatewayError(403, 'A virtual-key session is read-only and sees only its own models, usage and requests.', { code: 'permission_denied' })

/**
 * `/admin/v1`: every route requires `Authorization: Bearer <master key>` or a Web UI session cookie, checked in
 * `onRequest`, the only hook Elysia runs before it reads and parses a body (and `onRequest` sees every request,
 * hence the path test): a request without either is refused without its body being read. A session cookie also
 * needs the CSRF header for a change, and a virtual key's session may only read its own data. Bodies are
 * validated by the admin service's schemas, not Elysia's, so a refusal names the field. Handlers are `async` on
 * purpose: Elysia only routes a rejected promise to onError when the handler itself is an async function.
 */
export function adminRoutes(gw: Gateway, sessions = new UiSessions(gw)) {
  const admin = gw.admin
  const guard: AdminGuard = gw.adminGuard
  /** The key a request is confined to (a virtual-key session); absent for the master key. */
  const scopes = new WeakMap<Request, string>()
  const scopeOf = (request: Request) => scopes.get(request) ?? null
  return new Elysia({ name: 'routes/admin', prefix: PREFIX })
    .onRequest(async ({ request, server }) => {
      if (!isAdminURL(request.url)) return
      const address = server?.requestIP(request)?.address ?? null
      // A bearer token decides when present; a cookie alone means the Web UI.
      if (request.headers.has('authorization') || !UiSessions.carries(request)) return guard.authorize(request.headers.get('authorization'), address)
      const session = await sessions.verify(request)
      if (session.role === 'admin') return
      const pathname = new URL(request.url).pathname
      if (request.method !== 'GET' || !KEY_SESSION_PATHS.test(pathname)) throw readOnly()
      scopes.set(request, session.keyId!)
    })
    .post('/providers', async ({ body, set }) => {
      const input = valid(ProviderInput, body)
      set.status = 201
      return admin.createProvider(input)
    })
    .get('/providers', async () => admin.listProviders())
    .get('/provider-types', async () => admin.providerTypes())
    .get('/providers/:id', async ({ params }) => admin.providerView(await admin.getProvider(params.id)))
    .patch('/providers/:id', async ({ params, body }) => admin.updateProvider(params.id, valid(ProviderPatch, body)))
    .delete('/providers/:id', async ({ params }) => admin.deleteProvider(params.id))
    .post('/providers/:id/test', async ({ params, body }) =>
      admin.testProvider(params.id, valid(ProviderTestInput, body ?? {}).model, gw.upstreamTimeouts, gw.log),
    )
    .post('/models', async ({ body, set }) => {
      const input = valid(ModelInput, body)
      set.status = 201
      return admin.createModel(input)
    })
    .get('/models', async ({ request }) => {
      const keyId = scopeOf(request)
      if (!keyId) return admin.listModels()
      // A key sees the names it may call and their limits; where they route (providers, prices) stays private.
      const key = await admin.getKey(keyId)
      const models = (await admin.listModels()).data.filter((m) => allowedBy(m.name, key.allowedModels))
      return { object: 'list', data: models.map(({ id, object, name, limits, routing }) => ({ id, object, name, limits, routing })) }
    })
    .get('/models/:id', async ({ params }) => admin.modelView(await admin.getModel(params.id)))
    .patch('/models/:id', async ({ params, body }) => admin.updateModel(params.id, valid(ModelPatch, body)))
    .delete('/models/:id', async ({ params }) => admin.deleteModel(params.id))
    .post('/keys', async ({ body, set }) => {
      const input = valid(KeyInput, body)
      set.status = 201
      return admin.createKey(input)
    })
    .get('/keys', ({ request }) => admin.listKeysWithActivity(scopeOf(request)))
    .get('/keys/:id', async ({ params, request }) => {
      const keyId = scopeOf(request)
      const key = await admin.getKey(keyId ?? params.id)
      // Another key's id or name gets the same answer as one that does not exist.
      if (keyId && params.id !== key.id && params.id !== key.name) throw new GatewayError(404, `No key '${params.id}'.`, { code: 'not_found' })
      return admin.keyView(key)
    })
    .patch('/keys/:id', async ({ params, body }) => admin.updateKey(params.id, valid(KeyPatch, body)))
    .delete('/keys/:id', async ({ params }) => admin.deleteKey(params.id))
    .get('/usage', async ({ request }) => {
      const params = new URL(request.url).searchParams
      const keyId = scopeOf(request)
      if (keyId) params.set('key', keyId)
      const report = await admin.usage(params)
      if (params.get('format') !== 'csv') return report
      return usageCsv(report, params.get('by') ?? 'day')
    })
    .get('/requests', async ({ request }) => admin.requests(new URL(request.url).searchParams, scopeOf(request)))
    .get('/requests/:id', async ({ params, request }) => admin.request(params.id, scopeOf(request)))
    .get('/metrics/timeseries', async ({ request }) => {
      const params = new URL(request.url).searchParams
      const scoped = scopeOf(request)
      const ref = params.get('key')
      const keyId = scoped ?? (ref ? (await admin.getKey(ref)).id : null)
      return gw.timeseries.query(timeseriesRange(params), { keyId, model: params.get('model') || null })
    })
}

const USAGE_GROUPS = ['key', 'model', 'provider', 'day', 'user']

/** `format=csv&by=<group>`: one group of the report as CSV, for a spreadsheet (a download in the Web UI). */
function usageCsv(report: Record<string, unknown>, by: string): Response {
  if (!USAGE_GROUPS.includes(by)) {
    throw badRequest(`'by' must be one of ${USAGE_GROUPS.join(', ')}.`, 'by', 'invalid_value')
  }
  const rows = (report[`by_${by}`] ?? []) as Record<string, unknown>[]
  // Users over every key name their key (see usageReport).
  const key = by === 'key' ? ['name'] : rows.some((row) => 'key' in row) ? ['key'] : []
  const columns = [by, ...key, 'requests', 'prompt_tokens', 'completion_tokens', 'cost_usd', 'unpriced_requests', 'audio_seconds', 'characters', 'images']
  // Quoted when needed; a leading = + - @ is defused so a spreadsheet never runs a cell a client named.
  const cell = (value: unknown) => {
    let text = value === null || value === undefined ? '' : String(value)
    if (/^[=+\-@\t\r]/.test(text) && typeof value === 'string') text = `'${text}`
    return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
  }
  const lines = [columns.join(','), ...rows.map((row) => columns.map((c) => cell(row[c])).join(','))]
  return new Response(`${lines.join('\r\n')}\r\n`, {
    headers: {
      'content-type': 'text/csv; charset=utf-8',
      'content-disposition': `attachment; filename="conduit-usage-by-${by}-${String(report.from).slice(0, 10)}-${String(report.to).slice(0, 10)}.csv"`,
    },
  })
}
