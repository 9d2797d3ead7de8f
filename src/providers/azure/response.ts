import { GatewayError, parseOpenAIError, type AttemptContext } from '../../plugin-sdk/index.ts'

/**
 * Azure's annotations: content-filter verdicts on the prompt and on each choice. They are not part of OpenAI's
 * format; clients of an OpenAI-compatible gateway get the OpenAI shape, and the verdict that matters (a
 * filtered completion) survives as `finish_reason: "content_filter"`.
 */
const RESPONSE_ANNOTATIONS = ['prompt_filter_results', 'prompt_annotations'] as const
const CHOICE_ANNOTATIONS = ['content_filter_results', 'content_filter_offsets', 'content_filter_raw'] as const

export function stripAnnotations(target: Record<string, any>) {
  for (const key of RESPONSE_ANNOTATIONS) delete target[key]
  if (Array.isArray(target.choices)) for (const choice of target.choices) if (choice) for (const key of CHOICE_ANNOTATIONS) delete choice[key]
}

const badResponse = () => new GatewayError(502, 'The upstream provider returned a response that is not a completion.', { code: 'upstream_bad_response' })

/**
 * Azure chat completion → OpenAI's. Besides the annotations, older api-versions omit `refusal` and `logprobs`,
 * and a completion the filter withheld comes without `content`; the OpenAI format requires all three.
 */
export function parseChatResponse(body: any, _ctx: AttemptContext): Record<string, any> {
  if (!body || typeof body !== 'object' || !Array.isArray(body.choices)) throw badResponse()
  stripAnnotations(body)
  body.object ||= 'chat.completion'
  for (const choice of body.choices) {
    choice.message ??= { role: 'assistant' }
    if (choice.message.content === undefined) choice.message.content = null
    if (choice.message.refusal === undefined) choice.message.refusal = null
    if (choice.logprobs === undefined) choice.logprobs = null
    choice.finish_reason ??= 'stop'
  }
  return body
}

/** Azure text completion → OpenAI's (same normalisation as chat). */
export function parseCompletionResponse(body: any, _ctx: AttemptContext): Record<string, any> {
  if (!body || typeof body !== 'object' || !Array.isArray(body.choices)) throw badResponse()
  stripAnnotations(body)
  body.object ||= 'text_completion'
  for (const choice of body.choices) {
    if (typeof choice.text !== 'string') choice.text = ''
    if (choice.logprobs === undefined) choice.logprobs = null
    choice.finish_reason ??= 'stop'
  }
  return body
}

/**
 * Azure errors are OpenAI-like, `{error:{code,message,param?,type?,status?,innererror?}}`, with codes that may be
 * strings ("DeploymentNotFound", "content_filter", "429"). The SDK helper reads all of them; `retry-after-ms`,
 * which Azure sends beside `retry-after` on 429s, is passed on so OpenAI SDKs can wait the precise time.
 */
export function parseError(status: number, body: unknown, headers: Headers): GatewayError {
  const error = parseOpenAIError(status, body, 'azure')
  const retryAfterMs = headers.get('retry-after-ms')
  if (retryAfterMs) error.headers['retry-after-ms'] = retryAfterMs
  return error
}
