/**
 * front-doors: the Responses and Messages protocols against chat completions on the same gateway arm, at c=64 —
 * what a request through a front door costs (translation both ways; for Responses, the stored copy that `store`,
 * on by default, keeps). Doors in shuffled order, each warmed up first.
 */
import type { Arm } from '../arms.ts'
import { chatBody } from '../clients/http.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { shuffled } from '../stats.ts'
import { measureCell, wrk, writeLua, type ThroughputCell } from './throughput.ts'

export interface FrontDoorOptions {
  connections: number
  durationSec: number
  timing: MockTiming
  workDir: string
  mockPid: number
}

export interface FrontDoorCell extends ThroughputCell {
  door: string
  route: string
}

export interface FrontDoorResult {
  arm: string
  connections: number
  durationSec: number
  cells: FrontDoorCell[]
}

const PROMPT = 'Hello, how are you?'

function doors(model: string) {
  return [
    { door: 'chat completions', route: '/chat/completions', body: chatBody(model, false) },
    { door: 'responses (stored)', route: '/responses', body: JSON.stringify({ model, input: PROMPT }) },
    { door: 'responses, store: false', route: '/responses', body: JSON.stringify({ model, input: PROMPT, store: false }) },
    { door: 'messages', route: '/messages', body: JSON.stringify({ model, max_tokens: 256, messages: [{ role: 'user', content: PROMPT }] }) },
  ]
}

export async function runFrontDoors(arm: Arm, o: FrontDoorOptions, progress: (m: string) => void): Promise<FrontDoorResult> {
  const cells: FrontDoorCell[] = []
  for (const [i, d] of shuffled(doors(mockModel(o.timing)).map((d, i) => [i, d] as const))) {
    const lua = writeLua(o.workDir, { ...arm, name: `${arm.name}-door${i}` }, d.body)
    await wrk(`${arm.baseURL}${d.route}`, lua, 32, 1)
    const cell = await measureCell(arm, lua, o.connections, o.durationSec, o.mockPid, d.route)
    cells.push({ ...cell, door: d.door, route: d.route })
    progress(`front-doors ${d.door}: ${cell.rps.toFixed(0)} req/s, ${cell.cpuUsPerReq?.toFixed(0)} µs CPU/req${cell.non2xx ? `, ${cell.non2xx} non-2xx` : ''}`)
    if (cell.raw) progress(`wrk output: ${cell.raw}`)
  }
  return { arm: arm.name, connections: o.connections, durationSec: o.durationSec, cells }
}
