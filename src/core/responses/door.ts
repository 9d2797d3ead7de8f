import { GatewayError, badRequest } from '../../plugin-sdk/errors.ts'
import type { ProviderAdapter } from '../../plugin-sdk/types.ts'
import type { Catalog } from '../catalog.ts'
import type { RequestCtx } from '../context.ts'
import type { FrontDoor, FrontDoorRequest, NativeStreamWatcher } from '../front-door.ts'
import { upstreamStreamError } from '../stream-relay.ts'
import { newId, type Item } from './items.ts'
import { readResponses, validateResponses } from './request.ts'
import { chatUsage, outputOf, responseObject, responsesUsage, statusOf, type ResponseShell } from './response.ts'
import type { ResponseStore } from './store.ts'
import { ResponsesStream, failureCode } from './stream.ts'

/** A native answer's `previous_response_id` when it was not sent one (see nativeRestore). */
const PREVIOUS_NULL = /"previous_response_id":\s*null/

/** What a request keeps between its reading and its answer. */
interface Pending {
  shell: Omit<ResponseShell, 'model'>
  input: Item[]
  context: Item[]
}

/** Events that carry the whole response, with its usage. */
const FINAL_EVENTS = new Set(['response.completed', 'response.incomplete', 'response.failed'])
const SEQUENCE = /"sequence_number":(\d+)/
const DEFAULT_LIST_LIMIT = 20
const MAX_LIST_LIMIT = 100

const notFound = (id: string) => new GatewayError(404, `Response with id '${id}' not found.`, { code: 'not_found' })
const json = (ctx: RequestCtx, body: unknown) => new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json', ...ctx.headers } })

/**
 * OpenAI's Responses API (`/v1/responses`) on every provider: translated onto chat completions, or relayed to a
 * provider that speaks it (OpenAI). Responses are kept by the gateway itself (`store`, default true), so
 * `previous_response_id`, retrieval and deletion work whichever provider answered, for the key that made them.
 */
export class ResponsesDoor implements FrontDoor {
  readonly operation = 'responses' as const
  private readonly pending = new WeakMap<RequestCtx, Pending>()

  constructor(
    private readonly store: ResponseStore,
    private readonly catalog: Catalog,
    private readonly providers: ReadonlyMap<string, ProviderAdapter>,
    /** False while a plugin inspects content: every request is then translated (see Pipeline.adapterFor). */
    private readonly nativeAllowed: () => boolean = () => true,
  ) {}

  async read(ctx: RequestCtx, body: Record<string, any>): Promise<FrontDoorRequest> {
    validateResponses(body)
    const previousId = body.previous_response_id
    const previous = typeof previousId === 'string' ? await this.store.get(previousId, ctx.principal!.keyId) : null
    if (typeof previousId === 'string' && !previous) {
      throw new GatewayError(404, `Previous response with id '${previousId}' not found.`, { param: 'previous_response_id', code: 'previous_response_not_found' })
    }
    // A model the catalog does not know is answered 404 by the pipeline right after; nothing to refuse before.
    const native = (await this.servesNatively(body.model)) ?? true
    const input = Array.isArray(body.input) ? await this.resolveReferences(body.input, ctx.principal!.keyId) : body.input
    const read = readResponses({ ...body, input }, previous, native)
    this.pending.set(ctx, { shell: { id: newId('resp'), createdAt: Math.floor(Date.now() / 1000), body }, input: read.input, context: read.context })
    return { chat: read.chat, native: read.native }
  }

  fromChat(ctx: RequestCtx, completion: Record<string, any>): Record<string, any> {
    const choice = completion.choices?.[0]
    const { status, incompleteReason } = statusOf(choice?.finish_reason)
    return responseObject(this.shell(ctx), status, outputOf(choice?.message), responsesUsage(completion.usage), { incompleteReason })
  }

  streamFromChat(ctx: RequestCtx): ResponsesStream {
    return new ResponsesStream(this.shell(ctx))
  }

  nativeUsage(body: Record<string, any>): Record<string, any> | null {
    return chatUsage(body.usage)
  }

  /** The native target was sent the conversation, not the previous response's id: its answers say null where OpenAI names it. */
  nativeRestore(ctx: RequestCtx): ((json: string) => string) | null {
    const previous = this.pending.get(ctx)?.shell.body.previous_response_id
    if (typeof previous !== 'string') return null
    const named = `"previous_response_id":${JSON.stringify(previous)}`
    // The response object's own field: a key with unescaped quotes is never inside a string of the content.
    return (json) => json.replace(PREVIOUS_NULL, named)
  }

  watchNativeStream(): NativeStreamWatcher {
    let usage: Record<string, any> | null = null
    let final: Record<string, any> | null = null
    let deltas = 0
    let failure: GatewayError | null = null
    // For the response.failed that ends a stream the gateway cuts: the response as created, and the next number.
    let created: Record<string, any> | null = null
    let sequence = 0
    return {
      event(type, data) {
        // OpenAI names each event; the type is also the first field of its data for servers that do not.
        const name = type ?? /^\{"type":"([^"]+)"/.exec(data)?.[1]
        if (!name) return
        const numbered = SEQUENCE.exec(data)
        if (numbered) sequence = Number(numbered[1]) + 1
        if (name.endsWith('.delta')) deltas++
        if (name === 'response.created') created = JSON.parse(data).response ?? null
        if (!FINAL_EVENTS.has(name)) return
        const response = JSON.parse(data).response
        usage = chatUsage(response?.usage)
        if (name === 'response.failed') failure = upstreamStreamError(response?.error)
        // Kept whatever its status, as OpenAI keeps a failed response.
        final = response
      },
      usage: () => usage,
      deltas: () => deltas,
      failure: () => failure,
      result: () => final,
      failureEvent(error) {
        const response = { ...created, status: 'failed', error: { code: failureCode(error), message: error.message } }
        return `event: response.failed\ndata: ${JSON.stringify({ type: 'response.failed', sequence_number: sequence, response })}\n\n`
      },
    }
  }

  /** Keeps the answer the client received, unless it asked `store: false`. A failure to store is logged, not the client's. */
  async completed(ctx: RequestCtx, result: Record<string, any>) {
    const pending = this.pending.get(ctx)
    if (!pending || pending.shell.body.store === false || typeof result.id !== 'string') return
    try {
      await this.store.save({
        id: result.id,
        keyId: ctx.principal!.keyId,
        createdAt: Date.now(),
        // A native target never saw the previous response's id (its conversation was sent instead): the kept copy names it.
        response: { ...result, model: ctx.model!.name, previous_response_id: pending.shell.body.previous_response_id ?? null },
        inputItems: pending.input,
        context: pending.context,
      })
    } catch (err) {
      ctx.log.error({ err, requestId: ctx.id }, 'storing the response failed')
    }
  }

  async stored(ctx: RequestCtx, method: string, id: string, part: string | null, query: URLSearchParams): Promise<Response> {
    const keyId = ctx.principal!.keyId
    if (method === 'DELETE') {
      if (!(await this.store.delete(id, keyId))) throw notFound(id)
      return json(ctx, { id, object: 'response.deleted', deleted: true })
    }
    const row = await this.store.get(id, keyId)
    if (!row) throw notFound(id)
    return json(ctx, part === 'input_items' ? listItems(row.inputItems, query) : row.response)
  }

  /**
   * `item_reference` inputs replaced by the items they name, from the key's kept responses: whichever provider
   * answers gets the item itself (without its id, which that provider never made).
   */
  private async resolveReferences(input: unknown[], keyId: string): Promise<unknown[]> {
    // Without references the client's own array goes on (and its text with it: see RequestContext.sentJson).
    if (!input.some((item: any) => item?.type === 'item_reference')) return input
    return await Promise.all(
      input.map(async (item: any, i) => {
        if (item?.type !== 'item_reference') return item
        const found = typeof item.id === 'string' ? await this.store.item(item.id, keyId) : null
        if (!found) throw new GatewayError(404, `Item with id '${item.id}' not found.`, { param: `input[${i}]`, code: 'not_found' })
        const { id: _id, ...inline } = found
        return inline
      }),
    )
  }

  private shell(ctx: RequestCtx): ResponseShell {
    return { ...this.pending.get(ctx)!.shell, model: ctx.model!.name }
  }

  /** Whether a target of the model speaks the Responses API itself; null for a model that does not exist. */
  private async servesNatively(name: string): Promise<boolean | null> {
    await this.catalog.ready()
    const model = this.catalog.model(name)
    if (!model) return null
    return model.targets.some((target) => {
      const type = this.catalog.provider(target.provider)?.type
      return type !== undefined && this.providers.get(type)?.responses !== undefined && this.nativeAllowed()
    })
  }
}

/** `GET /v1/responses/{id}/input_items`: OpenAI's list, newest first unless `order=asc`, paged by `after` and `limit`. */
function listItems(items: Item[], query: URLSearchParams): Record<string, any> {
  const order = query.get('order') ?? 'desc'
  if (order !== 'asc' && order !== 'desc') throw badRequest("Invalid value for 'order': expected 'asc' or 'desc'.", 'order', 'invalid_value')
  const limitText = query.get('limit')
  const limit = limitText === null ? DEFAULT_LIST_LIMIT : Number(limitText)
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw badRequest(`Invalid value for 'limit': expected an integer from 1 to ${MAX_LIST_LIMIT}.`, 'limit', 'invalid_value')
  }
  const ordered = order === 'asc' ? items : [...items].reverse()
  const after = query.get('after')
  const start = after === null ? 0 : ordered.findIndex((item) => item.id === after) + 1
  if (after !== null && start === 0) throw badRequest(`No input item with id '${after}' in this response.`, 'after', 'invalid_value')
  const data = ordered.slice(start, start + limit)
  return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: start + limit < ordered.length }
}
