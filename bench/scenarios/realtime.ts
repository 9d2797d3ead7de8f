/**
 * realtime: the WebSocket relay's costs, each against a direct connection to the same mock upstream, in one run.
 *
 * - latency: a 1 KiB event echoed by the upstream, one at a time: round trip through Conduit minus round trip
 *   direct = the latency Conduit adds per frame (both directions of one frame: p50, p99).
 * - idle: N sessions open and silent; Conduit's RSS after minus before, per session.
 * - stream: M sessions streaming 24 kHz PCM16 both ways in real time (a 20 ms append every 20 ms up, a 20 ms audio
 *   delta every 20 ms down), for S seconds: Conduit's CPU per session and the latest frame (arrival − send time,
 *   both sides stamp with the same clock).
 *
 *   bun bench/scenarios/realtime.ts [--idle 1000] [--stream 200] [--seconds 10] [--pings 2000]
 *
 * Conduit and the mock upstream run as their own processes; the clients run here.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { cpuSeconds, processTree, repoRoot, rssBytes, MiB } from '../sys.ts'

const FRAME_MS = 20
const PCM_FRAME = Buffer.alloc((24_000 * 2 * FRAME_MS) / 1000, 7).toString('base64') // 960 bytes → 1280 chars

/** The mock upstream: speaks just enough of OpenAI's realtime API (session.created; echoes; timed audio deltas). */
function upstream() {
  const server = Bun.serve<{ timer: Timer | null; late: number }>({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (request, srv) => (srv.upgrade(request, { data: { timer: null, late: 0 } }) ? undefined : new Response('ws only', { status: 426 })),
    websocket: {
      perMessageDeflate: false,
      open(ws) {
        ws.send(JSON.stringify({ type: 'session.created', event_id: 'e0', session: { object: 'realtime.session', model: 'gpt-realtime' } }))
      },
      message(ws, message) {
        const text = String(message)
        if (text.startsWith('{"type":"bench.ping"')) return void ws.send(text)
        if (text.startsWith('{"type":"bench.stream"')) {
          // Audio down in real time, each delta stamped with the time it was sent.
          ws.data.timer = setInterval(() => ws.send(`{"type":"response.output_audio.delta","t":${performance.timeOrigin + performance.now()},"delta":"${PCM_FRAME}"}`), FRAME_MS)
          return
        }
        if (text.startsWith('{"type":"input_audio_buffer.append"')) {
          const t = Number(/"t":([\d.]+)/.exec(text)?.[1])
          const late = performance.timeOrigin + performance.now() - t
          if (late > ws.data.late) ws.data.late = late
          return
        }
        if (text.startsWith('{"type":"bench.report"')) return void ws.send(JSON.stringify({ type: 'bench.late', late: ws.data.late }))
      },
      close(ws) {
        if (ws.data.timer) clearInterval(ws.data.timer)
      },
    },
  })
  console.log(`UPSTREAM ${server.port}`)
}


async function spawnReady(cmd: string[], env: Record<string, string>, ready: RegExp) {
  const proc = Bun.spawn(cmd, { cwd: repoRoot, env: { ...process.env, ...env }, stdout: 'pipe', stderr: 'inherit' })
  const reader = proc.stdout.getReader()
  let out = ''
  const deadline = Date.now() + 30_000
  while (!ready.test(out)) {
    if (Date.now() > deadline) throw new Error(`${cmd.join(' ')} did not start:\n${out}`)
    const { value, done } = await reader.read()
    if (done) throw new Error(`${cmd.join(' ')} exited:\n${out}`)
    out += new TextDecoder().decode(value)
  }
  // Keep draining so the child never blocks on a full pipe.
  void (async () => {
    for (;;) if ((await reader.read()).done) break
  })()
  return { proc, match: ready.exec(out)! }
}

function open(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers } as any)
    ws.onopen = () => resolve(ws)
    ws.onerror = (e: any) => reject(new Error(e.message ?? 'websocket error'))
  })
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

async function pingRtts(ws: WebSocket, count: number): Promise<number[]> {
  const rtts: number[] = []
  const payload = 'x'.repeat(1000)
  // The first frame is session.created: wait for it, then ping one at a time.
  await new Promise<void>((resolve) => (ws.onmessage = () => resolve()))
  for (let i = 0; i < count; i++) {
    const started = performance.now()
    await new Promise<void>((resolve) => {
      ws.onmessage = () => resolve()
      ws.send(`{"type":"bench.ping","i":${i},"pad":"${payload}"}`)
    })
    rtts.push(performance.now() - started)
  }
  return rtts
}

export interface RealtimeBenchResult {
  latency: { directP50: number; directP99: number; conduitP50: number; conduitP99: number; addedP50: number; addedP99: number; pings: number }
  idle: { sessions: number; rssBeforeMiB: number; rssAfterMiB: number; rssPerSessionKiB: number }
  stream: { sessions: number; seconds: number; cpuPerSessionPct: number; cpuTotalPct: number; maxLatenessDownMs: number; maxLatenessUpMs: number; framesDown: number; framesUp: number }
}

export async function runRealtime(o: { idle: number; stream: number; seconds: number; pings: number }): Promise<RealtimeBenchResult> {
  const work = mkdtempSync(path.join(tmpdir(), 'conduit-bench-rt-'))
  const up = await spawnReady(['bun', path.join(import.meta.dir, 'realtime.ts'), '--upstream'], {}, /UPSTREAM (\d+)/)
  const upstreamURL = `ws://127.0.0.1:${up.match[1]}`
  const master = `bench-master-${crypto.randomUUID()}`
  const gw = await spawnReady(
    ['bun', 'src/main.ts', '--workers', '1'],
    { PORT: '0', HOST: '127.0.0.1', CONDUIT_DATA_DIR: work, CONDUIT_MASTER_KEY: master, CONDUIT_LOG_LEVEL: 'warn', CONDUIT_EGRESS_ALLOW: '127.0.0.1', CONDUIT_REALTIME_IDLE_TIMEOUT_S: '3600', CONDUIT_MAX_INFLIGHT: '100000' },
    /listening on (http:\/\/\S+?)\/v1\b/,
  )
  const origin = gw.match[1]!.replace('//localhost:', '//127.0.0.1:')
  const admin = async (route: string, body: unknown) => {
    const res = await fetch(`${origin}/admin/v1${route}`, { method: 'POST', headers: { authorization: `Bearer ${master}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    if (!res.ok) throw new Error(`${route}: ${res.status} ${await res.text()}`)
    return (await res.json()) as any
  }
  await admin('/providers', { name: 'mock', type: 'openai-compatible', base_url: upstreamURL.replace('ws', 'http') + '/v1', api_key: 'sk-bench' })
  await admin('/models', { name: 'rt', targets: [{ provider: 'mock', model: 'gpt-realtime', price: { input: 1, output: 1 } }] })
  const key = (await admin('/keys', { name: 'bench' })).key
  const viaConduit = `${origin.replace('http', 'ws')}/v1/realtime?model=rt`
  const direct = `${upstreamURL}/v1/realtime?model=gpt-realtime`
  const auth = { authorization: `Bearer ${key}` }
  const pids = () => processTree(gw.proc.pid)
  try {
    // Latency: alternate direct and Conduit in rounds so both see the same machine.
    const d: number[] = []
    const c: number[] = []
    for (let round = 0; round < 4; round++) {
      const a = await open(direct)
      d.push(...(await pingRtts(a, o.pings / 4)))
      a.close()
      const b = await open(viaConduit, auth)
      c.push(...(await pingRtts(b, o.pings / 4)))
      b.close()
    }
    d.sort((x, y) => x - y)
    c.sort((x, y) => x - y)
    const latency = {
      pings: d.length,
      directP50: quantile(d, 0.5),
      directP99: quantile(d, 0.99),
      conduitP50: quantile(c, 0.5),
      conduitP99: quantile(c, 0.99),
      addedP50: quantile(c, 0.5) - quantile(d, 0.5),
      addedP99: quantile(c, 0.99) - quantile(d, 0.99),
    }

    // Idle sessions: RSS per open session.
    await Bun.sleep(500)
    Bun.gc(true)
    const before = rssBytes(pids())
    const idle: WebSocket[] = []
    for (let i = 0; i < o.idle; i += 50) idle.push(...(await Promise.all(Array.from({ length: Math.min(50, o.idle - i) }, () => open(viaConduit, auth)))))
    await Bun.sleep(1_500)
    const after = rssBytes(pids())
    for (const ws of idle) ws.close()
    await Bun.sleep(1_000)

    // Streaming both ways in real time.
    const sessions = await Promise.all(Array.from({ length: o.stream }, () => open(viaConduit, auth)))
    let lateDown = 0
    let framesDown = 0
    let framesUp = 0
    for (const ws of sessions) {
      ws.onmessage = (e) => {
        const text = e.data as string
        if (!text.startsWith('{"type":"response.output_audio.delta"')) return
        framesDown++
        const late = performance.timeOrigin + performance.now() - Number(/"t":([\d.]+)/.exec(text)![1])
        if (late > lateDown) lateDown = late
      }
      ws.send('{"type":"bench.stream"}')
    }
    const cpu0 = cpuSeconds(pids())
    const wall0 = performance.now()
    const ticker = setInterval(() => {
      const t = performance.timeOrigin + performance.now()
      for (const ws of sessions) {
        ws.send(`{"type":"input_audio_buffer.append","t":${t},"audio":"${PCM_FRAME}"}`)
        framesUp++
      }
    }, FRAME_MS)
    await Bun.sleep(o.seconds * 1000)
    clearInterval(ticker)
    const cpu = cpuSeconds(pids()) - cpu0
    const wall = (performance.now() - wall0) / 1000
    let lateUp = 0
    await Promise.all(
      sessions.map(
        (ws) =>
          new Promise<void>((resolve) => {
            ws.onmessage = (e) => {
              const text = e.data as string
              if (!text.startsWith('{"type":"bench.late"')) return
              lateUp = Math.max(lateUp, JSON.parse(text).late)
              resolve()
            }
            ws.send('{"type":"bench.report"}')
          }),
      ),
    )
    for (const ws of sessions) ws.close()
    return {
      latency,
      idle: { sessions: o.idle, rssBeforeMiB: before / MiB, rssAfterMiB: after / MiB, rssPerSessionKiB: (after - before) / o.idle / 1024 },
      stream: {
        sessions: o.stream,
        seconds: wall,
        cpuTotalPct: (cpu / wall) * 100,
        cpuPerSessionPct: (cpu / wall / o.stream) * 100,
        maxLatenessDownMs: lateDown,
        maxLatenessUpMs: lateUp,
        framesDown,
        framesUp,
      },
    }
  } finally {
    gw.proc.kill('SIGTERM')
    up.proc.kill('SIGTERM')
    await Promise.all([gw.proc.exited, up.proc.exited])
    rmSync(work, { recursive: true, force: true })
  }
}

async function main() {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { idle: { type: 'string', default: '1000' }, stream: { type: 'string', default: '200' }, seconds: { type: 'string', default: '10' }, pings: { type: 'string', default: '2000' } },
  })
  const result = await runRealtime({ idle: Number(values.idle), stream: Number(values.stream), seconds: Number(values.seconds), pings: Number(values.pings) })
  const f = (n: number, d = 3) => n.toFixed(d)
  const { latency: l, idle: i, stream: s } = result
  console.log(`latency (${l.pings} pings of 1 KiB, round trip): direct p50 ${f(l.directP50)} ms p99 ${f(l.directP99)} ms; conduit p50 ${f(l.conduitP50)} ms p99 ${f(l.conduitP99)} ms; added p50 ${f(l.addedP50)} ms p99 ${f(l.addedP99)} ms`)
  console.log(`idle: ${i.sessions} sessions, RSS ${f(i.rssBeforeMiB, 1)} → ${f(i.rssAfterMiB, 1)} MiB, ${f(i.rssPerSessionKiB, 1)} KiB per session`)
  console.log(`stream: ${s.sessions} sessions × ${f(s.seconds, 1)} s of 24 kHz PCM16 both ways: conduit CPU ${f(s.cpuTotalPct, 1)}% (${f(s.cpuPerSessionPct, 3)}% per session); latest frame down ${f(s.maxLatenessDownMs, 1)} ms, up ${f(s.maxLatenessUpMs, 1)} ms; frames down ${s.framesDown}, up ${s.framesUp}`)
  console.log(JSON.stringify(result))
}

// Run as a script (the upstream child, or the scenario itself); imported by bench/run.ts, nothing runs.
if (process.argv[2] === '--upstream') upstream()
else if (import.meta.main) await main()
