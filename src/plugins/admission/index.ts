import { badRequest, connectionLike, endUserOf, within, type FinishedRequest, type Logger, type PluginApi, type RedisClient, type RequestContext, type StoreView } from '../../plugin-sdk/index.ts'
import { taken, type BudgetClaim, type Outcome, type Scope, type ScopeClaim, type Settlement, type Status } from './claims.ts'
import { MAX_USER_LENGTH } from '../../store/ledger.ts'
import { LocalState } from './local.ts'
import { SharedState } from './shared.ts'
import { primaryGovernance } from '../../cluster/worker-channel.ts'

export type { BudgetClaim, RateClaim, RuleName, Scope, ScopeClaim, ScopeOutcome } from './claims.ts'

/** How long Redis is bypassed after it failed; the first request after that tries it again. */
const RETRY_SHARED_MS = 1_000
/** A crashed instance's slots and reservations come back after this, unless a part says otherwise. */
export const LEASE_TTL_MS = 30_000
/** Commands Redis never answers are dropped by ioredis after this; each request gave up long before. */
const BACKSTOP_TIMEOUT_MS = 5_000
/**
 * A request refused only by what requests in flight hold is asked again once after this: another process's
 * settlement may be on its way (its client already has its answer; see SharedState's urgent settlements).
 */
const SETTLING_MS = 10

/** Why a part fell back to this instance: Redis errored, did not answer in time, or failed within the last second. */
export type FailOpenReason = 'error' | 'timeout' | 'bypass'

interface Part {
  /** When Redis cannot be asked: refuse the request (503) instead of deciding on this instance. */
  failClosed: boolean
  /** How long Redis may take to answer, the event loop's own delays not counted (see `within`). */
  timeoutMs: number
  /**
   * What this part asks of a request's scopes; null: nothing; an empty list: nothing, and do not ask again for
   * this request. May throw a GatewayError (a refusal before anything is asked).
   */
  claim(ctx: RequestContext): ScopeClaim[] | null
  failedOpen(reason: FailOpenReason): void
}

/** The rate limits' part: GCRA rules and slots. */
export interface LimitsPart extends Part {
  /** Rules that refuse take nothing and refuse nothing (the plugin counts them). */
  shadow: boolean
  /** Instances sharing the limits: while Redis is away each keeps ⌈limit / instances⌉ on its own. */
  instances: number
  leaseMs: number
}

/** The budgets' part. */
export interface BudgetPart extends Part {
  /** What a finished request is charged against a reservation of `reserved` micro-dollars. */
  charge(f: FinishedRequest, reserved: number): number
}

export interface Admission {
  /** As admitted: while Redis is away, the limits are this instance's share. */
  claims: ScopeClaim[]
  outcome: Outcome
  /** Redis (`shared`), this process (`local`: no Redis), or this process because Redis failed (`degraded`). */
  via: 'shared' | 'local' | 'degraded'
  /** Parts that fail closed and could not ask Redis: the request is refused with 503 by that part. */
  unavailable: { limits: boolean; budget: boolean }
}

interface Held {
  claims: ScopeClaim[]
  status: Status
  settle(s: Settlement): void
}

/** The state several workers share without Redis, kept by their primary (see WorkerChannel.governance). */
interface PrimaryState {
  admit(claims: ScopeClaim[], shadow: boolean, loads: Map<string, number> | null): Promise<Outcome>
  settle(s: Settlement): void
}

/** A governed request's admission and what it holds, kept in `ctx.shared[STATE]`. */
interface Governed {
  /** A promise until decided, then the admission itself. */
  admission: Admission | Promise<Admission>
  held: Held | null
}
const STATE = 'conduit.governance'

const NOTHING: Admission = { claims: [], outcome: { status: 1, scopes: [] }, via: 'local', unavailable: { limits: false, budget: false } }
const hasLimits = (claims: ScopeClaim[]) => claims.some((c) => c.rates.length > 0 || c.slots !== null)
const hasBudget = (claims: ScopeClaim[]) => claims.some((c) => c.budget !== null)

/**
 * Admission control shared by the rate-limit and budget plugins: every rule of every scope (key, end user,
 * model), the concurrency slot and the budget hold of a request are decided together, in one Redis call per
 * Cluster slot, and nothing is taken unless everything passes. Each plugin contributes its claims and presents
 * its own verdict (headers, refusals); whichever of their hooks runs first for a request runs the admission for
 * both, and the other reuses it. Requests that nobody governs cost each plugin a few property checks.
 */
export class Governance {
  private limits: LimitsPart | null = null
  private budget: BudgetPart | null = null
  /** In-process state: the only one without Redis (and one worker), the fallback with it. */
  private readonly local = new LocalState()
  /** With Redis: its own connection, opened with the gateway so it is ready for the first request. */
  private readonly shared: SharedState | null = null
  private readonly connection: RedisClient | null = null
  private sharedDownUntil = 0
  /** Ledger sums in progress, shared by the concurrent first requests of a budget. */
  private readonly loading = new Map<string, Promise<number>>()
  private readonly sweeper: Timer
  private members = 0

  constructor(
    private readonly store: StoreView,
    private readonly log: Logger,
    redis: RedisClient | undefined,
    /** Several workers without Redis: the one state they share, in their primary. */
    private readonly primary: PrimaryState | null = null,
  ) {
    if (redis) {
      // No command timeout of ioredis's own (ours does not count the event loop's delays), and no
      // auto-pipelining (SharedState batches, and one slow batch must not hold the next one back).
      this.connection = connectionLike(redis, { commandTimeout: BACKSTOP_TIMEOUT_MS, enableAutoPipelining: false })
      this.connection.on('error', () => {}) // outages are reported once by the gateway's connection
      const shared = (this.shared = new SharedState(this.connection, LEASE_TTL_MS))
      this.connection.on('ready', () => shared.resume())
    }
    this.sweeper = setInterval(() => this.local.sweep(), 60_000)
    this.sweeper.unref()
  }

  join(part: { limits: LimitsPart } | { budget: BudgetPart }) {
    if ('limits' in part) {
      this.limits = part.limits
      this.shared?.lease(part.limits.leaseMs)
    } else this.budget = part.budget
    this.members++
  }

  /**
   * The request's admission, run once for both plugins; null when neither governs it. Decided at once (no
   * promise) in-process, and for the plugin that asks second. A part that decided already, asking nothing (a
   * shadow limit the request could never fit), claims an empty list.
   */
  admission(ctx: RequestContext): Admission | Promise<Admission> | null {
    const known = ctx.shared[STATE] as Governed | undefined
    if (known) return known.admission
    const claims = this.claims(ctx)
    if (!claims) return null
    const governed: Governed = { admission: NOTHING, held: null }
    ctx.shared[STATE] = governed
    if (claims.length === 0) return NOTHING
    const admission = (governed.admission = this.admit(ctx, claims))
    if (admission instanceof Promise) void admission.then((decided) => (governed.admission = decided), () => {})
    return admission
  }

  /** The request ended: settle what it holds (tokens to its usage, its budget hold to its cost). Once per request. */
  finish(f: FinishedRequest) {
    const governed = f.ctx.shared[STATE] as Governed | undefined
    const held = governed?.held
    if (!held) return
    governed.held = null
    for (const claim of held.claims) {
      const took = taken(claim, held.status)
      const adjustments = []
      if (took.rates) {
        for (const rate of claim.rates) {
          if (rate.unit === 'requests') continue
          // What the ledger bills: nothing for a request without usage (it never reached a provider, or the provider
          // failed it); a usage that does not count this unit keeps the reservation.
          const reported = rate.unit === 'tokens' ? f.usage?.total_tokens : f.usage?.images
          const used = f.target && f.usage ? (reported ?? rate.cost) : 0
          if (used !== rate.cost) adjustments.push({ rule: rate.rule, limit: rate.limit, periodMs: rate.periodMs, units: used - rate.cost })
        }
      }
      // A budget hold comes with a lease: a scope without one held no money.
      if (!took.lease && adjustments.length === 0) continue
      const spent = claim.budget && took.lease && this.budget ? this.budget.charge(f, took.reserved) : 0
      held.settle({ scope: claim.scope, holds: took.lease ? 1 : 0, reserved: took.reserved, spent, period: claim.budget?.period ?? null, adjustments })
    }
  }

  /** Each plugin leaves once; the last one sends what is owed and closes the connection. */
  async leave() {
    if (--this.members > 0) return
    clearInterval(this.sweeper)
    await this.shared?.close()
    this.connection?.disconnect()
  }

  /** Both parts' claims, merged per scope. */
  private claims(ctx: RequestContext): ScopeClaim[] | null {
    const limits = this.limits?.claim(ctx) ?? null
    const budget = this.budget?.claim(ctx) ?? null
    if (!limits || !budget) return limits ?? budget
    // Both lists are this request's own: merged in place.
    const merged = limits
    for (const b of budget) {
      const same = merged.find((c) => c.scope.key === b.scope.key)
      if (same) same.budget = b.budget
      else merged.push(b)
    }
    return merged
  }

  private admit(ctx: RequestContext, claims: ScopeClaim[]): Admission | Promise<Admission> {
    if (this.shared) return this.admitWithRedis(ctx, this.shared, claims)
    if (this.primary) return this.admitInPrimary(ctx, this.primary, claims)
    const unavailable = { limits: false, budget: false }
    const decided = (outcome: Outcome) => this.hold(ctx, { claims, outcome, via: 'local', unavailable }, this.local)
    const outcome = this.admitLocally(claims)
    return outcome instanceof Promise ? outcome.then(decided) : decided(outcome)
  }

  /**
   * As in one process, the primary deciding for every worker; a budget it has not loaded is summed here first. A
   * primary that does not answer (gone: this worker is stopping too) fails the request as its plugins fail.
   */
  private async admitInPrimary(ctx: RequestContext, primary: PrimaryState, claims: ScopeClaim[]): Promise<Admission> {
    const shadow = this.limits?.shadow ?? false
    const ask = async () => {
      const outcome = await primary.admit(claims, shadow, null)
      return outcome.status === -1 ? primary.admit(claims, shadow, await this.loadBudgets(claims, outcome)) : outcome
    }
    let outcome = await ask()
    if (heldBack(claims, outcome)) outcome = await Bun.sleep(SETTLING_MS).then(ask)
    return this.hold(ctx, { claims, outcome, via: 'local', unavailable: { limits: false, budget: false } }, primary)
  }

  private async admitWithRedis(ctx: RequestContext, shared: SharedState, claims: ScopeClaim[]): Promise<Admission> {
    const shadow = this.limits?.shadow ?? false
    const unavailable = { limits: false, budget: false }
    const limited = hasLimits(claims)
    const budgeted = hasBudget(claims)
    let reason: FailOpenReason = 'bypass'
    if (performance.now() >= this.sharedDownUntil) {
      const timeoutMs = Math.max(limited ? this.limits!.timeoutMs : 0, budgeted ? this.budget!.timeoutMs : 0)
      try {
        let outcome = await this.admitShared(shared, claims, shadow, timeoutMs)
        if (outcome && heldBack(claims, outcome)) outcome = (await Bun.sleep(SETTLING_MS).then(() => this.admitShared(shared, claims, shadow, timeoutMs))) ?? outcome
        if (outcome) return this.hold(ctx, { claims, outcome, via: 'shared', unavailable }, shared)
        reason = 'timeout'
        this.log.warn({ timeoutMs }, 'governance store did not answer in time; deciding on this instance')
      } catch (error) {
        reason = 'error'
        this.log.warn({ err: error }, 'governance store unavailable; deciding on this instance')
      }
      this.sharedDownUntil = performance.now() + RETRY_SHARED_MS
    }
    unavailable.limits = limited && this.limits!.failClosed
    unavailable.budget = budgeted && this.budget!.failClosed
    if (unavailable.limits || unavailable.budget) {
      const outcome: Outcome = { status: 0, scopes: claims.map(() => ({ rates: [], slotTaken: null, budget: null })) }
      return { claims, outcome, via: 'degraded', unavailable }
    }
    if (limited) this.limits!.failedOpen(reason)
    if (budgeted) this.budget!.failedOpen(reason)
    const own = claims.map((c) => this.ownShare(c))
    const outcome = await this.admitLocally(own)
    return this.hold(ctx, { claims: own, outcome, via: 'degraded', unavailable }, this.owingShared(shared, claims, own, outcome.status))
  }

  /**
   * A request decided on this instance while Redis was away is owed to Redis too: the units its limits took, and
   * later their settlement and the money it spent, go into the shared state once Redis answers again (settlements
   * are sent until they are applied). Otherwise the instances that stayed connected, and everyone once it is back,
   * go on admitting against a state that never saw them: a budget spent twice over, a day's `rpd` given again. A
   * budget not in Redis then is summed from the ledger when next used, and takes none of the money. In Redis the
   * units count against the whole limit, not this instance's share of it.
   */
  private owingShared(shared: SharedState, claims: ScopeClaim[], own: ScopeClaim[], status: Status): { settle(s: Settlement): void } {
    const limits = new Map(claims.flatMap((c) => c.rates.map((r) => [`${c.scope.key}\u0000${r.rule}`, r.limit] as const)))
    const whole = (scope: Scope, adjustments: Settlement['adjustments']) => adjustments.map((a) => ({ ...a, limit: limits.get(`${scope.key}\u0000${a.rule}`) ?? a.limit }))
    for (const claim of own) {
      if (claim.rates.length === 0 || !taken(claim, status).rates) continue
      const took = claim.rates.map((r) => ({ rule: r.rule, limit: r.limit, periodMs: r.periodMs, units: r.cost }))
      shared.settle({ scope: claim.scope, holds: 0, reserved: 0, spent: 0, period: null, adjustments: whole(claim.scope, took) })
    }
    return {
      settle: (s) => {
        this.local.settle(s)
        if (s.spent > 0 || s.adjustments.length > 0) {
          shared.settle({ scope: s.scope, holds: 0, reserved: 0, spent: s.spent, period: s.period, adjustments: whole(s.scope, s.adjustments) })
        }
      },
    }
  }

  /** This process's share of each limit while Redis is away; a request that fits the limit takes at most the share. */
  private ownShare(claim: ScopeClaim): ScopeClaim {
    const instances = this.limits?.instances ?? 1
    if (instances === 1) return claim
    const share = (limit: number) => Math.ceil(limit / instances)
    return {
      ...claim,
      rates: claim.rates.map((r) => ({ ...r, limit: share(r.limit), cost: Math.min(r.cost, share(r.limit)) })),
      slots: claim.slots === null ? null : share(claim.slots),
    }
  }

  private hold(ctx: RequestContext, admission: Admission, state: { settle(s: Settlement): void }): Admission {
    if (admission.outcome.status > 0) (ctx.shared[STATE] as Governed).held = { claims: admission.claims, status: admission.outcome.status, settle: (s) => state.settle(s) }
    return admission
  }

  /** At once, unless a budget must first be summed from the ledger. */
  private admitLocally(claims: ScopeClaim[]): Outcome | Promise<Outcome> {
    const shadow = this.limits?.shadow ?? false
    const outcome = this.local.admit(claims, shadow)
    if (outcome.status !== -1) return outcome
    return this.loadBudgets(claims, outcome).then((loads) => this.local.admit(claims, shadow, loads))
  }

  /**
   * One call per Cluster slot the claims span (one on a single Redis), in parallel; null if Redis did not answer
   * within `timeoutMs`. A budget whose state is missing (first use, or Redis restarted) is summed from the ledger
   * and asked again. When the slots disagree (one refuses), what the others took is given back.
   */
  private async admitShared(shared: SharedState, claims: ScopeClaim[], shadow: boolean, timeoutMs: number): Promise<Outcome | null> {
    const groups = shared.groups(claims)
    let loads: Map<string, number> | null = null
    for (;;) {
      const calls = groups.map((group) => shared.admit(group, shadow, loads))
      // On a single Redis one call: its outcome itself, not a Promise.all of one (a promise more a request).
      const answered = await within<Outcome | Outcome[]>(calls.length === 1 ? calls[0]!.outcome : Promise.all(calls.map((c) => c.outcome)), timeoutMs)
      const answers = answered && (Array.isArray(answered) ? answered : [answered])
      if (!answers) {
        // Given up on: whatever Redis takes for a call already sent is given back when its answer comes.
        calls.forEach((call, i) => {
          if (!call.cancel()) call.outcome.then((late) => this.giveBack(groups[i]!, late.status, 0, shared), () => {})
        })
        return null
      }
      const status = combined(answers.map((a) => a.status))
      if (status === -1 && loads === null) {
        answers.forEach((a, i) => this.giveBack(groups[i]!, a.status, 0, shared))
        loads = await this.loadBudgets(claims, inClaimOrder(claims, groups, answers, status))
        continue
      }
      if (status === -1) throw new Error('a budget was still not loaded after loading it')
      answers.forEach((a, i) => this.giveBack(groups[i]!, a.status, status, shared))
      return inClaimOrder(claims, groups, answers, status)
    }
  }

  /** Gives back what an admission took as `had` beyond what it keeps as `keep`. */
  private giveBack(claims: ScopeClaim[], had: Status, keep: Status, state: { settle(s: Settlement): void }) {
    if (had <= 0 || had === keep) return
    for (const claim of claims) {
      const a = taken(claim, had)
      const b = taken(claim, keep)
      const holds = a.lease && !b.lease ? 1 : 0
      const adjustments = a.rates && !b.rates ? claim.rates.map((r) => ({ rule: r.rule, limit: r.limit, periodMs: r.periodMs, units: -r.cost })) : []
      if (holds > 0 || a.reserved > b.reserved || adjustments.length > 0) {
        state.settle({ scope: claim.scope, holds, reserved: a.reserved - b.reserved, spent: 0, period: null, adjustments })
      }
    }
  }

  /** The ledger's spend for each budget reported not loaded, by scope key. */
  private async loadBudgets(claims: ScopeClaim[], outcome: Outcome): Promise<Map<string, number>> {
    const loads = new Map<string, number>()
    await Promise.all(
      claims.map(async (claim, i) => {
        if (claim.budget && outcome.scopes[i]!.budget?.loaded === false) loads.set(claim.scope.key, await this.ledgerSpend(claim.scope, claim.budget))
      }),
    )
    return loads
  }

  private ledgerSpend(scope: Scope, budget: BudgetClaim): Promise<number> {
    const id = `${scope.key}\u0000${budget.period}`
    let sum = this.loading.get(id)
    if (!sum) {
      sum = this.store.spentMicros(scope.keyId, budget.since, scope.user).finally(() => this.loading.delete(id))
      this.loading.set(id, sum)
    }
    return sum
  }
}

/** The outcomes of an admission's calls (one per group of claims), as one outcome in the claims' order. */
function inClaimOrder(claims: ScopeClaim[], groups: ScopeClaim[][], answers: Outcome[], status: Status): Outcome {
  if (groups.length === 1) return { status, scopes: answers[0]!.scopes }
  const scopes = new Map(groups.flatMap((group, i) => group.map((claim, j) => [claim, answers[i]!.scopes[j]!] as const)))
  return { status, scopes: claims.map((c) => scopes.get(c)!) }
}

/**
 * Refused by nothing but what requests in flight hold (a `max_parallel` slot, money reserved), none of it spent or
 * counted: what another process is settling right now could let it in.
 */
function heldBack(claims: ScopeClaim[], outcome: Outcome): boolean {
  if (outcome.status !== 0) return false
  let held = false
  for (let i = 0; i < claims.length; i++) {
    const { rates, slotTaken, budget } = outcome.scopes[i]!
    if (rates.some((r) => !r.allowed)) return false
    if (slotTaken === false) held = true
    if (budget && !budget.ok) {
      if (budget.held === 0 || claims[i]!.budget!.cost > budget.left + budget.held) return false
      held = true
    }
  }
  return held
}

/** Over the calls of one admission: refused if any refused, not loaded if any was not, limits-refused if any. */
function combined(statuses: Status[]): Status {
  if (statuses.includes(0)) return 0
  if (statuses.includes(-1)) return -1
  if (statuses.includes(2)) return 2
  return 1
}

/**
 * The end user a request names (OpenAI's `user` field), for a key with per-user limits; null when it names none,
 * and then the request counts against the key alone. A value longer than the ledger records is refused: it would
 * name state that the ledger could not rebuild.
 */
export function endUser(ctx: RequestContext): string | null {
  const user = endUserOf(ctx.body)
  if (!user) return null
  if (user.value.length > MAX_USER_LENGTH) {
    throw badRequest(`'${user.field}' may be at most ${MAX_USER_LENGTH} characters for a key with per-user limits.`, user.field, 'invalid_value')
  }
  return user.value
}

/** A key's own state, and each of its end users': one Redis Cluster slot per key. */
export const keyScope = (keyId: string): Scope => ({ kind: 'key', tag: keyId, key: `conduit:gov:{${keyId}}:k`, label: 'this key', keyId })
export const userScope = (keyId: string, user: string): Scope => ({
  kind: 'user',
  tag: keyId,
  key: `conduit:gov:{${keyId}}:u:${user}`,
  label: `the user '${user}' of this key`,
  keyId,
  user,
})

/** One Governance per gateway: the plugins of one gateway share its store. */
const byGateway = new WeakMap<StoreView, Governance>()

export function governance(api: PluginApi): Governance {
  let gov = byGateway.get(api.store)
  if (!gov) byGateway.set(api.store, (gov = new Governance(api.store, api.log.child({ component: 'governance' }), api.redis, primaryGovernance())))
  return gov
}
