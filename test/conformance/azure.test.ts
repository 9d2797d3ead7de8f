import { FAKE_API_KEY, FAKE_REPLY, startFakeAzure } from '../helpers/fake-azure.ts'
import { runConformance } from './kit.ts'

runConformance({
  name: 'azure',
  providerType: 'azure',
  // Small network writes split events and multi-byte characters, as a real connection may.
  startFake: () => startFakeAzure({ streamChunkBytes: 7 }),
  // The default api-version, 2024-10-21 (GA): the strictest about request fields.
  provider: { api_key: FAKE_API_KEY },
  upstreamModel: 'gpt4o-prod',
  reply: FAKE_REPLY,
  streamFixture: 'test/fixtures/azure-stream.sse',
  errors: {
    badRequestMessage: "Invalid 'messages': scripted failure (fail-400).",
    // Azure's codes pass through: none on model errors, its own strings on gateway errors.
    codes: { 400: null, 429: '429', 500: null, 503: 'ServiceUnavailable' },
    retryAfter: '6',
  },
  supports: { embeddings: { model: 'embed-prod' }, completions: { model: 'instruct-prod' }, images: true },
  // Fields the GA api-version does not know: Azure would answer 400 "Unrecognized request argument".
  params: { dropped: { store: true, metadata: { team: 'a' } } },
})
