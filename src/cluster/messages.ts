import type { StoreChange } from '../plugin-sdk/types.ts'
import type { MetricsSnapshot } from '../services/metrics.ts'
import type { ScopeClaim, Settlement } from '../plugins/admission/claims.ts'

/** One request's admission, asked of the primary (its LocalState's arguments). */
export interface GovernAdmission {
  claims: ScopeClaim[]
  shadow: boolean
  loads: Map<string, number> | null
}

/**
 * The IPC protocol between the primary and its workers. Requests carry an `id` the primary answers with a
 * `reply`; fan-outs to every worker carry a `ref` the workers echo back.
 */
export type WorkerToPrimary =
  | { type: 'listening'; port: number; plugins: number; generatedMasterKey: string | null; generatedKeys: { name: string; key: string }[] }
  | { type: 'publish-change'; id: number; change: StoreChange }
  | { type: 'gather-metrics'; id: number }
  | { type: 'change-applied'; ref: string }
  | { type: 'metrics-snapshot'; ref: string; snapshot: MetricsSnapshot }
  // The limits and budgets every worker shares, kept by the primary when there is no Redis (see GovernanceLine).
  | { type: 'govern'; id: number; settlements: Settlement[]; admissions: GovernAdmission[] }
  // A wrong admin key from a client: the other workers count it too.
  | { type: 'admin-failure'; client: string }

export type PrimaryToWorker =
  | { type: 'reply'; id: number; value: unknown }
  | { type: 'apply-change'; ref: string; change: StoreChange }
  | { type: 'collect-metrics'; ref: string }
  | { type: 'admin-failure'; client: string }

/** How long the primary waits for every worker to answer a fan-out before answering anyway. */
export const FAN_OUT_TIMEOUT_MS = 1_000
