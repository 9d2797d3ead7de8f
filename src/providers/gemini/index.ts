import { API_VERSION, definePlugin } from '../../plugin-sdk/index.ts'
import { DEFAULT_BASE_URL, buildEmbeddingsRequest, buildRequest } from './request.ts'
import { parseEmbeddingsResponse, parseError, parseResponse } from './response.ts'
import { createStreamParser } from './stream.ts'
import { geminiImageEdits, geminiImages } from './images.ts'

/**
 * Google Gemini API (generativelanguage v1beta), translated to and from OpenAI chat completions and
 * embeddings. Gemini has no legacy completions endpoint.
 */
export default definePlugin({
  name: 'provider-gemini',
  version: '1.0.0',
  apiVersion: API_VERSION,
  setup(api) {
    api.registerProvider({
      id: 'gemini',
      defaultBaseURL: DEFAULT_BASE_URL,
      chat: { passthrough: false, buildRequest, parseResponse, parseError, createStreamParser },
      embeddings: { passthrough: false, buildRequest: buildEmbeddingsRequest, parseResponse: parseEmbeddingsResponse, parseError },
      images: geminiImages,
      image_edits: geminiImageEdits,
    })
  },
})
