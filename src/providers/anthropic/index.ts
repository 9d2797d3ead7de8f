import { API_VERSION, definePlugin } from '../../plugin-sdk/index.ts'
import { buildMessagesRequest } from './messages.ts'
import { DEFAULT_BASE_URL, buildRequest } from './request.ts'
import { parseError, parseResponse } from './response.ts'
import { createStreamParser } from './stream.ts'

/**
 * Anthropic Messages API, translated to and from OpenAI chat completions, and spoken as it is to clients of the
 * gateway's own `/v1/messages`. No embeddings or legacy completions: Anthropic has neither endpoint.
 */
export default definePlugin({
  name: 'provider-anthropic',
  version: '1.0.0',
  apiVersion: API_VERSION,
  setup(api) {
    api.registerProvider({
      id: 'anthropic',
      defaultBaseURL: DEFAULT_BASE_URL,
      chat: { passthrough: false, buildRequest, parseResponse, parseError, createStreamParser },
      messages: { buildRequest: buildMessagesRequest, parseError },
    })
  },
})
