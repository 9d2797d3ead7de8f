import { tracingChannel } from 'node:diagnostics_channel'
import Redis, { Cluster, type ClusterNode, type RedisOptions } from 'ioredis'
import type { Logger, RedisClient, StoreChange } from '../plugin-sdk/types.ts'
import { clusterOptions } from '../plugin-sdk/redis.ts'
import type { ChangeBus } from '../store/store.ts'

/**
 * ioredis traces a command unless its tracing channel says `hasSubscribers === false`, and Bun's TracingChannel has no
 * `hasSubscribers` (Node's: whether any of its five channels has one). So every command was traced for nobody: a
 * context built with each argument turned into a string (the admission script's packed binary ones too) and the
 * command's promise wrapped, 1–3 µs of this process's CPU a call. Node's definition, where Bun lacks it; a subscriber
 * (OpenTelemetry, say) still gets every command.
 */
const tracingPrototype = Object.getPrototypeOf(tracingChannel('conduit:probe'))
if (!('hasSubscribers' in tracingPrototype)) {
  Object.defineProperty(tracingPrototype, 'hasSubscribers', {
    configurable: true,
    get(this: Record<'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error', { hasSubscribers: boolean }>) {
      return this.start.hasSubscribers || this.end.hasSubscribers || this.asyncStart.hasSubscribers || this.asyncEnd.hasSubscribers || this.error.hasSubscribers
    },
  })
}

/** Keep trying to come back; each attempt is cheap and requests never wait for it. */
const reconnect = (times: number) => Math.min(times * 100, 1_000)

/** Where Redis is: one `redis://` URL, or for a Cluster one or more of its nodes, comma-separated. */
export interface RedisAddress {
  url: string
  cluster: boolean
}

/**
 * A client for `address` with `options`. A Cluster is found from its seed nodes (the first URL's credentials and
 * TLS apply to every node), its options split between the Cluster client and each node's connection (clusterOptions).
 */
function client(address: RedisAddress, options: RedisOptions): RedisClient {
  if (!address.cluster) return new Redis(address.url, options)
  const seeds = address.url.split(',').map((url) => new URL(url.trim()))
  const first = seeds[0]!
  const nodes: ClusterNode[] = seeds.map((url) => ({ host: url.hostname, port: Number(url.port || 6379) }))
  const { redisOptions, ...own } = clusterOptions(options)
  return new Cluster(nodes, {
    ...own,
    redisOptions: {
      ...redisOptions,
      username: decodeURIComponent(first.username) || undefined,
      password: decodeURIComponent(first.password) || undefined,
      tls: first.protocol === 'rediss:' ? {} : undefined,
    },
  })
}

/**
 * One Redis connection per process for commands. Fail fast instead of queueing: with the offline queue off
 * and a short command timeout, a Redis outage costs each request at most `commandTimeoutMs`, and callers fall
 * back (limits fail open) instead of stalling for ioredis's default 10 s.
 */
export function connectRedis(address: RedisAddress, commandTimeoutMs: number, log: Logger): RedisClient {
  const redis = client(address, {
    enableOfflineQueue: false,
    commandTimeout: commandTimeoutMs,
    maxRetriesPerRequest: 0,
    connectTimeout: 1_000,
    retryStrategy: reconnect,
    lazyConnect: false,
    // Commands issued in the same tick leave in one write: under load, one syscall for many admissions.
    enableAutoPipelining: true,
  })
  reportOutages(redis, log)
  if (!address.cluster) {
    // A Cluster node answers another slot's keys with MOVED: limits would fail open on most keys, request by request.
    redis.once('ready', () => {
      redis.info('cluster').then(
        (info) => /^cluster_enabled:1/m.test(info) && log.error({}, 'REDIS_URL is a node of a Redis Cluster: set REDIS_CLUSTER=true, or limits fail open for keys on other nodes'),
        () => {},
      )
    })
  } else {
    // A Cluster client finds no slots on a plain Redis, ever: say why, once, rather than only report an outage.
    const misnamed = (err: Error & { lastNodeError?: Error }) => {
      if (!err.lastNodeError?.message.includes('cluster support disabled')) return
      redis.off('error', misnamed)
      log.error({}, 'REDIS_CLUSTER=true, but REDIS_URL is a Redis without cluster support: unset REDIS_CLUSTER, or limits run on this instance alone')
    }
    redis.on('error', misnamed)
  }
  return redis
}

/**
 * A database Redis does not have (past its `databases` setting) fails ioredis's SELECT quietly: every connection
 * would run on database 0, shared with whatever else uses it. Refused at start when Redis answers.
 */
export async function checkDatabase(redis: RedisClient, address: RedisAddress) {
  if (address.cluster || redis.status !== 'ready') return
  const wanted = Number(new URL(address.url).pathname.slice(1) || 0)
  const serving = /\bdb=(\d+)/.exec(String(await redis.call('CLIENT', 'INFO').catch(() => '')))?.[1]
  if (serving !== undefined && Number(serving) !== wanted) {
    throw new Error(`REDIS_URL names database ${wanted}, which this Redis does not have (see 'databases' in its configuration).`)
  }
}

/** One line when Redis goes away and one when it is back, not one per reconnect attempt. */
export function reportOutages(redis: RedisClient, log: Logger) {
  let down = false
  redis.on('error', (err) => {
    if (!down) log.warn({ err: err.message }, 'redis unavailable; limits run on this instance alone until it returns')
    down = true
  })
  redis.on('ready', () => {
    if (down) log.info('redis connection restored')
    down = false
  })
}

const CHANNEL = 'conduit:store-changes'

/** What a lost notice may have been about: every kind of row. */
const KINDS: StoreChange['kind'][] = ['key', 'provider', 'model']
/** While this instance cannot hear other instances' notices, how often its caches go back to the store. */
const DEAF_REFRESH_MS = 1_000

/**
 * Store changes across instances: published on Redis, applied by every other instance within milliseconds. A notice
 * can be lost while either side's connection is down; then every row may have changed (`id: '*'`) and caches go back
 * to the store: a key disabled meanwhile stops within a second, not when its cache entry would have expired.
 */
export class RedisChangeBus implements ChangeBus {
  private readonly origin = crypto.randomUUID()
  private readonly subscriber: RedisClient
  /** Kinds whose notices could not be published: published as `'*'` once the connection is back. */
  private readonly owed = new Set<StoreChange['kind']>()

  constructor(
    private readonly redis: RedisClient,
    address: RedisAddress,
  ) {
    // A subscribed connection cannot run commands: a second one listens. Outages are reported by the first. On a
    // Cluster, a message published on any node reaches the subscriber's node.
    this.subscriber = client(address, { retryStrategy: reconnect })
    this.subscriber.on('error', () => {})
    this.redis.on('ready', () => {
      for (const kind of this.owed) void this.publish({ kind, id: '*' })
    })
  }

  async publish(change: StoreChange) {
    // A Redis outage must not fail the admin call (the change is in the store); the others hear of it once it is back.
    try {
      await this.redis.publish(CHANNEL, JSON.stringify({ origin: this.origin, change }))
      if (change.id === '*') this.owed.delete(change.kind)
    } catch {
      this.owed.add(change.kind)
    }
  }

  /** Resolves once both connections are usable (or after `timeoutMs`: a Redis down at start must not block it). */
  async ready(timeoutMs = 1_000) {
    const connected = (r: RedisClient) => (r.status === 'ready' ? Promise.resolve() : new Promise<void>((resolve) => r.once('ready', () => resolve())))
    await Promise.race([Promise.all([connected(this.redis), this.subscribed]), Bun.sleep(timeoutMs)])
  }

  private subscribed: Promise<unknown> = Promise.resolve()
  private deaf: Timer | null = null
  private closed = false

  subscribe(listener: (change: StoreChange) => void) {
    this.subscribed = this.subscriber.subscribe(CHANNEL).catch(() => {})
    this.subscriber.on('message', (_channel, text: string) => {
      try {
        const { origin, change } = JSON.parse(text) as { origin: string; change: StoreChange }
        if (origin !== this.origin) listener(change)
      } catch {}
    })
    const everything = () => {
      for (const kind of KINDS) listener({ kind, id: '*' })
    }
    // Deaf until subscribed, and whenever the connection drops: what was published meanwhile is lost.
    const deafen = () => {
      if (this.deaf || this.closed) return
      this.deaf = setInterval(everything, DEAF_REFRESH_MS)
      this.deaf.unref()
    }
    deafen()
    this.subscriber.on('close', deafen)
    // Heard again once subscribed again (ioredis resubscribes only after saying it is ready): what changed meanwhile
    // is read from the store once more, then notices take over.
    this.subscriber.on('ready', () => {
      void this.subscriber.subscribe(CHANNEL).then(() => {
        if (!this.deaf) return
        clearInterval(this.deaf)
        this.deaf = null
        everything()
      }, deafen)
    })
  }

  close() {
    this.closed = true
    clearInterval(this.deaf ?? undefined)
    this.subscriber.disconnect()
  }
}
