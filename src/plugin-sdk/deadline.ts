/** How often the event loop's delays are sampled while a wait is pending. */
const TICK_MS = 5
/** A tick this much later than due is the loop being busy, not timer jitter. */
const JITTER_MS = 2
/**
 * However busy the loop, a wait ends after this many times its length. Generous: an overloaded process (8 MB
 * bodies parsed back to back on shared cores) took over ten times a 50 ms timeout to read answers Redis had
 * sent in a millisecond, and falling open then is exactly what must not happen.
 */
const MAX_STRETCH = 100

/** Total ms the event loop was busy (ticks late) since sampling started, and the sampler's state. */
let stalled = 0
let lastTick = 0
let pending = 0
let sampler: Timer | null = null

const lateness = (now: number) => {
  const late = now - lastTick - TICK_MS
  return late > JITTER_MS ? late : 0
}

/** Busy time so far, counting a stall still under way (a tick overdue right now). */
const stalls = (now: number) => stalled + lateness(now)

function sample() {
  const now = performance.now()
  stalled += lateness(now)
  lastTick = now
}

function begin() {
  if (pending++ > 0) return
  lastTick = performance.now()
  sampler = setInterval(sample, TICK_MS)
  sampler.unref()
}

function end() {
  if (--pending > 0) return
  clearInterval(sampler!)
  sampler = null
}

/**
 * The promise's value, or null once it has gone unanswered for `ms` of the event loop's attention. For
 * `api.redis`: while this process is busy (parsing an 8 MB body, say) it serves neither its timers nor the
 * answers waiting on its sockets, so the time it spent busy, sampled every TICK_MS while a wait is pending, is
 * not counted; a wait whose time ran out during a stall is rescheduled, which lets the loop read an answer that
 * arrived meanwhile. Only a Redis that stays silent while this process is free to listen runs the wait out (and
 * however busy the process, a wait ends after MAX_STRETCH × `ms`). Counted from the caller's own ask: ioredis's
 * command timeout starts when a command is written, and behind a batch that hangs a command can wait twice as
 * long. The caller decides what to do if the command succeeds after all.
 */
export function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  begin()
  const started = performance.now()
  const busyBefore = stalls(started)
  // One promise and one timer, settled once: every governed request waits through here.
  return new Promise<T | null>((resolve, reject) => {
    let timer: Timer | null = null
    const settle = () => {
      if (timer === null) return false
      clearTimeout(timer)
      timer = null
      end()
      return true
    }
    const check = () => {
      const now = performance.now()
      const attended = now - started - (stalls(now) - busyBefore)
      if (attended < ms && now - started < ms * MAX_STRETCH) timer = setTimeout(check, Math.max(1, ms - attended))
      else if (settle()) resolve(null)
    }
    timer = setTimeout(check, ms)
    promise.then(
      (value) => settle() && resolve(value),
      (error) => settle() && reject(error),
    )
  })
}
