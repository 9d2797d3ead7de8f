/** The floor: the thinnest Bun passthrough proxy (fetch + stream the body back). Usage: UPSTREAM=http://… bun bench/floor.ts */
const upstream = process.env.UPSTREAM!
const server = Bun.serve({
  port: Number(process.env.PORT ?? 0),
  hostname: '127.0.0.1',
  idleTimeout: 0,
  async fetch(req) {
    const url = new URL(req.url)
    const res = await fetch(upstream + url.pathname.replace(/^\/v1/, ''), { method: req.method, headers: { 'content-type': 'application/json' }, body: await req.text(), signal: req.signal })
    return new Response(res.body, { status: res.status, headers: { 'content-type': res.headers.get('content-type') ?? 'application/json' } })
  },
})
console.log(`floor on http://127.0.0.1:${server.port}/v1`)
// Exit on SIGTERM as Conduit does, so that a profiled floor (`FLOOR=1 PROF=1 bench/profile.sh`) writes its profile.
process.on('SIGTERM', () => process.exit(0))
