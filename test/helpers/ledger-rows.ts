import type { SpendRow } from '../../src/store/ledger.ts'
import type { RequestRecordRow } from '../../src/store/request-records.ts'

/** A ledger row for store tests: one token each way, one micro-dollar. */
export const spendRow = (request_id: string, created_at = Date.now()): SpendRow => ({
  request_id, key_id: 'k', endpoint: 'chat', model: 'm', provider: 'p', upstream_model: 'm', prompt_tokens: 1, completion_tokens: 1,
  cost_micros: 1, estimated: 0, aborted: 0, status: 200, created_at, end_user: null, unpriced: 0, audio_ms: 0, characters: 0, images: 0,
})

/** The request record of the same request. */
export const recordRow = (request_id: string, created_at = Date.now()): RequestRecordRow => ({
  request_id, created_at, key_id: 'k', endpoint: 'chat', model: 'm', provider: 'p', upstream_model: 'm', status: 200, error_code: null,
  stream: 0, aborted: 0, attempts: 1, latency_ms: 1, ttft_ms: null, prompt_tokens: 1, completion_tokens: 1, cost_micros: 1, estimated: 0,
  end_user: null, client_ip: null, request_body: null,
})
