import { dlopen, FFIType, ptr } from 'bun:ffi'

/**
 * A port where TCP connects hang, as with a host that drops SYNs (a firewall, a dead VM behind a live IP).
 * Neither Bun nor node:net can listen without accepting, so the socket is made through libc: it listens with
 * a backlog of 0 and never accepts. Once one connection fills its accept queue, Linux drops further SYNs and
 * the client keeps retransmitting them for minutes.
 */
export interface Blackhole {
  port: number
  url(path?: string): string
  close(): void
}

const AF_INET = 2
const SOCK_STREAM = 1

export async function startBlackhole(): Promise<Blackhole> {
  const libc = dlopen('libc.so.6', {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  })
  const fd = libc.symbols.socket(AF_INET, SOCK_STREAM, 0)
  // struct sockaddr_in for 127.0.0.1, port 0 (the kernel picks one)
  const address = new Uint8Array(16)
  const view = new DataView(address.buffer)
  view.setUint16(0, AF_INET, true)
  address.set([127, 0, 0, 1], 4)
  if (fd < 0 || libc.symbols.bind(fd, ptr(address), 16) !== 0 || libc.symbols.listen(fd, 0) !== 0) {
    throw new Error('blackhole: could not listen')
  }
  libc.symbols.getsockname(fd, ptr(address), ptr(new Uint32Array([16])))
  const port = view.getUint16(2, false)

  // Fill the accept queue; the connect that then hangs proves the port drops SYNs.
  const fillers: { end(): void }[] = []
  for (let i = 0; ; i++) {
    if (i === 8) throw new Error('blackhole: connects still succeed')
    const connect = Bun.connect({ hostname: '127.0.0.1', port, socket: { data() {} } })
    const socket = await Promise.race([connect, Bun.sleep(200).then(() => null)])
    if (!socket) {
      connect.then((s) => s.end(), () => {})
      break
    }
    fillers.push(socket)
  }
  return {
    port,
    url: (path = '') => `http://127.0.0.1:${port}${path}`,
    close() {
      for (const socket of fillers) socket.end()
      libc.symbols.close(fd)
      libc.close()
    },
  }
}
