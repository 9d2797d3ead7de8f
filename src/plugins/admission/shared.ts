import type { RedisClient } from '../../plugin-sdk/index.ts'
import type { Outcome, RateAdjustment, Scope, ScopeClaim, ScopeOutcome, Settlement, Status } from './claims.ts'
import { taken } from './claims.ts'
import { GOVERN } from './script.ts'

/** Settlements wait this long for an admission to ride along with before they go out on their own. */
const FLUSH_MS = 5
/** After a failed call, settlements are sent again this much later (they are idempotent: see an instance's `q` in script.ts). */
const RETRY_MS = 1_000

type Scripted = RedisClient & { conduitGovernBuffer(numKeys: number, ...args: (string | Buffer)[]): Promise<Buffer> }

interface Waiting {
  claims: ScopeClaim[]
  shadow: boolean
  loads: Map<string, number> | null
  resolve(outcome: Outcome): void
  reject(error: unknown): void
  sent: boolean
  cancelled: boolean
}

/** What one scope's state owes, merged over many finished requests. */
export interface Delta {
  scope: Scope
  holds: number
  reserved: number
  spent: number
  period: string | null
  adjustments: Map<string, RateAdjustment>
  /** Overrides this instance's in-flight count and reservation (after an admission whose outcome was lost). */
  absolute: { n: number; r: number } | null
}

/**
 * The scopes of one Redis Cluster slot (all of them on a single Redis). At most one call carrying admissions and
 * one carrying settlements are in flight (often the same call): what arrives meanwhile waits for the next.
 */
interface Lane {
  waiting: Waiting[]
  /** Settlements sent at least once under `seq` and not known to be applied: sent again exactly so. */
  batch: { seq: number; deltas: Delta[] } | null
  /** Settlements since, by scope and period. */
  next: Map<string, Delta>
  admitting: boolean
  settling: boolean
  timer: Timer | null
  /** When the timer fires (performance.now()). */
  due: number
  /** A settlement in `next` ends a request in flight: its slot or its money is waited for elsewhere. */
  urgent: boolean
}

/**
 * Limits and budgets in Redis, shared by every instance. Each call of the GOVERN script, per Redis Cluster slot,
 * carries the settlements this instance owes and the admissions waiting. While a call with admissions is in
 * flight, the admissions that arrive wait for the next one, so under load a call serves many requests (and
 * settles those that ended meanwhile). Settlements alone leave within FLUSH_MS, at once when they free a slot
 * or money: another instance may be waiting for it.
 *
 * This instance's requests in flight are counted per instance in each scope (a lease renewed every third of
 * `leaseMs` while they run): a crashed instance's slots and reservations come back when its lease expires. A
 * settlement batch whose reply was lost is sent again under the same number and applied once; an admission whose
 * reply was lost marks its scopes, and the next call sets this instance's count there to what it knows.
 */
export class SharedState {
  private readonly redis: Scripted
  private readonly cluster: boolean
  private readonly lanes = new Map<string, Lane>()
  /** What this instance's admitted requests hold, by scope key. */
  private readonly leases = new Map<string, { scope: Scope; n: number; r: number }>()
  /** Scopes where an admission's outcome is unknown: their lease is set absolutely by the next call. */
  private readonly uncertain = new Map<string, Scope>()
  private readonly instance = crypto.randomUUID().slice(0, 8)
  private seq = 0
  private renewer: Timer | undefined
  private closed = false
  private leaseMs = 0

  constructor(redis: RedisClient, leaseMs: number) {
    redis.defineCommand('conduitGovern', { lua: GOVERN })
    this.redis = redis as Scripted
    this.cluster = redis.isCluster
    this.lease(leaseMs)
  }

  /** How long this instance's holds outlive it if it crashes; renewed every third of that while they run. */
  lease(ms: number) {
    this.leaseMs = ms
    clearInterval(this.renewer)
    this.renewer = setInterval(() => this.renew(), ms / 3)
    this.renewer.unref()
  }

  /** Claims grouped by Redis Cluster slot: one script per group. On a single Redis, one group. */
  groups(claims: ScopeClaim[]): ScopeClaim[][] {
    if (!this.cluster) return [claims]
    const byTag = new Map<string, ScopeClaim[]>()
    for (const claim of claims) byTag.set(claim.scope.tag, [...(byTag.get(claim.scope.tag) ?? []), claim])
    return [...byTag.values()]
  }

  /**
   * Admits the claims of one group (see `groups`). `cancel` withdraws a request the caller no longer waits for:
   * true if it was never sent (then Redis took nothing), false if its outcome is still to come.
   */
  admit(claims: ScopeClaim[], shadow: boolean, loads: Map<string, number> | null): { outcome: Promise<Outcome>; cancel(): boolean } {
    const lane = this.lane(claims[0]!.scope.tag)
    let waiting!: Waiting
    const outcome = new Promise<Outcome>((resolve, reject) => {
      waiting = { claims, shadow, loads, resolve, reject, sent: false, cancelled: false }
    })
    lane.waiting.push(waiting)
    this.pump(lane)
    return {
      outcome,
      cancel: () => {
        waiting.cancelled = true
        return !waiting.sent
      },
    }
  }

  /** Queued; it leaves with the next call (at most FLUSH_MS from now). */
  settle(settlement: Settlement) {
    const { scope } = settlement
    const lease = this.leases.get(scope.key)
    if (lease && (settlement.holds > 0 || settlement.reserved > 0)) {
      lease.n -= settlement.holds
      lease.r -= settlement.reserved
      if (lease.n <= 0 && lease.r <= 0) this.leases.delete(scope.key)
    }
    const delta = this.delta(scope, settlement.period)
    delta.holds += settlement.holds
    delta.reserved += settlement.reserved
    delta.spent += settlement.spent
    for (const a of settlement.adjustments) {
      const known = delta.adjustments.get(a.rule)
      delta.adjustments.set(a.rule, { ...a, units: a.units + (known?.units ?? 0) })
    }
    const lane = this.lane(scope.tag)
    if (settlement.holds > 0) {
      lane.urgent = true
      // Its client has the answer already and may ask another instance next: the slot and the money leave now
      // (unless settlements are in flight: then with the batch after them, at once).
      if (!lane.settling) return this.pump(lane)
    }
    this.schedule(lane, lane.urgent ? 0 : FLUSH_MS)
  }

  /** The connection is back: what is owed (money spent while it was away, say) leaves now, not at the next retry. */
  resume() {
    for (const lane of this.lanes.values()) if (lane.batch || lane.next.size > 0) this.schedule(lane, 0)
  }

  /** Sends what is owed and waits for it (bounded): at shutdown. */
  async close(timeoutMs = 1_000) {
    this.closed = true
    clearInterval(this.renewer)
    const deadline = performance.now() + timeoutMs
    for (const lane of this.lanes.values()) this.pump(lane)
    while (performance.now() < deadline && [...this.lanes.values()].some((l) => l.admitting || l.settling || l.batch || l.next.size > 0)) {
      for (const lane of this.lanes.values()) this.pump(lane)
      await Bun.sleep(10)
    }
    for (const lane of this.lanes.values()) if (lane.timer) clearTimeout(lane.timer)
  }

  private lane(tag: string): Lane {
    const group = this.cluster ? tag : ''
    let lane = this.lanes.get(group)
    if (!lane) this.lanes.set(group, (lane = { waiting: [], batch: null, next: new Map(), admitting: false, settling: false, timer: null, due: 0, urgent: false }))
    return lane
  }

  private delta(scope: Scope, period: string | null): Delta {
    const next = this.lane(scope.tag).next
    const id = `${scope.key}\u0000${period ?? ''}`
    let delta = next.get(id)
    if (!delta) next.set(id, (delta = { scope, holds: 0, reserved: 0, spent: 0, period, adjustments: new Map(), absolute: null }))
    return delta
  }

  /** Settlements sent in `ms` at the latest; while they are in flight, `after` takes over when they return. */
  private schedule(lane: Lane, ms: number) {
    if (lane.settling) return
    const due = performance.now() + ms
    if (lane.timer && lane.due <= due) return
    clearTimeout(lane.timer ?? undefined)
    lane.due = due
    lane.timer = setTimeout(() => {
      lane.timer = null
      this.pump(lane)
    }, ms)
  }

  /** Leases of requests still running, renewed in one call per lane; empty deltas carry them. */
  private renew() {
    for (const { scope } of this.leases.values()) this.delta(scope, null)
    for (const lane of this.lanes.values()) this.schedule(lane, 0)
  }

  /**
   * Sends what the lane holds: the waiting admissions unless a call with admissions is in flight (they then share
   * the next one: batching under load), and the settlements unless a call with settlements is in flight. So an
   * admission never waits behind settlements alone, and settlement batches stay in order.
   */
  private pump(lane: Lane) {
    if (lane.timer) {
      clearTimeout(lane.timer)
      lane.timer = null
    }
    let waiting: Waiting[] = []
    if (!lane.admitting) {
      waiting = lane.waiting.filter((w) => !w.cancelled)
      lane.waiting = []
    }
    if (!lane.settling && !lane.batch) {
      // An absolute count only when no admission of ours is in flight that Redis would apply before it.
      const corrections = lane.admitting ? [] : this.corrections(lane)
      if (lane.next.size > 0 || corrections.length > 0) {
        lane.batch = { seq: ++this.seq, deltas: [...lane.next.values(), ...corrections] }
        lane.next.clear()
        lane.urgent = false
      }
    }
    const batch = lane.settling ? null : lane.batch
    if (waiting.length === 0 && !batch) return
    for (const w of waiting) w.sent = true
    const { keys, argv } = encodeCall(this.instance, this.leaseMs, batch, waiting)
    const admitting = waiting.length > 0
    if (admitting) lane.admitting = true
    if (batch) lane.settling = true
    const done = () => {
      if (admitting) lane.admitting = false
      if (batch) lane.settling = false
    }
    this.redis.conduitGovernBuffer(keys.length, ...keys, ...argv).then(
      (reply) => {
        done()
        if (batch && lane.batch === batch) lane.batch = null
        decodeReply(waiting, reply).forEach((outcome, i) => {
          this.hold(waiting[i]!.claims, outcome.status)
          waiting[i]!.resolve(outcome)
        })
        this.after(lane, FLUSH_MS)
      },
      (error) => {
        done()
        for (const w of waiting) {
          for (const c of w.claims) this.uncertain.set(c.scope.key, c.scope)
          w.reject(error)
        }
        this.after(lane, RETRY_MS)
      },
    )
  }

  /** This lane's scopes where an admission's outcome was lost: their lease set to what this instance knows. */
  private corrections(lane: Lane): Delta[] {
    const out: Delta[] = []
    for (const [key, scope] of this.uncertain) {
      if (this.lane(scope.tag) !== lane) continue
      const lease = this.leases.get(key)
      out.push({ scope, holds: 0, reserved: 0, spent: 0, period: null, adjustments: new Map(), absolute: { n: lease?.n ?? 0, r: lease?.r ?? 0 } })
      this.uncertain.delete(key)
    }
    return out
  }

  private after(lane: Lane, settleInMs: number) {
    if (lane.waiting.length > 0 && !lane.admitting) this.pump(lane)
    if (!lane.settling && (lane.batch || lane.next.size > 0)) this.schedule(lane, this.closed || (lane.urgent && !lane.batch) ? 0 : settleInMs)
  }

  private hold(claims: ScopeClaim[], status: Status) {
    if (status <= 0) return
    for (const claim of claims) {
      const took = taken(claim, status)
      if (!took.lease) continue
      const lease = this.leases.get(claim.scope.key) ?? { scope: claim.scope, n: 0, r: 0 }
      lease.n++
      lease.r += took.reserved
      this.leases.set(claim.scope.key, lease)
    }
  }
}

/** The KEYS and the ARGV of a GOVERN call: the arguments (layout in script.ts) and the struct format that packs them. */
export function encodeCall(
  instance: string,
  leaseMs: number,
  batch: { seq: number; deltas: Delta[] } | null,
  admissions: { claims: ScopeClaim[]; shadow: boolean; loads: Map<string, number> | null }[],
): { keys: string[]; argv: [format: Buffer, packed: Buffer] } {
  const keys = new Map<string, number>()
  const index = (scope: Scope) => keys.get(scope.key) ?? keys.set(scope.key, keys.size + 1).get(scope.key)!
  const args: (string | number)[] = [instance, leaseMs, batch?.seq ?? 0, batch?.deltas.length ?? 0]
  for (const d of batch?.deltas ?? []) {
    args.push(index(d.scope), d.holds, d.reserved, d.period ?? '', d.spent, d.absolute?.n ?? -1, d.absolute?.r ?? 0, d.adjustments.size)
    for (const a of d.adjustments.values()) args.push(a.rule, a.limit, a.periodMs, a.units)
  }
  args.push(admissions.length)
  for (const w of admissions) {
    args.push(w.shadow ? 1 : 0, w.claims.length)
    for (const c of w.claims) {
      args.push(index(c.scope), c.rates.length)
      for (const r of c.rates) args.push(r.rule, r.limit, r.periodMs, r.cost)
      args.push(c.slots ?? 0, c.budget ? c.budget.limitMicros : -1)
      if (c.budget) args.push(c.budget.cost, c.budget.period, c.budget.ttlMs, w.loads?.get(c.scope.key) ?? -1)
    }
  }
  return { keys: [...keys.keys()], argv: pack(args) }
}

/**
 * The arguments and their struct format for Lua: `<` (little-endian), then `d` for a double and `s` for a
 * zero-terminated string, one an argument. (The strings are rule names, budget periods and this instance's id: never
 * a NUL among them.)
 */
function pack(args: (string | number)[]): [format: Buffer, packed: Buffer] {
  let size = 0
  for (const a of args) size += typeof a === 'number' ? 8 : Buffer.byteLength(a) + 1
  const format = Buffer.allocUnsafe(args.length + 1)
  const packed = Buffer.allocUnsafe(size)
  format[0] = 0x3c // <
  let at = 0
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (typeof a === 'number') {
      format[i + 1] = 0x64 // d
      at = packed.writeDoubleLE(a, at)
    } else {
      format[i + 1] = 0x73 // s
      at += packed.write(a, at)
      packed[at++] = 0
    }
  }
  return [format, packed]
}

/** Each admission's outcome from a GOVERN reply (its numbers packed as little-endian doubles). */
export function decodeReply(admissions: { claims: ScopeClaim[] }[], packed: Buffer): Outcome[] {
  const reply = new Array<number>(packed.length >> 3)
  for (let i = 0; i < reply.length; i++) reply[i] = packed.readDoubleLE(i << 3)
  let at = 0
  return admissions.map(({ claims }) => {
    const { end, ...outcome } = decode(claims, reply, at)
    at = end
    return outcome
  })
}

function decode(claims: ScopeClaim[], reply: number[], at: number): Outcome & { end: number } {
  const status = reply[at++] as Status
  const scopes = claims.map((c): ScopeOutcome => {
    const rates = c.rates.map(() => {
      const d = { allowed: reply[at] === 1, remaining: reply[at + 1]!, resetMs: reply[at + 2]!, retryAfterMs: reply[at + 3]! }
      at += 4
      return d
    })
    const slotTaken = c.slots === null ? null : reply[at++] === 1
    let budget: ScopeOutcome['budget'] = null
    if (c.budget) {
      const state = reply[at]!
      budget = { loaded: state !== -1, ok: state === 1, left: reply[at + 1]!, held: reply[at + 2]! }
      at += 3
    }
    return { rates, slotTaken, budget }
  })
  return { status, scopes, end: at }
}
