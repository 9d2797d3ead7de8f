import { API_VERSION, definePlugin } from '../../plugin-sdk/index.ts'
import { parseError } from './errors.ts'
import { DEFAULT_BASE_URL, abilities } from './shared.ts'
import { buildSpeechRequest } from './speech.ts'
import { buildTranscriptionRequest, parseTranscript } from './transcription.ts'

/**
 * Deepgram: transcription through `POST /v1/listen` (the audio bytes are the body; a target's `model` is `nova-3`,
 * `nova-2`, …) and speech through `POST /v1/speak` (Aura; the model is the voice, see speech.ts), with
 * `Authorization: Token <key>`. `options.voices` maps OpenAI voice names to Aura models. Deepgram does not translate
 * speech into English, so there is no translations endpoint.
 */
export default definePlugin({
  name: 'provider-deepgram',
  version: '1.0.0',
  apiVersion: API_VERSION,
  setup(api) {
    api.registerProvider({
      id: 'deepgram',
      defaultBaseURL: DEFAULT_BASE_URL,
      speech: { abilities, buildRequest: buildSpeechRequest, parseError },
      transcriptions: { abilities, buildRequest: buildTranscriptionRequest, parseTranscript, parseError },
    })
  },
})
