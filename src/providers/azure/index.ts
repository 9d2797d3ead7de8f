import { API_VERSION, OPENAI_AUDIO_ABILITIES, declaredAudioAbilities, definePlugin, type AudioAbilities, type ProviderConfig } from '../../plugin-sdk/index.ts'
import { buildAudioRequest, buildRequest } from './request.ts'
import { parseChatResponse, parseCompletionResponse, parseError } from './response.ts'
import { createStreamParser } from './stream.ts'
import { azureRealtime } from './realtime.ts'
import { azureImages } from './images.ts'

/**
 * Azure OpenAI. `base_url` is the resource endpoint (`https://<resource>.openai.azure.com`), a target's `model`
 * is the deployment name, `options.api_version` picks a dated api-version (default 2024-10-21) or `v1`, the
 * OpenAI-shaped surface. The key goes in the `api-key` header.
 *
 * Chat and legacy completions are parsed rather than forwarded as bytes: every Azure stream opens with a chunk
 * that is not valid OpenAI, and bodies carry content-filter annotations (see stream.ts, response.ts).
 * Embeddings need no change and are forwarded as they come. Audio (Whisper and TTS deployments) keeps OpenAI's
 * format: 25 MB uploads; transcripts do not stream on the deployment API.
 */
const AZURE_AUDIO: AudioAbilities = { ...OPENAI_AUDIO_ABILITIES, transcriptFormats: ['json', 'text', 'srt', 'verbose_json', 'vtt'], streamTranscripts: false }
const abilities = (provider: ProviderConfig) => declaredAudioAbilities(provider, AZURE_AUDIO)

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
      transcriptions: { abilities, buildRequest: (body, ctx) => buildAudioRequest('transcriptions', body, ctx), parseError },
      translations: { abilities, buildRequest: (body, ctx) => buildAudioRequest('translations', body, ctx), parseError },
      speech: { abilities, buildRequest: (body, ctx) => buildAudioRequest('speech', body, ctx), parseError },
      realtime: azureRealtime,
      images: azureImages,
      image_edits: azureImages,
      image_variations: azureImages,
    })
  },
})
