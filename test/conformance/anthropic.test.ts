import { FAKE_REPLY, startFakeAnthropic } from '../helpers/fake-anthropic.ts'
import { runConformance } from './kit.ts'

runConformance({
  name: 'anthropic',
  providerType: 'anthropic',
  // Small network writes split events and multi-byte characters, as a real connection may.
  startFake: () => startFakeAnthropic({ streamChunkBytes: 7 }),
  provider: { api_key: 'sk-ant-test' },
  upstreamModel: 'claude-sonnet-4-5',
  reply: FAKE_REPLY,
  streamFixture: 'test/fixtures/anthropic-stream.sse',
  errors: {
    badRequestMessage: 'messages.0.content: scripted failure (fail-400)',
    // The adapter reports Anthropic's error type as the code.
    codes: { 400: 'invalid_request_error', 429: 'rate_limit_error', 500: 'api_error', 503: 'api_error' },
    retryAfter: '3',
  },
  params: { dropped: { seed: 7, logprobs: true, presence_penalty: 0.5 }, refused: { n: 2 } },
  // Anthropic has no embeddings nor legacy completions: the gateway must refuse them itself.
  supports: {
    images: (request) => request.body.messages[0].content.some((b: any) => b.type === 'image' && b.source?.type === 'base64' && b.source.media_type === 'image/png'),
  },
})
