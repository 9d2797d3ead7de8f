import { afterAll, expect, test } from 'bun:test'
import { tracingChannel } from 'node:diagnostics_channel'
import Redis from 'ioredis'
import { connectRedis } from '../../src/services/redis.ts'
import { createLogger } from '../../src/services/logger.ts'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const redis = connectRedis({ url: REDIS_URL, cluster: false }, 1_000, createLogger('silent')) as Redis

// ioredis builds a command's tracing context (every argument as a string) only when it traces the command. Counted
// here, and put back after: test files share one process.
const proto = Redis.prototype as unknown as { _buildCommandContext(command: unknown): unknown }
const build = proto._buildCommandContext
let contexts = 0
proto._buildCommandContext = function (this: unknown, command: unknown) {
  contexts++
  return build.call(this, command)
}
afterAll(() => {
  proto._buildCommandContext = build
  redis.disconnect()
})

test('ioredis traces commands for a subscriber of its channel, and builds nothing for nobody (Bun lacks hasSubscribers)', async () => {
  const channel = tracingChannel('ioredis:command')
  if (redis.status !== 'ready') await new Promise((ready) => redis.once('ready', ready)) // no offline queue: see connectRedis
  await redis.ping()
  expect(channel.hasSubscribers).toBe(false)
  contexts = 0
  await Promise.all([redis.ping(), redis.echo(Buffer.alloc(4096, 1))])
  expect(contexts).toBe(0)

  const started: { command: string }[] = []
  const subscriber = { start: (context: any) => void started.push(context), end() {}, asyncStart() {}, asyncEnd() {}, error() {} }
  channel.subscribe(subscriber)
  try {
    expect(channel.hasSubscribers).toBe(true)
    await redis.echo('traced')
    expect(contexts).toBe(1)
    expect(started.map((c) => c.command)).toEqual(['echo'])
  } finally {
    channel.unsubscribe(subscriber)
  }
  expect(channel.hasSubscribers).toBe(false)
})
