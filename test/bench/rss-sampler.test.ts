import { expect, test } from 'bun:test'
import { processTree, rssBytes, RssSampler } from '../../bench/sys.ts'

test('bench memory: the sampler keeps the tree peak and, apart, the largest one process of it (a worker, with several)', async () => {
  // A parent holding about 64 MB and two children holding about 32 MB each: the tree's peak is their sum, one process's the parent's.
  const hold = (mb: number) => `const b = Buffer.alloc(${mb} * 1048576, 1); setInterval(() => b[0]++, 50)`
  const parent = Bun.spawn([process.execPath, '-e', `${hold(64)}; for (let i = 0; i < 2; i++) Bun.spawn([process.execPath, '-e', ${JSON.stringify(hold(32))}], { stdout: 'ignore' })`], { stdout: 'ignore', stderr: 'inherit' })
  try {
    for (const deadline = performance.now() + 10_000; processTree(parent.pid).length < 3 && performance.now() < deadline; ) await Bun.sleep(50)
    await Bun.sleep(500)
    const tree = processTree(parent.pid)
    expect(tree).toHaveLength(3)
    const sampler = new RssSampler(parent.pid, 50)
    await Bun.sleep(300)
    sampler.stop()
    const each = tree.map((pid) => rssBytes([pid]))
    expect(sampler.peak).toBeGreaterThan(128 * 1048576)
    expect(sampler.peakProcess).toBeGreaterThan(64 * 1048576)
    expect(sampler.peakProcess).toBeLessThan(sampler.peak - 64 * 1048576) // not the sum: the children's 64 MB are not in it
    expect(Math.abs(sampler.peakProcess - Math.max(...each))).toBeLessThan(16 * 1048576)
  } finally {
    for (const pid of processTree(parent.pid).reverse()) process.kill(pid, 'SIGKILL')
  }
}, 20_000)
