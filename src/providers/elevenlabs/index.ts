import { API_VERSION, definePlugin } from '../../plugin-sdk/index.ts'
import { parseError } from './errors.ts'
import { DEFAULT_BASE_URL, abilities } from './shared.ts'
import { buildSpeechRequest } from './speech.ts'
import { buildTranscriptionRequest, parseTranscript } from './transcription.ts'

/**
 * ElevenLabs: speech through `POST /v1/text-to-speech/{voice_id}/stream` (bytes relayed as they are made) and
 * transcription through `POST /v1/speech-to-text` (Scribe), with the `xi-api-key` header. A target's `model` is the
 * ElevenLabs model (`eleven_flash_v2_5`, `scribe_v1`, …); `options.voices` maps OpenAI voice names to voice ids and
 * `options.voice_settings` sets stability, similarity and style for every request. ElevenLabs does not translate
 * speech into English, so there is no translations endpoint.
 */
export default definePlugin({
  name: 'provider-elevenlabs',
  version: '1.0.0',
  apiVersion: API_VERSION,
  setup(api) {
    api.registerProvider({
      id: 'elevenlabs',
      defaultBaseURL: DEFAULT_BASE_URL,
      speech: { abilities, buildRequest: buildSpeechRequest, parseError },
      transcriptions: { abilities, buildRequest: buildTranscriptionRequest, parseTranscript, parseError },
    })
  },
})
