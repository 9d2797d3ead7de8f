import type { ComponentChildren } from 'preact'
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks'
import uPlot from 'uplot'
import { ApiError, admin } from './api.ts'

// Data loading -----------------------------------------------------------------------------------------------

export interface Resource<T> {
  data: T | null
  error: string | null
  loading: boolean
  reload(): void
}

/**
 * Loads `load()` now and whenever `deps` change; `reload()` asks again. The last answer wins. A failed reload keeps
 * the data it had; a failure for new `deps` drops it, as it answered for something else (another range, another id).
 */
export function useResource<T>(load: () => Promise<T>, deps: unknown[], refreshMs?: number): Resource<T> {
  const [state, setState] = useState<{ data: T | null; error: string | null; loading: boolean }>({ data: null, error: null, loading: true })
  const [tick, setTick] = useState(0)
  const loadedTick = useRef(tick)
  useEffect(() => {
    let current = true
    const reloaded = loadedTick.current !== tick
    loadedTick.current = tick
    setState((s) => ({ ...s, loading: true }))
    load().then(
      (data) => current && setState({ data, error: null, loading: false }),
      (error) => current && setState((s) => ({ data: reloaded ? s.data : null, error: messageOf(error), loading: false })),
    )
    return () => void (current = false)
  }, [...deps, tick])
  useEffect(() => {
    if (!refreshMs) return
    const timer = setInterval(() => setTick((n) => n + 1), refreshMs)
    return () => clearInterval(timer)
  }, [refreshMs])
  const reload = useCallback(() => setTick((n) => n + 1), [])
  return { ...state, reload }
}

export const messageOf = (error: unknown) => (error instanceof ApiError || error instanceof Error ? error.message : String(error))

/** A form's or a button's async work: `busy` while it runs, its failure as the message to show. */
export function useAction() {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | null>(null)
  const run = async (work: () => Promise<void>) => {
    setBusy(true)
    setError(null)
    try {
      await work()
    } catch (err) {
      setError(messageOf(err))
    } finally {
      setBusy(false)
    }
  }
  /** A form's onSubmit that runs `work` instead of navigating. */
  const submit = (work: () => Promise<void>) => (e: Event) => {
    e.preventDefault()
    void run(work)
  }
  return { busy, error, run, submit }
}

// Formatting (in a module of its own, which the tests import without JSX) ---------------------------------------

export { count, dateTime, ms, pct, usd } from './format.ts'

// Building blocks --------------------------------------------------------------------------------------------

export function ErrorBox({ error }: { error: string | null | undefined }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null
}

export function PageHeader({ title, children }: { title: string; children?: ComponentChildren }) {
  useEffect(() => {
    document.title = `${title} · Conduit`
  }, [title])
  return (
    <div class="toolbar">
      <h1 class="grow">{title}</h1>
      {children}
    </div>
  )
}

/** A native modal dialog: focus moves into it, Escape closes it, the page behind is inert. */
export function Dialog({ title, open, onClose, children }: { title: string; open: boolean; onClose(): void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null)
  useLayoutEffect(() => {
    const dialog = ref.current
    if (!dialog) return
    if (open && !dialog.open) dialog.showModal()
    if (!open && dialog.open) dialog.close()
  }, [open])
  const id = `dialog-${title.replace(/\W+/g, '-').toLowerCase()}`
  return (
    <dialog ref={ref} aria-labelledby={id} onClose={onClose} onCancel={onClose}>
      {open ? (
        <>
          <h2 id={id}>{title}</h2>
          {children}
        </>
      ) : null}
    </dialog>
  )
}

export function Confirm({ title, message, confirmLabel, open, onConfirm, onClose }: {
  title: string
  message: ComponentChildren
  confirmLabel: string
  open: boolean
  onConfirm(): Promise<void>
  onClose(): void
}) {
  const { busy, error, run } = useAction()
  return (
    <Dialog title={title} open={open} onClose={onClose}>
      <p>{message}</p>
      <ErrorBox error={error} />
      <div class="actions">
        <button type="button" onClick={onClose}>
          Cancel
        </button>
        <button
          type="button"
          class="danger"
          disabled={busy}
          onClick={() =>
            run(async () => {
              await onConfirm()
              onClose()
            })
          }
        >
          {confirmLabel}
        </button>
      </div>
    </Dialog>
  )
}

// List pages (providers, models, keys) ------------------------------------------------------------------------

/** A row's Edit and Delete buttons; a page's own buttons for the row go between them (`children`). */
export function RowActions({ name, onEdit, onDelete, children }: { name: string; onEdit(): void; onDelete(): void; children?: ComponentChildren }) {
  return (
    <div class="row-actions">
      <button type="button" class="small" aria-label={`Edit ${name}`} onClick={onEdit}>
        Edit
      </button>
      {children}
      <button type="button" class="small danger" aria-label={`Delete ${name}`} onClick={onDelete}>
        Delete
      </button>
    </div>
  )
}

/** The dialog a row is created or edited in: `children` renders the form for the row (null: a new one). */
export function EditorDialog<T extends { name: string }>({ noun, editing, onClose, children }: {
  noun: string
  editing: T | 'new' | null
  onClose(): void
  children(row: T | null): ComponentChildren
}) {
  return (
    <Dialog title={editing === 'new' ? `New ${noun}` : `Edit ${noun} ${editing ? editing.name : ''}`} open={editing !== null} onClose={onClose}>
      {editing !== null ? children(editing === 'new' ? null : editing) : null}
    </Dialog>
  )
}

/** Deleting a row through the admin API (`path`/id), once confirmed with what it breaks. */
export function DeleteConfirm<T extends { id: string; name: string }>({ noun, path, row, consequence, confirmLabel = 'Delete', onClose, onDeleted }: {
  noun: string
  path: string
  row: T | null
  consequence: string
  confirmLabel?: string
  onClose(): void
  onDeleted(): void
}) {
  return (
    <Confirm
      // One Confirm per row: a refusal shown for one row is not shown again for the next.
      key={row?.id ?? ''}
      title={`Delete ${noun}`}
      message={`Delete the ${noun} "${row?.name ?? ''}"? ${consequence}`}
      confirmLabel={confirmLabel}
      open={row !== null}
      onClose={onClose}
      onConfirm={async () => {
        await admin.del(`${path}/${encodeURIComponent(row!.id)}`)
        onDeleted()
      }}
    />
  )
}

let fieldIds = 0
/** A labelled input: the label names the control for screen readers and for tests alike. */
export function Field(props: {
  label: string
  value: string
  onInput(value: string): void
  type?: "text" | "password" | "number" | "date" | "datetime-local"
  required?: boolean
  placeholder?: string
  hint?: string
  autoComplete?: string
  min?: string
  step?: string
}) {
  const [id] = useState(() => `f${++fieldIds}`)
  return (
    <label for={id}>
      {props.label}
      <input
        id={id}
        type={(props.type ?? 'text') as 'text'}
        value={props.value}
        required={props.required}
        placeholder={props.placeholder}
        autoComplete={props.autoComplete ?? 'off'}
        min={props.min}
        step={props.step}
        aria-describedby={props.hint ? `${id}-hint` : undefined}
        onInput={(e) => props.onInput((e.target as HTMLInputElement).value)}
      />
      {props.hint ? (
        <span id={`${id}-hint`} class="hint">
          {props.hint}
        </span>
      ) : null}
    </label>
  )
}

export function Select(props: { label: string; value: string; onChange(value: string): void; options: { value: string; label: string }[]; required?: boolean }) {
  const [id] = useState(() => `f${++fieldIds}`)
  return (
    <label for={id}>
      {props.label}
      <select id={id} value={props.value} required={props.required} onChange={(e) => props.onChange((e.target as HTMLSelectElement).value)}>
        {props.options.map((o) => (
          <option value={o.value}>{o.label}</option>
        ))}
      </select>
    </label>
  )
}

/** Empty string → null; otherwise the number (forms hold text). */
export const numberOrNull = (text: string) => (text.trim() === '' ? null : Number(text))
export const textOf = (value: number | null | undefined) => (value === null || value === undefined ? '' : String(value))

// Charts -----------------------------------------------------------------------------------------------------

const cssVar = (name: string) => getComputedStyle(document.documentElement).getPropertyValue(name).trim()

/** Re-renders when the system switches between light and dark, so canvas colours follow. */
function useColorScheme() {
  const [dark, setDark] = useState(() => matchMedia('(prefers-color-scheme: dark)').matches)
  useEffect(() => {
    const query = matchMedia('(prefers-color-scheme: dark)')
    const listener = () => setDark(query.matches)
    query.addEventListener('change', listener)
    return () => query.removeEventListener('change', listener)
  }, [])
  return dark
}

export interface ChartSeries {
  label: string
  values: (number | null)[]
  /** CSS variable holding the colour. */
  color?: string
}

/**
 * A uPlot time-series chart sized to its container. The figure is labelled by its caption and carries a text
 * summary (the range's last value of each series) for screen readers.
 */
export function Chart({ title, t, series, format, bars }: { title: string; t: number[]; series: ChartSeries[]; format(value: number): string; bars?: boolean }) {
  const box = useRef<HTMLDivElement>(null)
  const dark = useColorScheme()
  useEffect(() => {
    const el = box.current
    if (!el) return
    const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--grid'), width: 1 }, ticks: { stroke: cssVar('--grid'), width: 1 } }
    const colors = ['--chart-1', '--chart-2', '--chart-3']
    const plot = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height: 200,
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
        scales: { y: { range: (_u, min, max) => [Math.min(0, min ?? 0), max && max > 0 ? max * 1.1 : 1] } },
        axes: [axis, { ...axis, size: 64, values: (_u, ticks) => ticks.map(format) }],
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: cssVar(s.color ?? colors[i % colors.length]!),
            fill: bars || series.length === 1 ? `${cssVar(s.color ?? colors[i % colors.length]!)}33` : undefined,
            width: 2,
            spanGaps: false,
            value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? '—' : format(v)),
            ...(bars ? { paths: uPlot.paths.bars!({ size: [0.8, 40] }) } : {}),
          })),
        ],
      },
      [t, ...series.map((s) => s.values)] as uPlot.AlignedData,
      el,
    )
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(200, el.clientWidth), height: 200 }))
    resize.observe(el)
    return () => {
      resize.disconnect()
      plot.destroy()
    }
  }, [t, series, dark])
  const summary = series
    .map((s) => {
      const last = [...s.values].reverse().find((v) => v !== null && v !== undefined)
      return `${s.label}: ${last === undefined || last === null ? 'no data' : format(last)}`
    })
    .join('; ')
  return (
    <figure class="chart" aria-label={title}>
      <figcaption>{title}</figcaption>
      <div ref={box} class="chart-box" role="img" aria-label={`${title}. Latest: ${summary}`} />
    </figure>
  )
}
