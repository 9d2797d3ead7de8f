import { API_VERSION, definePlugin } from '../../plugin-sdk/index.ts'
import { buildRequest } from './request.ts'
import { parseChatResponse, parseCompletionResponse, parseError } from './response.ts'
import { createStreamParser } from './stream.ts'

/**
 * Azure OpenAI. `base_url` is the resource endpoint (`https://<resource>.openai.azure.com`), a target's `model`
 * is the deployment name, `options.api_version` picks a dated api-version (default 2024-10-21) or `v1`, the
 * OpenAI-shaped surface. The key goes in the `api-key` header.
 *
 * Chat and legacy completions are parsed rather than forwarded as bytes: every Azure stream opens with a chunk
 * that is not valid OpenAI, and bodies carry content-filter annotations (see stream.ts, response.ts).
 * Embeddings need no change and are forwarded as they come.
 */
export default definePlugin({
  name: 'provider-azure',
  version: '1.0.0',
  apiVersion: API_VERSION,
  setup(api) {
    api.registerProvider({
      id: 'azure',
      chat: {
        passthrough: false,
        buildRequest: (body, ctx) => buildRequest('chat', body, ctx),
        parseResponse: parseChatResponse,
        parseError,
        createStreamParser: createStreamParser('chat'),
      },
      completions: {
        passthrough: false,
        buildRequest: (body, ctx) => buildRequest('completions', body, ctx),
        parseResponse: parseCompletionResponse,
        parseError,
        createStreamParser: createStreamParser('completions'),
      },
      embeddings: {
        passthrough: true,
        buildRequest: (body, ctx) => buildRequest('embeddings', body, ctx),
        parseError,
      },
    })
  },
})
