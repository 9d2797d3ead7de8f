import path from 'node:path'
import { Value } from '@sinclair/typebox/value'
import type { TSchema } from '@sinclair/typebox'
import { LRUCache } from 'lru-cache'
import { GatewayError, inContext } from '../plugin-sdk/errors.ts'
import {
  API_VERSION,
  type AttemptContext,
  type FinishedRequest,
  type Hooks,
  type Logger,
  type MaybePromise,
  type OpenAIChunk,
  type Plugin,
  type PluginApi,
  type Principal,
  type ProviderAdapter,
  type RedisClient,
  type Transcoder,
  type RequestContext,
  type StoreView,
  type UpstreamRequest,
} from '../plugin-sdk/types.ts'
import { Metrics } from '../services/metrics.ts'
import { registerSdkModule } from './sdk-module.ts'

/** One entry of the `plugins` list in the config. */
export interface PluginSpec {
  /** `builtin:<name>`, a path (resolved against the config file's folder), or a plugin object. */
  use: string | Plugin
  config?: unknown
  /** What a failing hook does: `closed` (default) refuses the request with 503, `open` logs and continues. */
  failureMode?: 'open' | 'closed'
  /** Upper bound for each async hook call. */
  timeoutMs?: number
  /** Overrides the plugin's own priority. */
  priority?: number
  enabled?: boolean
}

interface Bound<F> {
  plugin: string
  fn: F
  failureMode: 'open' | 'closed'
  timeoutMs: number
  priority: number
}

type HookName = keyof Hooks
const REQUEST_SIDE: HookName[] = ['onRequest', 'onAuth', 'onAccess', 'onRequestBody', 'onUpstreamRequest', 'onSessionEvent']
const DEFAULT_HOOK_TIMEOUT_MS = 10_000
const isResponse = (result: unknown): result is Response => result instanceof Response
const isAnswer = (result: unknown): result is Principal | Response => !!result

/** A plugin's setup may wait on something (a licence server, a connection); not for ever, and never unnamed. */
const SETUP_TIMEOUT_MS = 30_000

async function settingUp(plugin: Plugin, api: PluginApi, timeoutMs: number) {
  let timer: Timer | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`it did not finish within ${timeoutMs / 1000} s`)), timeoutMs)
  })
  try {
    return await Promise.race([plugin.setup(api), late])
  } catch (error) {
    throw inContext(`Plugin '${plugin.name}' failed to set up`, error)
  } finally {
    clearTimeout(timer)
  }
}

/** What onAuth may return: nothing, a Response, or a principal with its key id (the rest may be left out). */
function notPrincipal(result: unknown): string | null {
  if (result === undefined || result === null || result instanceof Response) return null
  const p = result as Partial<Principal>
  if (typeof result !== 'object' || typeof p.keyId !== 'string' || p.keyId === '') return 'onAuth returned something that is not a principal ({ keyId, … }) or a Response'
  if (!names(p.allowedModels) || !names(p.allowedEndpoints)) return 'onAuth returned a principal whose allowedModels or allowedEndpoints is not a list of names'
  if (p.limits != null && typeof p.limits !== 'object') return 'onAuth returned a principal whose limits is not an object'
  return null
}

const names = (list: unknown) => list == null || (Array.isArray(list) && list.every((v) => typeof v === 'string'))

/** What onResponse and onChunk may return: nothing, or the object that replaces the one they were given. */
const notObject = (hook: string) => (result: unknown) =>
  result === undefined || result === null || (typeof result === 'object' && !Array.isArray(result) && !(result instanceof Promise) && !(result instanceof Response))
    ? null
    : `${hook} returned ${result instanceof Promise ? 'a promise (it is synchronous)' : result instanceof Response ? 'a Response (past the upstream call a hook replaces the answer, or throws)' : Array.isArray(result) ? 'an array' : `a ${typeof result}`}, not an object`

export interface HostOptions {
  /** How long a plugin's setup may take (30 s). */
  setupTimeoutMs?: number
  log: Logger
  store: StoreView
  redis?: RedisClient
  builtins: Record<string, Plugin>
  /** Folder that relative plugin paths resolve against. */
  baseDir: string
  /** Where plugins' counters go: the gateway's metrics (a host on its own keeps them to itself). */
  metrics?: Metrics
}

/** Loads plugins, validates their config, orders their hooks and runs them with their failure policy. */
export class PluginHost {
  readonly providers = new Map<string, ProviderAdapter>()
  /** Audio conversion, when a plugin offers it (`builtin:audio-transcode` by default). */
  transcoder: Transcoder | null = null
  readonly plugins: { name: string; version: string }[] = []
  private readonly hooks: { [K in HookName]-?: Bound<NonNullable<Hooks[K]>>[] } = {
    onRequest: [],
    onAuth: [],
    onAccess: [],
    onRequestBody: [],
    onUpstreamRequest: [],
    onResponse: [],
    onChunk: [],
    onSessionEvent: [],
    onLog: [],
  }
  private readonly closers: (() => MaybePromise<void>)[] = []
  private readonly metrics: Metrics

  constructor(private readonly options: HostOptions) {
    this.metrics = options.metrics ?? new Metrics()
  }

  get hasChunkHooks() {
    return this.hooks.onChunk.length > 0
  }
  get hasResponseHooks() {
    return this.hooks.onResponse.length > 0
  }
  /** Whether a hook may edit a request's body in place (see RequestContext.sentJson). */
  get hasBodyHooks() {
    return this.hooks.onRequestBody.length > 0
  }
  /** Whether a hook reads or edits what a request sends or receives: then it must see all of it, as chat. */
  get inspectsContent() {
    return this.hasBodyHooks || this.hasResponseHooks || this.hasChunkHooks
  }

  async load(specs: PluginSpec[]) {
    for (const spec of specs) {
      if (spec.enabled === false) continue
      const plugin = await this.resolve(spec.use)
      await this.register(plugin, spec)
    }
    for (const name of Object.keys(this.hooks) as HookName[]) {
      const list = this.hooks[name] as Bound<unknown>[]
      // Request side: high priority first. Response side: the reverse, so the outermost plugin sees it last.
      list.sort((a, b) => (REQUEST_SIDE.includes(name) ? b.priority - a.priority : a.priority - b.priority))
    }
  }

  private async resolve(use: string | Plugin): Promise<Plugin> {
    if (typeof use !== 'string') return use
    if (use.startsWith('builtin:')) {
      const plugin = this.options.builtins[use.slice('builtin:'.length)]
      if (!plugin) throw new Error(`Unknown builtin plugin '${use}'. Known: ${Object.keys(this.options.builtins).join(', ')}`)
      return plugin
    }
    if (!use.startsWith('.') && !path.isAbsolute(use)) {
      throw new Error(`Plugin '${use}' must be 'builtin:<name>' or a path starting with './', '../' or '/'.`)
    }
    registerSdkModule()
    const file = path.resolve(this.options.baseDir, use)
    let mod: Record<string, any>
    try {
      mod = await import(file)
    } catch (error) {
      throw inContext(`The plugin module ${file} failed to load`, error)
    }
    const plugin = mod.default ?? mod.plugin
    if (!plugin || typeof plugin !== 'object' || typeof plugin.setup !== 'function' || typeof plugin.name !== 'string') {
      throw new Error(`${file} does not export a plugin (default export of definePlugin({...})).`)
    }
    return plugin
  }

  async register(plugin: Plugin, spec: Omit<PluginSpec, 'use'> = {}) {
    if (plugin.apiVersion !== API_VERSION) {
      throw new Error(`Plugin '${plugin.name}' targets plugin API ${plugin.apiVersion}; this Conduit speaks ${API_VERSION}.`)
    }
    let config: any = spec.config ?? {}
    if (plugin.configSchema) {
      config = Value.Default(plugin.configSchema, structuredClone(config))
      if (!Value.Check(plugin.configSchema, config)) {
        const error = Value.Errors(plugin.configSchema, config).First()!
        throw new Error(`Invalid config for plugin '${plugin.name}' at '${error.path || '/'}': ${error.message}`)
      }
      const unknown = unknownField(plugin.configSchema, config)
      if (unknown) throw new Error(`Invalid config for plugin '${plugin.name}' at '${unknown}': no such setting.`)
    }
    const log = this.options.log.child({ plugin: plugin.name })
    const api: PluginApi = {
      name: plugin.name,
      config,
      log,
      store: this.options.store,
      redis: this.options.redis,
      cache: <K extends {}, V extends {}>({ max, ttlMs }: { max: number; ttlMs?: number }) =>
        new LRUCache<K, V>(ttlMs ? { max, ttl: ttlMs } : { max }),
      counter: (options) => this.metrics.counter(options),
      registerProvider: (adapter) => {
        if (typeof adapter?.id !== 'string' || !/^[a-z0-9][a-z0-9._-]*$/.test(adapter.id)) {
          // openAICompatible() makes a whole plugin, not an adapter: the likeliest way here.
          const hint = typeof (adapter as { setup?: unknown })?.setup === 'function' ? ': that is a plugin (openAICompatible() makes one); export it as the module\'s default instead' : ''
          throw new Error(`it registered a provider without a type id (lowercase letters, digits, '.', '_', '-')${hint}.`)
        }
        if (this.providers.has(adapter.id)) throw new Error(`Provider type '${adapter.id}' is registered twice (plugin '${plugin.name}').`)
        this.providers.set(adapter.id, adapter)
      },
      registerTranscoder: (transcoder) => {
        if (this.transcoder) throw new Error(`A transcoder is registered twice (plugin '${plugin.name}'); disable the other one.`)
        this.transcoder = transcoder
      },
      onClose: (fn) => this.closers.push(fn),
    }
    const hooks = (await settingUp(plugin, api, this.options.setupTimeoutMs ?? SETUP_TIMEOUT_MS)) ?? {}
    const bound = {
      plugin: plugin.name,
      failureMode: spec.failureMode ?? 'closed',
      timeoutMs: spec.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS,
      priority: spec.priority ?? plugin.priority ?? 0,
    }
    for (const name of Object.keys(this.hooks) as HookName[]) {
      const fn = hooks[name]
      if (typeof fn === 'function') (this.hooks[name] as Bound<unknown>[]).push({ ...bound, fn: fn.bind(hooks) })
    }
    this.plugins.push({ name: plugin.name, version: plugin.version })
  }

  /**
   * Runs one hook call under its plugin's timeout and failure mode. A hook that answers synchronously is answered
   * synchronously: no promise, timer or async frame on the hot path. GatewayErrors are deliberate and always propagate.
   */
  private call<R>(hook: Bound<(...args: any[]) => MaybePromise<R>>, log: Logger, a: unknown, b?: unknown): MaybePromise<R | undefined> {
    let result: MaybePromise<R>
    try {
      result = hook.fn(a, b)
    } catch (error) {
      return this.failed(hook, log, error)
    }
    return result instanceof Promise ? this.timed(hook, log, result) : result
  }

  private async timed<R>(hook: Bound<unknown>, log: Logger, result: Promise<R>): Promise<R | undefined> {
    let timer: Timer | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`hook timed out after ${hook.timeoutMs} ms`)), hook.timeoutMs)
    })
    try {
      return await Promise.race([result, timeout])
    } catch (error) {
      return this.failed(hook, log, error)
    } finally {
      clearTimeout(timer)
    }
  }

  private failed(hook: Bound<unknown>, log: Logger, error: unknown): undefined {
    if (GatewayError.is(error)) {
      // A refusal, unless its status could not be sent (Response takes 200–599): then a failure like any other.
      if (Number.isInteger(error.status) && error.status >= 400 && error.status <= 599) throw error
      error = new RangeError(`${hook.plugin}: a GatewayError with status ${error.status}, not an HTTP error status (400–599)`)
    }
    log.error({ plugin: hook.plugin, err: error }, 'plugin hook failed')
    if (hook.failureMode === 'open') return undefined
    throw new GatewayError(503, `The '${hook.plugin}' plugin failed; the request was not processed.`, { code: 'plugin_failure' })
  }

  /**
   * Request-side phases: the first Response returned ends the request. Not a promise while every hook answers
   * synchronously (none at all: no work), and a hook's throw is then thrown here.
   */
  run(phase: 'onRequest' | 'onAccess' | 'onRequestBody' | 'onSessionEvent', ctx: RequestContext): MaybePromise<Response | undefined> {
    return this.first(this.hooks[phase], 0, ctx, isResponse)
  }

  /** The first principal (or Response) an onAuth hook returns. */
  authenticate(ctx: RequestContext): MaybePromise<Principal | Response | undefined> {
    return this.first(this.hooks.onAuth, 0, ctx, isAnswer, notPrincipal)
  }

  /**
   * Calls hooks from `from` in order until one's result is `decisive`; synchronous as long as they are. A result
   * `wrong` says is not what the hook may return is that hook's failure (its failure mode decides).
   */
  private first<R>(
    hooks: Bound<(ctx: RequestContext) => MaybePromise<unknown>>[],
    from: number,
    ctx: RequestContext,
    decisive: (result: unknown) => result is R,
    wrong?: (result: unknown) => string | null,
  ): MaybePromise<R | undefined> {
    for (let i = from; i < hooks.length; i++) {
      const hook = hooks[i]!
      const result = this.call(hook, ctx.log, ctx)
      if (result instanceof Promise) {
        return result.then((settled) => {
          const vetted = this.vetted(hook, ctx.log, settled, wrong)
          return decisive(vetted) ? vetted : this.first(hooks, i + 1, ctx, decisive, wrong)
        })
      }
      const vetted = this.vetted(hook, ctx.log, result, wrong)
      if (decisive(vetted)) return vetted
    }
    return undefined
  }

  private vetted(hook: Bound<unknown>, log: Logger, result: unknown, wrong?: (result: unknown) => string | null): unknown {
    const why = wrong?.(result)
    return why ? this.failed(hook, log, new TypeError(`${hook.plugin}: ${why}`)) : result
  }

  upstreamRequest(ctx: AttemptContext, upstream: UpstreamRequest): Promise<void> | undefined {
    if (this.hooks.onUpstreamRequest.length === 0) return undefined
    return (async () => {
      for (const hook of this.hooks.onUpstreamRequest) await this.call(hook, ctx.request.log, ctx, upstream)
    })()
  }

  async response(ctx: AttemptContext, body: Record<string, any>): Promise<Record<string, any>> {
    for (const hook of this.hooks.onResponse) {
      const result = this.vetted(hook, ctx.request.log, await this.call(hook, ctx.request.log, ctx, body), notObject('onResponse'))
      if (result) body = result as Record<string, any>
    }
    return body
  }

  /** Synchronous: the hot path of a stream. A failing `open` hook is skipped; a `closed` one ends the stream. */
  chunk(ctx: AttemptContext, chunk: OpenAIChunk): OpenAIChunk | null {
    for (const hook of this.hooks.onChunk) {
      let result: unknown
      try {
        result = hook.fn(ctx, chunk)
      } catch (error) {
        // Closed: the stream ends with this plugin's failure (503 plugin_failure), not as if the upstream had.
        this.failed(hook, ctx.request.log, error)
        continue
      }
      if (result === null) return null
      // Its rejection is this failure's, not the process's (an unhandled rejection ends it).
      if (result instanceof Promise) result.catch(() => {})
      // Synchronous, and a chunk or nothing: a promise or a string would reach the client as `{}` or as text.
      const vetted = this.vetted(hook, ctx.request.log, result, notObject('onChunk'))
      if (vetted) chunk = vetted as OpenAIChunk
    }
    return chunk
  }

  /** Fire and forget: logging never delays the client, and one failing logger does not stop the others. */
  log(finished: FinishedRequest) {
    for (const hook of this.hooks.onLog) {
      try {
        const result = hook.fn(finished)
        if (result instanceof Promise) result.catch((err) => finished.ctx.log.error({ plugin: hook.plugin, err }, 'onLog hook failed'))
      } catch (err) {
        finished.ctx.log.error({ plugin: hook.plugin, err }, 'onLog hook failed')
      }
    }
  }

  async close() {
    for (const fn of this.closers.reverse()) await fn()
  }
}

/**
 * The first field of a plugin's config that its schema does not name: a misspelled setting (`levle: debug`) would
 * otherwise be ignored and the default kept. Objects that say what else they take (`additionalProperties`, records)
 * are left to the schema.
 */
function unknownField(schema: TSchema, value: unknown, at = ''): string | null {
  if (!value || typeof value !== 'object') return null
  if (Array.isArray(value)) {
    if (!schema.items) return null
    for (const [i, item] of value.entries()) {
      const found = unknownField(schema.items, item, `${at}/${i}`)
      if (found) return found
    }
    return null
  }
  if (schema.type !== 'object' || !schema.properties || schema.additionalProperties !== undefined) return null
  for (const [name, item] of Object.entries(value)) {
    const property = schema.properties[name]
    const found = property ? unknownField(property, item, `${at}/${name}`) : `${at}/${name}`
    if (found) return found
  }
  return null
}
