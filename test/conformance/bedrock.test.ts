import { FAKE_ACCESS_KEY_ID, FAKE_REPLY, FAKE_SECRET_ACCESS_KEY, startFakeBedrock } from '../helpers/fake-bedrock.ts'
import { runConformance } from './kit.ts'

runConformance({
  name: 'bedrock (Converse, Titan embeddings)',
  providerType: 'bedrock',
  // Small network writes split binary frames, and the characters inside them, anywhere.
  startFake: () => startFakeBedrock({ streamChunkBytes: 5 }),
  provider: { api_key: `${FAKE_ACCESS_KEY_ID}:${FAKE_SECRET_ACCESS_KEY}`, options: { region: 'us-east-1' } },
  // A signature made with the wrong secret: AWS's InvalidSignatureException.
  wrongProvider: { api_key: `${FAKE_ACCESS_KEY_ID}:wrong-conformance-secret` },
  // Model ids carry a `:`, which the signature must encode twice.
  upstreamModel: 'anthropic.claude-3-5-sonnet-20240620-v1:0',
  reply: FAKE_REPLY,
  streamFixture: 'test/fixtures/bedrock-stream.bin',
  errors: {
    badRequestMessage: 'The model returned the following errors: Input is too long for requested model. (fail-400)',
    // The adapter reports Bedrock's exception name as the code.
    codes: { 400: 'ValidationException', 429: 'ThrottlingException', 500: 'InternalServerException', 503: 'ServiceUnavailableException' },
    // Bedrock's ThrottlingException carries no Retry-After.
    retryAfter: null,
  },
  params: { dropped: { seed: 7, logprobs: true, presence_penalty: 0.5 }, refused: { n: 2 } },
  supports: { embeddings: { model: 'amazon.titan-embed-text-v2:0' }, images: true },
})
