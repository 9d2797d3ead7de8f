/**
 * The main thread's perf samples by JavaScript function, native callees included (`PERF=1 bench/profile.sh` runs it).
 *
 *   bun bench/perf-js.ts <perf.data> <jit-….dump> [µs a request] [--top N]
 *
 * JSC writes a jitdump of the code it compiles (`BUN_JSC_useJITDump=1`). From it this writes the perf map
 * (`/tmp/perf-<pid>.map`) that names JIT frames in `perf script`; a later compilation at an address replaces what was
 * there before. The samples were taken with call graphs (Bun and its JIT code keep frame pointers), so unlike JSC's
 * own profiler, each sample's time counts for every JavaScript function on its stack, with whatever native code
 * (Bun's APIs, JSON, the GC) it was in. Prints two lists:
 * - where native code entered JavaScript: the outermost JavaScript frame of each sample (a request's async functions
 *   show where they resumed), or none (the event loop, the HTTP server, the kernel, with no JavaScript below);
 * - each function's inclusive and self share.
 * With a request's µs on the main thread, shares are also given in µs a request.
 */
import { parseArgs } from 'node:util'

const { values: flags, positionals } = parseArgs({ args: process.argv.slice(2), allowPositionals: true, options: { top: { type: 'string', default: '20' } } })
const [data, dump, perRequestArg] = positionals
if (!data || !dump) throw new Error('usage: bun bench/perf-js.ts <perf.data> <jit-….dump> [µs a request] [--top N]')
const top = Number(flags.top)
const perRequest = perRequestArg ? Number(perRequestArg) : null

// jitdump: a 40-byte header (the pid at byte 20), then records of {id u32, size u32, timestamp u64, …}; a code load
// (id 0) carries pid u32, tid u32, vma u64, code address u64, code size u64, index u64, then its name.
const bytes = Buffer.from(await Bun.file(dump).arrayBuffer())
const pid = bytes.readUInt32LE(20)
let live: { start: bigint; end: bigint; name: string }[] = []
for (let at = bytes.readUInt32LE(8); at + 16 <= bytes.length; ) {
  const id = bytes.readUInt32LE(at)
  const size = bytes.readUInt32LE(at + 4)
  if (size === 0) break
  if (id === 0) {
    const start = bytes.readBigUInt64LE(at + 32)
    const end = start + bytes.readBigUInt64LE(at + 40)
    live = live.filter((code) => code.end <= start || code.start >= end)
    live.push({ start, end, name: bytes.toString('utf8', at + 56, bytes.indexOf(0, at + 56)) })
  }
  at += size
}
await Bun.write(`/tmp/perf-${pid}.map`, live.map((c) => `${c.start.toString(16)} ${(c.end - c.start).toString(16)} ${c.name}`).join('\n') + '\n')

const script = Bun.spawnSync(['perf', 'script', '-i', data], { stderr: 'ignore' }).stdout.toString()
/** A sample's frames, leaf first: a JavaScript function's name, or the native frame's symbol or address, and its file. */
const samples = script
  .split('\n\n')
  .filter((s) => s.trim())
  .map((s) =>
    s
      .split('\n')
      .slice(1)
      .map((line) => {
        const [, address = '', symbol = line.trim(), file = ''] = line.trim().match(/^([0-9a-f]+) (.*?) \((.*)\)$/) ?? []
        return { name: symbol === '[unknown]' ? `${file.split('/').pop()}@${address}` : symbol.replace(/\+0x[0-9a-f]+$/, ''), file }
      }),
  )
const isJS = (frame: { name: string }) => frame.name.startsWith('JSC-') && !/Thunk|InlineCache|OSRExit/.test(frame.name)
/** Where a sample with no JavaScript on its stack was: the kernel, Bun's executable, or another library. */
const nativeOwner = (file = '') => (file.includes('kernel') ? 'the kernel' : file.includes('/bun') ? 'Bun' : file.split('/').pop() || 'unknown')

const entered = new Map<string, number>()
const inclusive = new Map<string, number>()
const self = new Map<string, number>()
for (const frames of samples) {
  const js = frames.filter(isJS).map((f) => f.name)
  const entry = js.at(-1) ?? `no JavaScript frame: in ${nativeOwner(frames[0]?.file)}`
  entered.set(entry, (entered.get(entry) ?? 0) + 1)
  for (const name of new Set(js)) inclusive.set(name, (inclusive.get(name) ?? 0) + 1)
  // Self: the leaf is the function's own code (a thunk on the way to it does not count as leaving it).
  const leaf = frames.find((f) => !/Thunk/.test(f.name))
  if (leaf && isJS(leaf)) self.set(leaf.name, (self.get(leaf.name) ?? 0) + 1)
}
const share = (n: number) => {
  const pct = (100 * n) / samples.length
  return `${pct.toFixed(1).padStart(5)}%${perRequest ? ` ${((pct * perRequest) / 100).toFixed(1).padStart(5)} µs` : ''}`
}
const name = (frame: string) => frame.replace(/^JSC-/, '')
console.log(`${samples.length} samples of pid ${pid}; ${live.length} JIT code regions named`)
console.log('Where native code entered JavaScript (outermost JavaScript frame):')
for (const [k, n] of [...entered].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${share(n)}  ${name(k)}`)
console.log('JavaScript functions, inclusive of what they called (self beside):')
for (const [k, n] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${share(n)}  (self ${share(self.get(k) ?? 0).trim()})  ${name(k)}`)
