import { FAKE_API_KEY, FAKE_REPLY, startFakeCohere } from '../helpers/fake-cohere.ts'
import { runConformance } from './kit.ts'

runConformance({
  name: 'cohere',
  providerType: 'cohere',
  // Small network writes split events and multi-byte characters, as a real connection may.
  startFake: () => startFakeCohere({ streamChunkBytes: 7 }),
  provider: { api_key: FAKE_API_KEY },
  upstreamModel: 'command-a-03-2025',
  reply: FAKE_REPLY,
  streamFixture: 'test/fixtures/cohere-stream.sse',
  errors: {
    badRequestMessage: 'invalid request: scripted failure (fail-400).',
    // Cohere's bodies carry a message only, and its 429 no retry header.
    codes: { 400: null, 429: null, 500: null, 503: null },
    retryAfter: null,
  },
  supports: { embeddings: { model: 'embed-v4.0' }, images: true },
  params: { dropped: { logprobs: true, logit_bias: { '50256': -100 }, user: 'u-42' }, refused: { n: 2 } },
})
