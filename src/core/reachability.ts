/*
 * Bun's fetch does not tell when its connection is established, so the connect timeout is enforced from the
 * outside. A call still without response headers after `connect_ms` asks whether its provider's host accepts
 * a TCP connection at all. A provider that answered any call since this one started is reachable without
 * asking; otherwise one probe per provider at a time, which gets `connect_ms` to open. A provider that cannot
 * be reached fails the call (and the router moves on); one that can leaves it to the first-byte deadline.
 */

/** When each provider (by name) last answered: response headers or an opened probe, in performance.now() time. */
const lastAnswered = new Map<string, number>()
const probes = new Map<string, Promise<boolean>>()

/** Any response proves the provider reachable for the calls still waiting on it. */
export function providerAnswered(provider: string) {
  lastAnswered.set(provider, performance.now())
}

/** Whether the provider answered since `since`, or `url`'s host accepts a TCP connection within `timeoutMs`. */
export function isReachable(provider: string, url: string, since: number, timeoutMs: number): Promise<boolean> {
  if ((lastAnswered.get(provider) ?? -Infinity) >= since) return Promise.resolve(true)
  const target = URL.parse(url)
  if (!target) return Promise.resolve(true) // nothing to probe: the first-byte deadline decides
  let probe = probes.get(provider)
  if (!probe) {
    probe = tcpProbe(provider, target, timeoutMs).finally(() => probes.delete(provider))
    probes.set(provider, probe)
  }
  return probe
}

function tcpProbe(provider: string, url: URL, timeoutMs: number): Promise<boolean> {
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80)
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1') // IPv6 literals lose their brackets
  return new Promise<boolean>((resolve) => {
    let settled = false
    const settle = (open: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (open) providerAnswered(provider)
      resolve(open)
    }
    const timer = setTimeout(() => settle(false), timeoutMs)
    Bun.connect({
      hostname,
      port,
      socket: {
        open(socket) {
          socket.end() // it only had to open; a connect that opens after the deadline is closed the same way
          settle(true)
        },
        data() {},
        connectError: () => settle(false),
        error: () => settle(false),
      },
    }).catch(() => settle(false))
  })
}
