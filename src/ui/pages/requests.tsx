import { useEffect, useState } from 'preact/hooks'
import { useLocation } from 'preact-iso'
import { admin, query } from '../api.ts'
import { ErrorBox, Field, PageHeader, Select, count, dateTime, messageOf, ms, usd, useResource } from '../components.tsx'

export interface RequestRecord {
  id: string
  created_at: number
  key_id: string | null
  key_name: string | null
  endpoint: string
  model: string | null
  provider: string | null
  upstream_model: string | null
  status: number
  error_code: string | null
  stream: boolean
  aborted: boolean
  attempts: number
  latency_ms: number
  ttft_ms: number | null
  prompt_tokens: number
  completion_tokens: number
  cost_usd: string
  estimated: boolean
  user: string | null
  client_ip: string | null
  request_body: string | null
}

interface Page {
  data: RequestRecord[]
  has_more: boolean
  next_cursor: string | null
}

const STATUSES = [
  { value: '', label: 'any' },
  { value: '2xx', label: '2xx success' },
  { value: 'error', label: 'any error' },
  { value: '4xx', label: '4xx' },
  { value: '5xx', label: '5xx' },
]

/** The recent requests, newest first, filtered by key, model and status; more are loaded page by page. */
export function Requests({ readOnly }: { readOnly: boolean }) {
  const { route } = useLocation()
  const [key, setKey] = useState('')
  const [model, setModel] = useState('')
  const [status, setStatus] = useState('')
  const [rows, setRows] = useState<RequestRecord[]>([])
  const [cursor, setCursor] = useState<string | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [loading, setLoading] = useState(false)
  const keys = useResource(() => admin.get<{ data: { id: string; name: string }[] }>('/keys'), [])
  const filters = { key, model: model.trim(), status, limit: 50 }
  const load = async (after: string | null) => {
    setLoading(true)
    setError(null)
    try {
      const page = await admin.get<Page>(`/requests${query({ ...filters, cursor: after })}`)
      setRows((previous) => (after ? [...previous, ...page.data] : page.data))
      setCursor(page.next_cursor)
    } catch (err) {
      setError(messageOf(err))
    } finally {
      setLoading(false)
    }
  }
  useEffect(() => void load(null), [key, model, status])
  return (
    <>
      <PageHeader title="Requests">
        <button type="button" onClick={() => load(null)}>
          Refresh
        </button>
      </PageHeader>
      <form class="toolbar" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        {readOnly ? null : (
          <Select
            label="Key"
            value={key}
            onChange={setKey}
            options={[{ value: '', label: 'any' }, ...(keys.data?.data ?? []).map((k) => ({ value: k.id, label: k.name }))]}
          />
        )}
        <Field label="Model" value={model} onInput={setModel} placeholder="any" />
        <Select label="Status" value={status} onChange={setStatus} options={STATUSES} />
      </form>
      <ErrorBox error={error} />
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Recent requests</caption>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Key</th>
              <th scope="col">Model</th>
              <th scope="col">Provider</th>
              <th scope="col">Status</th>
              <th scope="col" class="num">Latency</th>
              <th scope="col" class="num">TTFT</th>
              <th scope="col" class="num">Tokens in / out</th>
              <th scope="col" class="num">Cost</th>
              <th scope="col" class="num">Attempts</th>
              <th scope="col">Error</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr
                class="clickable"
                data-request-id={r.id}
                // The time's own link navigates already: routed twice, Back needed two steps.
                onClick={(e) => !(e.target as Element).closest('a') && route(`/ui/requests/${encodeURIComponent(r.id)}`)}
              >
                <td>
                  <a href={`/ui/requests/${encodeURIComponent(r.id)}`}>{dateTime(r.created_at)}</a>
                </td>
                <td>{r.key_name ?? r.key_id ?? '—'}</td>
                <td>{r.model ?? '—'}</td>
                <td>{r.provider ?? '—'}</td>
                <td>
                  <span class={`badge ${r.status < 400 ? 'ok' : 'bad'}`}>{r.status}</span>
                </td>
                <td class="num">{ms(r.latency_ms)}</td>
                <td class="num">{ms(r.ttft_ms)}</td>
                <td class="num">
                  {count(r.prompt_tokens)} / {count(r.completion_tokens)}
                </td>
                <td class="num">{usd(r.cost_usd)}</td>
                <td class="num">{r.attempts}</td>
                <td>{r.error_code ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {!loading && rows.length === 0 ? <p class="empty">{cursor ? 'No match among the newest requests looked at: load more to look further back.' : 'No requests match.'}</p> : null}
      </div>
      <div class="actions">
        {cursor ? (
          <button type="button" onClick={() => load(cursor)} disabled={loading}>
            Load more
          </button>
        ) : null}
      </div>
    </>
  )
}

/** One request: every recorded field, and its body when the gateway records bodies. */
export function RequestDetail({ id }: { id: string }) {
  const record = useResource(() => admin.get<RequestRecord>(`/requests/${encodeURIComponent(id)}`), [id])
  const r = record.data
  const fields: [string, string][] = r
    ? [
        ['Request id', r.id],
        ['Time', dateTime(r.created_at)],
        ['Key', r.key_name ?? r.key_id ?? '—'],
        ['Endpoint', r.endpoint],
        ['Model', r.model ?? '—'],
        ['Provider', r.provider ?? '—'],
        ['Upstream model', r.upstream_model ?? '—'],
        ['Status', String(r.status)],
        ['Error code', r.error_code ?? '—'],
        ['Streamed', r.stream ? 'yes' : 'no'],
        ['Client aborted', r.aborted ? 'yes' : 'no'],
        ['Attempts', String(r.attempts)],
        ['Latency', ms(r.latency_ms)],
        ['Time to first token', ms(r.ttft_ms)],
        ['Prompt tokens', count(r.prompt_tokens)],
        ['Completion tokens', `${count(r.completion_tokens)}${r.estimated ? ' (estimated)' : ''}`],
        ['Cost', usd(r.cost_usd)],
        ['User', r.user ?? '—'],
        ['Client address', r.client_ip ?? '—'],
      ]
    : []
  let body = r?.request_body ?? null
  if (body) {
    try {
      body = JSON.stringify(JSON.parse(body), null, 2)
    } catch {}
  }
  return (
    <>
      <PageHeader title="Request">
        <a class="button" href="/ui/requests">
          Back to requests
        </a>
      </PageHeader>
      <ErrorBox error={record.error} />
      {r ? (
        <div class="panel">
          <dl class="details">
            {fields.map(([name, value]) => (
              <>
                <dt>{name}</dt>
                <dd>{value}</dd>
              </>
            ))}
          </dl>
          <h2>Request body</h2>
          {body ? <pre>{body}</pre> : <p class="hint">Bodies are not recorded. Set request_log.record_bodies: true in the config to keep them.</p>}
        </div>
      ) : null}
    </>
  )
}
