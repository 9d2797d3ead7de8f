import { DEFAULT_REPLY, startFakeOpenAI } from '../helpers/fake-openai.ts'
import { runConformance } from './kit.ts'

/** A preset of the OpenAI-compatible family with a parameter policy (drops logprobs, refuses n > 1, chat only). */
runConformance({
  name: 'groq (preset) via fake-openai',
  providerType: 'groq',
  startFake: () => startFakeOpenAI(),
  provider: { api_key: 'sk-upstream-test' },
  upstreamModel: 'llama-3.3-70b-versatile',
  reply: DEFAULT_REPLY,
  streamFixture: 'test/fixtures/openai-chat-stream.sse',
  errors: {
    badRequestMessage: "Invalid 'messages': scripted failure (fail-400).",
    codes: { 400: null, 429: 'rate_limit_exceeded', 500: null, 503: 'server_is_overloaded' },
    retryAfter: '2',
  },
  // The preset declares completions and embeddings off: the gateway refuses them without calling Groq.
  supports: { images: true },
  params: { dropped: { logprobs: true, top_logprobs: 2, logit_bias: { '50256': -100 } }, refused: { n: 2 } },
})
