/**
 * large-body: a 64 KB conversation (what agents and retrieval send) at c=64, direct, the floor and one Conduit worker
 * in interleaved rounds. A body's cost grows with it: the gateway parses it, checks it and sends it on, where the
 * floor only passes text along; the one-line question of `throughput` hides that.
 */
import type { Arm } from '../arms.ts'
import { mockModel } from '../mock-upstream.ts'
import { runThroughput, type ThroughputOptions, type ThroughputResult } from './throughput.ts'

export interface LargeBodyOptions extends Omit<ThroughputOptions, 'ladder' | 'body' | 'scenario'> {
  kilobytes: number
  connections: number
}

/** Cells as the throughput scenario's, at one rung (summarizeThroughput reads them the same way). */
export interface LargeBodyResult extends ThroughputResult {
  bodyBytes: number
}

/** A conversation of about `kilobytes`: turns of a few hundred bytes, as a chat client accumulates them. */
export function conversation(model: string, kilobytes: number): string {
  const messages: { role: string; content: string }[] = []
  while (JSON.stringify(messages).length < kilobytes * 1024) {
    messages.push({ role: messages.length % 2 ? 'assistant' : 'user', content: `${'The quick brown fox jumps over the lazy dog. '.repeat(20)}${messages.length}` })
  }
  return JSON.stringify({ model, messages, max_tokens: 16 })
}

/** The throughput scenario's cells, with the conversation for a body. */
export async function runLargeBody(arms: Arm[], { kilobytes, connections, ...o }: LargeBodyOptions, progress: (m: string) => void): Promise<LargeBodyResult> {
  const body = conversation(mockModel(o.timing), kilobytes)
  const result = await runThroughput(arms, { ...o, ladder: [connections], body, scenario: 'large-body' }, progress)
  return { ...result, bodyBytes: body.length }
}
