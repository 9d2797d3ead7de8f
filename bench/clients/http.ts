/** The client side shared by the runner and the load processes: request bodies, timed calls, SSE reading. */

export interface Target {
  /** Full URL of POST /v1/chat/completions. */
  url: string
  headers: Record<string, string>
}

/** A short chat request; streams ask for usage so every arm has the same frames to relay. */
export function chatBody(model: string, stream: boolean): string {
  const body: Record<string, unknown> = { model, messages: [{ role: 'user', content: 'Hello, how are you?' }] }
  if (stream) {
    body.stream = true
    body.stream_options = { include_usage: true }
  }
  return JSON.stringify(body)
}

export const requestHeaders = (t: Target) => ({ ...t.headers, 'content-type': 'application/json' })

/** One non-streaming request, timed from send to the last byte of the body. */
export async function timedJson(t: Target, body: string, timeoutMs = 10_000): Promise<{ ms: number; status: number }> {
  const start = performance.now()
  try {
    const res = await fetch(t.url, { method: 'POST', headers: requestHeaders(t), body, signal: AbortSignal.timeout(timeoutMs) })
    await res.arrayBuffer()
    return { ms: performance.now() - start, status: res.status }
  } catch {
    return { ms: performance.now() - start, status: 0 }
  }
}

export interface StreamResult {
  status: number
  /** ms from send to the first event carrying content. */
  ttftMs: number
  /** ms from send to the end of the body. */
  totalMs: number
  /** `data:` events received. */
  events: number
  contentEvents: number
  /** The last event was `data: [DONE]`. */
  doneLast: boolean
  /** Largest gap between two reads after the first content event, ms. */
  maxGapMs: number
  aborted: boolean
  error: string | null
}

const STAMP = /"content":"tok\d+@([\d.]+) /

/**
 * Sends a streaming request and reads the SSE body, timestamping every read. `abortAfterEvents` makes the
 * client hang up mid-stream (the soak's abort traffic). `delivery` collects, per content chunk, the ms between
 * the mock sending it and this client reading it (clocks of two processes on one machine: compare arms only).
 */
export async function readStream(t: Target, body: string, o: { timeoutMs?: number; abortAfterEvents?: number; delivery?: number[] } = {}): Promise<StreamResult> {
  const start = performance.now()
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new Error('client timeout')), o.timeoutMs ?? 60_000)
  const r: StreamResult = { status: 0, ttftMs: NaN, totalMs: NaN, events: 0, contentEvents: 0, doneLast: false, maxGapMs: 0, aborted: false, error: null }
  try {
    const res = await fetch(t.url, { method: 'POST', headers: requestHeaders(t), body, signal: controller.signal })
    r.status = res.status
    if (!res.body) throw new Error('no body')
    const reader = res.body.getReader()
    const decoder = new TextDecoder()
    let buffer = ''
    let last = NaN
    let lastEvent = ''
    for (;;) {
      const { value, done } = await reader.read()
      const now = performance.now()
      if (done) break
      buffer += decoder.decode(value, { stream: true })
      let end = buffer.indexOf('\n\n')
      if (end === -1) continue
      if (!Number.isNaN(last) && now - last > r.maxGapMs) r.maxGapMs = now - last
      while (end !== -1) {
        const event = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        if (event.startsWith('data:')) {
          r.events++
          lastEvent = event
          if (event.includes('"content":"')) {
            r.contentEvents++
            if (Number.isNaN(r.ttftMs)) r.ttftMs = now - start
            if (o.delivery) {
              // The mock stamps each chunk with its wall-clock send time: `tok<n>@<ms> `.
              const sentAt = STAMP.exec(event)
              if (sentAt) o.delivery.push(performance.timeOrigin + now - Number(sentAt[1]))
            }
          }
        }
        end = buffer.indexOf('\n\n')
      }
      if (!Number.isNaN(r.ttftMs)) last = now
      if (o.abortAfterEvents !== undefined && r.events >= o.abortAfterEvents) {
        r.aborted = true
        controller.abort()
        break
      }
    }
    r.doneLast = lastEvent.trim() === 'data: [DONE]'
    r.totalMs = performance.now() - start
  } catch (error) {
    if (!r.aborted) r.error = error instanceof Error ? error.message : String(error)
    r.totalMs = performance.now() - start
  } finally {
    clearTimeout(timer)
  }
  return r
}
