import { useState } from 'preact/hooks'
import { admin } from '../api.ts'
import { DeleteConfirm, Dialog, EditorDialog, ErrorBox, Field, PageHeader, RowActions, Select, useAction, ms, useResource } from '../components.tsx'

export interface Provider {
  id: string
  name: string
  type: string
  base_url: string | null
  api_key_last4: string | null
  options: Record<string, unknown>
}

interface TestResult {
  ok: boolean
  model: string
  status: number
  latency_ms: number
  error: { message: string; code: string | null } | null
}

/** Providers: list, create, edit, delete, test. The API key is write-only: the list shows its last four characters. */
export function Providers() {
  const list = useResource(() => admin.get<{ data: Provider[] }>('/providers'), [])
  const types = useResource(() => admin.get<{ data: { id: string; default_base_url: string | null }[] }>('/provider-types'), [])
  const [editing, setEditing] = useState<Provider | 'new' | null>(null)
  const [deleting, setDeleting] = useState<Provider | null>(null)
  const [testing, setTesting] = useState<Provider | null>(null)
  return (
    <>
      <PageHeader title="Providers">
        <button class="primary" type="button" onClick={() => setEditing('new')}>
          New provider
        </button>
      </PageHeader>
      <ErrorBox error={list.error} />
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Providers</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col">Base URL</th>
              <th scope="col">API key</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {list.data?.data.map((p) => (
              <tr>
                <td>{p.name}</td>
                <td>{p.type}</td>
                <td class="wrap">{p.base_url ?? <span class="hint">default</span>}</td>
                <td>{p.api_key_last4 ? `…${p.api_key_last4}` : <span class="hint">none</span>}</td>
                <td>
                  <RowActions name={p.name} onEdit={() => setEditing(p)} onDelete={() => setDeleting(p)}>
                    <button type="button" class="small" aria-label={`Test ${p.name}`} onClick={() => setTesting(p)}>
                      Test
                    </button>
                  </RowActions>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {list.data && list.data.data.length === 0 ? <p class="empty">No providers yet: add the first one.</p> : null}
      </div>
      <EditorDialog noun="provider" editing={editing} onClose={() => setEditing(null)}>
        {(provider) => (
          <ProviderForm
            provider={provider}
            types={types.data?.data ?? []}
            onDone={() => {
              setEditing(null)
              list.reload()
            }}
            onCancel={() => setEditing(null)}
          />
        )}
      </EditorDialog>
      <DeleteConfirm
        noun="provider"
        path="/providers"
        row={deleting}
        consequence="Models that route to it must be changed first."
        onClose={() => setDeleting(null)}
        onDeleted={list.reload}
      />
      <Dialog title={`Test ${testing?.name ?? ''}`} open={testing !== null} onClose={() => setTesting(null)}>
        {testing ? <ProviderTest provider={testing} onClose={() => setTesting(null)} /> : null}
      </Dialog>
    </>
  )
}

function ProviderForm({ provider, types, onDone, onCancel }: { provider: Provider | null; types: { id: string; default_base_url: string | null }[]; onDone(): void; onCancel(): void }) {
  const [name, setName] = useState(provider?.name ?? '')
  const [type, setType] = useState(provider?.type ?? 'openai')
  const [baseURL, setBaseURL] = useState(provider?.base_url ?? '')
  const [apiKey, setApiKey] = useState('')
  const [options, setOptions] = useState(provider && Object.keys(provider.options).length ? JSON.stringify(provider.options, null, 2) : '')
  const { busy, error, submit } = useAction()
  const defaultURL = types.find((t) => t.id === type)?.default_base_url
  const typeOptions = types.length ? types.map((t) => ({ value: t.id, label: t.id })) : [{ value: type, label: type }]
  return (
    <form
      class="form"
      onSubmit={submit(async () => {
        const body: Record<string, unknown> = { name, type, base_url: baseURL.trim() || null }
        if (apiKey) body.api_key = apiKey
        if (options.trim()) body.options = parseOptions(options)
        else if (provider) body.options = {}
        if (provider) await admin.patch(`/providers/${encodeURIComponent(provider.id)}`, body)
        else await admin.post('/providers', body)
        onDone()
      })}
    >
      <div class="grid-2">
        <Field label="Name" value={name} onInput={setName} required />
        <Select label="Type" value={type} onChange={setType} options={typeOptions} />
      </div>
      <Field label="Base URL" value={baseURL} onInput={setBaseURL} placeholder={defaultURL ?? 'https://…'} hint={defaultURL ? `Leave empty for ${defaultURL}` : 'Required for this type'} />
      <Field
        label="API key"
        type="password"
        value={apiKey}
        onInput={setApiKey}
        autoComplete="new-password"
        hint={provider?.api_key_last4 ? `Write-only. Leave empty to keep the current key (…${provider.api_key_last4}).` : 'Write-only: it is stored encrypted and never shown again.'}
      />
      <label>
        Options (JSON, optional)
        <textarea rows={3} value={options} onInput={(e) => setOptions((e.target as HTMLTextAreaElement).value)} />
      </label>
      <ErrorBox error={error} />
      <div class="actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button class="primary" type="submit" disabled={busy}>
          {provider ? 'Save' : 'Create provider'}
        </button>
      </div>
    </form>
  )
}

function ProviderTest({ provider, onClose }: { provider: Provider; onClose(): void }) {
  const [model, setModel] = useState('')
  const [result, setResult] = useState<TestResult | null>(null)
  const { busy, error, submit } = useAction()
  return (
    <form
      class="form"
      onSubmit={submit(async () => {
        setResult(null)
        setResult(await admin.post<TestResult>(`/providers/${encodeURIComponent(provider.id)}/test`, model.trim() ? { model: model.trim() } : {}))
      })}
    >
      <p class="hint">Sends one tiny chat completion (max_tokens 1) with the stored key.</p>
      <Field label="Upstream model" value={model} onInput={setModel} placeholder="e.g. gpt-4o-mini" hint="Optional when a model already routes to this provider." />
      <ErrorBox error={error} />
      <div role="status" aria-live="polite">
        {result ? (
          result.ok ? (
            <p class="success">
              OK: {result.model} answered in {ms(result.latency_ms)}.
            </p>
          ) : (
            <p class="error">
              HTTP {result.status} after {ms(result.latency_ms)}: {result.error?.message}
            </p>
          )
        ) : busy ? (
          <p class="hint">Testing…</p>
        ) : null}
      </div>
      <div class="actions">
        <button type="button" onClick={onClose}>
          Close
        </button>
        <button class="primary" type="submit" disabled={busy}>
          Run test
        </button>
      </div>
    </form>
  )
}

function parseOptions(text: string): Record<string, unknown> {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new Error(`Options are not valid JSON: ${(err as Error).message}`)
  }
}
