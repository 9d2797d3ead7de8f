import { expect } from 'bun:test'
import path from 'node:path'
import { relayStream, type StreamOutcome } from '../../src/core/stream-relay.ts'
import { UpstreamCall } from '../../src/core/upstream.ts'
import { PluginHost } from '../../src/plugin-host/host.ts'
import type { EndpointAdapter, ProviderConfig } from '../../src/plugin-sdk/types.ts'
import { createLogger } from '../../src/services/logger.ts'
import { attemptFor } from './adapter.ts'
import { validateSseBody } from './openapi.ts'

/**
 * Recorded upstream bytes fed through the real stream relay (src/core/stream-relay.ts, the code between the
 * upstream and the client) with the adapter's own stream parser and framer, as the pipeline wires them for a
 * chat stream. `replayEverySplit` also replays the bytes split in two at every offset: what the client receives
 * must not depend on where the network cut events, frames or multi-byte characters.
 */

/** The model name the client asked for (the default virtual model): every relayed chunk must carry it. */
export const CLIENT_MODEL = 'my-model'

/** The bytes of `test/fixtures/<name>`. */
export const fixtureBytes = (name: string): Promise<Uint8Array> => Bun.file(path.join(import.meta.dir, '../fixtures', name)).bytes()

/** No plugins, so no onChunk hooks; its store knows no keys and is never consulted by the relay. */
export const bareHost = new PluginHost({
  log: createLogger('silent'),
  store: { findKeyByHash: async () => null, spentMicros: async () => 0, onChange: () => () => {} },
  builtins: {},
  baseDir: '.',
})

export interface RecordedRelayOptions {
  /** The endpoint adapter (e.g. `adapter.chat`) whose `createStreamParser` / `createStreamFramer` decode the bytes; none: OpenAI bytes forwarded as they are. */
  adapter?: EndpointAdapter | null
  /** The client asked for `stream_options.include_usage`. */
  includeUsage: boolean
  /** The attempt's provider; fields left out are a stub's (type `test`, no base URL, no key, no options). */
  provider?: Partial<ProviderConfig>
  /** The attempt's upstream model. Default `upstream-model`. */
  upstreamModel?: string
  /** The virtual model the relay writes into chunks. Default `CLIENT_MODEL`. */
  virtualModel?: string
  /** The plugin host (its onChunk hooks change how the relay parses); default one without plugins. */
  host?: PluginHost
}

export interface RelayResult {
  /** Everything the client received. */
  text: string
  /** The same bytes as the relay enqueued them, chunk by chunk. */
  enqueued: Uint8Array[]
  outcome: StreamOutcome
}

/** Relays an upstream stream that arrives in `parts` (the first one read before the response is committed). */
export async function relayRecorded(parts: Uint8Array[], options: RecordedRelayOptions): Promise<RelayResult> {
  const [first, ...rest] = parts
  if (!first) throw new Error('relayRecorded needs at least one part')
  const virtualModel = options.virtualModel ?? CLIENT_MODEL
  const body = { model: virtualModel, messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: options.includeUsage } }
  const attempt = attemptFor({ type: 'test', ...options.provider }, options.upstreamModel ?? 'upstream-model', body)
  const upstream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const part of rest) controller.enqueue(part)
      controller.close()
    },
  })
  const finished: { outcome?: StreamOutcome } = {}
  const relayed = relayStream({
    call: new UpstreamCall(new AbortController().signal, attempt.target.provider.name),
    reader: upstream.getReader() as ReadableStreamDefaultReader<Uint8Array>,
    first,
    idleMs: 5_000,
    attempt,
    parser: options.adapter?.createStreamParser?.(attempt) ?? null,
    framer: options.adapter?.createStreamFramer?.() ?? null,
    host: options.host ?? bareHost,
    virtualModel,
    includeUsage: options.includeUsage,
    onFinish: (outcome) => (finished.outcome = outcome),
  })
  const enqueued = await Array.fromAsync(relayed as unknown as AsyncIterable<Uint8Array>)
  const text = Buffer.concat(enqueued).toString('utf8')
  if (!finished.outcome) throw new Error('the relay ended without reporting an outcome')
  return { text, enqueued, outcome: finished.outcome }
}

/** Per-parse timestamps: a translating parser stamps `created` with the clock. */
export const ignoreCreated = (text: string) => text.replace(/"created":\d+/g, '"created":0')

export interface SplitReplayOptions extends RecordedRelayOptions {
  /** Applied to both texts before comparing them, to blank per-parse values. Default: none, compared to the letter. */
  normalise?: (text: string) => string
}

/**
 * Relays `bytes` whole, checks the stream succeeded and is spec-valid (its chunks are returned with it), then
 * relays them split at every byte offset: the client text must be the same (after `normalise`) and so must
 * the usage counted.
 */
export async function replayEverySplit(bytes: Uint8Array, options: SplitReplayOptions): Promise<RelayResult & { chunks: any[] }> {
  const normalise = options.normalise ?? ((text: string) => text)
  const whole = await relayRecorded([bytes], options)
  expect(whole.outcome.error).toBeNull()
  const chunks = validateSseBody(whole.text, 'CreateChatCompletionStreamResponse')
  const expected = normalise(whole.text)
  for (let offset = 1; offset < bytes.length; offset++) {
    const split = await relayRecorded([bytes.subarray(0, offset), bytes.subarray(offset)], options)
    if (normalise(split.text) !== expected) throw new Error(`split at byte ${offset} changed the output:\n${split.text.slice(0, 2000)}`)
    expect(split.outcome.usage).toEqual(whole.outcome.usage)
  }
  return { ...whole, chunks }
}
