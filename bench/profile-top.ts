// Reads a .cpuprofile (bench/profile.sh with PROF=1): self time per function, and inclusive time of src/ functions.
const file = process.argv[2]!
const prof = JSON.parse(await Bun.file(file).text())
const nodes = new Map<number, any>()
for (const n of prof.nodes) nodes.set(n.id, n)
const self = new Map<number, number>()
const dt: number[] = prof.timeDeltas
// A sample's delta is the time since the previous one: across an idle stretch (start-up, before the load) it is
// seconds long and lands on whatever ran last. Only the steady sampling interval counts.
const IDLE_GAP_US = 10_000
for (let i = 0; i < prof.samples.length; i++) if ((dt[i] ?? 0) < IDLE_GAP_US) self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + (dt[i] ?? 0))
const total = [...self.values()].reduce((a, b) => a + b, 0)
const label = (n: any) => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/.*\/work\/main\//, '').replace(/.*node_modules\//, 'nm/')}:${n.callFrame.lineNumber + 1}`
const bySelf = new Map<string, number>()
for (const [id, t] of self) { const l = label(nodes.get(id)); bySelf.set(l, (bySelf.get(l) ?? 0) + t) }
const parent = new Map<number, number>()
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const incl = new Map<string, number>()
for (const [id, t] of self) {
  const seen = new Set<string>()
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(nodes.get(cur))
    if (seen.has(l)) continue
    seen.add(l)
    incl.set(l, (incl.get(l) ?? 0) + t)
  }
}
const pct = (t: number) => ((100 * t) / total).toFixed(1).padStart(5) + '%'
console.log('SELF'); for (const [l, t] of [...bySelf].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(pct(t), l)
console.log('INCLUSIVE (src/ and elysia)'); for (const [l, t] of [...incl].filter(([l]) => /src\/|elysia/.test(l)).sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(pct(t), l)
export {}
