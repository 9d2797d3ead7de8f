import { API_VERSION, definePlugin } from '../../plugin-sdk/index.ts'
import { DEFAULT_REGION, regionalBaseURL } from './config.ts'
import { buildRequest as buildEmbeddingsRequest, parseResponse as parseEmbeddingsResponse } from './embeddings.ts'
import { EventStreamFramer } from './framer.ts'
import { buildRequest } from './request.ts'
import { parseError, parseResponse } from './response.ts'
import { createStreamParser } from './stream.ts'
import { bedrockImages } from './images.ts'

/**
 * AWS Bedrock Runtime, translated to and from OpenAI: chat through Converse / ConverseStream (binary
 * event stream), embeddings through Amazon Titan Text Embeddings (InvokeModel). No legacy completions.
 *
 * Provider configuration:
 * - `base_url` (optional): default `https://bedrock-runtime.{region}.amazonaws.com`; a VPC endpoint or proxy
 *   may be given instead.
 * - `options.region`: the region requests are sent to and signed for. Default: the region named by a regional
 *   `base_url` host, else `us-east-1`.
 * - `api_key` (stored encrypted): `ACCESS_KEY_ID:SECRET_ACCESS_KEY` or `ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN`
 *   → every request is SigV4-signed by the AWS SDK signer (service `bedrock`; signed headers host, x-amz-date, x-amz-content-sha256 and the session token);
 *   or a Bedrock API key (no colon) → `Authorization: Bearer`. Without a key requests go unsigned.
 *   Temporary credentials are not refreshed: update the provider before they expire.
 * - `options.default_max_tokens`: maxTokens when the client sets none (else the model's default).
 * - `options.embedding_concurrency`: Titan calls in flight for one multi-input embeddings request (default 16).
 *
 * Translation: system/developer messages → `system`; consecutive same-role turns merged; images only as
 * base64 data URLs (PNG, JPEG, GIF, WebP; web URLs are refused with a 400, Converse cannot carry them);
 * `tool_choice` auto → default, required → `any`, a function → `tool`, none → tools left out (kept, and
 * `tool_choice` reported dropped, when the history holds tool calls, which Converse requires a toolConfig
 * for); temperature clamped to Converse's [0, 1]. `n` > 1 is refused; every other field Converse cannot carry
 * (logprobs, seed, response_format, user, …) is dropped and listed in `x-conduit-dropped-params`.
 * Embeddings: strings only; `dimensions` and `normalize: true` for Titan v2; one call per input.
 * onUpstreamRequest plugins must not change the body or the signed headers of a signed request.
 */
export default definePlugin({
  name: 'provider-bedrock',
  version: '1.0.0',
  apiVersion: API_VERSION,
  setup(api) {
    api.registerProvider({
      id: 'bedrock',
      defaultBaseURL: regionalBaseURL(DEFAULT_REGION),
      chat: {
        passthrough: false,
        buildRequest,
        parseResponse,
        parseError,
        createStreamParser,
        createStreamFramer: () => new EventStreamFramer(),
      },
      embeddings: { passthrough: false, buildRequest: buildEmbeddingsRequest, parseResponse: parseEmbeddingsResponse, parseError },
      // Titan Image Generator and Stability through InvokeModel (images.ts).
      images: bedrockImages,
      image_edits: bedrockImages,
      image_variations: bedrockImages,
    })
  },
})
