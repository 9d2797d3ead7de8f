import { Elysia } from 'elysia'
import { AdminGuard, KeyInput, KeyPatch, ModelInput, ModelPatch, ProviderInput, ProviderPatch, validateAdminBody as valid } from '../core/admin.ts'
import type { Gateway } from '../core/gateway.ts'

const PREFIX = '/admin/v1'
/** Whether an absolute request URL is on the admin API, without parsing it (this runs for every request). */
const isAdminURL = (url: string) => url.startsWith(PREFIX, url.indexOf('/', url.indexOf('//') + 2))

/**
 * `/admin/v1`: every route requires `Authorization: Bearer <master key>`, checked in `onRequest`, the only hook
 * Elysia runs before it reads and parses a body (and `onRequest` sees every request, hence the path test): a
 * request without the master key is refused without its body being read. Bodies are validated by the admin
 * service's schemas, not Elysia's, so a refusal names the field. Handlers are `async` on purpose: Elysia only
 * routes a rejected promise to onError when the handler itself is an async function.
 */
export function adminRoutes(gw: Gateway) {
  const admin = gw.admin
  const guard = new AdminGuard(gw.isMasterKey)
  return new Elysia({ name: 'routes/admin', prefix: PREFIX })
    .onRequest(({ request, server }) => {
      if (isAdminURL(request.url)) guard.authorize(request.headers.get('authorization'), server?.requestIP(request)?.address ?? null)
    })
    .post('/providers', async ({ body, set }) => {
      const input = valid(ProviderInput, body)
      set.status = 201
      return admin.createProvider(input)
    })
    .get('/providers', async () => admin.listProviders())
    .get('/providers/:id', async ({ params }) => admin.providerView(await admin.getProvider(params.id)))
    .patch('/providers/:id', async ({ params, body }) => admin.updateProvider(params.id, valid(ProviderPatch, body)))
    .delete('/providers/:id', async ({ params }) => admin.deleteProvider(params.id))
    .post('/models', async ({ body, set }) => {
      const input = valid(ModelInput, body)
      set.status = 201
      return admin.createModel(input)
    })
    .get('/models', async () => admin.listModels())
    .get('/models/:id', async ({ params }) => admin.modelView(await admin.getModel(params.id)))
    .patch('/models/:id', async ({ params, body }) => admin.updateModel(params.id, valid(ModelPatch, body)))
    .delete('/models/:id', async ({ params }) => admin.deleteModel(params.id))
    .post('/keys', async ({ body, set }) => {
      const input = valid(KeyInput, body)
      set.status = 201
      return admin.createKey(input)
    })
    .get('/keys', async () => admin.listKeys())
    .get('/keys/:id', async ({ params }) => admin.keyView(await admin.getKey(params.id)))
    .patch('/keys/:id', async ({ params, body }) => admin.updateKey(params.id, valid(KeyPatch, body)))
    .delete('/keys/:id', async ({ params }) => admin.deleteKey(params.id))
    .get('/usage', async ({ request }) => admin.usage(new URL(request.url).searchParams))
}
