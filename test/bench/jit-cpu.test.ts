import { expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { cpuSeconds, jitCpuSeconds } from '../../bench/sys.ts'

test('bench settle: the JIT thread CPU of a Bun process is read from /proc, and a process without one reads 0', async () => {
  // Two hundred distinct functions, each called often enough to be compiled by the optimizing tiers (on JITWorker).
  const source = `const fs = []; for (let n = 0; n < 200; n++) fs.push(new Function('x', 'return (x * ' + n + ' + 1) % 7'))
    let s = 0; for (let r = 0; r < 20000; r++) for (const f of fs) s += f(r); setInterval(() => {}, 1000)`
  const dir = mkdtempSync(path.join(tmpdir(), 'jit-cpu-'))
  const script = path.join(dir, 'compile.js')
  writeFileSync(script, source)
  const compiling = Bun.spawn([process.execPath, script], { stdout: 'ignore', stderr: 'inherit' })
  const idle = Bun.spawn(['sleep', '30'])
  try {
    let jit = 0
    for (const deadline = performance.now() + 15_000; jit <= 0.01 && performance.now() < deadline; ) {
      await Bun.sleep(200)
      jit = jitCpuSeconds([compiling.pid])
    }
    expect(jit).toBeGreaterThan(0.01)
    expect(jit).toBeLessThan(cpuSeconds([compiling.pid])) // its thread alone, not the process's main thread running the loop
    expect(jitCpuSeconds([idle.pid])).toBe(0)
    expect(jitCpuSeconds([999_999_999])).toBe(0) // gone
  } finally {
    compiling.kill()
    idle.kill()
    rmSync(dir, { recursive: true, force: true })
  }
}, 20_000)
