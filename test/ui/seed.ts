import type { FinishedRequest } from '../../src/plugin-sdk/types.ts'
import type { SpendRow } from '../../src/store/ledger.ts'
import type { RequestRecordRow } from '../../src/store/request-records.ts'
import type { TestGateway } from '../helpers/gateway.ts'

/**
 * History for the Overview and the Requests page without waiting a day for it: request records written through
 * the store's own batch insert, and the same requests counted by the gateway's TimeSeries at their own minutes
 * (what the recorder and the series would have written had the traffic been real). Deterministic.
 */
export async function seedHistory(gw: TestGateway, options: { requests: number; spanMs: number; keys: { id: string }[]; models: string[]; ledger?: boolean }) {
  const now = Date.now()
  let seed = 42
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31)
  const rows: RequestRecordRow[] = []
  const series = gw.gateway.timeseries
  for (let i = 0; i < options.requests; i++) {
    const at = now - Math.floor((i / options.requests) * options.spanMs) - 1
    // Busier in the afternoon, with an error burst: the charts have a shape.
    const hour = new Date(at).getUTCHours()
    const failing = hour === 9 ? random() < 0.3 : random() < 0.02
    const status = failing ? (random() < 0.5 ? 429 : 502) : 200
    const latency = 150 + random() * 900 + (hour >= 12 && hour < 18 ? 400 : 0)
    const ttft = status === 200 ? latency * (0.2 + random() * 0.2) : null
    const prompt = Math.floor(50 + random() * 800)
    const completion = status === 200 ? Math.floor(20 + random() * 400) : 0
    const cost = status === 200 ? prompt * 2 + completion * 8 : 0
    const key = options.keys[i % options.keys.length]!.id
    const model = options.models[i % options.models.length]!
    rows.push({
      request_id: `req_seed${i.toString(36).padStart(6, '0')}`,
      created_at: at,
      key_id: key,
      endpoint: 'chat',
      model,
      provider: 'openai-main',
      upstream_model: 'gpt-4o-mini',
      status,
      error_code: status === 429 ? 'rate_limit_exceeded' : status === 502 ? 'upstream_unreachable' : null,
      stream: i % 3 === 0 ? 1 : 0,
      aborted: 0,
      attempts: status === 502 ? 3 : 1,
      latency_ms: Math.round(latency * 100) / 100,
      ttft_ms: ttft === null ? null : Math.round(ttft * 100) / 100,
      prompt_tokens: prompt,
      completion_tokens: completion,
      cost_micros: cost,
      estimated: 0,
      end_user: i % 5 === 0 ? `user-${i % 17}` : null,
      client_ip: '10.0.0.7',
      request_body: null,
    })
    const finished = {
      ctx: { endpoint: 'chat', principal: { keyId: key }, model: { name: model } },
      status,
      durationMs: latency,
      firstByteMs: ttft,
      target: status === 200 ? {} : null,
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
      costMicros: cost,
    } as unknown as FinishedRequest
    series.record(finished, at)
  }
  for (let i = 0; i < rows.length; i += 500) await gw.gateway.store.insertRequestRecords(rows.slice(i, i + 500))
  if (options.ledger) {
    // The spend ledger too (the Usage page reads it): one row per request that reached the provider.
    const spend: SpendRow[] = rows
      .filter((r) => r.status === 200)
      .map((r) => ({
        request_id: r.request_id,
        key_id: r.key_id,
        endpoint: r.endpoint,
        model: r.model,
        provider: r.provider,
        upstream_model: r.upstream_model,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        cost_micros: r.cost_micros,
        estimated: 0,
        aborted: 0,
        status: r.status,
        created_at: r.created_at,
        end_user: r.end_user,
        unpriced: 0,
        audio_ms: 0,
        characters: 0,
      }))
    for (let i = 0; i < spend.length; i += 500) await gw.gateway.store.insertSpend(spend.slice(i, i + 500))
  }
  await series.flush(now)
  return rows.length
}
