import { Elysia } from 'elysia'
import { GatewayError } from '../plugin-sdk/errors.ts'
import { KeyInput, KeyPatch, ModelInput, ModelPatch, ProviderInput, ProviderPatch } from '../core/admin.ts'
import type { Gateway } from '../core/gateway.ts'

/**
 * `/admin/v1`: every route requires `Authorization: Bearer <master key>`. Handlers are `async` on purpose:
 * Elysia only routes a rejected promise to onError when the handler itself is an async function.
 */
export function adminRoutes(gw: Gateway) {
  const admin = gw.admin
  return new Elysia({ name: 'routes/admin', prefix: '/admin/v1' })
    .onBeforeHandle({ as: 'local' }, ({ request }) => {
      const header = request.headers.get('authorization') ?? ''
      const token = /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim()
      if (!token) throw new GatewayError(401, 'The admin API needs "Authorization: Bearer <master key>".', { code: 'missing_api_key' })
      if (!gw.isMasterKey(token)) throw new GatewayError(401, 'Incorrect master key.', { code: 'invalid_api_key' })
    })
    .post('/providers', async ({ body, set }) => {
      set.status = 201
      return admin.createProvider(body)
    }, { body: ProviderInput })
    .get('/providers', async () => admin.listProviders())
    .get('/providers/:id', async ({ params }) => admin.providerView(await admin.getProvider(params.id)))
    .patch('/providers/:id', async ({ params, body }) => admin.updateProvider(params.id, body), { body: ProviderPatch })
    .delete('/providers/:id', async ({ params }) => admin.deleteProvider(params.id))
    .post('/models', async ({ body, set }) => {
      set.status = 201
      return admin.createModel(body)
    }, { body: ModelInput })
    .get('/models', async () => admin.listModels())
    .get('/models/:id', async ({ params }) => admin.modelView(await admin.getModel(params.id)))
    .patch('/models/:id', async ({ params, body }) => admin.updateModel(params.id, body), { body: ModelPatch })
    .delete('/models/:id', async ({ params }) => admin.deleteModel(params.id))
    .post('/keys', async ({ body, set }) => {
      set.status = 201
      return admin.createKey(body)
    }, { body: KeyInput })
    .get('/keys', async () => admin.listKeys())
    .get('/keys/:id', async ({ params }) => admin.keyView(await admin.getKey(params.id)))
    .patch('/keys/:id', async ({ params, body }) => admin.updateKey(params.id, body), { body: KeyPatch })
    .delete('/keys/:id', async ({ params }) => admin.deleteKey(params.id))
    .get('/usage', async ({ request }) => admin.usage(new URL(request.url).searchParams))
}
