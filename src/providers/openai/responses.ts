import { jsonText, parseOpenAIError, type EndpointAdapter } from '../../plugin-sdk/index.ts'

const DEFAULT_BASE_URL = 'https://api.openai.com/v1'

/**
 * OpenAI's Responses API itself (`POST {baseURL}/responses`): a `/v1/responses` request reaches it as the client
 * sent it (the gateway's previous response folded into `input`), only `model` set to the target's; the answer is
 * relayed as it comes.
 */
export const openAIResponses: EndpointAdapter = {
  passthrough: true,
  buildRequest(body, ctx) {
    const { provider, model } = ctx.target
    const baseURL = (provider.baseURL ?? DEFAULT_BASE_URL).replace(/\/+$/, '')
    return {
      url: `${baseURL}/responses`,
      headers: {
        'content-type': 'application/json',
        accept: body.stream === true ? 'text/event-stream' : 'application/json',
        ...(provider.apiKey ? { authorization: `Bearer ${provider.apiKey}` } : {}),
      },
      body: jsonText({ ...body, model }, ctx.request.sentJson),
    }
  },
  parseError: (status, body) => parseOpenAIError(status, body, 'openai'),
}
