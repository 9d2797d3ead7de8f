import type { Counter, CounterOptions, FinishedRequest } from '../plugin-sdk/types.ts'

/**
 * Request metrics in Prometheus text format. State is plain data (counters and histogram bucket arrays keyed
 * by a label string) so the snapshots of several worker processes can be summed into one scrape.
 */

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
const TTFT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

interface Histogram {
  buckets: number[]
  sum: number
  count: number
}

/** A counter a plugin declared: its values keyed by label values joined with SEP, in `labelNames` order. */
interface CounterFamily {
  help: string
  labelNames: string[]
  values: Record<string, number>
}

export interface MetricsSnapshot {
  requests: Record<string, number>
  errors: Record<string, number>
  tokens: Record<string, number>
  duration: Record<string, Histogram>
  ttft: Record<string, Histogram>
  inflight: number
  /** Requests refused at once because the process was at its in-flight limit. */
  shed: number
  rssBytes: number
  /** Plugins' own counters, by metric name. */
  counters: Record<string, CounterFamily>
  /** Realtime sessions: open now, frames and bytes by direction, how long they lasted and why they ended. */
  realtime: RealtimeSnapshot
}

export interface RealtimeSnapshot {
  open: number
  frames: Record<string, number>
  bytes: Record<string, number>
  /** Session lengths in seconds; one histogram (key ''). */
  length: Record<string, Histogram>
  ended: Record<string, number>
}

const SESSION_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200]

const emptySnapshot = (): MetricsSnapshot => ({
  requests: {},
  errors: {},
  tokens: {},
  duration: {},
  ttft: {},
  inflight: 0,
  shed: 0,
  rssBytes: 0,
  counters: {},
  realtime: { open: 0, frames: {}, bytes: {}, length: {}, ended: {} },
})

/** Prometheus's own rules for names; `conduit_` names other than the ones rendered here are the plugins'. */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const BUILTIN_NAMES = new Set([
  'conduit_requests_total',
  'conduit_request_errors_total',
  'conduit_tokens_total',
  'conduit_request_duration_seconds',
  'conduit_time_to_first_token_seconds',
  'conduit_inflight_requests',
  'conduit_shed_requests_total',
  'conduit_resident_memory_bytes',
  'conduit_workers',
  'conduit_realtime_sessions_open',
  'conduit_realtime_frames_total',
  'conduit_realtime_bytes_total',
  'conduit_realtime_session_duration_seconds',
  'conduit_realtime_sessions_ended_total',
])

const histogram = (bounds: number[]): Histogram => ({ buckets: new Array(bounds.length).fill(0), sum: 0, count: 0 })

function observe(h: Histogram, bounds: number[], value: number) {
  for (let i = 0; i < bounds.length; i++) {
    if (value <= bounds[i]!) {
      h.buckets[i]!++
      break
    }
  }
  h.sum += value
  h.count++
}

/** Label values are joined with \u0000, which never appears in a model or provider name we accept. */
const SEP = '\u0000'

/** What record() counts for one label set; snapshot() lays these out as the snapshot's label-keyed records. */
interface Series {
  /** The label values joined with SEP, as the snapshot keys them. */
  key: string
  requests: Map<number | 'aborted', number>
  errors: Map<string, number>
  duration: Histogram | null
  ttft: Histogram | null
  tokens: { prompt: number; completion: number } | null
}

export class Metrics {
  /** Realtime and plugin counters; the request series are kept apart (see snapshot). */
  private data = emptySnapshot()
  private readonly series = new Map<string, Map<string, Map<string, Series>>>()
  /** Requests being served right now (streams included). */
  inflight = 0
  shed = 0
  /** Realtime sessions open now. */
  realtimeOpen = 0

  /** Frames and bytes a realtime session relayed in one direction since it last reported (sessions report in batches). */
  realtimeTraffic(direction: 'client_to_provider' | 'provider_to_client', frames: number, bytes: number) {
    const r = this.data.realtime
    r.frames[direction] = (r.frames[direction] ?? 0) + frames
    r.bytes[direction] = (r.bytes[direction] ?? 0) + bytes
  }

  /** A realtime session ended after `seconds`, for `reason` (client_closed, provider_closed, idle, max_length, …). */
  realtimeEnded(seconds: number, reason: string) {
    observe((this.data.realtime.length[''] ??= histogram(SESSION_BUCKETS)), SESSION_BUCKETS, seconds)
    this.data.realtime.ended[reason] = (this.data.realtime.ended[reason] ?? 0) + 1
  }

  record(f: FinishedRequest) {
    const s = this.seriesOf(f.ctx.endpoint, f.ctx.model?.name ?? '', f.target?.provider.name ?? '')
    const status = f.aborted ? 'aborted' : f.status
    s.requests.set(status, (s.requests.get(status) ?? 0) + 1)
    if (f.error) {
      const code = f.error.code ?? f.error.type
      s.errors.set(code, (s.errors.get(code) ?? 0) + 1)
    }
    observe((s.duration ??= histogram(DURATION_BUCKETS)), DURATION_BUCKETS, f.durationMs / 1000)
    if (f.stream && f.firstByteMs !== null) observe((s.ttft ??= histogram(TTFT_BUCKETS)), TTFT_BUCKETS, f.firstByteMs / 1000)
    if (f.usage) {
      s.tokens ??= { prompt: 0, completion: 0 }
      s.tokens.prompt += f.usage.prompt_tokens
      s.tokens.completion += f.usage.completion_tokens
    }
  }

  /** The numbers of one endpoint, model and provider: names the request already holds, so no label string is built. */
  private seriesOf(endpoint: string, model: string, provider: string): Series {
    let byModel = this.series.get(endpoint)
    if (!byModel) this.series.set(endpoint, (byModel = new Map()))
    let byProvider = byModel.get(model)
    if (!byProvider) byModel.set(model, (byProvider = new Map()))
    let series = byProvider.get(provider)
    if (!series) {
      series = { key: endpoint + SEP + model + SEP + provider, requests: new Map(), errors: new Map(), duration: null, ttft: null, tokens: null }
      byProvider.set(provider, series)
    }
    return series
  }

  /**
   * A counter of a plugin's own (`PluginApi.counter`), rendered and summed over workers like the built-in ones.
   * Declaring the same name again with the same labels returns the same counter (a plugin configured twice).
   */
  counter({ name, help, labelNames = [] }: CounterOptions): Counter {
    if (!METRIC_NAME.test(name) || BUILTIN_NAMES.has(name)) throw new Error(`'${name}' cannot be a plugin's metric name.`)
    const bad = labelNames.find((l) => !LABEL_NAME.test(l) || l.startsWith('__'))
    if (bad !== undefined) throw new Error(`'${bad}' cannot be a label name (metric '${name}').`)
    const family = (this.data.counters[name] ??= { help, labelNames, values: {} })
    if (family.labelNames.join() !== labelNames.join()) throw new Error(`Metric '${name}' is already declared with other labels.`)
    return {
      inc(labels = {}, by = 1) {
        const key = family.labelNames.map((l) => labels[l] ?? '').join(SEP)
        family.values[key] = (family.values[key] ?? 0) + by
      },
    }
  }

  snapshot(): MetricsSnapshot {
    const data = structuredClone(this.data)
    for (const byModel of this.series.values()) {
      for (const byProvider of byModel.values()) {
        for (const s of byProvider.values()) {
          for (const [status, n] of s.requests) data.requests[s.key + SEP + status] = n
          for (const [code, n] of s.errors) data.errors[s.key + SEP + code] = n
          if (s.duration) data.duration[s.key] = structuredClone(s.duration)
          if (s.ttft) data.ttft[s.key] = structuredClone(s.ttft)
          if (s.tokens) {
            data.tokens[s.key + SEP + 'prompt'] = s.tokens.prompt
            data.tokens[s.key + SEP + 'completion'] = s.tokens.completion
          }
        }
      }
    }
    data.realtime.open = this.realtimeOpen
    return { ...data, inflight: this.inflight, shed: this.shed, rssBytes: process.memoryUsage.rss() }
  }

  static merge(snapshots: MetricsSnapshot[]): MetricsSnapshot {
    const out = emptySnapshot()
    for (const s of snapshots) {
      for (const field of ['requests', 'errors', 'tokens'] as const) {
        for (const [k, v] of Object.entries(s[field])) out[field][k] = (out[field][k] ?? 0) + v
      }
      for (const field of ['duration', 'ttft'] as const) {
        for (const [k, h] of Object.entries(s[field])) {
          const target = (out[field][k] ??= { buckets: new Array(h.buckets.length).fill(0), sum: 0, count: 0 })
          h.buckets.forEach((n, i) => (target.buckets[i]! += n))
          target.sum += h.sum
          target.count += h.count
        }
      }
      out.inflight += s.inflight
      out.shed += s.shed
      out.rssBytes += s.rssBytes
      const r = s.realtime
      if (r) {
        out.realtime.open += r.open
        for (const field of ['frames', 'bytes', 'ended'] as const) {
          for (const [k, v] of Object.entries(r[field])) out.realtime[field][k] = (out.realtime[field][k] ?? 0) + v
        }
        for (const [k, h] of Object.entries(r.length)) {
          const target = (out.realtime.length[k] ??= { buckets: new Array(h.buckets.length).fill(0), sum: 0, count: 0 })
          h.buckets.forEach((n, i) => (target.buckets[i]! += n))
          target.sum += h.sum
          target.count += h.count
        }
      }
      for (const [name, family] of Object.entries(s.counters)) {
        const target = (out.counters[name] ??= { ...family, values: {} })
        for (const [k, v] of Object.entries(family.values)) target.values[k] = (target.values[k] ?? 0) + v
      }
    }
    return out
  }

  static render(s: MetricsSnapshot, workers = 1): string {
    const lines: string[] = []
    const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
    const labels = (names: string[], key: string, extra = '') => {
      const values = key.split(SEP)
      const parts = names.map((n, i) => `${n}="${escape(values[i] ?? '')}"`)
      if (extra) parts.push(extra)
      return parts.length > 0 ? `{${parts.join(',')}}` : ''
    }
    const base = ['endpoint', 'model', 'provider']
    const counter = (name: string, help: string, names: string[], map: Record<string, number>) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`)
      for (const [k, v] of Object.entries(map)) lines.push(`${name}${labels(names, k)} ${v}`)
    }
    const histogram = (name: string, help: string, bounds: number[], map: Record<string, Histogram>, names = base) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`)
      for (const [k, h] of Object.entries(map)) {
        let cumulative = 0
        bounds.forEach((le, i) => {
          cumulative += h.buckets[i]!
          lines.push(`${name}_bucket${labels(names, k, `le="${le}"`)} ${cumulative}`)
        })
        lines.push(`${name}_bucket${labels(names, k, 'le="+Inf"')} ${h.count}`)
        lines.push(`${name}_sum${labels(names, k)} ${h.sum}`, `${name}_count${labels(names, k)} ${h.count}`)
      }
    }
    counter('conduit_requests_total', 'Requests by endpoint, virtual model, provider and status (aborted: the client left).', [...base, 'status'], s.requests)
    counter('conduit_request_errors_total', 'Failed requests by error code.', [...base, 'code'], s.errors)
    counter('conduit_tokens_total', 'Tokens by direction (prompt, completion).', [...base, 'type'], s.tokens)
    histogram('conduit_request_duration_seconds', 'Time from request to last byte.', DURATION_BUCKETS, s.duration)
    histogram('conduit_time_to_first_token_seconds', 'Streams: time from request to the first byte sent.', TTFT_BUCKETS, s.ttft)
    lines.push('# HELP conduit_inflight_requests Requests being served now.', '# TYPE conduit_inflight_requests gauge', `conduit_inflight_requests ${s.inflight}`)
    lines.push('# HELP conduit_shed_requests_total Requests refused with 503 because a process was at its in-flight limit.', '# TYPE conduit_shed_requests_total counter', `conduit_shed_requests_total ${s.shed}`)
    lines.push('# HELP conduit_resident_memory_bytes Resident memory of all gateway processes.', '# TYPE conduit_resident_memory_bytes gauge', `conduit_resident_memory_bytes ${s.rssBytes}`)
    lines.push('# HELP conduit_workers Gateway worker processes.', '# TYPE conduit_workers gauge', `conduit_workers ${workers}`)
    const r = s.realtime ?? emptySnapshot().realtime
    lines.push('# HELP conduit_realtime_sessions_open Realtime sessions open now.', '# TYPE conduit_realtime_sessions_open gauge', `conduit_realtime_sessions_open ${r.open}`)
    counter('conduit_realtime_frames_total', 'Realtime frames relayed, by direction (client_to_provider, provider_to_client).', ['direction'], r.frames)
    counter('conduit_realtime_bytes_total', 'Realtime bytes relayed, by direction.', ['direction'], r.bytes)
    histogram('conduit_realtime_session_duration_seconds', 'How long realtime sessions lasted.', SESSION_BUCKETS, r.length, [])
    counter('conduit_realtime_sessions_ended_total', 'Realtime sessions ended, by reason.', ['reason'], r.ended)
    for (const [name, { help, labelNames, values }] of Object.entries(s.counters)) counter(name, help, labelNames, values)
    return lines.join('\n') + '\n'
  }
}
