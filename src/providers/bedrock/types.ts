/**
 * AWS Bedrock Runtime wire types: the subset of Converse / ConverseStream that Conduit produces and reads,
 * and the Amazon Titan Text Embeddings body of InvokeModel. Field names are Bedrock's (camelCase).
 */

export type ImageFormat = 'png' | 'jpeg' | 'gif' | 'webp'

export interface TextBlock {
  text: string
}

export interface ImageBlock {
  image: { format: ImageFormat; source: { bytes: string } }
}

export interface ToolUseBlock {
  toolUse: { toolUseId: string; name: string; input: unknown }
}

export interface ToolResultBlock {
  toolResult: { toolUseId: string; content: (TextBlock | ImageBlock)[]; status?: 'success' | 'error' }
}

export type ContentBlock = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock

export interface Message {
  role: 'user' | 'assistant'
  content: ContentBlock[]
}

export interface ToolSpec {
  toolSpec: { name: string; description?: string; inputSchema: { json: Record<string, unknown> } }
}

export type ToolChoice = { auto: Record<string, never> } | { any: Record<string, never> } | { tool: { name: string } }

export interface ToolConfiguration {
  tools: ToolSpec[]
  toolChoice?: ToolChoice
}

export interface InferenceConfiguration {
  maxTokens?: number
  temperature?: number
  topP?: number
  stopSequences?: string[]
}

export interface ConverseRequest {
  messages: Message[]
  system?: TextBlock[]
  inferenceConfig?: InferenceConfiguration
  toolConfig?: ToolConfiguration
}

export type StopReason =
  | 'end_turn'
  | 'tool_use'
  | 'max_tokens'
  | 'stop_sequence'
  | 'guardrail_intervened'
  | 'content_filtered'
  | 'malformed_model_output'
  | 'malformed_tool_use'
  | 'model_context_window_exceeded'

/** Bedrock counts cache reads and writes apart from `inputTokens`. */
export interface TokenUsage {
  inputTokens: number
  outputTokens: number
  totalTokens: number
  cacheReadInputTokens?: number
  cacheWriteInputTokens?: number
}

/** Response content: text and toolUse matter to us; reasoning and citation blocks are skipped. */
export type OutputContentBlock = Partial<TextBlock> & Partial<ToolUseBlock> & Record<string, unknown>

export interface ConverseResponse {
  output: { message: { role: 'assistant'; content: OutputContentBlock[] } }
  stopReason: StopReason
  usage?: TokenUsage
  metrics?: { latencyMs: number }
}

/** ConverseStream event payloads, by `:event-type`. Real payloads also carry a random-length `p` padding field. */
export interface StreamEvents {
  messageStart: { role: 'assistant' }
  contentBlockStart: { contentBlockIndex: number; start: { toolUse?: { toolUseId: string; name: string } } }
  contentBlockDelta: {
    contentBlockIndex: number
    delta: { text?: string; toolUse?: { input: string }; reasoningContent?: unknown }
  }
  contentBlockStop: { contentBlockIndex: number }
  messageStop: { stopReason: StopReason }
  metadata: { usage?: TokenUsage; metrics?: { latencyMs: number } }
}

/** Amazon Titan Text Embeddings (v1 takes only `inputText`). */
export interface TitanEmbeddingRequest {
  inputText: string
  dimensions?: number
  normalize?: boolean
}

export interface TitanEmbeddingResponse {
  embedding: number[]
  inputTextTokenCount: number
}
