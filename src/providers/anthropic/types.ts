/** Anthropic Messages API wire types (the subset Conduit produces and reads; API version 2023-06-01). */

export const ANTHROPIC_VERSION = '2023-06-01'

export interface AnthropicTextBlock {
  type: 'text'
  text: string
}

export type AnthropicImageSource = { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string }

export interface AnthropicImageBlock {
  type: 'image'
  source: AnthropicImageSource
}

export interface AnthropicToolUseBlock {
  type: 'tool_use'
  id: string
  name: string
  input: Record<string, unknown>
}

export interface AnthropicToolResultBlock {
  type: 'tool_result'
  tool_use_id: string
  content: string | AnthropicContentBlockParam[]
}

/** A PDF, sent inline (Anthropic's document block). */
export interface AnthropicDocumentBlock {
  type: 'document'
  source: { type: 'base64'; media_type: 'application/pdf'; data: string }
}

export type AnthropicContentBlockParam = AnthropicTextBlock | AnthropicImageBlock | AnthropicDocumentBlock | AnthropicToolUseBlock | AnthropicToolResultBlock

export interface AnthropicMessageParam {
  role: 'user' | 'assistant'
  content: AnthropicContentBlockParam[]
}

export interface AnthropicTool {
  name: string
  description?: string
  input_schema: Record<string, unknown>
  strict?: boolean
}

export type AnthropicToolChoice =
  | { type: 'auto' | 'any'; disable_parallel_tool_use?: boolean }
  | { type: 'tool'; name: string; disable_parallel_tool_use?: boolean }
  | { type: 'none' }

export interface AnthropicMessagesRequest {
  model: string
  max_tokens: number
  messages: AnthropicMessageParam[]
  system?: string
  stop_sequences?: string[]
  temperature?: number
  top_p?: number
  top_k?: number
  tools?: AnthropicTool[]
  tool_choice?: AnthropicToolChoice
  metadata?: { user_id: string }
  stream?: boolean
}

export type AnthropicStopReason =
  | 'end_turn'
  | 'max_tokens'
  | 'stop_sequence'
  | 'tool_use'
  | 'pause_turn'
  | 'refusal'
  | 'model_context_window_exceeded'

export interface AnthropicUsage {
  input_tokens: number
  output_tokens: number
  cache_creation_input_tokens?: number | null
  cache_read_input_tokens?: number | null
}

/** Response content: text and tool_use matter to us; thinking and server-tool blocks are skipped. */
export type AnthropicContentBlock = AnthropicTextBlock | AnthropicToolUseBlock | { type: string; [key: string]: unknown }

export interface AnthropicMessage {
  id: string
  type: 'message'
  role: 'assistant'
  model: string
  content: AnthropicContentBlock[]
  stop_reason: AnthropicStopReason | null
  stop_sequence: string | null
  usage: AnthropicUsage
}

export interface AnthropicErrorBody {
  type: 'error'
  error: { type: string; message: string }
  request_id?: string
}

/** Streaming events, discriminated by `type` (which repeats the SSE `event:` name). */
export type AnthropicStreamEvent =
  | { type: 'message_start'; message: AnthropicMessage }
  | { type: 'content_block_start'; index: number; content_block: AnthropicContentBlock }
  | {
      type: 'content_block_delta'
      index: number
      delta:
        | { type: 'text_delta'; text: string }
        | { type: 'input_json_delta'; partial_json: string }
        | { type: 'thinking_delta' | 'signature_delta' | 'citations_delta' }
    }
  | { type: 'content_block_stop'; index: number }
  | {
      type: 'message_delta'
      delta: { stop_reason: AnthropicStopReason | null; stop_sequence: string | null }
      usage: Partial<AnthropicUsage> & { output_tokens: number }
    }
  | { type: 'message_stop' }
  | { type: 'ping' }
  | { type: 'error'; error: { type: string; message: string } }
