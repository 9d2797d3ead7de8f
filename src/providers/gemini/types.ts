/** Google Gemini API (generativelanguage v1beta) wire types: the subset Conduit produces and reads. REST JSON is camelCase. */

export interface GeminiBlob {
  mimeType: string
  /** Base64. */
  data: string
}

export interface GeminiFileData {
  mimeType?: string
  fileUri: string
}

export interface GeminiFunctionCall {
  /** Absent from generateContent answers; present on some surfaces (Live API). */
  id?: string
  name: string
  args?: Record<string, unknown>
}

export interface GeminiFunctionResponse {
  id?: string
  name: string
  response: Record<string, unknown>
}

/** A Part holds exactly one of its data fields (a proto oneof); `thought` and `thoughtSignature` ride alongside. */
export interface GeminiPart {
  text?: string
  inlineData?: GeminiBlob
  fileData?: GeminiFileData
  functionCall?: GeminiFunctionCall
  functionResponse?: GeminiFunctionResponse
  /** True on a summary of the model's reasoning (only with `includeThoughts`). */
  thought?: boolean
  /** Opaque, base64: must be sent back on the function-call part it came with (Gemini 3 refuses the turn otherwise). */
  thoughtSignature?: string
}

export interface GeminiContent {
  role?: 'user' | 'model'
  parts: GeminiPart[]
}

export interface GeminiFunctionDeclaration {
  name: string
  description?: string
  /** Full JSON Schema (unlike `parameters`, which is an OpenAPI subset that rejects e.g. `additionalProperties`). */
  parametersJsonSchema?: unknown
}

export interface GeminiTool {
  functionDeclarations: GeminiFunctionDeclaration[]
}

export type GeminiFunctionCallingMode = 'AUTO' | 'ANY' | 'NONE' | 'VALIDATED'

export interface GeminiToolConfig {
  functionCallingConfig: { mode: GeminiFunctionCallingMode; allowedFunctionNames?: string[] }
}

export interface GeminiGenerationConfig {
  stopSequences?: string[]
  candidateCount?: number
  maxOutputTokens?: number
  temperature?: number
  topP?: number
  topK?: number
  seed?: number
  presencePenalty?: number
  frequencyPenalty?: number
  responseMimeType?: string
  responseJsonSchema?: unknown
}

export interface GeminiGenerateContentRequest {
  contents: GeminiContent[]
  systemInstruction?: { parts: { text: string }[] }
  tools?: GeminiTool[]
  toolConfig?: GeminiToolConfig
  generationConfig?: GeminiGenerationConfig
}

export type GeminiFinishReason =
  | 'FINISH_REASON_UNSPECIFIED'
  | 'STOP'
  | 'MAX_TOKENS'
  | 'SAFETY'
  | 'RECITATION'
  | 'LANGUAGE'
  | 'OTHER'
  | 'BLOCKLIST'
  | 'PROHIBITED_CONTENT'
  | 'SPII'
  | 'MALFORMED_FUNCTION_CALL'
  | 'IMAGE_SAFETY'
  | 'IMAGE_PROHIBITED_CONTENT'
  | 'IMAGE_RECITATION'
  | 'IMAGE_OTHER'
  | 'NO_IMAGE'
  | 'UNEXPECTED_TOOL_CALL'
  | 'TOO_MANY_TOOL_CALLS'
  | 'MISSING_THOUGHT_SIGNATURE'
  | 'MALFORMED_RESPONSE'

export interface GeminiCandidate {
  /** Proto3 JSON leaves out default values, so candidate 0 often has no `index`. */
  index?: number
  /** Missing when the candidate was blocked before producing anything. */
  content?: { role?: string; parts?: GeminiPart[] }
  finishReason?: GeminiFinishReason | string
  safetyRatings?: unknown[]
}

export interface GeminiUsageMetadata {
  promptTokenCount?: number
  candidatesTokenCount?: number
  totalTokenCount?: number
  cachedContentTokenCount?: number
  thoughtsTokenCount?: number
  toolUsePromptTokenCount?: number
}

export interface GeminiGenerateContentResponse {
  candidates?: GeminiCandidate[]
  promptFeedback?: { blockReason?: string; safetyRatings?: unknown[] }
  usageMetadata?: GeminiUsageMetadata
  modelVersion?: string
  responseId?: string
}

/** google.rpc.Status as JSON; `details` holds typed messages (ErrorInfo, RetryInfo, BadRequest, …). */
export interface GeminiErrorBody {
  error: { code: number; message: string; status: string; details?: { '@type': string; [key: string]: unknown }[] }
}

export interface GeminiEmbedContentRequest {
  /** `models/{model}`: must equal the model of the URL. */
  model: string
  content: { parts: { text: string }[] }
  outputDimensionality?: number
}

export interface GeminiBatchEmbedContentsRequest {
  requests: GeminiEmbedContentRequest[]
}

export interface GeminiBatchEmbedContentsResponse {
  embeddings: { values: number[] }[]
}
