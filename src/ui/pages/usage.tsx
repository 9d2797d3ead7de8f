import { useMemo, useState } from 'preact/hooks'
import { admin, query } from '../api.ts'
import { Chart, ErrorBox, Field, PageHeader, Select, count, usd, useResource } from '../components.tsx'

interface Row {
  requests: number
  prompt_tokens: number
  completion_tokens: number
  cost_usd: string
  unpriced_requests: number
  [group: string]: unknown
}
interface Report {
  from: string
  to: string
  total: Row
  by_key: Row[]
  by_model: Row[]
  by_provider: Row[]
  by_day: Row[]
  by_user: Row[]
}

const GROUPS = ['key', 'model', 'provider', 'user', 'day'] as const
const isoDay = (d: Date) => d.toISOString().slice(0, 10)
const DAY = 86_400_000

/** Spend and tokens over a chosen range (UTC days), grouped by key, model, provider, user or day; chart, table, CSV. */
export function Usage({ readOnly }: { readOnly: boolean }) {
  const [from, setFrom] = useState(isoDay(new Date(Date.now() - 29 * DAY)))
  const [to, setTo] = useState(isoDay(new Date()))
  const [by, setBy] = useState<(typeof GROUPS)[number]>(readOnly ? 'model' : 'key')
  // `to` is the last day included.
  const range = { from, to: to ? isoDay(new Date(Date.parse(to) + DAY)) : '' }
  const report = useResource(() => admin.get<Report>(`/usage${query(range)}`), [from, to])
  const keys = useResource(() => admin.get<{ data: { id: string; name: string }[] }>('/keys'), [])
  const keyName = (id: unknown) => keys.data?.data.find((k) => k.id === id)?.name ?? (id as string | null) ?? '(none)'
  const rows = report.data?.[`by_${by}`] ?? []
  const name = (row: Row) => (by === 'key' ? keyName(row.key) : row[by] === null ? '(none)' : String(row[by]))
  // Users over every key come with their key: two keys' "alice" are two people.
  const label = (row: Row) => (by === 'user' && row.key !== undefined ? `${name(row)} · ${keyName(row.key)}` : name(row))
  const chart = useMemo(() => {
    const days = report.data?.by_day ?? []
    const start = Date.parse(`${from}T00:00:00Z`)
    const end = Date.parse(`${range.to}T00:00:00Z`)
    if (!Number.isFinite(start) || !Number.isFinite(end)) return null
    const t: number[] = []
    const cost: number[] = []
    for (let day = start; day < end; day += DAY) {
      t.push(day / 1000)
      cost.push(Number(days.find((d) => d.day === isoDay(new Date(day)))?.cost_usd ?? 0))
    }
    return { t, series: [{ label: 'USD', values: cost }] }
  }, [report.data])
  return (
    <>
      <PageHeader title="Usage" />
      <form class="toolbar" aria-label="Usage range" onSubmit={(e) => e.preventDefault()}>
        <Field label="From" type="date" value={from} onInput={setFrom} />
        <Field label="To" type="date" value={to} onInput={setTo} />
        <Select label="Group by" value={by} onChange={(v) => setBy(v as (typeof GROUPS)[number])} options={GROUPS.map((g) => ({ value: g, label: g }))} />
        <a class="button" href={`/admin/v1/usage${query({ ...range, format: 'csv', by })}`} download>
          Export CSV
        </a>
      </form>
      <ErrorBox error={report.error} />
      {report.data ? (
        <section class="stats" aria-label="Totals for the range">
          <div class="stat" data-testid="usage-spend">
            <div class="label">Spend</div>
            <div class="value">{usd(report.data.total.cost_usd)}</div>
          </div>
          <div class="stat">
            <div class="label">Requests</div>
            <div class="value">{count(report.data.total.requests)}</div>
          </div>
          <div class="stat">
            <div class="label">Prompt tokens</div>
            <div class="value">{count(report.data.total.prompt_tokens)}</div>
          </div>
          <div class="stat">
            <div class="label">Completion tokens</div>
            <div class="value">{count(report.data.total.completion_tokens)}</div>
          </div>
        </section>
      ) : null}
      {chart ? <Chart title="Spend per day (USD)" t={chart.t} series={chart.series} format={(v) => `$${v < 1 ? v.toFixed(4) : v.toFixed(2)}`} bars /> : null}
      <h2>By {by}</h2>
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Usage by {by}</caption>
          <thead>
            <tr>
              <th scope="col">{by}</th>
              <th scope="col" class="num">Requests</th>
              <th scope="col" class="num">Prompt tokens</th>
              <th scope="col" class="num">Completion tokens</th>
              <th scope="col" class="num">Cost</th>
              <th scope="col" class="num">Unpriced</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr>
                <td>{label(row)}</td>
                <td class="num">{count(row.requests)}</td>
                <td class="num">{count(row.prompt_tokens)}</td>
                <td class="num">{count(row.completion_tokens)}</td>
                <td class="num">{usd(row.cost_usd)}</td>
                <td class="num">{count(row.unpriced_requests)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {report.data && rows.length === 0 ? <p class="empty">Nothing was spent in this range.</p> : null}
      </div>
    </>
  )
}
