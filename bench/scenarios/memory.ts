/**
 * memory: RSS of each gateway's process tree (primary + workers summed) idle after start, at peak during the
 * throughput ladder (1 Hz), and per open stream during streams-1000. When those scenarios were not selected,
 * it runs the small part of them it needs: one c=64 wrk cell, one round of simultaneous streams. With a flood
 * timing registered (`FLOOD`), also the peak per stream that a client opens and never reads.
 */
import type { Socket } from 'bun'
import type { Arm } from '../arms.ts'
import { chatBody } from '../clients/http.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { processTree, rssBytes } from '../sys.ts'
import { runStreams, type StreamsResult } from './streams.ts'
import { measureCell, writeLua, type ThroughputResult } from './throughput.ts'

/** ~8 MB per stream as fast as the mock goes: far more than the sockets between a gateway and a client hold. */
export const FLOOD: MockTiming = { chunks: 40_000, intervalMs: 0, delayMs: 0 }

export interface MemoryArmResult {
  arm: string
  idle: number | null
  /** Idle, the tree's PSS and its anonymous (private) part: see proportionalBytes. */
  idlePss: number | null
  idleAnon: number | null
  /** Idle RSS of one worker (the largest; the process itself with one worker) and of the primary (null: none). */
  idleWorker: number | null
  idlePrimary: number | null
  peakThroughput: number | null
  /** The largest one process of the tree reached meanwhile: a worker's peak, which the target is for. */
  peakThroughputProcess: number | null
  withStreams: number | null
  perStream: number | null
  /** Peak RSS growth per stream nobody reads (`FLOOD` streams), bytes. */
  unreadPerStream: number | null
}

export interface MemoryResult {
  /** Where the peak and per-stream figures came from. */
  sources: { peak: 'throughput' | 'own c=64 cell'; perStream: 'streams-1000' | 'own streams run' }
  streamsOpen: number
  arms: MemoryArmResult[]
}

export interface MemoryInputs {
  idle: Record<string, number>
  idleProportional: Record<string, { pss: number; anon: number }>
  idleRoles: Record<string, { worker: number; primary: number | null }>
  throughput: ThroughputResult | null
  streams: StreamsResult | null
  workDir: string
  mockPid: number
  json: MockTiming
  stream: MockTiming
  streamCount: number
  durationSec: number
  /** The flood timing, when the arms know its model (Conduit registers the runner's timings); none: not measured. */
  flood?: MockTiming | null
  /** Unread streams opened at once. Default 100. */
  unreadCount?: number
}

export async function runMemory(arms: Arm[], o: MemoryInputs, progress: (m: string) => void): Promise<MemoryResult> {
  const measured = arms.filter((a) => a.process !== null)
  let peak: Record<string, number>
  let peakProcess: Record<string, number>
  if (o.throughput) ({ peakRss: peak, peakRssProcess: peakProcess } = o.throughput)
  else {
    peak = {}
    peakProcess = {}
    const body = chatBody(mockModel(o.json), false)
    for (const arm of measured) {
      const cell = await measureCell(arm, writeLua(o.workDir, arm, body), 64, o.durationSec, o.mockPid)
      peak[arm.name] = cell.peakRss ?? NaN
      peakProcess[arm.name] = cell.peakRssProcess ?? NaN
      progress(`memory: c=64 ${arm.name}, peak RSS ${((cell.peakRss ?? NaN) / 1e6).toFixed(1)} MB`)
    }
  }
  const streams = o.streams ?? (await runStreams(measured.filter((a) => a.streams), { count: o.streamCount, timing: o.stream }, progress))
  const unread: Record<string, number> = {}
  if (o.flood) {
    const count = o.unreadCount ?? 100
    for (const arm of measured.filter((a) => a.streams)) {
      const body = chatBody(mockModel(o.flood), true)
      const result = await unreadStreamsPeak(arm.process!.pid, () => openUnreadStreams(`${arm.baseURL}/chat/completions`, arm.headers, body, count))
      result.close()
      const ok = result.statuses.filter((s) => s === 'HTTP/1.1 200 OK').length
      unread[arm.name] = ok === count ? result.perStream : NaN
      progress(`memory: ${count} unread streams ${arm.name}: ${ok}/${count} opened, +${(result.perStream / 2 ** 20).toFixed(2)} MiB per stream at peak`)
      await Bun.sleep(1000) // let the sockets close before the next arm
    }
  }
  return {
    sources: { peak: o.throughput ? 'throughput' : 'own c=64 cell', perStream: o.streams ? 'streams-1000' : 'own streams run' },
    streamsOpen: streams.count,
    arms: measured.map((arm) => {
      const s = streams.arms.find((r) => r.arm === arm.name)
      return {
        arm: arm.name,
        idle: o.idle[arm.name] ?? null,
        idlePss: o.idleProportional[arm.name]?.pss ?? null,
        idleAnon: o.idleProportional[arm.name]?.anon ?? null,
        idleWorker: o.idleRoles[arm.name]?.worker ?? null,
        idlePrimary: o.idleRoles[arm.name]?.primary ?? null,
        peakThroughput: peak[arm.name] ?? null,
        peakThroughputProcess: peakProcess[arm.name] ?? null,
        withStreams: s?.rssPeak ?? null,
        perStream: s?.rssPerStream ?? null,
        unreadPerStream: unread[arm.name] ?? null,
      }
    }),
  }
}

/**
 * Opens `count` streams on raw sockets that take the status line and then stop reading: the kernel's buffers
 * fill and the server sees clients that take nothing more. `close()` drops them all.
 */
export async function openUnreadStreams(url: string, headers: Record<string, string>, body: string, count: number) {
  const { hostname, port, pathname } = new URL(url)
  const lines = Object.entries({ host: `${hostname}:${port}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers })
  const request = `POST ${pathname} HTTP/1.1\r\n${lines.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`
  const sockets: Socket<{ status: string | null }>[] = []
  const statuses = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<string>((resolve) => {
          Bun.connect<{ status: string | null }>({
            hostname,
            port: Number(port),
            data: { status: null },
            socket: {
              open(socket) {
                sockets.push(socket)
                socket.write(request)
              },
              data(socket, chunk) {
                if (socket.data.status !== null) return
                socket.data.status = new TextDecoder().decode(chunk.subarray(0, 64)).split('\r\n')[0]!
                socket.pause()
                resolve(socket.data.status)
              },
              close: () => resolve('closed'),
              error: (_socket, error) => resolve(`error: ${error.message}`),
            },
          }).catch((error) => resolve(`error: ${error.message}`))
        }),
    ),
  )
  return { statuses, close: () => sockets.forEach((socket) => socket.terminate()) }
}

/**
 * RSS growth per stream of the process tree under `root` at its peak while the streams `open` returns stay
 * unread: sampled every 50 ms until the peak has held for 2 s (every stream is stalled on its full socket by
 * then), or 30 s. The streams are left open for the caller to look at and close.
 */
export async function unreadStreamsPeak(root: number, open: () => Promise<{ statuses: string[]; close(): void }>) {
  const before = rssBytes(processTree(root))
  const streams = await open()
  let peak = rssBytes(processTree(root))
  let lastRise = performance.now()
  const deadline = performance.now() + 30_000
  while (performance.now() - lastRise < 2_000 && performance.now() < deadline) {
    await Bun.sleep(50)
    const rss = rssBytes(processTree(root))
    if (rss > peak + 2 ** 18) lastRise = performance.now()
    peak = Math.max(peak, rss)
  }
  return { ...streams, before, peak, perStream: (peak - before) / streams.statuses.length }
}
