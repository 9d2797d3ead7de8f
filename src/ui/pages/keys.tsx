import { useState } from 'preact/hooks'
import { admin } from '../api.ts'
import { KEY_ENDPOINTS } from '../../plugin-sdk/types.ts'
import { DeleteConfirm, Dialog, EditorDialog, ErrorBox, Field, PageHeader, RowActions, Select, useAction, dateTime, numberOrNull, textOf, usd, useResource } from '../components.tsx'

export interface VirtualKey {
  id: string
  name: string
  key_prefix: string
  key_last4: string
  allowed_models: string[] | null
  allowed_endpoints: string[] | null
  rpm: number | null
  rpd: number | null
  tpm: number | null
  max_parallel: number | null
  budget: { usd: number; period: 'total' | 'daily' | 'monthly' } | null
  expires_at: number | null
  enabled: boolean
  last_used_at?: number | null
  budget_spent_usd?: string | null
}


function status(k: VirtualKey) {
  if (!k.enabled) return { text: 'disabled', cls: 'bad' }
  if (k.expires_at !== null && k.expires_at * 1000 <= Date.now()) return { text: 'expired', cls: 'bad' }
  return { text: 'active', cls: 'ok' }
}

/** Virtual keys: status, last use, spend against budget; create (shown once), edit, disable/enable, delete. */
export function Keys({ readOnly }: { readOnly: boolean }) {
  const list = useResource(() => admin.get<{ data: VirtualKey[] }>('/keys'), [])
  const [editing, setEditing] = useState<VirtualKey | 'new' | null>(null)
  const [created, setCreated] = useState<{ name: string; key: string } | null>(null)
  const [deleting, setDeleting] = useState<VirtualKey | null>(null)
  const toggle = useAction()
  return (
    <>
      <PageHeader title="Keys">
        {readOnly ? null : (
          <button class="primary" type="button" onClick={() => setEditing('new')}>
            New key
          </button>
        )}
      </PageHeader>
      <ErrorBox error={list.error ?? toggle.error} />
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Virtual keys</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Key</th>
              <th scope="col">Status</th>
              <th scope="col">Last used</th>
              <th scope="col" class="num">Spend / budget</th>
              <th scope="col">Models</th>
              <th scope="col">Limits</th>
              <th scope="col">Expires</th>
              {readOnly ? null : <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {list.data?.data.map((k) => {
              const s = status(k)
              return (
                <tr data-key-id={k.id}>
                  <td>{k.name}</td>
                  <td>
                    <code>
                      {k.key_prefix}…{k.key_last4}
                    </code>
                  </td>
                  <td>
                    <span class={`badge ${s.cls}`}>{s.text}</span>
                  </td>
                  <td>{k.last_used_at ? dateTime(k.last_used_at) : 'never'}</td>
                  <td class="num">{k.budget ? `${usd(k.budget_spent_usd ?? 0)} / ${usd(k.budget.usd)} ${k.budget.period}` : 'no budget'}</td>
                  <td class="wrap">{k.allowed_models?.join(', ') ?? 'all'}</td>
                  <td>{(['rpm', 'rpd', 'tpm', 'max_parallel'] as const).filter((n) => k[n]).map((n) => `${n} ${k[n]}`).join(', ') || 'none'}</td>
                  <td>{k.expires_at ? dateTime(k.expires_at) : 'never'}</td>
                  {readOnly ? null : (
                    <td>
                      <RowActions name={k.name} onEdit={() => setEditing(k)} onDelete={() => setDeleting(k)}>
                        <button
                          type="button"
                          class="small"
                          aria-label={`${k.enabled ? 'Disable' : 'Enable'} ${k.name}`}
                          onClick={() =>
                            toggle.run(async () => {
                              await admin.patch(`/keys/${encodeURIComponent(k.id)}`, { enabled: !k.enabled })
                              list.reload()
                            })
                          }
                        >
                          {k.enabled ? 'Disable' : 'Enable'}
                        </button>
                      </RowActions>
                    </td>
                  )}
                </tr>
              )
            })}
          </tbody>
        </table>
        {list.data && list.data.data.length === 0 ? <p class="empty">No keys yet.</p> : null}
      </div>
      <EditorDialog noun="key" editing={editing} onClose={() => setEditing(null)}>
        {(current) => (
          <KeyForm
            current={current}
            onCreated={(name, key) => {
              setEditing(null)
              setCreated({ name, key })
              list.reload()
            }}
            onSaved={() => {
              setEditing(null)
              list.reload()
            }}
            onCancel={() => setEditing(null)}
          />
        )}
      </EditorDialog>
      <Dialog title="Key created" open={created !== null} onClose={() => setCreated(null)}>
        {created ? <KeyReveal {...created} onClose={() => setCreated(null)} /> : null}
      </Dialog>
      <DeleteConfirm
        noun="key"
        path="/keys"
        row={deleting}
        consequence="Clients using it are refused at once. This cannot be undone."
        confirmLabel="Delete key"
        onClose={() => setDeleting(null)}
        onDeleted={list.reload}
      />
    </>
  )
}

/** The only time the plaintext exists outside the client: shown once, with a Copy button. */
function KeyReveal({ name, key, onClose }: { name: string; key: string; onClose(): void }) {
  const [copied, setCopied] = useState<string | null>(null)
  return (
    <div class="form">
      <p class="notice" role="alert">
        Copy the key for “{name}” now: it is shown only this once. Conduit keeps only its hash.
      </p>
      <div class="key-reveal">
        <code data-testid="new-key">{key}</code>
        <button
          type="button"
          class="primary"
          onClick={async () => {
            try {
              await navigator.clipboard.writeText(key)
              setCopied('Copied to the clipboard.')
            } catch {
              setCopied('Copying was refused by the browser: select the key and copy it by hand.')
            }
          }}
        >
          Copy
        </button>
      </div>
      <p role="status" class="hint">
        {copied ?? ''}
      </p>
      <div class="actions">
        <button type="button" onClick={onClose}>
          I have copied it
        </button>
      </div>
    </div>
  )
}

/** `2026-01-31T12:00:05` (datetime-local, the user's zone) ↔ unix seconds: to the second, or a form saved unchanged moves it. */
const toLocalInput = (unixSeconds: number | null) => {
  if (unixSeconds === null) return ''
  const d = new Date(unixSeconds * 1000)
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 19)
}

function KeyForm({ current, onCreated, onSaved, onCancel }: { current: VirtualKey | null; onCreated(name: string, key: string): void; onSaved(): void; onCancel(): void }) {
  const [name, setName] = useState(current?.name ?? '')
  const [models, setModels] = useState(current?.allowed_models?.join(', ') ?? '')
  const [endpoints, setEndpoints] = useState<string[]>(current?.allowed_endpoints ?? [...KEY_ENDPOINTS])
  const [limits, setLimits] = useState({ rpm: textOf(current?.rpm), rpd: textOf(current?.rpd), tpm: textOf(current?.tpm), max_parallel: textOf(current?.max_parallel) })
  const [budget, setBudget] = useState(textOf(current?.budget?.usd))
  const [period, setPeriod] = useState<string>(current?.budget?.period ?? 'monthly')
  const [expires, setExpires] = useState(toLocalInput(current?.expires_at ?? null))
  const { busy, error, submit } = useAction()
  return (
    <form
      class="form"
      onSubmit={submit(async () => {
        const list = models.split(',').map((m) => m.trim()).filter(Boolean)
        const body = {
          name,
          allowed_models: list.length ? list : null,
          allowed_endpoints: endpoints.length === KEY_ENDPOINTS.length ? null : endpoints,
          ...Object.fromEntries(Object.entries(limits).map(([k, v]) => [k, numberOrNull(v)])),
          budget: budget.trim() ? { usd: Number(budget), period } : null,
          expires_at: expires ? Math.floor(new Date(expires).getTime() / 1000) : null,
        }
        if (current) {
          await admin.patch(`/keys/${encodeURIComponent(current.id)}`, body)
          onSaved()
        } else {
          const made = await admin.post<{ name: string; key: string }>('/keys', body)
          onCreated(made.name, made.key)
        }
      })}
    >
      <Field label="Key name" value={name} onInput={setName} required />
      <Field label="Allowed models" value={models} onInput={setModels} placeholder="all models" hint="Comma-separated names or patterns (gpt-4o*); empty allows every model." />
      <fieldset>
        <legend>Allowed endpoints</legend>
        <div class="grid-2">
          {KEY_ENDPOINTS.map((ep) => (
            <label class="inline">
              <input
                type="checkbox"
                checked={endpoints.includes(ep)}
                onChange={(e) => setEndpoints((e.target as HTMLInputElement).checked ? [...endpoints, ep] : endpoints.filter((x) => x !== ep))}
              />
              {ep}
            </label>
          ))}
        </div>
      </fieldset>
      <fieldset>
        <legend>Limits (empty: unlimited)</legend>
        <div class="grid-2">
          {(['rpm', 'rpd', 'tpm', 'max_parallel'] as const).map((n) => (
            <Field label={`Key ${n}`} type="number" min="1" step="1" value={limits[n]} onInput={(v) => setLimits({ ...limits, [n]: v })} />
          ))}
        </div>
      </fieldset>
      <div class="grid-2">
        <Field label="Budget (USD)" type="number" min="0" step="any" value={budget} onInput={setBudget} hint="Empty: no budget" />
        <Select
          label="Budget period"
          value={period}
          onChange={setPeriod}
          options={[
            { value: 'daily', label: 'daily' },
            { value: 'monthly', label: 'monthly' },
            { value: 'total', label: 'total' },
          ]}
        />
        <Field label="Expires at" type="datetime-local" step="1" value={expires} onInput={setExpires} hint="Empty: never" />
      </div>
      <ErrorBox error={error} />
      <div class="actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button class="primary" type="submit" disabled={busy}>
          {current ? 'Save' : 'Create key'}
        </button>
      </div>
    </form>
  )
}
