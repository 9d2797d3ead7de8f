import { useState } from 'preact/hooks'
import { admin } from '../api.ts'
import { DeleteConfirm, EditorDialog, ErrorBox, Field, PageHeader, RowActions, Select, useAction, numberOrNull, textOf, useResource } from '../components.tsx'
import type { Provider } from './providers.tsx'

interface Limits {
  rpm?: number | null
  rpd?: number | null
  tpm?: number | null
  max_parallel?: number | null
}
interface Target {
  provider: string
  model: string
  weight?: number
  priority?: number
  /** Audio, character and image prices too (see the admin API); the form edits the token prices and keeps the rest. */
  price?: { input: number; output: number; cached_input?: number } & Record<string, unknown>
}
export interface ModelMapping {
  id: string
  name: string
  targets?: Target[]
  limits: Limits | null
  routing: { strategy?: string; retries?: number } | null
}

const limitText = (l: Limits | null) =>
  l ? (['rpm', 'rpd', 'tpm', 'max_parallel'] as const).filter((n) => l[n]).map((n) => `${n} ${l[n]}`).join(', ') || 'none' : 'none'

/** Virtual models: where each routes (targets with weights, priorities, prices), shared limits, routing strategy. */
export function Models({ readOnly }: { readOnly: boolean }) {
  const list = useResource(() => admin.get<{ data: ModelMapping[] }>('/models'), [])
  const providers = useResource(() => (readOnly ? Promise.resolve({ data: [] as Provider[] }) : admin.get<{ data: Provider[] }>('/providers')), [readOnly])
  const [editing, setEditing] = useState<ModelMapping | 'new' | null>(null)
  const [deleting, setDeleting] = useState<ModelMapping | null>(null)
  const providerName = (id: string) => providers.data?.data.find((p) => p.id === id)?.name ?? id
  return (
    <>
      <PageHeader title="Models">
        {readOnly ? null : (
          <button class="primary" type="button" onClick={() => setEditing('new')}>
            New model
          </button>
        )}
      </PageHeader>
      <ErrorBox error={list.error} />
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">Models</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              {readOnly ? null : <th scope="col">Targets</th>}
              <th scope="col">Routing</th>
              <th scope="col">Limits</th>
              {readOnly ? null : <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {list.data?.data.map((m) => (
              <tr>
                <td>{m.name}</td>
                {readOnly ? null : (
                  <td class="wrap">
                    {m.targets?.map((t) => (
                      <div>
                        {providerName(t.provider)} / {t.model} · weight {t.weight ?? 1} · priority {t.priority ?? 0}
                        {t.price ? ` · $${t.price.input}/$${t.price.output} per 1M` : ''}
                      </div>
                    ))}
                  </td>
                )}
                <td>
                  {m.routing?.strategy ?? 'weighted'}
                  {m.routing?.retries !== undefined ? `, ${m.routing.retries} retries` : ''}
                </td>
                <td>{limitText(m.limits)}</td>
                {readOnly ? null : (
                  <td>
                    <RowActions name={m.name} onEdit={() => setEditing(m)} onDelete={() => setDeleting(m)} />
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
        {list.data && list.data.data.length === 0 ? <p class="empty">No models yet.</p> : null}
      </div>
      <EditorDialog noun="model" editing={editing} onClose={() => setEditing(null)}>
        {(model) => (
          <ModelForm
            model={model}
            providers={providers.data?.data ?? []}
            onDone={() => {
              setEditing(null)
              list.reload()
            }}
            onCancel={() => setEditing(null)}
          />
        )}
      </EditorDialog>
      <DeleteConfirm
        noun="model"
        path="/models"
        row={deleting}
        consequence="Clients calling it will get model_not_found."
        onClose={() => setDeleting(null)}
        onDeleted={list.reload}
      />
    </>
  )
}

interface TargetDraft {
  provider: string
  model: string
  weight: string
  priority: string
  input: string
  output: string
  cached: string
  /** The price's fields this form does not show (audio, characters, images), sent back as they were. */
  kept: Record<string, unknown>
}

const draftOf = (t: Target): TargetDraft => {
  const { input, output, cached_input, ...kept } = t.price ?? {}
  return { provider: t.provider, model: t.model, weight: textOf(t.weight ?? 1), priority: textOf(t.priority ?? 0), input: textOf(input), output: textOf(output), cached: textOf(cached_input), kept }
}

function ModelForm({ model, providers, onDone, onCancel }: { model: ModelMapping | null; providers: Provider[]; onDone(): void; onCancel(): void }) {
  const [name, setName] = useState(model?.name ?? '')
  const blank = (): TargetDraft => ({ provider: providers[0]?.id ?? '', model: '', weight: '1', priority: '0', input: '', output: '', cached: '', kept: {} })
  const [targets, setTargets] = useState<TargetDraft[]>(model?.targets?.length ? model.targets.map(draftOf) : [blank()])
  const [limits, setLimits] = useState({
    rpm: textOf(model?.limits?.rpm),
    rpd: textOf(model?.limits?.rpd),
    tpm: textOf(model?.limits?.tpm),
    max_parallel: textOf(model?.limits?.max_parallel),
  })
  const [strategy, setStrategy] = useState(model?.routing?.strategy ?? 'weighted')
  const [retries, setRetries] = useState(textOf(model?.routing?.retries))
  const { busy, error, submit } = useAction()
  const setTarget = (i: number, patch: Partial<TargetDraft>) => setTargets(targets.map((t, j) => (j === i ? { ...t, ...patch } : t)))
  return (
    <form
      class="form"
      onSubmit={submit(async () => {
        const body = {
          name,
          targets: targets.map((t, i) => {
            // One side left empty would be saved as $0: that side of every request unbilled.
            if (!t.input.trim() !== !t.output.trim()) throw new Error(`Target ${i + 1}: fill in both the input and the output price (0 is free), or neither.`)
            const priced = t.input.trim() || t.output.trim() || Object.keys(t.kept).length > 0
            const price = priced ? { ...t.kept, input: Number(t.input || 0), output: Number(t.output || 0), ...(t.cached.trim() ? { cached_input: Number(t.cached) } : {}) } : undefined
            return { provider: t.provider, model: t.model, weight: Number(t.weight || 1), priority: Number(t.priority || 0), ...(price ? { price } : {}) }
          }),
          // The fields shown, each set or removed (null); the limits this form does not show (ipm) are left as they are.
          limits: Object.fromEntries(Object.entries(limits).map(([k, v]) => [k, numberOrNull(v)])),
          routing: { strategy, ...(retries.trim() ? { retries: Number(retries) } : {}) },
        }
        if (model) await admin.patch(`/models/${encodeURIComponent(model.id)}`, body)
        else await admin.post('/models', body)
        onDone()
      })}
    >
      <Field label="Model name" value={name} onInput={setName} required hint="The name clients send as `model`." />
      {targets.map((t, i) => (
        <fieldset>
          <legend>Target {i + 1}</legend>
          <div class="grid-2">
            <Select
              label={`Target ${i + 1} provider`}
              value={t.provider}
              onChange={(v) => setTarget(i, { provider: v })}
              options={providers.map((p) => ({ value: p.id, label: p.name }))}
              required
            />
            <Field label={`Target ${i + 1} upstream model`} value={t.model} onInput={(v) => setTarget(i, { model: v })} required />
            <Field label={`Target ${i + 1} weight`} type="number" min="0" step="any" value={t.weight} onInput={(v) => setTarget(i, { weight: v })} />
            <Field label={`Target ${i + 1} priority`} type="number" step="1" value={t.priority} onInput={(v) => setTarget(i, { priority: v })} />
            <Field label={`Target ${i + 1} input price (USD per 1M tokens)`} type="number" min="0" step="any" value={t.input} onInput={(v) => setTarget(i, { input: v })} />
            <Field label={`Target ${i + 1} output price (USD per 1M tokens)`} type="number" min="0" step="any" value={t.output} onInput={(v) => setTarget(i, { output: v })} />
            <Field label={`Target ${i + 1} cached input price`} type="number" min="0" step="any" value={t.cached} onInput={(v) => setTarget(i, { cached: v })} />
          </div>
          {targets.length > 1 ? (
            <div class="actions">
              <button type="button" class="small danger" onClick={() => setTargets(targets.filter((_, j) => j !== i))}>
                Remove target {i + 1}
              </button>
            </div>
          ) : null}
        </fieldset>
      ))}
      <div>
        <button type="button" class="small" onClick={() => setTargets([...targets, blank()])}>
          Add target
        </button>
      </div>
      <fieldset>
        <legend>Limits shared by every key (empty: unlimited)</legend>
        <div class="grid-2">
          {(['rpm', 'rpd', 'tpm', 'max_parallel'] as const).map((n) => (
            <Field label={`Model ${n}`} type="number" min="1" step="1" value={limits[n]} onInput={(v) => setLimits({ ...limits, [n]: v })} />
          ))}
        </div>
      </fieldset>
      <div class="grid-2">
        <Select
          label="Routing strategy"
          value={strategy}
          onChange={setStrategy}
          options={[
            { value: 'weighted', label: 'weighted' },
            { value: 'least-busy', label: 'least-busy' },
            { value: 'lowest-latency', label: 'lowest-latency' },
          ]}
        />
        <Field label="Retries" type="number" min="0" step="1" value={retries} onInput={setRetries} hint="Default 2" />
      </div>
      <ErrorBox error={error} />
      <div class="actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button class="primary" type="submit" disabled={busy}>
          {model ? 'Save' : 'Create model'}
        </button>
      </div>
    </form>
  )
}
