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

/** Store changes across instances: published on Redis, applied by every other instance within milliseconds. */
export class RedisChangeBus implements ChangeBus {
  private readonly origin = crypto.randomUUID()
  private readonly subscriber: RedisClient

  constructor(
    private readonly redis: RedisClient,
    address: RedisAddress,
  ) {
    // A subscribed connection cannot run commands: a second one listens. Outages are reported by the first. On a
    // Cluster, a message published on any node reaches the subscriber's node.
    this.subscriber = client(address, { retryStrategy: reconnect })
    this.subscriber.on('error', () => {})
  }

  async publish(change: StoreChange) {
    // Best effort: a Redis outage must not fail the admin call; caches also expire on their own TTL.
    await this.redis.publish(CHANNEL, JSON.stringify({ origin: this.origin, change })).catch(() => {})
  }

  /** Resolves once both connections are usable (or after `timeoutMs`: a Redis down at start must not block it). */
  async ready(timeoutMs = 1_000) {
    const connected = (r: RedisClient) => (r.status === 'ready' ? Promise.resolve() : new Promise<void>((resolve) => r.once('ready', () => resolve())))
    await Promise.race([Promise.all([connected(this.redis), this.subscribed]), Bun.sleep(timeoutMs)])
  }

  private subscribed: Promise<unknown> = Promise.resolve()

  subscribe(listener: (change: StoreChange) => void) {
    this.subscribed = this.subscriber.subscribe(CHANNEL).catch(() => {})
    this.subscriber.on('message', (_channel, text: string) => {
      try {
        const { origin, change } = JSON.parse(text) as { origin: string; change: StoreChange }
        if (origin !== this.origin) listener(change)
      } catch {}
    })
  }

  close() {
    this.subscriber.disconnect()
  }
}
