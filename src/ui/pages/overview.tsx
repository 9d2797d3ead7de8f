import { useMemo, useState } from 'preact/hooks'
import { admin, query } from '../api.ts'
import { Chart, ErrorBox, PageHeader, Select, count, ms, pct, usd, useResource } from '../components.tsx'

const RANGES = {
  hour: { label: 'Last hour', seconds: 3600, step: 60 },
  day: { label: 'Last day', seconds: 86_400, step: 600 },
} as const

export interface Timeseries {
  step_seconds: number
  totals: {
    requests: number
    errors: number
    error_rate: number
    prompt_tokens: number
    completion_tokens: number
    cost_usd: string
    latency_p50_ms: number | null
    latency_p95_ms: number | null
    ttft_p50_ms: number | null
    ttft_p95_ms: number | null
  }
  t: number[]
  requests_per_second: number[]
  tokens_per_second: number[]
  error_rate: number[]
  cost_usd: number[]
  latency_p50_ms: (number | null)[]
  latency_p95_ms: (number | null)[]
  ttft_p50_ms: (number | null)[]
  ttft_p95_ms: (number | null)[]
}

/** Traffic, spend, errors and latency from the store's 1-minute buckets (every instance's), refreshed every 15 s. */
export function Overview() {
  const [range, setRange] = useState<keyof typeof RANGES>('hour')
  const r = RANGES[range]
  const series = useResource<Timeseries>(() => {
    const now = Math.floor(Date.now() / 1000)
    return admin.get(`/metrics/timeseries${query({ from: now - r.seconds, to: now + 1, step: r.step })}`)
  }, [range], 15_000)
  const data = series.data
  const charts = useMemo(() => {
    if (!data) return null
    const perStep = `per ${data.step_seconds / 60} min`
    return [
      { title: 'Requests per second', series: [{ label: 'req/s', values: data.requests_per_second }], format: (v: number) => v.toFixed(v < 10 ? 2 : 0) },
      { title: 'Tokens per second', series: [{ label: 'tokens/s', values: data.tokens_per_second }], format: (v: number) => v.toFixed(v < 10 ? 1 : 0) },
      { title: `Spend (USD ${perStep})`, series: [{ label: 'USD', values: data.cost_usd }], format: (v: number) => `$${v < 1 ? v.toFixed(4) : v.toFixed(2)}`, bars: true },
      { title: 'Error rate', series: [{ label: 'errors', values: data.error_rate, color: '--chart-2' }], format: (v: number) => pct(v) },
      {
        title: 'Latency',
        series: [
          { label: 'p50', values: data.latency_p50_ms },
          { label: 'p95', values: data.latency_p95_ms, color: '--chart-2' },
        ],
        format: (v: number) => ms(v),
      },
      {
        title: 'Time to first token',
        series: [
          { label: 'p50', values: data.ttft_p50_ms },
          { label: 'p95', values: data.ttft_p95_ms, color: '--chart-2' },
        ],
        format: (v: number) => ms(v),
      },
    ]
  }, [data])
  const t = data?.totals
  return (
    <>
      <PageHeader title="Overview">
        <Select
          label="Time range"
          value={range}
          onChange={(v) => setRange(v as keyof typeof RANGES)}
          options={Object.entries(RANGES).map(([value, { label }]) => ({ value, label }))}
        />
      </PageHeader>
      <ErrorBox error={series.error} />
      {t ? (
        <section class="stats" aria-label="Totals for the range">
          <Stat label="Requests" value={count(t.requests)} />
          <Stat label="Spend" value={usd(t.cost_usd)} testId="overview-spend" />
          <Stat label="Error rate" value={pct(t.error_rate)} />
          <Stat label="Tokens" value={count(t.prompt_tokens + t.completion_tokens)} />
          <Stat label="Latency p50 / p95" value={`${ms(t.latency_p50_ms)} / ${ms(t.latency_p95_ms)}`} />
          <Stat label="TTFT p50 / p95" value={`${ms(t.ttft_p50_ms)} / ${ms(t.ttft_p95_ms)}`} />
        </section>
      ) : null}
      {data && charts ? (
        <div class="charts">
          {charts.map((c) => (
            <Chart key={`${range}-${c.title}`} title={c.title} t={data.t} series={c.series} format={c.format} bars={c.bars} />
          ))}
        </div>
      ) : series.loading ? (
        <p class="empty">Loading…</p>
      ) : null}
    </>
  )
}

function Stat({ label, value, testId }: { label: string; value: string; testId?: string }) {
  return (
    <div class="stat" data-testid={testId}>
      <div class="label">{label}</div>
      <div class="value">{value}</div>
    </div>
  )
}
