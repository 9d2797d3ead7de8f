/**
 * Follows one PostgreSQL connection through a proxy (plain protocol v3), so a fault can pick the reply to one
 * statement: several writers share a pool, and their replies look alike (`INSERT 0 1`). The statement text is
 * sent once per connection (a Parse naming the statement), later only bound and executed by name.
 */
type Pending = { kind: 'execute' | 'query'; text: string } | { kind: 'sync' }

class Frames {
  private buffer = new Uint8Array(0)
  /** Appends a chunk and hands on each whole message: type byte (0 for an untyped startup message) and body. */
  read(chunk: Uint8Array, typed: () => boolean, each: (type: number, body: Uint8Array) => void) {
    const joined = new Uint8Array(this.buffer.byteLength + chunk.byteLength)
    joined.set(this.buffer)
    joined.set(chunk, this.buffer.byteLength)
    let at = 0
    for (;;) {
      const head = typed() ? 1 : 0
      if (joined.byteLength - at < head + 4) break
      const length = new DataView(joined.buffer, at + head, 4).getInt32(0)
      if (joined.byteLength - at < head + length) break
      each(head ? joined[at]! : 0, joined.subarray(at + head + 4, at + head + length))
      at += head + length
    }
    this.buffer = joined.slice(at)
  }
}

const cString = (body: Uint8Array, from = 0) => {
  const end = body.indexOf(0, from)
  return { text: Buffer.from(body.subarray(from, end)).toString('utf8'), next: end + 1 }
}

export class PgStatements {
  private readonly fromClient = new Frames()
  private readonly fromServer = new Frames()
  private starting = true
  /** The server answers an SSLRequest with one untyped byte ('N' here: the tests' server speaks plain). */
  private untypedAnswer = false
  private readonly prepared = new Map<string, string>()
  private bound = ''
  private readonly pending: Pending[] = []

  client(chunk: Uint8Array) {
    this.fromClient.read(chunk, () => !this.starting, (type, body) => {
      if (type === 0) {
        const code = new DataView(body.buffer, body.byteOffset, 4).getInt32(0)
        if (code === 80877103 || code === 80877104) this.untypedAnswer = true // SSLRequest, GSSENCRequest
        else this.starting = false
      } else if (type === 0x50 /* P */) {
        const name = cString(body)
        this.prepared.set(name.text, cString(body, name.next).text)
      } else if (type === 0x42 /* B */) {
        this.bound = this.prepared.get(cString(body, cString(body).next).text) ?? ''
      } else if (type === 0x45 /* E */) {
        this.pending.push({ kind: 'execute', text: this.bound })
      } else if (type === 0x51 /* Q */) {
        this.pending.push({ kind: 'query', text: cString(body).text })
      } else if (type === 0x53 /* S */) {
        this.pending.push({ kind: 'sync' })
      }
    })
  }

  /** The texts of the statements whose commands complete in this chunk from the server. */
  server(chunk: Uint8Array): string[] {
    if (this.untypedAnswer && chunk.byteLength > 0) {
      this.untypedAnswer = false
      chunk = chunk.subarray(1)
    }
    const completed: string[] = []
    this.fromServer.read(chunk, () => true, (type) => {
      const head = this.pending[0]
      if (!head) return
      if (type === 0x43 /* C */ || type === 0x49 /* I */) {
        if (head.kind === 'sync') return
        completed.push(head.text)
        if (head.kind === 'execute') this.pending.shift() // a simple query completes a command per statement, until Z
      } else if (type === 0x45 /* E */ && head.kind === 'execute') {
        // An error skips the batch's remaining executes up to its Sync.
        while (this.pending[0] && this.pending[0].kind !== 'sync') this.pending.shift()
      } else if (type === 0x5a /* Z */ && head.kind !== 'execute') {
        this.pending.shift()
      }
    })
    return completed
  }
}
