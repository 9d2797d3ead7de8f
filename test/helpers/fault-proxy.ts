import type { Socket, TCPSocketListener } from 'bun'
import { PgStatements } from './pg-statements.ts'

/**
 * What the proxy does to the bytes coming back from the target (the response side), starting with the next
 * connection's traffic. Request bytes always pass untouched.
 * - `pass`: forward as is;
 * - `latency`: hold every response chunk this long;
 * - `reset`: after `afterBytes` response bytes, drop both connections abruptly (an RST, not a FIN);
 * - `stall`: after `afterBytes` response bytes, forward nothing more and keep the connection open;
 * - `slice`: forward in pieces of `bytes`, `delayMs` apart (a slow or fragmenting network);
 * - `lose-reply` (a proxy started with `{ postgres: true }`): the chunk completing a statement whose text
 *   contains `statement` is not forwarded: both connections drop instead, so the database did the work (its
 *   COMMIT) but the client never hears. `times` such replies are lost (default: every one), then it passes.
 * `refuse()` closes the listening socket so new connections are refused; `restore()` reopens it.
 */
export type Fault =
  | { kind: 'pass' }
  | { kind: 'latency'; ms: number }
  | { kind: 'reset'; afterBytes: number }
  | { kind: 'stall'; afterBytes: number }
  | { kind: 'slice'; bytes: number; delayMs: number }
  | { kind: 'lose-reply'; statement: string; times?: number }

export interface FaultProxy {
  port: number
  /** `http://127.0.0.1:<port>` + path, or another scheme (`redis://`). */
  url(path?: string, scheme?: string): string
  fault: Fault
  /** Connections accepted so far, and open now. */
  readonly accepted: number
  readonly open: number
  /** Close every open connection abruptly and refuse new ones, as if the target died. */
  refuse(): void
  restore(): void
  stop(): void
}

interface Pipe {
  client: Socket<Pipe>
  server: Socket<any> | null
  /** Bytes waiting for a socket that could not take them yet (backpressure), per direction. */
  toServer: Uint8Array[]
  toClient: Uint8Array[]
  responseBytes: number
  /** Serialises delayed writes so chunks never overtake each other. */
  chain: Promise<void>
  closed: boolean
  /** What the client has asked a PostgreSQL target, when the proxy follows the protocol. */
  statements: PgStatements | null
}

/** Writes what the socket accepts and keeps the rest for its drain callback. */
function send(socket: Socket<any>, queue: Uint8Array[], chunk: Uint8Array) {
  // Copies what waits: the runtime may reuse a chunk's memory after the callback returns.
  if (queue.length > 0) {
    queue.push(chunk.slice())
    return
  }
  const written = socket.write(chunk)
  if (written < chunk.byteLength) queue.push(chunk.slice(Math.max(0, written)))
}

function flush(socket: Socket<any>, queue: Uint8Array[]) {
  while (queue.length > 0) {
    const chunk = queue[0]!
    const written = socket.write(chunk)
    if (written < chunk.byteLength) {
      queue[0] = chunk.subarray(Math.max(0, written))
      return
    }
    queue.shift()
  }
}

/** A small TCP proxy in front of `target` that injects network faults on demand (tests only). */
export async function startFaultProxy(target: { hostname: string; port: number }, initial: Fault = { kind: 'pass' }, options: { postgres?: boolean } = {}): Promise<FaultProxy> {
  const pipes = new Set<Pipe>()
  let listener: TCPSocketListener<Pipe> | null = null
  let port = 0
  let accepted = 0
  /** Replies each `lose-reply` fault has lost so far. */
  const lost = new WeakMap<Fault, number>()

  const kill = (pipe: Pipe) => {
    if (pipe.closed) return
    pipe.closed = true
    pipes.delete(pipe)
    pipe.client.terminate()
    pipe.server?.terminate()
  }

  const deliver = (pipe: Pipe, chunk: Uint8Array) => {
    const fault = proxy.fault
    const completed = pipe.statements?.server(chunk) ?? []
    if (fault.kind === 'lose-reply' && (lost.get(fault) ?? 0) < (fault.times ?? Infinity) && completed.some((text) => text.includes(fault.statement))) {
      lost.set(fault, (lost.get(fault) ?? 0) + 1)
      return kill(pipe)
    }
    const before = pipe.responseBytes
    pipe.responseBytes += chunk.byteLength
    if (fault.kind === 'reset' || fault.kind === 'stall') {
      const allowed = Math.max(0, fault.afterBytes - before)
      if (allowed > 0) send(pipe.client, pipe.toClient, chunk.subarray(0, Math.min(allowed, chunk.byteLength)))
      if (pipe.responseBytes >= fault.afterBytes) {
        // Let the allowed bytes leave before the connection is torn down.
        if (fault.kind === 'reset') setTimeout(() => kill(pipe), 20)
      }
      return
    }
    if (fault.kind === 'latency') {
      const copy = chunk.slice()
      pipe.chain = pipe.chain.then(() => Bun.sleep(fault.ms)).then(() => void (!pipe.closed && send(pipe.client, pipe.toClient, copy)))
      return
    }
    if (fault.kind === 'slice') {
      const copy = chunk.slice()
      pipe.chain = pipe.chain.then(async () => {
        for (let i = 0; i < copy.byteLength && !pipe.closed; i += fault.bytes) {
          send(pipe.client, pipe.toClient, copy.subarray(i, i + fault.bytes))
          await Bun.sleep(fault.delayMs)
        }
      })
      return
    }
    send(pipe.client, pipe.toClient, chunk)
  }

  const listen = () => {
    listener = Bun.listen<Pipe>({
      hostname: '127.0.0.1',
      port,
      socket: {
        open(client) {
          accepted++
          const pipe: Pipe = { client, server: null, toServer: [], toClient: [], responseBytes: 0, chain: Promise.resolve(), closed: false, statements: options.postgres ? new PgStatements() : null }
          client.data = pipe
          pipes.add(pipe)
          Bun.connect<null>({
            hostname: target.hostname,
            port: target.port,
            socket: {
              open(server) {
                if (pipe.closed) return void server.terminate()
                pipe.server = server
                flush(server, pipe.toServer)
              },
              data: (_server, chunk) => deliver(pipe, chunk),
              drain: (server) => flush(server, pipe.toServer),
              close: () => {
                if (pipe.closed) return
                // The target finished: end the client side once everything queued for it is out.
                void pipe.chain.then(() => {
                  pipe.closed = true
                  pipes.delete(pipe)
                  pipe.client.end()
                })
              },
              error: () => kill(pipe),
            },
          }).catch(() => kill(pipe))
        },
        data(client, chunk) {
          const pipe = client.data
          pipe.statements?.client(chunk)
          if (pipe.server) send(pipe.server, pipe.toServer, chunk)
          else pipe.toServer.push(chunk.slice())
        },
        drain(client) {
          flush(client, client.data.toClient)
        },
        close(client) {
          const pipe = client.data
          if (pipe.closed) return
          pipe.closed = true
          pipes.delete(pipe)
          pipe.server?.end()
        },
        error(client) {
          kill(client.data)
        },
      },
    })
    port = listener.port
  }
  listen()

  const proxy: FaultProxy = {
    port,
    url: (path = '', scheme = 'http') => `${scheme}://127.0.0.1:${port}${path}`,
    fault: initial,
    get accepted() {
      return accepted
    },
    get open() {
      return pipes.size
    },
    refuse() {
      listener?.stop(true)
      listener = null
      for (const pipe of [...pipes]) kill(pipe)
    },
    restore() {
      if (!listener) listen()
    },
    stop() {
      proxy.refuse()
    },
  }
  return proxy
}
