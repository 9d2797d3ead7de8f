import { expect, test } from 'bun:test'
import { summarizeThroughput, type ThroughputResult } from '../../bench/scenarios/throughput.ts'

/** A wrk cell of the throughput scenario with only what the summary reads. */
const cell = (arm: string, round: number, rps: number, cpuUsPerReq: number | null) =>
  ({ arm, round, connections: 64, rps, p50: 1, p99: 2, cpuUsPerReq, armCores: 1, mockCpuUsPerReq: 10, non2xx: 0, socketErrors: { connect: 0, read: 0, write: 0, timeout: 0 }, peakRss: null, peakRssProcess: null, timeWaitBefore: 0, timeWait: 0, foreignCores: 0, requests: rps, seconds: 1 }) as ThroughputResult['cells'][number]

test('bench throughput: each ratio is taken within its round, then its median and extremes; a round without the floor counts for nothing', () => {
  // The box sped up in round 2: the floor doubled. Ratios of the rounds' medians would say 60%; within rounds it is 40–60%.
  const cells = [
    cell('floor', 1, 100, 30), cell('conduit', 1, 60, 75),
    cell('floor', 2, 200, 20), cell('conduit', 2, 80, 60),
    cell('floor', 3, 100, 30), cell('conduit', 3, 50, 90),
    cell('conduit', 4, 99, 10), // the floor's cell of round 4 is missing
  ]
  const [conduit] = summarizeThroughput({ durationSec: 4, ladder: [64], rounds: 4, cells, peakRss: {}, peakRssProcess: {} }).filter((s) => s.arm === 'conduit')
  expect(conduit!.vsFloor).toEqual({ median: 0.5, min: 0.4, max: 0.6 })
  expect(conduit!.cpuVsFloor).toEqual({ median: 3, min: 2.5, max: 3 })
  expect(conduit!.rps).toBe(70) // the median of its own four cells
  expect(conduit!.vsDirect).toBeNull() // no direct arm ran
})
