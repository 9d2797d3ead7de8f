import type { StoreChange } from '../plugin-sdk/types.ts'
import type { MetricsSnapshot } from '../services/metrics.ts'

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

export type PrimaryToWorker =
  | { type: 'reply'; id: number; value: unknown }
  | { type: 'apply-change'; ref: string; change: StoreChange }
  | { type: 'collect-metrics'; ref: string }

/** How long the primary waits for every worker to answer a fan-out before answering anyway. */
export const FAN_OUT_TIMEOUT_MS = 1_000
