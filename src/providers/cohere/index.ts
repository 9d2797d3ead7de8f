import { API_VERSION, definePlugin } from '../../plugin-sdk/index.ts'
import { buildEmbedRequest, parseEmbedResponse } from './embed.ts'
import { DEFAULT_BASE_URL, buildChatRequest } from './request.ts'
import { parseChatResponse, parseError } from './response.ts'
import { createStreamParser } from './stream.ts'

/**
 * Cohere API v2 (`/v2/chat`, `/v2/embed`), translated to and from OpenAI chat completions and embeddings.
 * Cohere has no legacy completions endpoint.
 */
export default definePlugin({
  name: 'provider-cohere',
  version: '1.0.0',
  apiVersion: API_VERSION,
  setup(api) {
    api.registerProvider({
      id: 'cohere',
      defaultBaseURL: DEFAULT_BASE_URL,
      chat: { passthrough: false, buildRequest: buildChatRequest, parseResponse: parseChatResponse, parseError, createStreamParser },
      embeddings: { passthrough: false, buildRequest: buildEmbedRequest, parseResponse: parseEmbedResponse, parseError },
    })
  },
})
