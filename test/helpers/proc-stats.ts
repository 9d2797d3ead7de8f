import { readdirSync, readFileSync } from 'node:fs'

export const MB = 1024 * 1024

/** Resident set size of one process, in bytes (VmRSS from /proc). */
export const rssBytes = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024

/**
 * The threads of a process by id: name and nice value (stat fields counted after the `)` that ends the name, which may
 * hold spaces). A thread that ends between the listing and the reading of its files is left out.
 */
export function threadsOf(pid: number | 'self'): Map<string, { name: string; nice: number }> {
  const threads = new Map<string, { name: string; nice: number }>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      threads.set(tid, { name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(), nice: Number(fields[16]) })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    }
  }
  return threads
}

/** File descriptors the process holds open (sockets, files, pipes). */
export const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length

/**
 * Arguments that open Bun's inspector on a free loopback port under an unguessable path, and the address to
 * give `inspectorEval`. Put them before the script: `['bun', ...inspect.args, 'src/main.ts']`.
 */
export function inspectorArgs() {
  const probe = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = probe.port
  probe.stop(true)
  const path = crypto.randomUUID()
  return { args: [`--inspect=127.0.0.1:${port}/${path}`], url: `ws://127.0.0.1:${port}/${path}` }
}

/** Evaluates `expression` (a promise is awaited) in the inspected process and answers its JSON value (WebKit inspector protocol). */
export async function inspectorEval<T = unknown>(url: string, expression: string): Promise<T> {
  const ws = new WebSocket(url)
  const replies = new Map<number, (message: any) => void>()
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data))
    replies.get(message.id)?.(message)
  }
  let ids = 0
  const call = (method: string, params: object) =>
    new Promise<any>((resolve, reject) => {
      const id = ++ids
      replies.set(id, ({ result, error }) => {
        if (error || result?.wasThrown) reject(new Error(`inspector ${method}: ${JSON.stringify(error ?? result.result)}`))
        else resolve(result.result)
      })
      ws.send(JSON.stringify({ id, method, params }))
    })
  try {
    await new Promise((resolve, reject) => {
      ws.onopen = resolve
      ws.onerror = () => reject(new Error(`inspector at ${url} unreachable`))
    })
    const promise = await call('Runtime.evaluate', { expression: `(async () => JSON.stringify(await (${expression})))()` })
    const value = await call('Runtime.awaitPromise', { promiseObjectId: promise.objectId, returnByValue: true })
    return JSON.parse(value.value)
  } finally {
    ws.close()
  }
}

/**
 * A full, synchronous garbage collection in the inspected process, then Bun.shrink() to hand JSC's freed pages
 * back at once (left to JSC, they went back at a moment of its choosing, seconds later); answers its JS heap.
 */
export const collectGarbage = (inspectorUrl: string) =>
  inspectorEval<{ objectCount: number; heapSize: number }>(
    inspectorUrl,
    `import('bun:jsc').then(({ heapStats }) => { Bun.gc(true); Bun.shrink(); const { objectCount, heapSize } = heapStats(); return { objectCount, heapSize } })`,
  )

/** The lowest RSS of the process over `ms` (pages freed by a collection reach the OS a moment later). */
export async function rssFloor(pid: number, ms = 2_000) {
  return (await floors(pid, ms)).rss
}

/**
 * The lowest RSS and the fewest open file descriptors of the process over `ms`: idle keep-alive connections close
 * some seconds after the last request, pages freed by a collection reach the OS a moment after it.
 */
export async function floors(pid: number, ms: number) {
  let rss = Infinity
  let fds = Infinity
  for (const until = Date.now() + ms; Date.now() < until; await Bun.sleep(100)) {
    rss = Math.min(rss, rssBytes(pid))
    fds = Math.min(fds, openFds(pid))
  }
  return { rss, fds }
}
