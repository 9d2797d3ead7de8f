/**
 * A measuring stick, not a gateway: the floor (bench/floor.ts) with its upstream call made over keep-alive TCP sockets
 * of its own (`Bun.connect`, HTTP/1.1, one request at a time per socket) instead of `fetch`. What it saves is what
 * Bun's fetch costs a proxy: the HTTP client thread and the two handoffs between it and the main thread per call.
 * `FLOOR=sockets bench/profile.sh` runs it; bench/README.md has the numbers. Only what the bench's JSON scenario needs:
 * plain HTTP, answers with a Content-Length (no chunked bodies, so no streams), no timeouts.
 * Usage: UPSTREAM=http://127.0.0.1:<port>/v1 PORT=<port> bun bench/floor-sockets.ts
 */
import type { Socket } from 'bun'

const upstream = new URL(process.env.UPSTREAM!)
const HEAD_END = Buffer.from('\r\n\r\n')

interface Answer {
  status: number
  type: string
  body: Uint8Array
}

interface Connection {
  socket: Socket<undefined> | null
  /** Bytes of an answer not complete yet. */
  pending: Buffer
  waiting: { resolve(answer: Answer): void; reject(error: Error): void } | null
}

const idle: Connection[] = []

function received(c: Connection, data: Uint8Array) {
  const bytes = c.pending.length > 0 ? Buffer.concat([c.pending, data]) : Buffer.from(data)
  const headEnd = bytes.indexOf(HEAD_END)
  const head = headEnd === -1 ? '' : bytes.toString('latin1', 0, headEnd)
  const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? NaN)
  const end = headEnd + HEAD_END.length + length
  if (headEnd === -1 || !(bytes.length >= end)) {
    c.pending = bytes
    return
  }
  c.pending = Buffer.alloc(0)
  const waiting = c.waiting!
  c.waiting = null
  idle.push(c)
  waiting.resolve({ status: Number(head.slice(9, 12)), type: /\r\ncontent-type:\s*([^\r]+)/i.exec(head)?.[1] ?? 'application/json', body: bytes.subarray(headEnd + HEAD_END.length, end) })
}

async function connection(): Promise<Connection> {
  const reused = idle.pop()
  if (reused) return reused
  const c: Connection = { socket: null, pending: Buffer.alloc(0), waiting: null }
  const gone = (error: Error) => {
    const i = idle.indexOf(c)
    if (i !== -1) idle.splice(i, 1)
    c.waiting?.reject(error)
    c.waiting = null
  }
  c.socket = await Bun.connect({
    hostname: upstream.hostname,
    port: Number(upstream.port),
    socket: { data: (_socket, data) => received(c, data), close: () => gone(new Error('upstream closed the connection')), error: (_socket, error) => gone(error) },
  })
  c.socket.setNoDelay(true)
  return c
}

async function post(path: string, body: string): Promise<Answer> {
  const c = await connection()
  return new Promise<Answer>((resolve, reject) => {
    c.waiting = { resolve, reject }
    c.socket!.write(`POST ${path} HTTP/1.1\r\nhost: ${upstream.host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  })
}

const server = Bun.serve({
  port: Number(process.env.PORT ?? 0),
  hostname: '127.0.0.1',
  idleTimeout: 0,
  async fetch(req) {
    const answer = await post(upstream.pathname + new URL(req.url).pathname.replace(/^\/v1/, ''), await req.text()).catch(() => null)
    if (!answer) return new Response('upstream failed', { status: 502 })
    return new Response(answer.body, { status: answer.status, headers: { 'content-type': answer.type } })
  },
})
console.log(`socket floor on http://127.0.0.1:${server.port}/v1`)
process.on('SIGTERM', () => process.exit(0))
