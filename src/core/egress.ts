import { BlockList, isIP } from 'node:net'
import { LRUCache } from 'lru-cache'
import { GatewayError } from '../plugin-sdk/errors.ts'

/*
 * Which upstream URLs the gateway may call: the guard against SSRF through a configured base URL (a provider
 * pointed at 169.254.169.254, the admin's own loopback, a private network). Secure by default: only http(s) to
 * public addresses. Self-hosted upstreams (Ollama, vLLM, a VPC endpoint) are allowed by name, address or CIDR
 * in CONDUIT_EGRESS_ALLOW.
 *
 * The rule: a host allow-listed by name is allowed whatever it resolves to; any other host is allowed when
 * every address it designates is public or inside an allow-listed address or CIDR. An IP literal designates
 * itself (the WHATWG URL parser has already normalised 127.1, 0x7f000001, 2130706433, 0177.0.0.1, ① … to dotted
 * form and IPv6 to its canonical text), `localhost` and `*.localhost` designate loopback, and any other name
 * what DNS answers at call time. Checked when a URL is configured (no DNS then: it may be down, or answer
 * differently later) and again before every upstream call, with DNS, so a name that resolves or rebinds to a
 * private address is refused before a connection is made.
 */

export const EGRESS_ALLOW_ENV = 'CONDUIT_EGRESS_ALLOW'

/** IPv4 ranges that are not public unicast (IANA special-purpose registry). */
const PRIVATE_V4: [string, number][] = [
  ['0.0.0.0', 8], // "this network": 0.0.0.0 reaches the local host on Linux
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 3], // multicast, reserved, broadcast
]

/** IPv6 ranges that are not public unicast. IPv4-mapped (::ffff:0:0/96) addresses are checked as IPv4 by BlockList. */
const PRIVATE_V6: [string, number][] = [
  ['::', 96], // unspecified, loopback, IPv4-compatible
  ['::ffff:0:0:0', 96], // IPv4-translated
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 23], // IETF protocol assignments, Teredo
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local
  ['ff00::', 8], // multicast
]

const hexWords = (v4: string) => {
  const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number]
  return `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
}

function privateRanges() {
  const list = new BlockList()
  for (const [address, prefix] of PRIVATE_V4) {
    list.addSubnet(address, prefix, 'ipv4')
    // The same IPv4 ranges embedded in NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses.
    list.addSubnet(`64:ff9b::${hexWords(address)}`, 96 + prefix, 'ipv6')
    list.addSubnet(`2002:${hexWords(address)}::`, 16 + prefix, 'ipv6')
  }
  for (const [address, prefix] of PRIVATE_V6) list.addSubnet(address, prefix, 'ipv6')
  return list
}
const PRIVATE = privateRanges()

const family = (address: string) => (isIP(address) === 6 ? 'ipv6' : 'ipv4')
/** URL hostnames carry IPv6 in brackets and may end with the root's dot. */
const bareHost = (hostname: string) => hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase()
const isLocalhost = (host: string) => host === 'localhost' || host.endsWith('.localhost')

export type Lookup = (hostname: string) => Promise<string[]>
const systemLookup: Lookup = async (hostname) => (await Bun.dns.lookup(hostname, { family: 0 })).map((r) => r.address)

/** Why a URL is refused at configuration time; `code` goes into the 400. */
export interface Refusal {
  code: 'invalid_value' | 'base_url_not_allowed'
  message: string
}

const HINT = `To call a self-hosted upstream, add its host name, address or CIDR to ${EGRESS_ALLOW_ENV} (comma-separated).`

export class EgressPolicy {
  private names = new Set<string>()
  private addresses = new BlockList()
  /** Connect-time decisions per host (null: allowed), kept briefly. */
  private decisions: LRUCache<string, Promise<string | null>>
  /** URL origins allowed moments ago: the hot path's answer without parsing the URL or awaiting anything. */
  private allowedOrigins: LRUCache<string, true>

  constructor(
    allow: readonly string[] = [],
    private readonly options: { lookup?: Lookup; ttlMs?: number } = {},
  ) {
    this.decisions = new LRUCache({ max: 1024, ttl: options.ttlMs ?? 2_000 })
    this.allowedOrigins = new LRUCache({ max: 1024, ttl: options.ttlMs ?? 2_000 })
    this.configure(allow)
  }

  /** Replaces the allow-list; throws on an entry that is neither a host name, an address nor a CIDR. */
  configure(allow: readonly string[]) {
    const names = new Set<string>()
    const addresses = new BlockList()
    for (const raw of allow) {
      const entry = allowEntry(raw)
      if ('name' in entry) names.add(entry.name)
      else addresses.addSubnet(entry.address, entry.prefix, family(entry.address))
    }
    this.names = names
    this.addresses = addresses
    this.decisions.clear()
    this.allowedOrigins.clear()
  }

  /** A public address, or one the operator allowed. */
  addressAllowed(address: string): boolean {
    const bare = address.replace(/%.*$/, '') // a scoped IPv6 address (fe80::1%eth0) is judged without its zone
    const kind = family(bare)
    return this.addresses.check(bare, kind) || !PRIVATE.check(bare, kind)
  }

  /** The configuration-time verdict (no DNS): null when the URL may be configured. */
  refusal(url: string): Refusal | null {
    const parsed = URL.parse(url)
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      return { code: 'invalid_value', message: 'must be an absolute http:// or https:// URL.' }
    }
    const host = bareHost(parsed.hostname)
    if (this.names.has(host)) return null
    const designated = isIP(host) ? [host] : isLocalhost(host) ? ['127.0.0.1', '::1'] : []
    const blocked = designated.find((address) => !this.addressAllowed(address))
    if (blocked === undefined) return null
    return { code: 'base_url_not_allowed', message: `points at a private, loopback or reserved address (${blocked}). ${HINT}` }
  }

  /**
   * The connect-time verdict: resolves the host (every address) and throws a 502 `upstream_not_allowed` when any
   * address is not allowed. The client is not told which address: host names inside a network are not its business.
   */
  check(url: string): Promise<void> | undefined {
    const slash = url.indexOf('/', url.indexOf('//') + 2)
    const origin = slash === -1 ? url : url.slice(0, slash)
    if (this.allowedOrigins.get(origin)) return undefined
    return this.verdict(url).then(() => void this.allowedOrigins.set(origin, true))
  }

  private async verdict(url: string): Promise<void> {
    const parsed = URL.parse(url)
    // A `data:` URL carries its answer and connects nowhere (the Bedrock adapter hands over its fan-out that way).
    if (parsed?.protocol === 'data:') return
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw new GatewayError(502, 'The gateway calls upstreams over http(s) only.', { code: 'upstream_not_allowed' })
    }
    const host = bareHost(parsed.hostname)
    let decision = this.decisions.get(host)
    if (!decision) {
      decision = this.decide(host)
      this.decisions.set(host, decision)
      // A failed lookup is not a verdict: ask DNS again next time.
      decision.catch(() => this.decisions.delete(host))
    }
    const reason = await decision
    if (reason !== null) {
      throw new GatewayError(502, `The gateway does not call this upstream: ${reason}. Its operator can allow it in ${EGRESS_ALLOW_ENV}.`, {
        code: 'upstream_not_allowed',
      })
    }
  }

  private async decide(host: string): Promise<string | null> {
    if (this.names.has(host)) return null
    let addresses: string[]
    if (isIP(host)) addresses = [host]
    else {
      try {
        addresses = await (this.options.lookup ?? systemLookup)(host)
      } catch {
        throw new GatewayError(502, 'Could not resolve the upstream host.', { code: 'upstream_unreachable' })
      }
    }
    if (addresses.length === 0) throw new GatewayError(502, 'Could not resolve the upstream host.', { code: 'upstream_unreachable' })
    return addresses.every((address) => this.addressAllowed(address)) ? null : 'its address is private, loopback or reserved'
  }
}

/** A host name, or an address with its prefix length (a lone address is a /32 or /128). */
function allowEntry(raw: string): { name: string } | { address: string; prefix: number } {
  const entry = bareHost(raw.trim())
  const [address, bits] = entry.split('/') as [string, string | undefined]
  const kind = isIP(address)
  const max = kind === 4 ? 32 : 128
  if (kind !== 0 && bits === undefined) return { address, prefix: max }
  if (kind !== 0 && /^\d{1,3}$/.test(bits!) && Number(bits) <= max) return { address, prefix: Number(bits) }
  if (bits === undefined && entry !== '' && URL.parse(`http://${entry}/`)?.hostname === entry) return { name: entry }
  throw new Error(`${EGRESS_ALLOW_ENV}: '${raw.trim()}' is not a host name, an IP address or a CIDR.`)
}

/** `a, b ,c` → entries, each checked (a typo stops the start); unset → none: every private address is refused. */
export function parseAllowList(value: string | undefined): string[] {
  const entries = (value ?? '').split(',').map((entry) => entry.trim()).filter(Boolean)
  for (const entry of entries) allowEntry(entry)
  return entries
}

/**
 * The process's policy, consulted before every upstream call. One gateway per process in production; the
 * gateway installs its configured allow-list at start (createGateway).
 */
export const egress = new EgressPolicy()
