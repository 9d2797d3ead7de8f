import type { Socket } from 'bun'

/**
 * Streamed upstream calls over keep-alive sockets of the gateway's own (HTTP/1.1, plain or TLS) instead of `fetch`.
 * Bun's fetch hands every call and every read of a streamed body between its HTTP client thread and the event loop,
 * and backs each pending read with a 64 KiB buffer that JSC counts as allocated: a burst of streams collected early
 * and often. Here a streamed body is fed by the socket's own reads, on the event loop, with backpressure. A whole
 * (JSON) answer stays with fetch, which parses it natively on its thread: over these sockets it cost the event loop
 * more than it saved (bench/README.md, "An upstream client of Conduit's own").
 */

export interface Http1Init {
  method: string
  headers: Record<string, string>
  body?: string | Uint8Array
  signal: AbortSignal
}

const HEAD_END = Buffer.from('\r\n\r\n')
const CRLF = Buffer.from('\r\n')
/** Longer heads, chunk-size lines or trailers are not an HTTP/1.1 server's answer. */
const MAX_HEAD_BYTES = 64 * 1024
/** A streamed body buffered past this while its reader is not reading pauses the socket. */
const HIGH_WATER_BYTES = 64 * 1024
/**
 * An idle connection is closed 4 to 8 s after its last use: servers drop theirs too (Node's default is 5 s; a kept
 * connection the server closed first is resent once). Bun's socket timer is a deadline from when it is set, on a
 * wheel that turns every 4 s: 8 is two turns, so never less than 4 s; 4 would be anywhere from 0 to 4.
 */
const IDLE_SECONDS = 8
/** Statuses whose response has no body whatever its headers say. */
const NULL_BODY = new Set([204, 205, 304])
/**
 * What fetch would have sent unless the adapter says otherwise (upstreams see the same request either way), but
 * for `accept-encoding`: a compressed stream waits in the server's compressor, so it is asked for as is.
 */
const FETCH_DEFAULTS: Record<string, string> = { accept: '*/*', 'user-agent': `Bun/${Bun.version}`, 'accept-encoding': 'identity' }
/** Content codings a server may use anyway, by DecompressionStream's name for them. */
type Coding = ConstructorParameters<typeof DecompressionStream>[0]
const CODINGS: Record<string, Coding> = { gzip: 'gzip', 'x-gzip': 'gzip', deflate: 'deflate', br: 'brotli' as Coding, zstd: 'zstd' as Coding }
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/
const CHUNK_SIZE = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/

/** One request and its response on a connection. */
interface Exchange {
  resolve(response: Response): void
  reject(error: unknown): void
  /** The response head arrived: the promise is settled, and any failure now goes to the body. */
  answered: boolean
  body: ReadableStreamDefaultController<Uint8Array> | null
  signal: AbortSignal
  onAbort: () => void
}

/** How the response's body ends: after Content-Length bytes, at the last chunk, when the server closes, or at once. */
type Framing = 'length' | 'chunked' | 'close' | 'none'
type ChunkPart = 'size' | 'data' | 'data-end' | 'trailers'

class Connection {
  socket: Socket<Connection> | null = null
  exchange: Exchange | null = null
  /** It served an exchange before: a server may have closed it meanwhile, unseen. */
  reused = false
  /** Response bytes of the current exchange so far. */
  received = 0
  private opening: { resolve(connection: Connection): void; reject(error: Error): void } | null
  private pending: Buffer | null = null
  private unwritten: Buffer | null = null
  private framing: Framing = 'none'
  private remaining = 0
  private chunk: ChunkPart = 'size'
  private keepAlive = true
  private paused = false

  constructor(
    private readonly pool: Connection[],
    opening: NonNullable<Connection['opening']>,
  ) {
    this.opening = opening
  }

  /** Connected (plain) or its TLS handshake done: requests may be written now, not before (TLS drops earlier writes). */
  ready(socket: Socket<Connection>) {
    this.socket = socket
    socket.setNoDelay(true)
    socket.timeout(IDLE_SECONDS)
    const opening = this.opening
    this.opening = null
    opening?.resolve(this)
  }

  handshake(socket: Socket<Connection>, success: boolean, error: Error | null) {
    if (success) return this.ready(socket)
    this.opening?.reject(error ?? new Error('TLS handshake with the upstream failed'))
    this.opening = null
    socket.terminate()
  }

  send(head: string, body: string | Uint8Array | undefined, exchange: Exchange) {
    this.exchange = exchange
    this.received = 0
    this.socket!.ref()
    this.write(typeof body === 'string' ? Buffer.from(head + body) : body ? Buffer.concat([Buffer.from(head), body]) : Buffer.from(head))
  }

  private write(bytes: Buffer) {
    const written = this.socket!.write(bytes)
    this.unwritten = written < bytes.length ? bytes.subarray(Math.max(written, 0)) : null
  }

  drain() {
    if (this.unwritten) this.write(this.unwritten)
  }

  data(bytes: Buffer) {
    const exchange = this.exchange
    if (!exchange) return this.destroy() // bytes nobody asked for: not a server to keep talking to
    this.received += bytes.length
    let buffer = this.pending ? Buffer.concat([this.pending, bytes]) : bytes
    this.pending = null
    try {
      if (!exchange.answered) {
        const rest = this.parseHead(buffer, exchange)
        if (rest === null) return
        buffer = rest
      }
      this.parseBody(buffer, exchange)
    } catch (error) {
      this.fail(error)
    }
  }

  /** Answers the exchange once its head is complete: the bytes after the head, or null when nothing is left to do. */
  private parseHead(buffer: Buffer, exchange: Exchange): Buffer | null {
    for (;;) {
      const end = buffer.indexOf(HEAD_END)
      if (end === -1) {
        if (buffer.length > MAX_HEAD_BYTES) throw new Error('the upstream response head is too large')
        this.pending = buffer
        return null
      }
      const lines = buffer.toString('latin1', 0, end).split('\r\n')
      const status = STATUS_LINE.exec(lines[0]!)
      if (!status) throw new Error('the upstream response is not HTTP/1.1')
      const code = Number(status[2])
      buffer = buffer.subarray(end + HEAD_END.length)
      if (code < 200) {
        if (code === 101) throw new Error('the upstream switched protocols')
        continue // 100 Continue, 103 Early Hints: the response follows
      }
      const headers = new Headers()
      let length = -1
      let transferEncoded = false
      let chunked = false
      this.keepAlive = status[1] === '1'
      for (let i = 1; i < lines.length; i++) {
        const line = lines[i]!
        const colon = line.indexOf(':')
        const name = line.slice(0, colon).toLowerCase()
        if (colon <= 0 || !TOKEN.test(name)) throw new Error('the upstream response has a malformed header')
        const value = line.slice(colon + 1).trim()
        headers.append(name, value)
        if (name === 'content-length') {
          // Several values must agree (RFC 9112 §6.3); anything else is how responses get smuggled.
          if (!/^\d{1,15}$/.test(value) || (length !== -1 && length !== Number(value))) throw new Error('the upstream response has an invalid content-length')
          length = Number(value)
        } else if (name === 'transfer-encoding') {
          transferEncoded = true
          chunked = /(?:^|,)[ \t]*chunked[ \t]*$/i.test(value)
        } else if (name === 'connection') {
          if (/(?:^|,)[ \t]*close[ \t]*(?:,|$)/i.test(value)) this.keepAlive = false
          else if (/(?:^|,)[ \t]*keep-alive[ \t]*(?:,|$)/i.test(value)) this.keepAlive = true
        }
      }
      // Transfer-Encoding overrides Content-Length; a body that is not chunked then runs to the close (§6.3).
      this.framing = NULL_BODY.has(code) ? 'none' : transferEncoded ? (chunked ? 'chunked' : 'close') : length >= 0 ? 'length' : 'close'
      if (this.framing === 'close') this.keepAlive = false
      this.remaining = length
      this.chunk = 'size'
      const init = { status: code, statusText: status[3] ?? '', headers }
      const coding = this.framing === 'none' ? undefined : headers.get('content-encoding')?.toLowerCase()
      const compressed = !!coding && coding !== 'identity'
      if (this.framing === 'none' || (!compressed && this.framing === 'length' && buffer.length >= length)) {
        // The whole body came with the head (an error's JSON, usually): no stream to feed, unless it must be decoded.
        if (buffer.length > (this.framing === 'none' ? 0 : length)) throw new Error('the upstream sent more than its response')
        exchange.answered = true
        exchange.resolve(new Response(this.framing === 'none' ? null : buffer, init))
        this.complete()
        return null
      }
      let body = this.stream(exchange)
      if (compressed) {
        if (!CODINGS[coding]) throw new Error(`the upstream sent a body in an unknown coding (${coding})`)
        body = body.pipeThrough(new DecompressionStream(CODINGS[coding]) as unknown as TransformStream<Uint8Array, Uint8Array>)
        headers.delete('content-encoding')
        headers.delete('content-length')
      }
      exchange.answered = true
      exchange.resolve(new Response(body, init))
      return buffer
    }
  }

  private stream(exchange: Exchange): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>(
      {
        start: (controller) => void (exchange.body = controller),
        pull: () => this.resume(),
        cancel: () => {
          // The reader gave up: the rest of the body would have to be read before the connection could be reused.
          exchange.body = null
          if (this.exchange === exchange) this.fail(new Error('the body was cancelled'))
        },
      },
      new ByteLengthQueuingStrategy({ highWaterMark: HIGH_WATER_BYTES }),
    )
  }

  private deliver(exchange: Exchange, bytes: Buffer) {
    if (bytes.length === 0 || !exchange.body) return
    exchange.body.enqueue(bytes)
    if (!this.paused && exchange.body.desiredSize! <= 0) {
      this.paused = true
      this.socket?.pause()
    }
  }

  private resume() {
    if (!this.paused) return
    this.paused = false
    this.socket?.resume()
  }

  private parseBody(buffer: Buffer, exchange: Exchange) {
    if (this.framing === 'close') return this.deliver(exchange, buffer)
    if (this.framing === 'length') {
      if (buffer.length > this.remaining) throw new Error('the upstream sent more than its content-length')
      this.remaining -= buffer.length
      this.deliver(exchange, buffer)
      if (this.remaining === 0) this.endBody(exchange)
      return
    }
    // The data of every chunk in this read goes on as one piece: one read for the relay, however the server chunked it.
    const data: Buffer[] = []
    let at = 0
    while (at < buffer.length) {
      if (this.chunk === 'data') {
        const take = Math.min(this.remaining, buffer.length - at)
        data.push(buffer.subarray(at, at + take))
        at += take
        if ((this.remaining -= take) === 0) this.chunk = 'data-end'
        continue
      }
      const eol = buffer.indexOf(CRLF, at)
      if (eol === -1) {
        if (buffer.length - at > MAX_HEAD_BYTES) throw new Error('the upstream chunk framing is invalid')
        this.pending = buffer.subarray(at)
        break
      }
      const line = buffer.toString('latin1', at, eol)
      at = eol + CRLF.length
      if (this.chunk === 'size') {
        const size = CHUNK_SIZE.exec(line)
        if (!size) throw new Error('the upstream chunk framing is invalid')
        this.remaining = parseInt(size[1]!, 16)
        this.chunk = this.remaining === 0 ? 'trailers' : 'data'
      } else if (this.chunk === 'data-end') {
        if (line !== '') throw new Error('the upstream chunk framing is invalid')
        this.chunk = 'size'
      } else if (line === '') {
        // The last chunk and its trailers (nothing here needs them) are read.
        if (at < buffer.length) throw new Error('the upstream sent more than its response')
        if (data.length > 0) this.deliver(exchange, joined(data))
        return this.endBody(exchange)
      }
    }
    if (data.length > 0) this.deliver(exchange, joined(data))
  }

  private endBody(exchange: Exchange) {
    exchange.body?.close()
    exchange.body = null
    this.complete()
  }

  /** The exchange is over: the connection goes back to its pool, or is closed when it cannot serve another. */
  private complete() {
    const exchange = this.exchange!
    exchange.signal.removeEventListener('abort', exchange.onAbort)
    this.exchange = null
    // A request still being written when its answer ended (an early error) leaves the connection mid-message.
    if (!this.keepAlive || this.unwritten || !this.socket) return this.destroy()
    this.resume()
    this.socket.unref() // a kept connection does not hold the process open
    this.socket.timeout(IDLE_SECONDS) // idle from now: traffic does not move Bun's deadline
    this.reused = true
    this.pool.push(this)
  }

  /** The socket is gone: the end of a body that runs to the close, or a failure of whatever was under way. */
  closed(error?: Error) {
    this.socket = null
    this.forget()
    this.opening?.reject(error ?? new Error('the upstream closed the connection'))
    this.opening = null
    const exchange = this.exchange
    if (!exchange) return
    if (this.framing === 'close' && exchange.answered && !error) return this.endBody(exchange)
    this.fail(error ?? new Error('the upstream closed the connection'))
  }

  /** Fails the exchange under way (its promise, or its body once answered) and closes the connection. */
  fail(error: unknown) {
    const exchange = this.exchange
    this.exchange = null
    this.destroy()
    if (!exchange) return
    exchange.signal.removeEventListener('abort', exchange.onAbort)
    if (!exchange.answered) exchange.reject(error)
    else exchange.body?.error(error)
    exchange.body = null
  }

  destroy() {
    this.forget()
    const socket = this.socket
    this.socket = null
    socket?.terminate()
  }

  private forget() {
    const i = this.pool.lastIndexOf(this)
    if (i !== -1) this.pool.splice(i, 1)
  }

  idle(socket: Socket<Connection>) {
    if (!this.exchange) return this.destroy()
    socket.timeout(IDLE_SECONDS) // busy: a silent upstream is the call's own deadlines' to end
  }
}

const joined = (parts: Buffer[]) => (parts.length === 1 ? parts[0]! : Buffer.concat(parts))

type Socket1 = Socket<Connection>
const handlers = {
  handshake: (socket: Socket1, success: boolean, error: Error | null) => socket.data.handshake(socket, success, error),
  data: (socket: Socket1, bytes: Buffer) => socket.data.data(bytes),
  drain: (socket: Socket1) => socket.data.drain(),
  end: (socket: Socket1) => void socket.end(),
  close: (socket: Socket1, error?: Error) => socket.data.closed(error),
  error: (socket: Socket1, error: Error) => socket.data.closed(error),
  connectError: (socket: Socket1, error: Error) => socket.data.closed(error),
  timeout: (socket: Socket1) => socket.data.idle(socket),
}

/** Idle connections by origin, the most recently used last. */
const pools = new Map<string, Connection[]>()

function connect(url: URL, pool: Connection[]): Promise<Connection> {
  const tls = url.protocol === 'https:'
  const ip = url.hostname.startsWith('[') || /^[\d.]+$/.test(url.hostname)
  return new Promise<Connection>((resolve, reject) => {
    const connection = new Connection(pool, { resolve, reject })
    Bun.connect<Connection>({
      hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
      port: Number(url.port) || (tls ? 443 : 80),
      // Verified against the system's and NODE_EXTRA_CA_CERTS' roots, and the host name, as fetch does.
      tls: tls ? { rejectUnauthorized: true, ...(ip ? {} : { serverName: url.hostname }) } : undefined,
      data: connection,
      socket: handlers,
    }).then((socket) => tls || connection.ready(socket), reject)
  })
}

/**
 * Connections being made to an origin at once, at most. Bun cannot abandon a connect in progress: to a host that
 * drops SYNs each one holds a socket until the kernel gives up (about two minutes), whatever our connect deadline
 * said to the call. Past this, a call waits for one of them to end (its own deadlines still run), so a blackholed
 * provider holds this many sockets, not two minutes of its requests' worth (probe: 30 streams left 31 in SYN-SENT).
 */
const MAX_CONNECTING = 256
const opening = new Map<string, { count: number; waiting: (() => void)[] }>()

/** A new connection to the origin, within its MAX_CONNECTING; given up (but not the connect) with the call. */
async function newConnection(url: URL, origin: string, pool: Connection[], signal: AbortSignal): Promise<Connection> {
  let slots = opening.get(origin)
  if (!slots) opening.set(origin, (slots = { count: 0, waiting: [] }))
  while (slots.count >= MAX_CONNECTING) {
    const queue = slots.waiting
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        queue.splice(queue.indexOf(wake), 1)
        reject(signal.reason)
      }
      const wake = () => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
      queue.push(wake)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }
  slots.count++
  const made = connect(url, pool)
  const done = () => {
    slots.count--
    slots.waiting.shift()?.()
    if (slots.count === 0 && slots.waiting.length === 0) opening.delete(origin)
  }
  made.then(done, done)
  return untilAborted(made, signal)
}

/** A connection still being made is given up with the call (the connect deadline aborts it); made later, it closes. */
function untilAborted(connecting: Promise<Connection>, signal: AbortSignal): Promise<Connection> {
  let onAbort!: () => void
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => {
      reject(signal.reason)
      connecting.then((connection) => connection.destroy(), () => {})
    }
    signal.addEventListener('abort', onAbort)
  })
  return Promise.race([connecting, aborted]).finally(() => signal.removeEventListener('abort', onAbort))
}

/** fetch's contract for the calls the gateway makes: a Response once the head arrives, its body as it comes. */
export async function http1Fetch(target: string, init: Http1Init): Promise<Response> {
  const url = new URL(target)
  const origin = url.protocol + '//' + url.host
  let pool = pools.get(origin)
  if (!pool) pools.set(origin, (pool = []))
  let head = `${init.method} ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`
  const defaults = { ...FETCH_DEFAULTS }
  let authorized = false
  for (const name in init.headers) {
    const value = init.headers[name]!
    if (!TOKEN.test(name) || /[\r\n\0]/.test(value)) throw new TypeError(`The upstream request has an invalid header: ${name}`)
    const lower = name.toLowerCase()
    delete defaults[lower]
    if (lower === 'authorization') authorized = true
    // Framing and the connection are this client's to set.
    if (lower !== 'host' && lower !== 'connection' && lower !== 'content-length' && lower !== 'transfer-encoding') head += `${name}: ${value}\r\n`
  }
  // Credentials in the base URL are sent as fetch sends them: Basic, unless the adapter set its own authorization.
  if ((url.username || url.password) && !authorized) {
    head += `authorization: Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}\r\n`
  }
  for (const name in defaults) head += `${name}: ${defaults[name]}\r\n`
  const body = init.body
  if (body !== undefined) head += `content-length: ${typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength}\r\n`
  head += '\r\n'
  for (let attempt = 0; ; attempt++) {
    init.signal.throwIfAborted()
    const connection = (attempt === 0 ? pool.pop() : undefined) ?? (await newConnection(url, origin, pool, init.signal))
    try {
      const response = await roundTrip(connection, head, body, init.signal)
      // As fetch's: the URL the answer came from (redirects are not followed, so the one asked).
      Object.defineProperty(response, 'url', { value: target })
      return response
    } catch (error) {
      // A kept connection the server had closed before our request reached it: nothing came back, so it is sent once
      // more, on a new connection.
      if (attempt === 0 && connection.reused && connection.received === 0 && !init.signal.aborted) continue
      throw error
    }
  }
}

/** One request written on `connection`, answered when its response head arrives. */
function roundTrip(connection: Connection, head: string, body: string | Uint8Array | undefined, signal: AbortSignal): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const exchange: Exchange = { resolve, reject, answered: false, body: null, signal, onAbort: () => connection.fail(signal.reason) }
    signal.addEventListener('abort', exchange.onAbort)
    connection.send(head, body, exchange)
  })
}
