/** The results document (JSON) and its Markdown rendering, with the targets checked. */
import type { ArmKind, ProcessDiagnostics } from './arms.ts'
import type { AudioResult } from './scenarios/audio.ts'
import type { LatencyResult } from './scenarios/latency.ts'
import type { RealtimeBenchResult } from './scenarios/realtime.ts'
import type { MemoryResult } from './scenarios/memory.ts'
import type { RedisCostResult } from './scenarios/redis-cost.ts'
import type { SoakResult } from './scenarios/soak.ts'
import type { SseResult } from './scenarios/sse.ts'
import type { StreamsResult } from './scenarios/streams.ts'
import type { Spread } from './stats.ts'
import { summarizeThroughput, type ThroughputResult } from './scenarios/throughput.ts'
import type { FrontDoorResult } from './scenarios/front-doors.ts'
import type { LargeBodyResult } from './scenarios/large-body.ts'
import type { MachineFacts } from './sys.ts'

export interface ArmInfo {
  name: string
  kind: ArmKind
  command: string
  workers: number | null
  processes: number | null
  streams: boolean
  notes: string[]
  diagnostics: ProcessDiagnostics | null
}

export interface TargetCheck {
  target: string
  arm: string
  measured: string
  threshold: string
  status: 'pass' | 'miss' | 'n/a'
}

export interface BenchResults {
  startedAt: string
  wallSec: number
  argv: string[]
  machine: MachineFacts
  arms: ArmInfo[]
  notes: string[]
  /** Per scenario, cores used by processes outside the benchmark (other jobs on the box). */
  foreignCores: Record<string, number>
  latency: LatencyResult | null
  throughput: ThroughputResult | null
  /** The Responses and Messages protocols against chat on conduit-w1 (no target: a cost to watch). */
  frontDoors?: FrontDoorResult | null
  /** A 64 KB conversation at c=64 (no target: a cost to watch). */
  largeBody?: LargeBodyResult | null
  sse: SseResult | null
  streams: StreamsResult | null
  memory: MemoryResult | null
  soak: SoakResult | null
  audio?: AudioResult | null
  realtime?: RealtimeBenchResult | null
  /** With --limits: the Redis cost of a governed request. */
  redisCost?: RedisCostResult | null
  targets: TargetCheck[]
}

/** Thresholds, from the performance issue (all measured side by side on the same box). */
export const TARGETS = {
  throughputVsFloor: 0.7,
  throughputVsPortkey: 20,
  throughputAt: 64,
  addedP50Ms: 0.2,
  addedP99Ms: 0.5,
  sseAddedTtftP50Ms: 0.3,
  perChunkUs: 10,
  streamStallMs: 100,
  streamsTtftP99Ms: 250,
  /** Per process: one worker (or the single process), and the primary of several; the peak, the largest process. */
  idleRssMB: 60,
  idlePrimaryRssMB: 30,
  peakRssMB: 150,
  soakGrowthMiBPerMin: 1,
  /** A key with rpm, tpm, max_parallel and a budget (the --limits arms). */
  governedVsFloor: 0.55,
  governedAddedP50Ms: 0.4,
  /** Per governed request, at the Redis every instance shares. */
  redisCallsPerRequest: 2,
  /** Audio (issue 12): speech first byte added without conversion; input audio held before the first converted byte; upload RSS. */
  speechAddedP50Ms: 1,
  convertedFirstByteMs: 100,
  uploadsRssGrowthMiB: 100,
  /** Realtime (issue 13): per relayed frame (half a round trip), and the latest frame of 200 live sessions. */
  realtimeFrameP50Ms: 0.1,
  realtimeFrameP99Ms: 1,
  realtimeFrameLatenessMs: 50,
  redisUsPerRequest: 20,
}

/** The --limits arms: judged by the governed targets. */
const isGoverned = (arm: string) => arm.includes('-limits-')

const MB = 1e6
/** Other processes using more than this many cores make a measurement window noisy. */
const NOISY_CORES = 0.15
const f = (x: number | null | undefined, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits))
const signed = (x: number | null | undefined, digits = 3) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`)
const mb = (bytes: number | null | undefined) => (bytes === null || bytes === undefined || !Number.isFinite(bytes) ? '–' : (bytes / MB).toFixed(1))
const pct = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(x * 100).toFixed(0)}%`)
const check = (ok: boolean | null): TargetCheck['status'] => (ok === null ? 'n/a' : ok ? 'pass' : 'miss')
const finite = (x: number | null | undefined): x is number => x !== null && x !== undefined && Number.isFinite(x)

export function checkTargets(r: Omit<BenchResults, 'targets'>): TargetCheck[] {
  const out: TargetCheck[] = []
  // The soak's fresh gateway is judged by the soak target only.
  const gateways = r.arms.filter((a) => a.kind === 'conduit' && a.name !== r.soak?.arm).map((a) => a.name)
  const add = (target: string, arm: string, value: number | null | undefined, threshold: string, ok: (v: number) => boolean, show: (v: number) => string) =>
    out.push({ target, arm, measured: finite(value) ? show(value) : '–', threshold, status: check(finite(value) ? ok(value) : null) })

  if (r.throughput) {
    const rows = summarizeThroughput(r.throughput).filter((x) => x.connections === TARGETS.throughputAt)
    const at = (arm: string) => rows.find((x) => x.arm === arm)
    const floor = at('floor')?.rps
    const portkey = at('portkey')?.rps
    for (const g of gateways) {
      const row = at(g)
      const min = isGoverned(g) ? TARGETS.governedVsFloor : TARGETS.throughputVsFloor
      // The median over rounds of the ratio within each round, with its extremes: the run-to-run spread.
      const show = (v: number) => `${pct(v)} (rounds ${pct(row!.vsFloor!.min)}–${pct(row!.vsFloor!.max)}; median ${f(row!.rps, 0)} vs ${f(floor, 0)} req/s)`
      add(`throughput c=${TARGETS.throughputAt} vs floor`, g, row?.vsFloor?.median, `≥ ${Math.round(min * 100)}%`, (v) => v >= min, show)
      if (finite(portkey)) add(`throughput c=${TARGETS.throughputAt} vs Portkey`, g, row ? row.rps / portkey : null, `≥ ${TARGETS.throughputVsPortkey}×`, (v) => v >= TARGETS.throughputVsPortkey, (v) => `${v.toFixed(1)}× (${f(row!.rps, 0)} vs ${f(portkey, 0)} req/s)`)
    }
  }
  if (r.latency) {
    for (const g of gateways) {
      const a = r.latency.arms.find((x) => x.arm === g)
      const p50 = isGoverned(g) ? TARGETS.governedAddedP50Ms : TARGETS.addedP50Ms
      add('added latency c=1, p50', g, a?.addedP50, `≤ ${p50} ms`, (v) => v <= p50, (v) => `${signed(v)} ms`)
      if (!isGoverned(g)) add('added latency c=1, p99', g, a?.addedP99, `≤ ${TARGETS.addedP99Ms} ms`, (v) => v <= TARGETS.addedP99Ms, (v) => `${signed(v)} ms`)
    }
  }
  if (r.sse) {
    for (const g of gateways) {
      const a = r.sse.arms.find((x) => x.arm === g)
      add('SSE added TTFT p50', g, a?.addedTtftP50, `≤ ${TARGETS.sseAddedTtftP50Ms} ms`, (v) => v <= TARGETS.sseAddedTtftP50Ms, (v) => `${signed(v)} ms`)
      add('SSE per-chunk cost', g, a?.perChunkUs, `≤ ${TARGETS.perChunkUs} µs`, (v) => v <= TARGETS.perChunkUs, (v) => `${signed(v, 1)} µs`)
      add('SSE frame fidelity', g, a ? a.fidelityFailures : null, '0 failures', (v) => v === 0, (v) => `${v} of ${a?.streams} streams wrong`)
    }
  }
  if (r.streams) {
    for (const g of gateways) {
      const a = r.streams.arms.find((x) => x.arm === g)
      out.push({
        target: `${r.streams.count} streams: all complete, no stall > mock timing + ${TARGETS.streamStallMs} ms`,
        arm: g,
        measured: a ? `${a.completed}/${a.count} complete, max stall ${f(a.maxStallMs, 1)} ms` : '–',
        threshold: `${r.streams.count}/${r.streams.count}, stall ≤ ${TARGETS.streamStallMs} ms`,
        status: check(a ? a.pass : null),
      })
      // Not a stall between chunks but a wait for the first one: streams queued behind others (reference §6.3).
      add(`${r.streams.count} streams: first chunk without queueing, TTFT p99`, g, a?.ttftMs.p99, `≤ ${TARGETS.streamsTtftP99Ms} ms`, (v) => v <= TARGETS.streamsTtftP99Ms, (v) => `${v.toFixed(0)} ms (max ${f(a?.ttftMs.max, 0)} ms)`)
    }
  }
  if (r.memory) {
    for (const g of gateways) {
      const a = r.memory.arms.find((x) => x.arm === g)
      add('RSS idle, per worker', g, a?.idleWorker, `≤ ${TARGETS.idleRssMB} MB`, (v) => v <= TARGETS.idleRssMB * MB, (v) => `${mb(v)} MB`)
      if (a?.idlePrimary != null) add('RSS idle, primary', g, a.idlePrimary, `≤ ${TARGETS.idlePrimaryRssMB} MB`, (v) => v <= TARGETS.idlePrimaryRssMB * MB, (v) => `${mb(v)} MB`)
      add('RSS peak (throughput), per process', g, a?.peakThroughputProcess, `≤ ${TARGETS.peakRssMB} MB`, (v) => v <= TARGETS.peakRssMB * MB, (v) => `${mb(v)} MB`)
    }
  }
  for (const c of r.redisCost?.cells ?? []) {
    add(`Redis round trips per governed request, c=${c.concurrency}`, c.arm, c.scriptCallsPerRequest, `≤ ${TARGETS.redisCallsPerRequest}`, (v) => v <= TARGETS.redisCallsPerRequest, (v) => v.toFixed(2))
    add(`Redis script µs per governed request, c=${c.concurrency}`, c.arm, c.scriptUsPerRequest, `≤ ${TARGETS.redisUsPerRequest} µs`, (v) => v <= TARGETS.redisUsPerRequest, (v) => `${v.toFixed(1)} µs`)
  }
  if (r.realtime) {
    const rt = r.realtime
    add('realtime added latency per frame, p50', 'conduit-realtime', rt.latency.addedP50 / 2, `≤ ${TARGETS.realtimeFrameP50Ms} ms`, (v) => v <= TARGETS.realtimeFrameP50Ms, (v) => `${signed(v)} ms`)
    add('realtime added latency per frame, p99', 'conduit-realtime', rt.latency.addedP99 / 2, `≤ ${TARGETS.realtimeFrameP99Ms} ms`, (v) => v <= TARGETS.realtimeFrameP99Ms, (v) => `${signed(v)} ms`)
    add(`realtime ${rt.stream.sessions} live sessions: latest frame`, 'conduit-realtime', Math.max(rt.stream.maxLatenessDownMs, rt.stream.maxLatenessUpMs), `≤ ${TARGETS.realtimeFrameLatenessMs} ms`, (v) => v <= TARGETS.realtimeFrameLatenessMs, (v) => `${f(v, 0)} ms`)
  }
  if (r.audio) {
    const a = r.audio
    add('speech first byte added, p50 (no conversion)', 'conduit-w1-audio', a.speech.addedP50, `≤ ${TARGETS.speechAddedP50Ms} ms`, (v) => v <= TARGETS.speechAddedP50Ms, (v) => `${signed(v)} ms`)
    add('converted speech: first mp3 byte after the first PCM byte, p50', 'conduit-w1-audio', a.converted.addedP50, `≤ ${TARGETS.convertedFirstByteMs} ms`, (v) => v <= TARGETS.convertedFirstByteMs, (v) => `${f(v, 1)} ms`)
    add('50 × 20 MB uploads: RSS growth', 'conduit-w1-audio', a.uploads.growthMiB, `≤ ${TARGETS.uploadsRssGrowthMiB} MiB`, (v) => v <= TARGETS.uploadsRssGrowthMiB, (v) => `${f(v, 0)} MiB`)
  }
  if (r.soak) {
    add('soak RSS growth after warm-up', r.soak.arm, r.soak.growthMiBPerMin, `< ${TARGETS.soakGrowthMiBPerMin} MiB/min`, (v) => v < TARGETS.soakGrowthMiBPerMin, (v) => `${signed(v, 2)} MiB/min`)
  }
  return out
}

const table = (head: string[], rows: (string | number)[][]) =>
  [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')

export function renderMarkdown(r: BenchResults): string {
  const m = r.machine
  const out: string[] = []
  out.push(`# Conduit benchmark — ${r.startedAt}`, '')
  out.push(
    `${m.cpuModel}, ${m.nproc} cores, ${m.memTotalGiB} GiB · ${m.kernel}${m.os ? ` (${m.os})` : ''} · Bun ${m.bun} · Node ${m.node} · ${m.wrk} · ` +
      `commit ${m.gitCommit}${m.gitDirty ? ' (src/ has uncommitted changes)' : ''} · ulimit -n ${m.openFilesLimit} · tcp_tw_reuse ${m.tcpTwReuse} · ports ${m.ephemeralPorts} · ` +
      `wall time ${(r.wallSec / 60).toFixed(1)} min · all processes share the same cores, 127.0.0.1 only`,
    '',
  )
  if (m.wake) {
    out.push(
      `Work after an idle thread wakes: a fixed piece of work took ${f(m.wake.warmUs, 1)} µs back to back and ${f(m.wake.afterIdleUs, 1)} µs after 20 ms asleep ` +
        `(${f(m.wake.afterIdleUs / m.wake.warmUs, 1)}×, this host's own): c=1 latencies and the first token of a paced stream meet every arm after such a sleep, so their added times carry it.`,
      '',
    )
  }

  const busy = Object.entries(r.foreignCores).filter(([, cores]) => cores > NOISY_CORES)
  if (busy.length) out.push(`⚠️ Other processes used CPU during ${busy.map(([s, c]) => `${s} (${c.toFixed(2)} cores)`).join(', ')}: those figures are noisy; rerun on a quiet box.`, '')

  out.push('## Targets', '')
  out.push(r.targets.length ? table(['target', 'arm', 'measured', 'threshold', 'result'], r.targets.map((t) => [t.target, t.arm, t.measured, t.threshold, t.status === 'pass' ? '✅ pass' : t.status === 'miss' ? '❌ miss' : 'n/a'])) : '_No target was measured in this run._', '')

  out.push('## Arms', '')
  out.push(table(['arm', 'command', 'processes', 'notes'], r.arms.map((a) => [a.name, `\`${a.command}\``, a.processes ?? '–', a.notes.join('; ') || ''])), '')

  if (r.latency) {
    const l = r.latency
    out.push(`## latency-c1 — sequential Bun fetch, ${l.rounds} interleaved rounds × ${l.perRound} requests per arm, ~1 KB JSON`, '')
    out.push('Added = median over rounds of (arm round percentile − direct round percentile).', '')
    out.push(
      table(
        ['arm', 'p50 ms', 'p90 ms', 'p99 ms', 'added p50 ms', 'added p50 spread', 'added p99 ms', 'errors'],
        l.arms.map((a) => [a.arm, f(a.pooled.p50, 3), f(a.pooled.p90, 3), f(a.pooled.p99, 3), signed(a.addedP50), a.addedP50Spread ? `${signed(a.addedP50Spread[0])} … ${signed(a.addedP50Spread[1])}` : '', signed(a.addedP99), a.errors]),
      ),
      '',
    )
  }

  if (r.throughput) {
    const t = r.throughput
    const summary = summarizeThroughput(t)
    const directAt = (c: number) => summary.find((x) => x.arm === 'direct' && x.connections === c)?.rps
    out.push(`## throughput — \`wrk -t1 -cC -d${t.durationSec}s --latency\`, POST chat completion, ${t.rounds} interleaved round(s)`, '')
    out.push(
      'Each figure is the median over the rounds; a ratio is taken within each round (the arm against the floor measured in the same round), ' +
        'then its median, with the lowest and highest round beside it. ' +
        "CPU µs/req: user+system time of the arm's processes (primary and workers) ÷ requests; for direct, nothing (mock column only). " +
        "TIME_WAIT: sockets on the whole box after the last round's cell, and the change during it (they live 60 s, so earlier cells still show). " +
        `Other cores: the most CPU used meanwhile by processes outside the benchmark in one of the arm's cells (⚠️ above ${NOISY_CORES}: noisy).`,
      '',
    )
    const ratio = (s: Spread | null) => (s ? `${pct(s.median)} (${pct(s.min)}–${pct(s.max)})` : '–')
    const times = (s: Spread | null) => (s ? `${s.median.toFixed(2)}× (${s.min.toFixed(2)}–${s.max.toFixed(2)})` : '–')
    const rows = [...summary]
      .sort((a, b) => a.connections - b.connections || a.arm.localeCompare(b.arm))
      .map((c) => [c.connections, c.arm, f(c.rps, 0), ratio(c.vsFloor), ratio(c.vsDirect), f(c.p50), f(c.p99), c.non2xx, c.socketErrors, f(c.cpuUsPerReq, 1), times(c.cpuVsFloor), f(c.armCores), f(c.mockCpuUsPerReq, 1), mb(c.peakRss), `${c.timeWait} (${signed(c.timeWaitDelta, 0)})`, c.foreignCores > NOISY_CORES ? `⚠️ ${f(c.foreignCores)}` : f(c.foreignCores)])
    out.push(table(['c', 'arm', 'req/s', 'vs floor', 'vs direct', 'p50 ms', 'p99 ms', 'non-2xx', 'socket errors', 'CPU µs/req', 'CPU vs floor', 'cores', 'mock µs/req', 'peak RSS MB', 'TIME_WAIT after (Δ)', 'other cores'], rows), '')
    const rigBound = summary.filter((c) => c.arm !== 'direct' && directAt(c.connections) !== undefined && c.rps * 2 > directAt(c.connections)!)
    if (rigBound.length) out.push(`Rig check: direct is less than 2× the arm in ${rigBound.map((c) => `${c.arm}@c=${c.connections}`).join(', ')} — those cells may be bound by the mock or wrk, not by the arm.`, '')
  }

  if (r.largeBody) {
    const b = r.largeBody
    out.push(`## large-body — a ${f(b.bodyBytes / 1024, 0)} KB conversation, \`wrk -t1 -c${b.ladder[0]} -d${b.durationSec}s\`, ${b.rounds} interleaved rounds`, '')
    out.push('What a long prompt costs: the gateway parses and checks the body and sends it on; the floor passes text along. Ratios as in throughput.', '')
    const pct = (s: Spread | null) => (s ? `${(s.median * 100).toFixed(0)}%` : '–')
    out.push(
      table(
        ['arm', 'req/s', 'vs floor', 'vs direct', 'CPU µs/req', 'CPU vs floor', 'p50 ms', 'p99 ms', 'non-2xx'],
        summarizeThroughput(b).map((a) => [a.arm, f(a.rps, 0), pct(a.vsFloor), pct(a.vsDirect), f(a.cpuUsPerReq, 1), a.cpuVsFloor ? `${a.cpuVsFloor.median.toFixed(2)}×` : '–', f(a.p50), f(a.p99), a.non2xx]),
      ),
      '',
    )
  }

  if (r.frontDoors) {
    const d = r.frontDoors
    const chat = d.cells.find((c) => c.route === '/chat/completions')
    out.push(`## front-doors — ${d.arm}, \`wrk -t1 -c${d.connections} -d${d.durationSec}s\`, the same prompt through each protocol`, '')
    out.push('Translation both ways for Responses and Messages; a stored response is also written (two tables) before it is answered.', '')
    const vsChat = (v: number | null, base: number | null | undefined) => (v !== null && base ? `${((v / base) * 100).toFixed(0)}%` : '–')
    out.push(
      table(
        ['door', 'route', 'req/s', 'vs chat', 'CPU µs/req', 'vs chat', 'p50 ms', 'p99 ms', 'non-2xx'],
        d.cells.map((c) => [c.door, c.route, f(c.rps, 0), vsChat(c.rps, chat?.rps), f(c.cpuUsPerReq, 1), vsChat(c.cpuUsPerReq, chat?.cpuUsPerReq), f(c.p50), f(c.p99), c.non2xx]),
      ),
      '',
    )
  }

  if (r.sse) {
    const s = r.sse
    out.push(`## sse — c=1, ${s.rounds} interleaved rounds × ${s.perRound} streams per arm, ${s.timing.chunks} chunks × ${s.timing.intervalMs} ms`, '')
    out.push(`Added TTFT p50 / total p50: median over rounds of round-median differences; added TTFT p99: pooled p99 difference. Per chunk = (added total − added TTFT) / ${s.timing.chunks}, on a mock that sends on a fixed schedule. Added chunk delay: per content chunk, mock send time (stamped in the chunk) → client read, arm − direct (p50: median over rounds; p99: pooled). Fidelity: ${f(s.expectedEvents, 0)} data events (as direct) and [DONE] last.`, '')
    out.push(
      table(
        ['arm', 'TTFT p50 ms', 'TTFT p99 ms', 'total p50 ms', 'added TTFT p50 ms', 'added TTFT p99 ms', 'added total p50 ms', 'per chunk µs', 'added chunk delay p50 / p99 µs', 'fidelity'],
        s.arms.map((a) => [a.arm, f(a.ttft.p50, 3), f(a.ttft.p99, 3), f(a.total.p50, 2), signed(a.addedTtftP50), signed(a.addedTtftP99), signed(a.addedTotalP50), signed(a.perChunkUs, 1), a.addedDeliveryP50Us === null ? '–' : `${signed(a.addedDeliveryP50Us, 0)} / ${signed(a.addedDeliveryP99Us, 0)}`, a.fidelityFailures === 0 ? `ok (${a.streams})` : `${a.fidelityFailures}/${a.streams} wrong; events seen ${a.eventsSeen.join(',')}${a.errors.length ? `; ${a.errors.join('; ')}` : ''}`]),
      ),
      '',
    )
  }

  if (r.streams) {
    const s = r.streams
    out.push(`## streams-${s.count} — ${s.count} simultaneous streams, ${s.timing.chunks} chunks × ${s.timing.intervalMs} ms, separate client (BUN_CONFIG_MAX_HTTP_REQUESTS=65535)`, '')
    out.push(
      table(
        ['arm', 'complete', 'TTFT p50 ms', 'TTFT p99 ms', 'TTFT max ms', 'max stall ms', 'stalled > 100 ms', 'wall s', 'RSS before MB', 'RSS peak MB', 'KB per stream', 'result'],
        s.arms.map((a) => [
          a.arm,
          `${a.completed}/${a.count}`,
          f(a.ttftMs.p50, 1),
          f(a.ttftMs.p99, 1),
          f(a.ttftMs.max, 1),
          f(a.maxStallMs, 1),
          a.stalledStreams,
          f(a.wallMs / 1000, 2),
          mb(a.rssBefore),
          mb(a.rssPeak),
          finite(a.rssPerStream) ? (a.rssPerStream / 1000).toFixed(1) : '–',
          (a.pass ? 'pass' : 'FAIL') + (a.errors.length ? ` (${a.errors.join('; ')})` : '') + (a.clientError ? ` (client: ${a.clientError.slice(0, 200)})` : ''),
        ]),
      ),
      '',
    )
  }

  if (r.memory) {
    const mm = r.memory
    out.push(`## memory — RSS of each arm's process tree (workers summed); peak from ${mm.sources.peak}, per stream from ${mm.sources.perStream}`, '')
    out.push(
      'Idle PSS counts a page shared between processes once, split among them (most of a Bun process\'s RSS is the `bun` executable\'s own code, shared by every Bun process); idle private is the anonymous memory the tree holds itself.',
      '',
    )
    out.push(
      table(
        ['arm', 'idle MB', 'idle MB: a worker / the primary', 'idle PSS MB', 'idle private MB', 'peak (throughput) MB', 'peak of one process MB', `with ${mm.streamsOpen} streams MB`, 'KB per open stream'],
        mm.arms.map((a) => [a.arm, mb(a.idle), `${mb(a.idleWorker)} / ${a.idlePrimary == null ? '–' : mb(a.idlePrimary)}`, mb(a.idlePss), mb(a.idleAnon), mb(a.peakThroughput), mb(a.peakThroughputProcess), mb(a.withStreams), finite(a.perStream) ? (a.perStream / 1000).toFixed(1) : '–']),
      ),
      '',
    )
  }

  if (r.redisCost) {
    out.push('## redis-cost — per governed request, at the arm\'s private Redis (`CONFIG RESETSTAT`, load, `INFO commandstats` and `INFO cpu`)', '')
    out.push('Script calls are the round trips Redis sees (EVALSHA + EVAL); their µs include the commands the scripts run. Redis CPU is the process\'s user + system time (parsing, replies, syscalls too). Commands: every command Redis counted, inner ones included, per request.', '')
    out.push(
      table(
        ['arm', 'c', 'requests', 'failed', 'script calls', 'script µs', 'Redis CPU µs', 'commands', 'detail (calls / µs per request)'],
        r.redisCost.cells.map((c) => [c.arm, c.concurrency, c.requests, c.failed, f(c.scriptCallsPerRequest, 2), f(c.scriptUsPerRequest, 1), f(c.cpuUsPerRequest, 1), f(c.commandsPerRequest, 1), Object.entries(c.commands).sort((a, b) => b[1].usec - a[1].usec).map(([n, v]) => `${n} ${f(v.calls, 2)}/${f(v.usec, 1)}`).join(', ')]),
      ),
      '',
    )
  }

  if (r.realtime) {
    const rt = r.realtime
    out.push('## realtime — its own WebSocket mock and Conduit (bench/scenarios/realtime.ts)', '')
    out.push(
      table(
        ['measure', 'direct', 'conduit', 'added'],
        [
          [`1 KiB frame echoed, round trip p50 (${rt.latency.pings} pings; two relayed frames)`, `${f(rt.latency.directP50, 3)} ms`, `${f(rt.latency.conduitP50, 3)} ms`, `${signed(rt.latency.addedP50)} ms`],
          ['round trip p99', `${f(rt.latency.directP99, 3)} ms`, `${f(rt.latency.conduitP99, 3)} ms`, `${signed(rt.latency.addedP99)} ms`],
          [`${rt.idle.sessions} idle sessions: RSS`, '', `${f(rt.idle.rssBeforeMiB, 0)} → ${f(rt.idle.rssAfterMiB, 0)} MiB`, `${f(rt.idle.rssPerSessionKiB, 1)} KiB per session`],
          [`${rt.stream.sessions} sessions, 24 kHz PCM16 both ways for ${rt.stream.seconds} s`, '', `CPU ${f(rt.stream.cpuTotalPct, 1)}% (${f(rt.stream.cpuPerSessionPct, 2)}% per session)`, `latest frame ${f(rt.stream.maxLatenessDownMs, 0)} ms down, ${f(rt.stream.maxLatenessUpMs, 0)} ms up`],
        ],
      ),
      '',
    )
  }
  if (r.audio) {
    const a = r.audio
    out.push('## audio — its own mock (bench/audio-mock.ts) and Conduit (1 worker), interleaved with direct calls', '')
    out.push(
      table(
        ['measure', 'direct', 'conduit', 'added'],
        [
          [`speech first byte p50 (mp3, no conversion; ${a.speech.requests} requests)`, `${f(a.speech.directP50, 3)} ms`, `${f(a.speech.conduitP50, 3)} ms`, `${signed(a.speech.addedP50)} ms`],
          ['speech first byte p99', `${f(a.speech.directP99, 3)} ms`, `${f(a.speech.conduitP99, 3)} ms`, `${signed(a.speech.addedP99)} ms`],
          [`first converted byte p50 (mp3 from a PCM-only provider in real time; ${a.converted.requests} requests)`, `${f(a.converted.directPcmFirstByteP50, 1)} ms (first PCM byte)`, `${f(a.converted.convertedFirstByteP50, 1)} ms`, `${f(a.converted.addedP50, 1)} ms (max ${f(a.converted.addedMax, 1)})`],
          [`transcription of a ${f(a.transcription.bytes / 1048576, 0)} MiB WAV (median of ${a.transcription.rounds})`, `${f(a.transcription.directMs, 1)} ms`, `${f(a.transcription.conduitMs, 1)} ms`, `${signed(a.transcription.addedMs, 1)} ms; peak RSS ${f(a.transcription.peakRssMiB, 0)} MiB (idle ${f(a.transcription.idleRssMiB, 0)})`],
          [`${a.uploads.count} concurrent ${f(a.uploads.bytesEach / 1048576, 0)} MiB uploads`, '', `${f(a.uploads.seconds, 1)} s`, `RSS ${f(a.uploads.rssBeforeMiB, 0)} → ${f(a.uploads.rssPeakMiB, 0)} MiB (+${f(a.uploads.growthMiB, 0)})`],
        ],
      ),
      '',
    )
  }
  if (r.soak) {
    const s = r.soak
    out.push(`## soak — ${s.arm}, ${s.durationSec} s, ${s.jsonPerSec} JSON/s + ${s.streamsPerSec} streams/s, ${s.abortRatio * 100}% of streams aborted by the client`, '')
    const c = s.client
    out.push(
      table(
        ['RSS idle MB', 'RSS peak MB', 'RSS end MB', 'RSS 10 s after MB', 'growth (2nd half)', 'JSON ok/failed', 'streams ok/aborted/failed', 'shed', 'errors'],
        [[mb(s.rssIdle), mb(s.rssPeak), mb(s.rssEnd), mb(s.rssRecovered), `${signed(s.growthMiBPerMin, 2)} MiB/min`, c ? `${c.json.ok}/${c.json.failed}` : '–', c ? `${c.streams.ok}/${c.streams.aborted}/${c.streams.failed}` : '–', c?.shed ?? '–', c?.errors.join('; ') || s.clientError || '']],
      ),
      '',
    )
  }

  const problems: string[] = [...r.notes]
  for (const a of r.arms) {
    const d = a.diagnostics
    if (!d) continue
    if (d.unexpectedExit) problems.push(`${a.name}: ${d.unexpectedExit}`)
    if (d.serverErrors) problems.push(`${a.name}: ${d.serverErrors} request-log lines with a 5xx status`)
    if (d.errorLines || d.warnLines) problems.push(`${a.name}: ${d.errorLines} error and ${d.warnLines} warning log lines, e.g. ${d.samples.slice(0, 3).map((s) => `\`${s.slice(0, 300)}\``).join(' ')}`)
    if (d.stderrTail.trim()) problems.push(`${a.name} stderr (tail): \`${d.stderrTail.trim().slice(-400).replace(/\s+/g, ' ')}\``)
  }
  if (problems.length) out.push('## Notes and problems seen', '', ...problems.map((p) => `- ${p}`), '')
  return out.join('\n')
}
