/** Cohere API v2 wire types (the subset Conduit produces and reads): `POST /v2/chat`, `POST /v2/embed`. */

export interface CohereTextContent {
  type: 'text'
  text: string
}

export interface CohereImageContent {
  type: 'image_url'
  image_url: { url: string; detail?: 'auto' | 'low' | 'high' }
}

export type CohereUserContent = CohereTextContent | CohereImageContent

export interface CohereToolCall {
  id: string
  type: 'function'
  function: { name: string; arguments: string }
}

export type CohereMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string | CohereUserContent[] }
  | { role: 'assistant'; content?: string; tool_plan?: string; tool_calls?: CohereToolCall[] }
  | { role: 'tool'; tool_call_id: string; content: CohereTextContent[] }

export interface CohereTool {
  type: 'function'
  function: { name: string; description?: string; parameters: Record<string, unknown> }
}

export interface CohereChatRequest {
  model: string
  messages: CohereMessage[]
  stream?: boolean
  tools?: CohereTool[]
  strict_tools?: boolean
  tool_choice?: 'REQUIRED' | 'NONE'
  max_tokens?: number
  stop_sequences?: string[]
  temperature?: number
  p?: number
  seed?: number
  frequency_penalty?: number
  presence_penalty?: number
  response_format?: { type: 'json_object'; json_schema?: Record<string, unknown> }
}

/** Upper case in the API; a few lower-case and newer values exist in SDK types, hence the open string. */
export type CohereFinishReason = 'COMPLETE' | 'STOP_SEQUENCE' | 'MAX_TOKENS' | 'TOOL_CALL' | 'ERROR' | 'TIMEOUT' | (string & {})

export interface CohereUsage {
  billed_units?: { input_tokens?: number; output_tokens?: number }
  tokens?: { input_tokens?: number; output_tokens?: number }
}

export interface CohereChatResponse {
  id: string
  finish_reason: CohereFinishReason
  message: {
    role: 'assistant'
    content?: ({ type: 'text'; text: string } | { type: string; [key: string]: unknown })[]
    tool_plan?: string
    tool_calls?: CohereToolCall[]
    citations?: unknown[]
  }
  usage?: CohereUsage
}

/** Stream events: `event: <type>` with `data: {"type": <type>, …}`. */
export type CohereStreamEvent =
  | { type: 'message-start'; id?: string; delta?: { message?: { role?: 'assistant' } } }
  | { type: 'content-start'; index?: number; delta?: { message?: { content?: { type?: string; text?: string } } } }
  | { type: 'content-delta'; index?: number; delta?: { message?: { content?: { text?: string; thinking?: string } } } }
  | { type: 'content-end'; index?: number }
  | { type: 'tool-plan-delta'; delta?: { message?: { tool_plan?: string } } }
  | { type: 'tool-call-start'; index?: number; delta?: { message?: { tool_calls?: Partial<CohereToolCall> } } }
  | { type: 'tool-call-delta'; index?: number; delta?: { message?: { tool_calls?: { function?: { arguments?: string } } } } }
  | { type: 'tool-call-end'; index?: number }
  | { type: 'citation-start' | 'citation-end'; index?: number }
  | { type: 'message-end'; id?: string; delta?: { finish_reason?: CohereFinishReason; error?: string; usage?: CohereUsage } }
  | { type: 'debug' }

export type CohereInputType = 'search_document' | 'search_query' | 'classification' | 'clustering'

export interface CohereEmbedRequest {
  model: string
  texts: string[]
  input_type: CohereInputType
  embedding_types: ['float']
  output_dimension?: number
}

export interface CohereEmbedResponse {
  id: string
  embeddings: { float?: number[][] }
  texts?: string[]
  meta?: { billed_units?: { input_tokens?: number } }
}
