import { FAKE_OPENAI_IMAGES_KEY, startFakeOpenAIImages } from '../helpers/fake-openai-images.ts'
import { BLUE, GREEN, RED } from '../images/pictures.ts'
import { runImagesConformance } from './images-kit.ts'

// gpt-image-1: base64 only (URLs served by the gateway), streams partial images, token-priced.
// 1024x1024 medium: 1056 output tokens at $40/M plus the prompt's text tokens at $5/M ("A red square": 3).
runImagesConformance({
  name: 'openai gpt-image-1',
  providerType: 'openai',
  startFake: () => startFakeOpenAIImages(),
  provider: { api_key: FAKE_OPENAI_IMAGES_KEY },
  generation: { model: 'gpt-image-1', size: '1024x1024', pixels: [1024, 1024], colour: RED, maxN: 10, badSize: '256x256', costUsd: (1056 * 40 + 3 * 5) / 1e6 },
  streams: true,
  edit: { model: 'gpt-image-1', colour: GREEN, maxImages: 16, maxUploadBytes: 50 * 1024 * 1024 },
  variation: { model: 'dall-e-2', colour: BLUE },
  refusal: { code: 'content_policy_violation', message: /safety system/ },
})

// dall-e-2: URLs from the provider's own host, base64 when asked, priced per image by size; edits take one PNG ≤ 4 MB.
runImagesConformance({
  name: 'openai dall-e-2',
  providerType: 'openai',
  startFake: () => startFakeOpenAIImages(),
  provider: { api_key: FAKE_OPENAI_IMAGES_KEY },
  generation: { model: 'dall-e-2', size: '256x256', pixels: [256, 256], colour: RED, maxN: 10, badSize: '1792x1024', costUsd: 0.016 },
  streams: false,
  edit: { model: 'dall-e-2', colour: GREEN, maxImages: 1, maxUploadBytes: 4 * 1024 * 1024 },
  variation: { model: 'dall-e-2', colour: BLUE },
  refusal: { code: 'content_policy_violation', message: /safety system/ },
})
