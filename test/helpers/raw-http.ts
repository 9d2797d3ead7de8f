import net from 'node:net'

/**
 * Writes `payload` exactly as given on a fresh connection to 127.0.0.1:`port` and resolves with everything the
 * server sent before the connection closed (or `timeoutMs` passed), one character per byte (Latin-1), so that
 * framing can be read as sent. For requests `fetch` would refuse or normalise. `then`: 50 ms after the payload is
 * written, the client resets the connection (`destroy`) or ends its side of it (`end`, a FIN), as one that leaves.
 */
export function exchange(port: number, payload: string | Uint8Array, timeoutMs = 10_000, then?: 'destroy' | 'end'): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    const received: Buffer[] = []
    socket.on('data', (data: Buffer) => received.push(data))
    socket.on('error', () => {}) // a reset still ends in 'close', with what arrived before it
    socket.on('close', () => resolve(Buffer.concat(received).toString('latin1')))
    socket.write(payload, () => then && setTimeout(() => socket[then](), 50))
    setTimeout(() => socket.destroy(), timeoutMs).unref()
  })
}
