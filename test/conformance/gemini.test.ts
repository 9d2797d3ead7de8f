import { FAKE_API_KEY, FAKE_REPLY, startFakeGemini } from '../helpers/fake-gemini.ts'
import { runConformance } from './kit.ts'

runConformance({
  name: 'gemini',
  providerType: 'gemini',
  // Small network writes split events, CRLF pairs and multi-byte characters, as a real connection may.
  startFake: () => startFakeGemini({ streamChunkBytes: 7 }),
  provider: { api_key: FAKE_API_KEY },
  upstreamModel: 'gemini-2.5-flash',
  reply: FAKE_REPLY,
  streamFixture: 'test/fixtures/gemini-stream.sse',
  errors: {
    badRequestMessage: 'Request contains an invalid argument.',
    // The adapter reports Google's status name, lowercased, as the code.
    codes: { 400: 'invalid_argument', 429: 'resource_exhausted', 500: 'internal', 503: 'unavailable' },
    // From the RetryInfo detail of Google's 429 (Gemini sends no Retry-After header).
    retryAfter: '3',
  },
  // Gemini has no logprobs in OpenAI's shape and no end-user id: dropped and signalled, never silently lost.
  params: { dropped: { logprobs: true, user: 'conformance-user' } },
  supports: {
    embeddings: { model: 'gemini-embedding-001' },
    images: (request) => request.body.contents[0].parts.some((p: any) => p.inlineData?.mimeType === 'image/png' && p.inlineData.data.length > 0),
  },
})
