/** What a protocol with one output at a time (a Responses item, a Messages content block) is told to emit. */
export type CallStep =
  | { type: 'open'; index: number; id: string | undefined; name: string }
  | { type: 'args'; index: number; fragment: string }
  | { type: 'close'; index: number }

interface Call {
  id: string | undefined
  name: string
  arguments: string
}

/**
 * Parallel tool calls of a chat stream, one at a time. Chat deltas name their call by `index`, so a provider may
 * interleave the calls' arguments; a Responses item and a Messages content block are open one at a time, and
 * clients take a call's `done` / `content_block_stop` as its end. So one call is open: the deltas of the others
 * wait until its arguments are a whole JSON value (or the stream's end), then the next opens with what it
 * gathered. Calls that come one after another (OpenAI's way) open as soon as the next one starts.
 */
export class ToolCallOrder {
  private readonly calls = new Map<number, Call>()
  private open: number | null = null
  private readonly waiting: number[] = []
  private last = -1

  /** The steps one chat tool-call delta makes. */
  delta(delta: Record<string, any>): CallStep[] {
    const steps: CallStep[] = []
    // Without an index (some OpenAI-compatible servers), a delta with an id starts a call, one without continues the last.
    const index = typeof delta.index === 'number' ? delta.index : delta.id || this.last === -1 ? this.calls.size : this.last
    this.last = index
    let call = this.calls.get(index)
    if (!call) {
      call = { id: delta.id ?? undefined, name: delta.function?.name ?? '', arguments: '' }
      this.calls.set(index, call)
      if (this.open === null) this.opening(index, steps)
      else this.waiting.push(index)
    }
    const fragment = delta.function?.arguments
    if (typeof fragment === 'string' && fragment !== '') {
      call.arguments += fragment
      if (index === this.open) steps.push({ type: 'args', index, fragment })
    }
    // The open call is over once its arguments are whole and another call has begun.
    while (this.open !== null && this.waiting.length > 0 && isWholeJson(this.calls.get(this.open)!.arguments)) {
      steps.push({ type: 'close', index: this.open })
      this.opening(this.waiting.shift()!, steps)
    }
    return steps
  }

  /** Every call to its end: the open one closed, each waiting one opened with its arguments and closed. */
  finish(): CallStep[] {
    const steps: CallStep[] = []
    while (this.open !== null) {
      steps.push({ type: 'close', index: this.open })
      const next = this.waiting.shift()
      this.open = null
      if (next !== undefined) this.opening(next, steps)
    }
    return steps
  }

  private opening(index: number, steps: CallStep[]) {
    const call = this.calls.get(index)!
    this.open = index
    steps.push({ type: 'open', index, id: call.id, name: call.name })
    if (call.arguments !== '') steps.push({ type: 'args', index, fragment: call.arguments })
  }
}

function isWholeJson(text: string): boolean {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}
