import type { GatewayError } from '../../plugin-sdk/errors.ts'
import type { ChatStreamTranslator } from '../front-door.ts'
import { ToolCallOrder, type CallStep } from '../tool-call-order.ts'
import { newId, outputText, type Item } from './items.ts'
import { responseObject, responsesUsage, statusOf, type ResponseShell } from './response.ts'

/** The codes `response.failed` may carry (the spec's `ResponseErrorCode`); anything else is a server error. */
export const failureCode = (error: GatewayError) => (error.status === 429 ? 'rate_limit_exceeded' : 'server_error')

/**
 * Chat chunks as the Responses API's events, in OpenAI's order: `response.created` and `.in_progress` first; the
 * assistant message (`output_item.added`, `content_part.added`, `output_text.delta`…, then their `.done`s) and
 * each function call (`output_item.added`, `function_call_arguments.delta`…, `.done`, `output_item.done`) as they
 * come; `response.completed` (or `.incomplete`) with usage last, or `response.failed` when the stream broke.
 */
export class ResponsesStream implements ChatStreamTranslator {
  private sequence = 0
  private started = false
  private readonly output: Item[] = []
  /** The assistant message being written, and its content part. */
  private message: Item | null = null
  private part: Item | null = null
  /** Function calls one at a time (see ToolCallOrder), and their items by chat `index` once open. */
  private readonly order = new ToolCallOrder()
  private readonly calls = new Map<number, Item>()
  private finishReason: string | null = null
  private usage: Record<string, any> | null = null
  private final: Record<string, any> | null = null

  constructor(private readonly shell: ResponseShell) {}

  chunk(chunk: Record<string, any>): string {
    let out = this.start()
    if (chunk.usage) this.usage = chunk.usage
    const choice = (chunk.choices as any[] | undefined)?.find((c) => (c.index ?? 0) === 0)
    if (!choice) return out
    const delta = choice.delta ?? {}
    if (typeof delta.content === 'string' && delta.content !== '') out += this.text('output_text', delta.content)
    if (typeof delta.refusal === 'string' && delta.refusal !== '') out += this.text('refusal', delta.refusal)
    for (const call of delta.tool_calls ?? []) out += this.callSteps(this.order.delta(call))
    if (choice.finish_reason) this.finishReason = choice.finish_reason
    return out
  }

  end(error: GatewayError | null): string {
    let out = this.start()
    if (error) {
      // Kept too, as OpenAI keeps a failed response: GET shows what went wrong.
      this.final = responseObject(this.shell, 'failed', this.output, responsesUsage(this.usage), { error: { code: failureCode(error), message: error.message } })
      return out + this.event('response.failed', { response: this.final })
    }
    out += this.closeMessage() + this.callSteps(this.order.finish())
    const { status, incompleteReason } = statusOf(this.finishReason)
    this.final = responseObject(this.shell, status, this.output, responsesUsage(this.usage), { incompleteReason })
    return out + this.event(status === 'completed' ? 'response.completed' : 'response.incomplete', { response: this.final })
  }

  result(): Record<string, any> | null {
    return this.final
  }

  private event(type: string, fields: Record<string, unknown>): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.sequence++, ...fields })}\n\n`
  }

  private start(): string {
    if (this.started) return ''
    this.started = true
    const response = responseObject(this.shell, 'in_progress', [], null)
    return this.event('response.created', { response }) + this.event('response.in_progress', { response })
  }

  /** Text or refusal for the assistant message, opening it (and the part of that kind) when needed. */
  private text(kind: 'output_text' | 'refusal', delta: string): string {
    let out = this.callSteps(this.order.finish())
    if (!this.message) {
      this.message = { id: newId('msg'), type: 'message', status: 'in_progress', role: 'assistant', content: [] }
      out += this.event('response.output_item.added', { output_index: this.output.length, item: this.message })
      this.output.push(this.message)
    }
    const itemId = this.message.id
    const outputIndex = this.output.length - 1
    if (this.part?.type !== kind) {
      out += this.closePart()
      this.part = kind === 'output_text' ? outputText('') : { type: 'refusal', refusal: '' }
      out += this.event('response.content_part.added', { item_id: itemId, output_index: outputIndex, content_index: this.message.content.length, part: { ...this.part } })
      this.message.content.push(this.part)
    }
    const contentIndex = this.message.content.length - 1
    if (kind === 'refusal') {
      this.part.refusal += delta
      return out + this.event('response.refusal.delta', { item_id: itemId, output_index: outputIndex, content_index: contentIndex, delta })
    }
    this.part.text += delta
    return out + this.event('response.output_text.delta', { item_id: itemId, output_index: outputIndex, content_index: contentIndex, delta, logprobs: [] })
  }

  private closePart(): string {
    const part = this.part
    if (!part || !this.message) return ''
    this.part = null
    const where = { item_id: this.message.id, output_index: this.output.indexOf(this.message), content_index: this.message.content.indexOf(part) }
    const done =
      part.type === 'refusal'
        ? this.event('response.refusal.done', { ...where, refusal: part.refusal })
        : this.event('response.output_text.done', { ...where, text: part.text, logprobs: [] })
    return done + this.event('response.content_part.done', { ...where, part })
  }

  private closeMessage(): string {
    const message = this.message
    if (!message) return ''
    const out = this.closePart()
    this.message = null
    message.status = 'completed'
    return out + this.event('response.output_item.done', { output_index: this.output.indexOf(message), item: message })
  }

  /** Function call items as the calls open, stream their arguments and close. */
  private callSteps(steps: CallStep[]): string {
    let out = ''
    for (const step of steps) {
      if (step.type === 'open') {
        out += this.closeMessage()
        const call: Item = { id: newId('fc'), type: 'function_call', status: 'in_progress', call_id: step.id ?? newId('call'), name: step.name, arguments: '' }
        this.calls.set(step.index, call)
        out += this.event('response.output_item.added', { output_index: this.output.length, item: { ...call } })
        this.output.push(call)
        continue
      }
      const call = this.calls.get(step.index)!
      const outputIndex = this.output.indexOf(call)
      if (step.type === 'args') {
        call.arguments += step.fragment
        out += this.event('response.function_call_arguments.delta', { item_id: call.id, output_index: outputIndex, delta: step.fragment })
        continue
      }
      call.status = 'completed'
      out +=
        this.event('response.function_call_arguments.done', { item_id: call.id, name: call.name, output_index: outputIndex, arguments: call.arguments }) +
        this.event('response.output_item.done', { output_index: outputIndex, item: call })
    }
    return out
  }
}
