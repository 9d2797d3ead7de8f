import type { Subprocess } from 'bun'

type PipedProcess = Subprocess<'pipe', 'pipe', 'pipe'>

/** Different command lines with a spare at once; past it the least recently used one's spare is stopped. */
const MAX_COMMANDS = 4

/**
 * ffmpeg started before it is needed. A process spends about 45 ms starting (its libraries linked, its codecs
 * registered) before it reads a byte, and a streamed conversion (speech in a format the provider does not make)
 * waited that long for its first byte. When a conversion from a pipe has ended well, one process with the same
 * command line is started to wait on its stdin; the next conversion with that command takes it. Commands that read
 * a file are never kept (its path is new each time). A spare not taken within `idleMs` is stopped, so a gateway
 * that converts nothing runs no ffmpeg; one killed outright leaves none behind (its spares read the end of stdin).
 */
export class Spares {
  private readonly waiting = new Map<string, { proc: PipedProcess; timer: Timer }>()
  private closed = false

  constructor(
    private readonly idleMs: number,
    private readonly stop: (proc: Subprocess) => unknown,
  ) {}

  /** Processes waiting now (for tests and diagnostics). */
  get pids(): number[] {
    return [...this.waiting.values()].map((s) => s.proc.pid)
  }

  /** The process waiting with this command line, if one is still alive. */
  take(cmd: string[]): PipedProcess | null {
    const key = cmd.join('\0')
    const spare = this.waiting.get(key)
    if (!spare) return null
    this.waiting.delete(key)
    clearTimeout(spare.timer)
    return spare.proc.exitCode === null && spare.proc.signalCode === null ? spare.proc : null
  }

  /** Starts a spare for this command line unless one waits (or spares are off). */
  refill(cmd: string[]) {
    const key = cmd.join('\0')
    if (this.closed || this.idleMs <= 0 || this.waiting.has(key)) return
    if (this.waiting.size >= MAX_COMMANDS) this.drop(this.waiting.keys().next().value!)
    const proc = Bun.spawn(cmd, { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' })
    const timer = setTimeout(() => this.drop(key), this.idleMs)
    timer.unref()
    const spare = { proc, timer }
    this.waiting.set(key, spare)
    void proc.exited.then(() => {
      if (this.waiting.get(key) !== spare) return
      clearTimeout(timer)
      this.waiting.delete(key)
    })
  }

  private drop(key: string) {
    const spare = this.waiting.get(key)
    if (!spare) return
    this.waiting.delete(key)
    clearTimeout(spare.timer)
    this.stop(spare.proc)
  }

  /** Gateway shutdown: every spare is stopped and none is started again. */
  close() {
    this.closed = true
    for (const key of [...this.waiting.keys()]) this.drop(key)
  }
}
