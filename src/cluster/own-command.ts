const INSPECTOR = 'inspect(-brk|-wait)?'
/**
 * Flags that are the primary's alone: the inspector listens on one port (a worker given the same flag cannot start:
 * EADDRINUSE), and a reload is the primary's to do (it starts its workers again).
 */
const PRIMARY_ONLY_FLAG = new RegExp(`^--(${INSPECTOR}|watch|hot)(=|$)`)
/**
 * Flags whose session would not survive the restart with startEnv: JSC's sampler (`--cpu-prof`) suspends threads
 * with SIGPWR, and one landing during execve kills the new program (1 start in 5 at the default interval); a debugger
 * on the inspector is dropped, and under `--inspect-wait` or `--inspect-brk` the new program waits for another.
 */
const SESSION_FLAG = new RegExp(`^--(${INSPECTOR}|cpu-prof)(=|$)`)

/** The flag (without its value) that rules out restarting this process, if it was started with one. */
export const sessionFlag = () => process.execArgv.find((flag) => SESSION_FLAG.test(flag))?.split('=')[0]

/**
 * The command line that starts this program again: `bun [its flags] src/main.ts …` in development, `conduit …`
 * compiled. Bun's own flags (`--smol`, `--inspect`, `--cpu-prof`) come along, so the restart with startEnv (which
 * a profiled or inspected process skips: see SESSION_FLAG) and the workers run as the operator asked; a worker gets
 * them all but the inspector and watch mode (use `--workers 1` for those).
 */
export const ownCommand = (role: 'self' | 'worker' = 'self') => {
  if (Bun.isStandaloneExecutable) return [process.execPath, ...process.argv.slice(2)]
  const flags = role === 'worker' ? process.execArgv.filter((flag) => !PRIMARY_ONLY_FLAG.test(flag)) : process.execArgv
  return [process.execPath, ...flags, Bun.main, ...process.argv.slice(2)]
}

/** JSC grows a heap "aggressively" on machines it believes have 16 GB or more (Heap.cpp, growthMode). */
const HEAP_RAM_CAP_BYTES = 8 * 1024 ** 3

/**
 * What Bun reads only as a process starts, where the environment does not set it already: main.ts starts the
 * program again with it, and workers inherit it.
 * - BUN_CONFIG_MAX_HTTP_REQUESTS: fetch allows 256 requests in flight per process unless told otherwise, and a
 *   gateway holds one per open stream: request 257 would wait for a whole stream to end.
 * - BUN_JSC_forceRAMSize: the memory JSC paces its heap's growth by. Each worker's share of the machine's (or its
 *   container's) memory, and under 16 GB: at 16 GB and over JSC lets a heap grow several times over between
 *   collections, which held 30 MB more per worker under load (138 against 108 MB at c=64) and served no faster.
 */
export function startEnv(env: Record<string, string | undefined>, workers: number, memoryBytes = process.constrainedMemory?.() ?? 0): Record<string, string> {
  const missing: Record<string, string> = {}
  if (!env.BUN_CONFIG_MAX_HTTP_REQUESTS) missing.BUN_CONFIG_MAX_HTTP_REQUESTS = '65535'
  const share = Math.floor(Math.min(memoryBytes / workers, HEAP_RAM_CAP_BYTES))
  // No share (a memory size the platform does not report, a worker count the configuration refuses later) leaves JSC
  // to its own sizing: Bun stops at an invalid option value.
  if (!env.BUN_JSC_forceRAMSize && share > 0) missing.BUN_JSC_forceRAMSize = String(share)
  return missing
}
