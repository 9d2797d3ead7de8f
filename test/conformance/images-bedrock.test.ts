import { FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY } from '../helpers/fake-bedrock.ts'
import { TITAN_FILTER_MESSAGE, startFakeBedrockImages } from '../helpers/fake-bedrock-images.ts'
import { BLUE, GREEN, RED } from '../images/pictures.ts'
import { runImagesConformance } from './images-kit.ts'

// Titan Image Generator v2 through SigV4-signed InvokeModel: generations, variations, prompt-steered edits.
// 512x512 standard: $0.008 an image.
runImagesConformance({
  name: 'bedrock titan',
  providerType: 'bedrock',
  startFake: () => startFakeBedrockImages(),
  provider: { api_key: `${FAKE_ACCESS_KEY_ID}:${FAKE_SECRET_ACCESS_KEY}` },
  generation: { model: 'amazon.titan-image-generator-v2:0', size: '512x512', pixels: [512, 512], colour: RED, maxN: 5, badSize: '256x256', costUsd: 0.008 },
  streams: false,
  edit: { model: 'amazon.titan-image-generator-v2:0', colour: GREEN, maxImages: 5, maxUploadBytes: 5 * 1024 * 1024 },
  variation: { model: 'amazon.titan-image-generator-v2:0', colour: BLUE },
  refusal: { code: 'ValidationException', message: new RegExp(TITAN_FILTER_MESSAGE.slice(0, 40)) },
})
