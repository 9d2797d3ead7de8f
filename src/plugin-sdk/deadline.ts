/** Past this, a timer that fires late means the event loop was busy, not that the wait was long. */
const BUSY_LATENESS_MS = 5
/** However busy the loop, a wait ends after this many times its length. */
const MAX_STRETCH = 10

/**
 * The promise's value, or null once it has gone unanswered for `ms` of the event loop's attention. For
 * `api.redis`: a timer that fires late was held up by work on this process (an 8 MB body parsed, say), and an
 * answer that arrived meanwhile may be sitting unread; such a wait gives the loop a turn to read it before it
 * gives up, so a busy process does not mistake itself for a slow Redis (the time it was busy is not counted,
 * up to MAX_STRETCH × `ms` in all). Counted from the caller's own ask: ioredis's command timeout starts when a
 * command is written, and behind a batch that hangs a command can wait twice as long. The caller decides what
 * to do if the command succeeds after all.
 */
export function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  return new Promise<T | null>((resolve, reject) => {
    const started = performance.now()
    let last = started
    let due = ms
    let attended = 0
    const check = () => {
      const now = performance.now()
      const late = Math.max(0, now - last - due)
      attended += now - last - late
      last = now
      if ((attended >= ms && late <= BUSY_LATENESS_MS) || now - started >= ms * MAX_STRETCH) resolve(null)
      else timer = setTimeout(check, (due = Math.max(1, ms - attended)))
    }
    let timer = setTimeout(check, ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}
