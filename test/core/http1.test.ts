import { afterAll, describe, expect, test } from 'bun:test'
import type { Socket, TCPSocketListener } from 'bun'
import { brotliCompressSync, gzipSync } from 'node:zlib'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { http1Fetch } from '../../src/core/http1.ts'
import { selfSignedCert } from '../helpers/tls.ts'

/**
 * The gateway's own HTTP/1.1 client (streamed upstream answers) against servers that write exact bytes: framing in
 * every form and split at every byte, keep-alive and a kept connection found closed, aborts, backpressure, TLS.
 */

interface Scripted {
  port: number
  url: string
  /** Connections accepted, and the requests (their heads and bodies as text) in arrival order. */
  connections: number
  requests: string[]
  stop(): void
}

type Answer = (socket: Socket<{ buffered: string }>, request: string, index: number) => void | Promise<void>

/** A raw TCP server: each complete request (head + content-length body) is handed to `answer`, which writes bytes. */
function scripted(answer: Answer): Scripted {
  const state = { connections: 0, requests: [] as string[] }
  const listener: TCPSocketListener<{ buffered: string }> = Bun.listen<{ buffered: string }>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      open(socket) {
        socket.data = { buffered: '' }
        state.connections++
      },
      data(socket, bytes) {
        socket.data.buffered += bytes.toString('latin1')
        for (;;) {
          const end = socket.data.buffered.indexOf('\r\n\r\n')
          if (end === -1) return
          const length = Number(/\r\ncontent-length: (\d+)/i.exec(socket.data.buffered.slice(0, end))?.[1] ?? 0)
          if (socket.data.buffered.length < end + 4 + length) return
          const request = socket.data.buffered.slice(0, end + 4 + length)
          socket.data.buffered = socket.data.buffered.slice(end + 4 + length)
          state.requests.push(request)
          void answer(socket, request, state.requests.length - 1)
        }
      },
    },
  })
  return {
    port: listener.port,
    url: `http://127.0.0.1:${listener.port}`,
    get connections() {
      return state.connections
    },
    requests: state.requests,
    stop: () => listener.stop(true),
  }
}

const servers: Scripted[] = []
const serve = (answer: Answer) => {
  const server = scripted(answer)
  servers.push(server)
  return server
}
afterAll(() => servers.forEach((server) => server.stop()))

const post = (url: string, body = '{"stream":true}', signal = new AbortController().signal) =>
  http1Fetch(url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test' }, body, signal })

const SSE_EVENTS = ['data: {"id":"1","choices":[{"delta":{"content":"Hel"}}]}\n\n', 'data: {"id":"1","choices":[{"delta":{"content":"lo"}}]}\n\n', 'data: [DONE]\n\n']
const chunked = (parts: string[], trailer = '') =>
  parts.map((part) => `${Buffer.byteLength(part).toString(16)};ext=1\r\n${part}\r\n`).join('') + `0\r\n${trailer}\r\n`
const SSE_HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-request-id: req_1\r\ntransfer-encoding: chunked\r\n\r\n'
const SSE_RESPONSE = SSE_HEAD + chunked(SSE_EVENTS, 'x-trailer: t\r\n')

/** Writes `bytes` in the given pieces, a turn of the loop apart (Nagle off: each goes as its own segment). */
async function writePieces(socket: Socket<unknown>, bytes: string, cuts: number[]) {
  socket.setNoDelay(true)
  let from = 0
  for (const cut of [...cuts, bytes.length]) {
    socket.write(bytes.slice(from, cut))
    from = cut
    await Bun.sleep(1)
  }
}

describe('framing', () => {
  test('a chunked SSE answer split at every byte gives the same head and body', async () => {
    let cut = 0
    const server = serve((socket) => writePieces(socket, SSE_RESPONSE, [cut]))
    for (cut = 1; cut < SSE_RESPONSE.length; cut++) {
      const response = await post(server.url)
      expect(response.status).toBe(200)
      expect(response.headers.get('content-type')).toBe('text/event-stream')
      expect(response.headers.get('x-request-id')).toBe('req_1')
      expect(await response.text()).toBe(SSE_EVENTS.join(''))
    }
    // One connection served every request: each answer ended where its framing said.
    expect(server.connections).toBe(1)
  })

  test('chunks that arrive in one read are read as one piece, however the server chunked them', async () => {
    const server = serve((socket) => void socket.write(SSE_RESPONSE))
    const reader = (await post(server.url)).body!.getReader()
    expect(new TextDecoder().decode((await reader.read()).value)).toBe(SSE_EVENTS.join(''))
    expect((await reader.read()).done).toBe(true)
  })

  test('random pieces of a long chunked answer with a multi-byte character cut across pieces', async () => {
    const parts = Array.from({ length: 200 }, (_, i) => `data: {"n":${i},"text":"héllo wörld ✓ ${'x'.repeat(i % 17)}"}\n\n`)
    const response = SSE_HEAD + chunked(parts)
    let seed = 7
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647
    const server = serve((socket) => writePieces(socket, response, [...new Set(Array.from({ length: 40 }, () => Math.floor(random() * response.length)))].sort((a, b) => a - b)))
    for (let round = 0; round < 5; round++) expect(await (await post(server.url)).text()).toBe(parts.join(''))
  })

  test('a content-length body streamed in pieces, and one that came whole with its head', async () => {
    const body = JSON.stringify({ error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } })
    const answer = `HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 7\r\ncontent-length: ${body.length}\r\n\r\n${body}`
    const server = serve((socket, _request, index) => (index === 0 ? writePieces(socket, answer, [answer.length - body.length + 5, answer.length - 10]) : void socket.write(answer)))
    for (let i = 0; i < 2; i++) {
      const response = await post(server.url)
      expect(response.status).toBe(429)
      expect(response.statusText).toBe('Too Many Requests')
      expect(response.headers.get('retry-after')).toBe('7')
      expect(await response.json()).toEqual(JSON.parse(body))
    }
    expect(server.connections).toBe(1)
  })

  test('a body that runs to the close ends there, and its connection is not kept', async () => {
    const server = serve(async (socket) => {
      await writePieces(socket, `HTTP/1.1 200 OK\r\ncontent-type: audio/mpeg\r\n\r\nID3-frames-1`, [30])
      socket.end('-and-2')
    })
    expect(await (await post(server.url)).text()).toBe('ID3-frames-1-and-2')
    expect(await (await post(server.url)).text()).toBe('ID3-frames-1-and-2')
    expect(server.connections).toBe(2)
  })

  test('interim 100 and 103 answers are skipped; 204 has no body; connection: close is honoured', async () => {
    const server = serve((socket, _request, index) => {
      if (index === 0) socket.write(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n${SSE_RESPONSE}`)
      else if (index === 1) socket.write('HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n')
      else socket.write(SSE_RESPONSE)
    })
    const first = await post(server.url)
    expect(first.status).toBe(200)
    expect(first.url).toBe(server.url + '/v1/chat/completions')
    expect(await first.text()).toBe(SSE_EVENTS.join(''))
    const empty = await post(server.url)
    expect(empty.status).toBe(204)
    expect(empty.body).toBeNull()
    expect(await (await post(server.url)).text()).toBe(SSE_EVENTS.join(''))
    expect(server.connections).toBe(2)
  })

  test('a gzipped stream (sent although identity was asked for) is decompressed', async () => {
    const gzipped = gzipSync(SSE_EVENTS.join(''))
    const server = serve((socket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ncontent-length: ${gzipped.length}\r\n\r\n`)
      setTimeout(() => socket.write(gzipped), 5)
    })
    const response = await post(server.url)
    expect(response.headers.get('content-encoding')).toBeNull()
    expect(await response.text()).toBe(SSE_EVENTS.join(''))
    expect(server.requests[0]).toContain('\r\naccept-encoding: identity\r\n')
  })

  test('a compressed body that came whole with its head is decompressed too', async () => {
    const text = SSE_EVENTS.join('')
    const bodies = [gzipSync(text), brotliCompressSync(text)]
    const server = serve((socket, _request, index) => {
      const body = bodies[index]!
      socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-encoding: ${index === 0 ? 'gzip' : 'br'}\r\ncontent-length: ${body.length}\r\n\r\n`), body]))
    })
    for (const _ of bodies) {
      const response = await post(server.url)
      expect(response.headers.get('content-encoding')).toBeNull()
      expect(await response.text()).toBe(text)
    }
    expect(server.connections).toBe(1)
  })

  test('what is not an HTTP/1.1 answer fails the call or its body, and the connection is dropped', async () => {
    const bad = [
      'SSH-2.0-OpenSSH_9.2\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!',
      'HTTP/1.1 200 OK\r\nbad header line\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhello',
    ]
    const server = serve((socket, _request, index) => void socket.write(bad[index % bad.length]!))
    for (let i = 0; i < bad.length; i++) await expect(post(server.url)).rejects.toThrow(/upstream/)
    const badChunks = serve((socket) => void socket.write(`${SSE_HEAD}5\r\nhello\r\nzz\r\n`))
    const response = await post(badChunks.url)
    await expect(response.text()).rejects.toThrow('the upstream chunk framing is invalid')
    expect(server.connections).toBe(bad.length)
  })
})

describe('the request', () => {
  test('is written with its length, fetch’s default headers, and URL credentials as Basic', async () => {
    const server = serve((socket) => void socket.write(SSE_RESPONSE))
    const url = `http://us%20er:p%40ss@127.0.0.1:${server.port}`
    await (await http1Fetch(url + '/v1/chat/completions?api-version=1', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"é":1}', signal: new AbortController().signal })).text()
    const request = server.requests[0]!
    expect(request.startsWith(`POST /v1/chat/completions?api-version=1 HTTP/1.1\r\nhost: 127.0.0.1:${server.port}\r\n`)).toBe(true)
    expect(request).toContain('\r\ncontent-length: 8\r\n') // bytes, not characters
    expect(request).toContain(`\r\nuser-agent: Bun/${Bun.version}\r\n`)
    expect(request).toContain(`\r\nauthorization: Basic ${Buffer.from('us er:p@ss').toString('base64')}\r\n`)
    expect(request.endsWith('\r\n\r\n{"é":1}'.replace('é', Buffer.from('é').toString('latin1')))).toBe(true)
    // The adapter's own authorization wins over the URL's.
    await (await http1Fetch(url + '/v1', { method: 'POST', headers: { Authorization: 'Bearer sk-own' }, body: '{}', signal: new AbortController().signal })).text()
    expect(server.requests[1]).toContain('\r\nAuthorization: Bearer sk-own\r\n')
    expect(server.requests[1]).not.toContain('Basic')
  })

  test('a header value with a line break is refused before anything is sent', async () => {
    const server = serve((socket) => void socket.write(SSE_RESPONSE))
    await expect(http1Fetch(server.url, { method: 'POST', headers: { 'x-evil': 'a\r\nhost: other' }, body: '{}', signal: new AbortController().signal })).rejects.toThrow(TypeError)
    await Bun.sleep(20)
    expect(server.connections).toBe(0)
  })

  test('a large body is written whole across drains', async () => {
    const big = JSON.stringify({ messages: [{ role: 'user', content: 'y'.repeat(8 * 1024 * 1024) }] })
    const server = serve((socket) => void socket.write(SSE_RESPONSE))
    expect(await (await post(server.url, big)).text()).toBe(SSE_EVENTS.join(''))
    expect(server.requests[0]!.endsWith(big)).toBe(true)
  })
})

describe('connections', () => {
  test('a kept connection the server closed meanwhile is replaced, and the request sent once more', async () => {
    const server = serve((socket, _request, index) => {
      if (index === 1) socket.terminate() // the server had given up on the idle connection as the request arrived
      else socket.write(SSE_RESPONSE)
    })
    expect(await (await post(server.url)).text()).toBe(SSE_EVENTS.join(''))
    expect(await (await post(server.url)).text()).toBe(SSE_EVENTS.join(''))
    expect(server.requests.length).toBe(3)
    expect(server.connections).toBe(2)
  })

  test('a fresh connection that fails is not retried', async () => {
    const server = serve((socket) => socket.terminate())
    await expect(post(server.url)).rejects.toThrow()
    await Bun.sleep(50)
    expect(server.requests.length).toBe(1)
  })

  test('a refused connection rejects', async () => {
    const server = serve(() => {})
    const url = server.url
    server.stop()
    await expect(post(url)).rejects.toThrow()
  })

  test('an idle connection is closed by the client 4 to 8 s after its last use, however old it is', async () => {
    let opened = 0
    let closed = 0
    const listener = Bun.listen({
      hostname: '127.0.0.1',
      port: 0,
      socket: { open: () => void opened++, data: (socket) => void socket.write(SSE_RESPONSE), close: () => void closed++ },
    })
    try {
      await (await post(`http://127.0.0.1:${listener.port}`)).text()
      await Bun.sleep(2500)
      // Used again 2.5 s after it opened: its idle time starts over (Bun's socket timer does not count traffic).
      await (await post(`http://127.0.0.1:${listener.port}`)).text()
      expect(opened).toBe(1)
      await Bun.sleep(3900)
      expect(closed).toBe(0)
      const deadline = performance.now() + 4600
      while (closed === 0 && performance.now() < deadline) await Bun.sleep(50)
      expect(closed).toBe(1)
    } finally {
      listener.stop(true)
    }
  }, 20_000)
})

describe('aborts and backpressure', () => {
  test('an abort before the head rejects with its reason and closes the connection', async () => {
    let closed = false
    const listener = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {}, close: () => void (closed = true) } })
    const controller = new AbortController()
    const call = post(`http://127.0.0.1:${listener.port}`, '{}', controller.signal)
    setTimeout(() => controller.abort(new DOMException('upstream first byte', 'TimeoutError')), 30)
    await expect(call).rejects.toThrow('upstream first byte')
    await Bun.sleep(100)
    expect(closed).toBe(true)
    listener.stop(true)
  })

  test('an abort mid-stream errors the body with its reason and closes the connection', async () => {
    let closed = false
    const listener = Bun.listen({
      hostname: '127.0.0.1',
      port: 0,
      socket: { data: (socket) => void socket.write(SSE_HEAD + chunked(SSE_EVENTS.slice(0, 1)).replace(/0\r\n\r\n$/, '')), close: () => void (closed = true) },
    })
    const controller = new AbortController()
    const response = await post(`http://127.0.0.1:${listener.port}`, '{}', controller.signal)
    const reader = response.body!.getReader()
    expect(new TextDecoder().decode((await reader.read()).value)).toBe(SSE_EVENTS[0]!)
    controller.abort(new DOMException('client disconnected', 'AbortError'))
    await expect(reader.read()).rejects.toThrow('client disconnected')
    await Bun.sleep(50)
    expect(closed).toBe(true)
    listener.stop(true)
  })

  test('a server that resets mid-body errors the body', async () => {
    const server = serve((socket) => {
      socket.write(SSE_HEAD + chunked(SSE_EVENTS.slice(0, 1)).replace(/0\r\n\r\n$/, ''))
      setTimeout(() => socket.terminate(), 20)
    })
    const response = await post(server.url)
    await expect(response.text()).rejects.toThrow()
  })

  test('a body nobody reads pauses the socket: the server cannot write it all until it is read', async () => {
    const total = 64 * 1024 * 1024
    const block = Buffer.alloc(1024 * 1024, 'a')
    let accepted = 0
    const server = serve((socket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${total}\r\n\r\n`)
      const push = () => {
        while (accepted < total) {
          const wrote = socket.write(block.subarray(0, Math.min(block.length, total - accepted)))
          accepted += Math.max(wrote, 0)
          if (wrote < block.length) return setTimeout(push, 5)
        }
      }
      push()
    })
    const response = await post(server.url)
    await Bun.sleep(500)
    // Whatever the kernel's socket buffers hold, plus one high-water mark here: far from 64 MB.
    expect(accepted).toBeLessThan(24 * 1024 * 1024)
    let read = 0
    for await (const part of response.body! as unknown as AsyncIterable<Uint8Array>) read += part.byteLength
    expect(read).toBe(total)
  }, 20_000)
})

describe('TLS', () => {
  const { cert, key, pem } = selfSignedCert()

  const sse = () => new Response(SSE_EVENTS.join(''), { headers: { 'content-type': 'text/event-stream' } })

  test('a certificate no root vouches for is refused', async () => {
    const server = Bun.serve({ hostname: '127.0.0.1', port: 0, tls: { cert: Bun.file(cert), key: Bun.file(key) }, fetch: sse })
    try {
      await expect(post(`https://localhost:${server.port}`)).rejects.toThrow()
    } finally {
      server.stop(true)
    }
  })

  test('with its CA in NODE_EXTRA_CA_CERTS, as fetch trusts it: verified, the host name too', async () => {
    // A second certificate, for another name, trusted as well: presented for localhost, it must be refused.
    const other = selfSignedCert('other.example')
    const trusted = path.join(path.dirname(cert), 'trusted.pem')
    writeFileSync(trusted, pem + other.pem)
    const right = Bun.serve({ hostname: '127.0.0.1', port: 0, tls: { cert: Bun.file(cert), key: Bun.file(key) }, fetch: sse })
    const wrong = Bun.serve({ hostname: '127.0.0.1', port: 0, tls: { cert: Bun.file(other.cert), key: Bun.file(other.key) }, fetch: sse })
    const script = `
      import { http1Fetch } from ${JSON.stringify(path.resolve(import.meta.dir, '../../src/core/http1.ts'))}
      const call = (origin) => http1Fetch(origin + '/v1', { method: 'POST', headers: {}, body: '{}', signal: new AbortController().signal })
        .then((response) => response.text(), (error) => error.code ?? error.message)
      console.log(JSON.stringify(await Promise.all(['https://localhost:${right.port}', 'https://127.0.0.1:${right.port}', 'https://localhost:${wrong.port}'].map(call))))
    `
    try {
      const proc = Bun.spawn([process.execPath, '-e', script], { env: { ...process.env, NODE_EXTRA_CA_CERTS: trusted }, stdout: 'pipe', stderr: 'pipe' })
      const [out, err] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text()]
      await proc.exited
      expect(err).toBe('')
      expect(JSON.parse(out)).toEqual([SSE_EVENTS.join(''), SSE_EVENTS.join(''), 'ERR_TLS_CERT_ALTNAME_INVALID'])
    } finally {
      right.stop(true)
      wrong.stop(true)
    }
  })
})
