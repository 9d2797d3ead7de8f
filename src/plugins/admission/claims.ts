import type { Decision } from './gcra.ts'

/** Whose state: a virtual key, one end user of a key (the request's `user`), or a virtual model. */
export interface Scope {
  kind: 'key' | 'user' | 'model'
  /**
   * Redis Cluster hash tag: a key's state and its users' share the key id (one slot, so one script admits them
   * together); a model's state has its own.
   */
  tag: string
  /** Where the state lives: `conduit:gov:{tag}:…` in Redis, the same name in-process. */
  key: string
  /** For messages: "this key", "the user 'alice' of this key", "the model 'x'". */
  label: string
  /** Whose ledger rows rebuild a budget kept here. */
  keyId: string
  user?: string
}

export type RuleName = 'rpm' | 'rpd' | 'tpm' | 'ipm'

/** A GCRA rule: `limit` units per `periodMs`; this request takes `cost` of them. */
export interface RateClaim {
  rule: RuleName
  unit: 'requests' | 'tokens' | 'images'
  limit: number
  periodMs: number
  cost: number
}

/** A spending cap over one period: the request reserves its worst case, settled to what it cost. */
export interface BudgetClaim {
  limitMicros: number
  cost: number
  /** `total`, `d2026-11-25` or `m2026-11` (UTC). */
  period: string
  /** Start of the period, epoch ms: where the ledger is summed from when the state is missing. */
  since: number
  /** How long the shared state outlives its last use: past the period, or a week for `total`. */
  ttlMs: number
}

/** What one request asks of one scope. Every scope of a request is admitted together, or none. */
export interface ScopeClaim {
  scope: Scope
  rates: RateClaim[]
  /** Requests in flight at once (max_parallel), or null. */
  slots: number | null
  budget: BudgetClaim | null
}

export interface ScopeOutcome {
  /** One per rate claim, in order. */
  rates: Decision[]
  /** Null when no slot was asked. */
  slotTaken: boolean | null
  /**
   * `loaded` false: the state holds no spend for this period yet (the ledger must be summed first). `left`: what is
   * neither spent nor held (after this request's hold, when admitted); `held`: the worst cases reserved by requests
   * in flight, before this one's.
   */
  budget: { loaded: boolean; ok: boolean; left: number; held: number } | null
}

/**
 * 1: admitted, everything taken. 2: admitted, but the rate limits (in shadow mode) would have refused: only the
 * budget was taken. 0: refused, nothing taken. −1: a budget's state is not loaded, nothing taken.
 */
export type Status = 1 | 2 | 0 | -1

export interface Outcome {
  status: Status
  /** Aligned with the claims. */
  scopes: ScopeOutcome[]
}

/** What a request holds in one scope once admitted: what settling it gives back. */
export interface Taken {
  rates: boolean
  /** A slot or a budget hold: one request in flight in this scope. */
  lease: boolean
  reserved: number
}

/** What an admission with `status` took in the scope `claim`: the same rule in both backends. */
export function taken(claim: ScopeClaim, status: Status): Taken {
  const budget = status > 0 && claim.budget !== null
  return {
    rates: status === 1 && claim.rates.length > 0,
    lease: budget || (status === 1 && claim.slots !== null),
    reserved: budget ? claim.budget!.cost : 0,
  }
}

export interface RateAdjustment {
  rule: RuleName
  limit: number
  periodMs: number
  /** > 0 takes more, < 0 gives back. */
  units: number
}

/** A correction to one scope's state: a request ended, or an admission is given back. */
export interface Settlement {
  scope: Scope
  /** Requests in flight that end here. */
  holds: number
  /** Micro-dollars reserved that are released. */
  reserved: number
  /** Micro-dollars spent in `period`. */
  spent: number
  period: string | null
  adjustments: RateAdjustment[]
}
