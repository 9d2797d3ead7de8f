import type { Cluster, ClusterOptions, default as Redis, RedisOptions } from 'ioredis'
import type { RedisClient } from './types.ts'

/**
 * A single Redis's options as a Cluster client takes them: the offline queue, auto-pipelining, lazy connecting and
 * reconnecting are the Cluster client's own; everything else goes to the connection of each node. Options not given
 * are left out, not set undefined: `Cluster.duplicate` would otherwise take them for overrides.
 */
export function clusterOptions({ enableOfflineQueue, enableAutoPipelining, lazyConnect, retryStrategy, ...node }: RedisOptions): ClusterOptions {
  const own: ClusterOptions = { enableOfflineQueue, enableAutoPipelining, lazyConnect, clusterRetryStrategy: retryStrategy }
  for (const name of Object.keys(own) as (keyof ClusterOptions)[]) if (own[name] === undefined) delete own[name]
  return { ...own, redisOptions: node }
}

/** Another connection to the Redis (or Cluster) `redis` connects to, with `options` over its own. */
export function connectionLike(redis: RedisClient, options: RedisOptions): RedisClient {
  if (!redis.isCluster) return (redis as Redis).duplicate(options)
  const cluster = redis as Cluster
  const { redisOptions, ...own } = clusterOptions(options)
  return cluster.duplicate([], { ...own, redisOptions: { ...cluster.options.redisOptions, ...redisOptions } })
}

/** The command timeout of `redis`'s connections (a Cluster's: its nodes'). */
export const commandTimeoutOf = (redis: RedisClient): number | undefined =>
  redis.isCluster ? (redis as Cluster).options.redisOptions?.commandTimeout : (redis as Redis).options.commandTimeout
