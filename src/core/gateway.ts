import { randomBytes } from 'node:crypto'
import type { GatewayConfig } from '../config/config.ts'
import { BUILTINS } from '../plugin-host/builtins.ts'
import { PluginHost, type PluginSpec } from '../plugin-host/host.ts'
import type { FinishedRequest, Logger, Plugin, RequestContext, StoreView } from '../plugin-sdk/types.ts'
import { within } from '../plugin-sdk/deadline.ts'
import { GatewayError, inContext } from '../plugin-sdk/errors.ts'
import { base62, secretEquals, sha256 } from '../store/crypto.ts'
import { Metrics, type MetricsSnapshot } from '../services/metrics.ts'
import { setSecrets } from '../services/known-secrets.ts'
import { SpendLedger } from '../store/ledger.ts'
import { RequestRecorder } from '../store/request-records.ts'
import { checkSecretKey, sealBaseURLs, secretBox } from '../store/secrets.ts'
import { Store, type ChangeBus } from '../store/store.ts'
import { AdminGuard, AdminService, type FailureExchange } from './admin.ts'
import { Catalog } from './catalog.ts'
import { createMessagesDoor } from './messages/index.ts'
import { egress } from './egress.ts'
import { Router } from './router.ts'
import { Pipeline } from './pipeline.ts'
import { ResponsesDoor } from './responses/door.ts'
import { ResponseStore } from './responses/store.ts'
import { TimeSeries } from './timeseries.ts'
import type { Timeouts } from './upstream.ts'

export interface Gateway {
  pipeline: Pipeline
  metrics: Metrics
  ledger: SpendLedger
  admin: AdminService
  host: PluginHost
  store: Store
  log: Logger
  /** Connect, first-byte and idle limits for upstream calls (the admin API's provider test uses them too). */
  upstreamTimeouts: Timeouts
  /** The Requests page's rows; null with `request_log.retention_days: 0`. */
  records: RequestRecorder | null
  /** The Overview's 1-minute buckets. */
  timeseries: TimeSeries
  /** The brute-force throttle shared by the admin API's bearer check and the Web UI's sign-in. */
  adminGuard: AdminGuard
  /** Changes when the master key does: Web UI sessions signed in with an older master key stop working. */
  masterFingerprint: string
  /** The listening server, so the request recorder can note each client's address while its socket is known. */
  attachServer(server: { requestIP(request: Request): { address: string } | null }): void
  /** Set only on the first start without CONDUIT_MASTER_KEY: shown once, never stored. */
  generatedMasterKey: string | null
  /** Keys the config file declared without a plaintext, created now: shown once. */
  generatedKeys: { name: string; key: string }[]
  isMasterKey(token: string): boolean
  /** Prometheus text for this process, or for every worker when there are several. */
  metricsText(): Promise<string>
  /** Store reachable and not shutting down. */
  readiness(): Promise<{ ready: boolean; checks: Record<string, string> }>
  /** Set on SIGTERM: readiness fails so load balancers stop sending traffic while requests drain. */
  draining: boolean
  close(): Promise<void>
}

export interface GatewayOptions {
  /** Other processes to keep in step with (worker IPC); none when this process is alone. */
  bus?: ChangeBus
  /** Workers skip the config-file seed: the primary applied it before starting them. */
  skipSeed?: boolean
  /** Every worker's metrics, summed; absent when this process is alone. */
  gatherMetrics?: () => Promise<{ snapshot: MetricsSnapshot; workers: number }>
  /** Wrong admin keys seen by the other workers, counted here too; absent when this process is alone. */
  adminFailures?: FailureExchange
}

const MASTER_HASH = 'master_key_sha256'

/** Built-ins load by default; a config entry `builtin:<name>` replaces that default (to configure or disable it). */
function pluginSpecs(configured: PluginSpec[]): PluginSpec[] {
  const builtinName = (s: PluginSpec) => (typeof s.use === 'string' && s.use.startsWith('builtin:') ? s.use.slice(8) : null)
  const overrides = new Map(configured.map((s) => [builtinName(s), s]))
  const builtins = Object.keys(BUILTINS).map((name) => overrides.get(name) ?? { use: `builtin:${name}` })
  // Unknown builtin names stay in the list so the host refuses them by name.
  return [
    ...builtins,
    ...configured.filter((s) => {
      const name = builtinName(s)
      return name === null || !(name in BUILTINS)
    }),
  ]
}

export async function createGateway(config: GatewayConfig, log: Logger, options: GatewayOptions = {}): Promise<Gateway> {
  const store = await Store.open({ dataDir: config.dataDir, databaseURL: config.databaseURL })
  if (options.bus) store.connect(options.bus)
  // ioredis is 8 MB of a worker's memory: loaded only by a gateway that uses Redis.
  const redisModule = config.redisURL ? await import('../services/redis.ts') : null
  const redisAddress = { url: config.redisURL!, cluster: config.redisCluster }
  const redis = redisModule ? redisModule.connectRedis(redisAddress, config.redisTimeoutMs, log) : undefined
  const redisBus = redisModule && redis ? new redisModule.RedisChangeBus(redis, redisAddress) : undefined
  if (redisBus) {
    store.connect(redisBus)
    await redisBus.ready()
    await redisModule!.checkDatabase(redis!, redisAddress).catch(async (error) => {
      redisBus.close()
      redis!.disconnect()
      await store.close()
      throw error
    })
  }
  const secrets = secretBox(config)
  await checkSecretKey(store, secrets, log)
  await sealBaseURLs(store, secrets)

  let generatedMasterKey: string | null = null
  let masterHash = await store.getSetting(MASTER_HASH)
  if (config.masterKey) {
    masterHash = sha256(config.masterKey)
    await store.setSetting(MASTER_HASH, masterHash)
  } else if (!masterHash) {
    generatedMasterKey = `condt_mk_${base62(randomBytes(32))}`
    masterHash = sha256(generatedMasterKey)
    await store.setSetting(MASTER_HASH, masterHash)
  }

  const secretsOwner = `gateway:${crypto.randomUUID()}`
  setSecrets(secretsOwner, [config.masterKey, generatedMasterKey, config.encryptionKey, ...(config.encryptionKeys?.split(',') ?? [])])

  const metrics = new Metrics()
  const retentionDays = config.requestLog?.retentionDays ?? 7
  const records = retentionDays > 0 ? new RequestRecorder(store, log, { retentionDays, recordBodies: config.requestLog?.recordBodies ?? false }) : null
  const timeseries = new TimeSeries(store, log)
  let server: { requestIP(request: Request): { address: string } | null } | null = null
  // Fed like the request-log plugin, from onLog: a push and a few additions, never an await on the request path.
  // With request records on, an onAuth (before the auth plugin's) notes the client's address, gone once the
  // response is sent; with them off there is no such hook at all.
  const recording: Plugin = {
    name: 'conduit-request-records',
    version: '1.0.0',
    apiVersion: 1,
    setup: () => {
      const onLog = (finished: FinishedRequest) => {
        records?.record(finished)
        timeseries.record(finished)
      }
      if (!records) return { onLog }
      return {
        onAuth(ctx: RequestContext) {
          if (server) RequestRecorder.rememberClient(ctx.shared, server.requestIP(ctx.request)?.address)
        },
        onLog,
      }
    },
  }
  const ledger = new SpendLedger(store, log, { maxQueued: config.ledgerMaxQueued })
  const host = new PluginHost({ log, store: storeForPlugins(store, ledger), redis, builtins: BUILTINS, baseDir: config.configDir, metrics })
  await host.load([...pluginSpecs(config.plugins), { use: recording, priority: 1_000_000, failureMode: 'open' }])
  const catalog = new Catalog(store, secrets, log)
  egress.configure(config.egressAllow) // process-wide: every upstream call consults it
  const admin = new AdminService(store, secrets, host.providers, egress)
  const generatedKeys = options.skipSeed ? [] : await applySeed(admin, store, config.seed)
  await catalog.ready()

  const responseStore = new ResponseStore(store, log, config.responses?.retentionDays ?? 30)
  const ejections = metrics.counter({
    name: 'conduit_upstream_ejections_total',
    help: 'Provider deployments taken out of routing after consecutive failures, by provider and upstream model.',
    labelNames: ['provider', 'model'],
  })
  const router = new Router(undefined, (t) => ejections.inc({ provider: t.provider.name, model: t.model }))
  const pipeline = new Pipeline({
    host,
    catalog,
    router,
    store,
    metrics,
    ledger,
    log,
    maxBodyBytes: config.maxBodyBytes,
    bodyTimeoutMs: config.bodyTimeoutMs,
    maxInflight: config.maxInflight,
    maxUpstreamBodyBytes: config.maxUpstreamBodyBytes,
    audioMaxUploadBytes: config.audioMaxUploadBytes,
    timeouts: config.timeouts,
    realtime: config.realtime,
    frontDoors: {
      responses: new ResponsesDoor(responseStore, catalog, host.providers, () => !host.inspectsContent),
      messages: createMessagesDoor({ providers: (type) => host.providers.get(type), timeouts: config.timeouts }),
    },
  })
  const expectedHash = masterHash
  const isMasterKey = (token: string) => secretEquals(sha256(token), expectedHash)
  const gateway: Gateway = {
    pipeline,
    metrics,
    ledger,
    draining: false,
    async metricsText() {
      if (!options.gatherMetrics) return Metrics.render(metrics.snapshot())
      const { snapshot, workers } = await options.gatherMetrics()
      return Metrics.render(snapshot, workers)
    },
    async readiness() {
      const checks: Record<string, string> = {}
      try {
        // A database that accepts and never answers is not ready either: an orchestrator's probe needs an answer.
        const answered = await within(store.sql`SELECT 1`.then(() => true), READINESS_TIMEOUT_MS)
        checks.store = answered ? 'ok' : `no answer in ${READINESS_TIMEOUT_MS} ms`
      } catch (error) {
        checks.store = error instanceof Error ? error.message : 'unreachable'
      }
      if (redis) {
        checks.redis = await redis.ping().then(
          () => 'ok',
          (error: Error) => error.message,
        )
      }
      if (gateway.draining) checks.server = 'draining'
      // Redis is reported, not required: limits and budgets fail open without it (or refuse with their own 503 when
      // failClosed), and taking every instance out of service for it would turn a Redis outage into an outage.
      return { ready: checks.store === 'ok' && !gateway.draining, checks }
    },
    admin,
    host,
    store,
    log,
    upstreamTimeouts: config.timeouts,
    records,
    timeseries,
    adminGuard: new AdminGuard(isMasterKey, Date.now, options.adminFailures),
    masterFingerprint: sha256(`ui-session:${expectedHash}`),
    attachServer: (listening) => void (server = listening),
    generatedMasterKey,
    generatedKeys,
    isMasterKey,
    async close() {
      catalog.close()
      setSecrets(secretsOwner, [])
      await ledger.close() // flush what is queued (SIGTERM lands here after the drain)
      pipeline.stopSettlingOnFlush()
      await records?.close()
      responseStore.close()
      await timeseries.close()
      await host.close()
      redisBus?.close()
      redis?.disconnect()
      await store.close()
    },
  }
  return gateway
}

/**
 * The store as plugins read it. A budget rebuilt from the ledger (a key's first request, a period changed from daily
 * to monthly) counts this process's rows not yet written too (they go every 200 ms): without them, a period changed
 * right after a burst forgot the burst, and the budget admitted it again.
 */
function storeForPlugins(store: Store, ledger: SpendLedger): StoreView {
  return {
    findKeyByHash: (hash) => store.findKeyByHash(hash),
    spentMicros: async (keyId, since, user) => {
      await ledger.flush()
      return store.spentMicros(keyId, since, user)
    },
    onChange: (listener) => store.onChange(listener),
  }
}

/** How long /ready waits for the database. */
const READINESS_TIMEOUT_MS = 2_000

/**
 * Config-file entities, applied idempotently by name: create what is missing, update what exists. Instances started
 * together on one database seed the same file at once: one creates, and the others, refused by the name's UNIQUE
 * constraint (a 409), find it and update it.
 */
async function applySeed(admin: AdminService, store: Store, seed: GatewayConfig['seed']) {
  const generated: { name: string; key: string }[] = []
  for (const p of seed.providers ?? []) {
    await createdElsewhere(`provider '${p.name}'`, async () => {
      if (await store.getProvider(p.name)) await admin.updateProvider(p.name, p)
      else await admin.createProvider(p)
    })
  }
  for (const m of seed.models ?? []) {
    await createdElsewhere(`model '${m.name}'`, async () => {
      if (await store.getModel(m.name)) await admin.updateModel(m.name, m)
      else await admin.createModel(m)
    })
  }
  for (const { key, ...k } of seed.keys ?? []) {
    await createdElsewhere(`key '${k.name}'`, async () => {
      const existing = await admin.findKey(k.name)
      if (existing && (!key || existing.keyLast4 === key.slice(-4))) await admin.updateKey(existing.id, k)
      else {
        if (existing) await admin.deleteKey(existing.id) // the configured plaintext changed: rotate
        const created = await admin.createKey(k, key)
        if (!key) generated.push({ name: k.name, key: created.key })
      }
    })
  }
  return generated
}

/**
 * A seed step, once more if another instance created the same entity meanwhile (then it is found and updated). A
 * refusal names the entity: "Unknown provider 'x'" alone does not say which of the file's models asked for it.
 */
async function createdElsewhere(what: string, step: () => Promise<void>) {
  try {
    try {
      await step()
    } catch (error) {
      if (!(GatewayError.is(error) && error.status === 409)) throw error
      await step()
    }
  } catch (error) {
    throw inContext(`Config file, ${what}`, error)
  }
}
