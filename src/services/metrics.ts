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

function observe(map: Record<string, Histogram>, key: string, bounds: number[], value: number) {
  let h = map[key]
  if (!h) h = map[key] = { buckets: new Array(bounds.length).fill(0), sum: 0, count: 0 }
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

export class Metrics {
  private data = emptySnapshot()
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
    observe(this.data.realtime.length, '', SESSION_BUCKETS, seconds)
    this.data.realtime.ended[reason] = (this.data.realtime.ended[reason] ?? 0) + 1
  }

  record(f: FinishedRequest) {
    const endpoint = f.ctx.endpoint
    const model = f.ctx.model?.name ?? ''
    const provider = f.target?.provider.name ?? ''
    const key = endpoint + SEP + model + SEP + provider
    const status = f.aborted ? 'aborted' : String(f.status)
    const requestKey = key + SEP + status
    this.data.requests[requestKey] = (this.data.requests[requestKey] ?? 0) + 1
    if (f.error) {
      const errorKey = key + SEP + (f.error.code ?? f.error.type)
      this.data.errors[errorKey] = (this.data.errors[errorKey] ?? 0) + 1
    }
    observe(this.data.duration, key, DURATION_BUCKETS, f.durationMs / 1000)
    if (f.stream && f.firstByteMs !== null) observe(this.data.ttft, key, TTFT_BUCKETS, f.firstByteMs / 1000)
    if (f.usage) {
      const prompt = key + SEP + 'prompt'
      const completion = key + SEP + 'completion'
      this.data.tokens[prompt] = (this.data.tokens[prompt] ?? 0) + f.usage.prompt_tokens
      this.data.tokens[completion] = (this.data.tokens[completion] ?? 0) + f.usage.completion_tokens
    }
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
