import { GatewayError } from '../../plugin-sdk/errors.ts'

/** At most `max` processes at once; up to `maxQueued` more wait their turn, past that a caller is refused at once. */
export class ProcessPool {
  private running = 0
  private readonly waiting: { grant: () => void; fail: (error: unknown) => void }[] = []
  private closed = false

  constructor(
    private readonly max: number,
    private readonly maxQueued: number,
  ) {}

  get active() {
    return this.running
  }

  get queued() {
    return this.waiting.length
  }

  /** Resolves with a release function once a slot is free; rejects on abort, overflow or close. */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (this.closed) return Promise.reject(new GatewayError(503, 'The gateway is shutting down; audio conversion is closed.', { code: 'transcoder_closed' }))
    if (signal.aborted) return Promise.reject(signal.reason)
    let released = false
    const release = () => {
      if (released) return
      released = true
      this.running--
      const next = this.waiting.shift()
      if (next) next.grant()
    }
    if (this.running < this.max) {
      this.running++
      return Promise.resolve(release)
    }
    if (this.waiting.length >= this.maxQueued) {
      return Promise.reject(
        new GatewayError(503, `Audio conversion is at capacity (${this.max} running, ${this.maxQueued} queued); retry shortly.`, {
          code: 'transcoder_busy',
          headers: { 'retry-after': '1' },
        }),
      )
    }
    return new Promise((resolve, reject) => {
      const entry = {
        grant: () => {
          signal.removeEventListener('abort', onAbort)
          this.running++
          resolve(release)
        },
        fail: (error: unknown) => {
          signal.removeEventListener('abort', onAbort)
          reject(error)
        },
      }
      const onAbort = () => {
        const i = this.waiting.indexOf(entry)
        if (i >= 0) this.waiting.splice(i, 1)
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(entry)
    })
  }

  /** Refuses everything from now on; whoever waits is told. */
  close() {
    this.closed = true
    for (const entry of this.waiting.splice(0)) entry.fail(new GatewayError(503, 'The gateway is shutting down; audio conversion is closed.', { code: 'transcoder_closed' }))
  }
}
