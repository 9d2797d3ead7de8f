/**
 * memory: RSS of each gateway's process tree (primary + workers summed) idle after start, at peak during the
 * throughput ladder (1 Hz), and per open stream during streams-1000. When those scenarios were not selected,
 * it runs the small part of them it needs: one c=64 wrk cell, one round of simultaneous streams.
 */
import type { Arm } from '../arms.ts'
import { chatBody } from '../clients/http.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { runStreams, type StreamsResult } from './streams.ts'
import { measureCell, writeLua, type ThroughputResult } from './throughput.ts'

export interface MemoryArmResult {
  arm: string
  idle: number | null
  peakThroughput: number | null
  withStreams: number | null
  perStream: number | null
}

export interface MemoryResult {
  /** Where the peak and per-stream figures came from. */
  sources: { peak: 'throughput' | 'own c=64 cell'; perStream: 'streams-1000' | 'own streams run' }
  streamsOpen: number
  arms: MemoryArmResult[]
}

export interface MemoryInputs {
  idle: Record<string, number>
  throughput: ThroughputResult | null
  streams: StreamsResult | null
  workDir: string
  mockPid: number
  json: MockTiming
  stream: MockTiming
  streamCount: number
  durationSec: number
}

export async function runMemory(arms: Arm[], o: MemoryInputs, progress: (m: string) => void): Promise<MemoryResult> {
  const measured = arms.filter((a) => a.process !== null)
  let peak: Record<string, number>
  if (o.throughput) peak = o.throughput.peakRss
  else {
    peak = {}
    const body = chatBody(mockModel(o.json), false)
    for (const arm of measured) {
      const cell = await measureCell(arm, writeLua(o.workDir, arm, body), 64, o.durationSec, o.mockPid)
      peak[arm.name] = cell.peakRss ?? NaN
      progress(`memory: c=64 ${arm.name}, peak RSS ${((cell.peakRss ?? NaN) / 1e6).toFixed(1)} MB`)
    }
  }
  const streams = o.streams ?? (await runStreams(measured.filter((a) => a.streams), { count: o.streamCount, timing: o.stream }, progress))
  return {
    sources: { peak: o.throughput ? 'throughput' : 'own c=64 cell', perStream: o.streams ? 'streams-1000' : 'own streams run' },
    streamsOpen: streams.count,
    arms: measured.map((arm) => {
      const s = streams.arms.find((r) => r.arm === arm.name)
      return {
        arm: arm.name,
        idle: o.idle[arm.name] ?? null,
        peakThroughput: peak[arm.name] ?? null,
        withStreams: s?.rssPeak ?? null,
        perStream: s?.rssPerStream ?? null,
      }
    }),
  }
}
