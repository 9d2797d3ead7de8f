import { DEFAULT_REPLY, startFakeOpenAI } from '../helpers/fake-openai.ts'
import { runConformance } from './kit.ts'

runConformance({
  name: 'openai',
  providerType: 'openai',
  startFake: () => startFakeOpenAI(),
  provider: { api_key: 'sk-upstream-test' },
  upstreamModel: 'gpt-4o',
  reply: DEFAULT_REPLY,
  streamFixture: 'test/fixtures/openai-chat-stream.sse',
  errors: {
    badRequestMessage: "Invalid 'messages': scripted failure (fail-400).",
    codes: { 400: null, 429: 'rate_limit_exceeded', 500: null, 503: 'server_is_overloaded' },
    retryAfter: '2',
  },
  supports: { embeddings: { model: 'text-embedding-3-small' }, completions: { model: 'gpt-3.5-turbo-instruct' }, images: true },
})
