import { taken, type Outcome, type Scope, type ScopeClaim, type Settlement } from './claims.ts'
import { LocalState } from './local.ts'

/**
 * The limits and budgets a primary keeps for its workers when there is no Redis (see WorkerChannel.governance):
 * one LocalState, and what each worker's requests in flight hold in it. A worker that dies never settles them, so
 * its slots and reserved money come back when it exits, as a crashed instance's do in Redis when its lease ends;
 * what its finished requests spent is in the ledger, from which a budget is summed again when next loaded.
 */
export class HostedState {
  private readonly state = new LocalState()
  private readonly held = new Map<number, Map<string, { scope: Scope; n: number; r: number }>>()

  constructor() {
    setInterval(() => this.state.sweep(), 60_000).unref()
  }

  admit(worker: number, claims: ScopeClaim[], shadow: boolean, loads: Map<string, number> | null): Outcome {
    const outcome = this.state.admit(claims, shadow, loads ?? undefined)
    for (const claim of outcome.status > 0 ? claims : []) {
      const took = taken(claim, outcome.status)
      if (!took.lease) continue
      const byScope = this.held.get(worker) ?? this.held.set(worker, new Map()).get(worker)!
      const hold = byScope.get(claim.scope.key) ?? byScope.set(claim.scope.key, { scope: claim.scope, n: 0, r: 0 }).get(claim.scope.key)!
      hold.n++
      hold.r += took.reserved
    }
    return outcome
  }

  settle(worker: number, settlement: Settlement) {
    const byScope = this.held.get(worker)
    const hold = byScope?.get(settlement.scope.key)
    // A settlement that arrives after its worker's exit gave its holds back: only what it spent and used counts.
    this.state.settle(hold ? settlement : { ...settlement, holds: 0, reserved: 0 })
    if (!hold) return
    hold.n -= settlement.holds
    hold.r -= settlement.reserved
    if (hold.n <= 0 && hold.r <= 0) byScope!.delete(settlement.scope.key)
  }

  /** The worker exited: what its requests held is given back. */
  release(worker: number) {
    for (const { scope, n, r } of this.held.get(worker)?.values() ?? []) this.state.settle({ scope, holds: n, reserved: r, spent: 0, period: null, adjustments: [] })
    this.held.delete(worker)
  }
}
