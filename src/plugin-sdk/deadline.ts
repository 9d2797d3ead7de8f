/**
 * The promise's value, or null if it takes longer than `ms`. For `api.redis`: ioredis's command timeout starts
 * when a command is written, and auto-pipelining writes a connection's next batch only once the previous one
 * has answered, so behind a batch that hangs a command can wait twice the timeout. A deadline counted from the
 * caller's own ask bounds it; the caller decides what to do if the command succeeds after all.
 */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: Timer | undefined
  try {
    return await Promise.race([promise, new Promise<null>((resolve) => (timer = setTimeout(resolve, ms, null)))])
  } finally {
    clearTimeout(timer)
  }
}
