/**
 * large-body: a 64 KB conversation (what agents and retrieval send) at c=64, direct, the floor and one Conduit worker
 * in interleaved rounds. A body's cost grows with it: the gateway parses it, checks it and sends it on, where the
 * floor only passes text along; the one-line question of `throughput` hides that.
 */
import type { Arm } from '../arms.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { shuffled } from '../stats.ts'
import { measureCell, wrk, writeLua, type ThroughputResult } from './throughput.ts'

export interface LargeBodyOptions {
  kilobytes: number
  connections: number
  rounds: number
  durationSec: number
  timing: MockTiming
  workDir: string
  mockPid: number
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

export async function runLargeBody(arms: Arm[], o: LargeBodyOptions, progress: (m: string) => void): Promise<LargeBodyResult> {
  const body = conversation(mockModel(o.timing), o.kilobytes)
  const luas = new Map(arms.map((arm) => [arm.name, writeLua(o.workDir, { ...arm, name: `${arm.name}-large` }, body)]))
  for (const arm of arms) await wrk(`${arm.baseURL}/chat/completions`, luas.get(arm.name)!, 32, 1)
  const cells: LargeBodyResult['cells'] = []
  for (let round = 1; round <= o.rounds; round++) {
    for (const arm of shuffled(arms)) {
      const cell = await measureCell(arm, luas.get(arm.name)!, o.connections, o.durationSec, o.mockPid)
      cells.push({ ...cell, round })
      progress(`large-body round ${round} ${arm.name}: ${cell.rps.toFixed(0)} req/s${cell.cpuUsPerReq === null ? '' : `, ${cell.cpuUsPerReq.toFixed(0)} µs CPU/req`}${cell.non2xx ? `, ${cell.non2xx} non-2xx` : ''}`)
      if (cell.raw) progress(`wrk output: ${cell.raw}`)
    }
  }
  return { bodyBytes: body.length, ladder: [o.connections], durationSec: o.durationSec, rounds: o.rounds, cells, peakRss: {} }
}
