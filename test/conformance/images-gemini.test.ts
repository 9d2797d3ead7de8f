import { FAKE_GEMINI_IMAGES_KEY, startFakeGeminiImages } from '../helpers/fake-gemini-images.ts'
import { RED } from '../images/pictures.ts'
import { runImagesConformance } from './images-kit.ts'

// Imagen through :predict: base64 only, no streaming, no edits or variations; $0.04 an image.
runImagesConformance({
  name: 'gemini imagen',
  providerType: 'gemini',
  startFake: () => startFakeGeminiImages(),
  provider: { api_key: FAKE_GEMINI_IMAGES_KEY },
  generation: { model: 'imagen-4.0-generate-001', size: '1280x896', pixels: [1280, 896], colour: RED, maxN: 4, badSize: '1792x1024', costUsd: 0.04 },
  streams: false,
  refusal: { code: 'content_policy_violation', message: /may violate our policies/ },
})
