import { PERMISSIVE_IMAGE_ABILITIES, openAICompatible, singleChoice, type ImageAbilities, type ImageOperation, type OpenAICompatibleOptions } from '../../plugin-sdk/index.ts'
import type { RealtimeAdapter } from '../../plugin-sdk/index.ts'
import { openAIRealtime } from '../openai/realtime.ts'
import { openAIResponses } from '../openai/responses.ts'
import { compatibleRealtime } from '../../plugin-sdk/index.ts'

/**
 * Providers that speak OpenAI's wire format, each with the parameter policy its API documents: fields it
 * rejects are dropped (and signalled in `x-conduit-dropped-params`) or refused with a 400, never silently lost.
 */
const ALL_AUDIO: ('transcriptions' | 'translations' | 'speech')[] = ['transcriptions', 'translations', 'speech']
const ALL_IMAGES: ImageOperation[] = ['images', 'image_edits', 'image_variations']
/** Images from a server that only generates: no edits, one form of answer or the other as asked. */
const generates = (returns: ImageAbilities['returns'], extra: Partial<ImageAbilities> = {}) => (): ImageAbilities => ({ ...PERMISSIVE_IMAGE_ABILITIES, returns, ...extra })

export const PRESETS: OpenAICompatibleOptions[] = [
  // OpenAI refuses `top_k` (Anthropic and Gemini clients send it): dropped and signalled rather than a 400.
  { id: 'openai', baseURL: 'https://api.openai.com/v1', params: { top_k: 'drop' }, audio: { operations: ALL_AUDIO }, images: { operations: ALL_IMAGES }, responses: openAIResponses },
  // A server we know nothing about: ask for float embeddings and encode base64 ourselves. Its audio abilities are
  // OpenAI's unless the admin declares them (options.audio): Speaches, LocalAI, vLLM…
  { id: 'openai-compatible', base64Embeddings: false, audio: { operations: ALL_AUDIO }, images: { operations: ALL_IMAGES } },
  {
    id: 'groq',
    baseURL: 'https://api.groq.com/openai/v1',
    params: { logprobs: 'drop', top_logprobs: 'drop', logit_bias: 'drop', n: singleChoice },
    endpoints: { completions: false, embeddings: false },
    // Whisper on Groq: no srt/vtt (rendered by the gateway from verbose_json), no streaming; 25 MB uploads (free tier).
    audio: {
      operations: ['transcriptions', 'translations'],
      abilities: { transcriptFormats: ['json', 'text', 'verbose_json'], streamTranscripts: false, inputFormats: ['flac', 'mp3', 'm4a', 'ogg', 'wav', 'webm'] },
    },
  },
  {
    id: 'together',
    baseURL: 'https://api.together.xyz/v1',
    base64Embeddings: false,
    // FLUX and friends: `width`/`height` rather than `size`; OpenAI's GPT-image fields mean nothing there.
    images: {
      operations: ['images'],
      abilities: generates('either', { maxN: 4 }),
      params: () => ({ quality: 'drop', style: 'drop', background: 'drop', moderation: 'drop', output_compression: 'drop' }),
      prepare: (body) => {
        const size = /^(\d+)x(\d+)$/.exec(String(body.size ?? ''))
        if (size) Object.assign(body, { width: Number(size[1]), height: Number(size[2]) })
        delete body.size
      },
    },
  },
  { id: 'fireworks', baseURL: 'https://api.fireworks.ai/inference/v1', base64Embeddings: false },
  { id: 'deepinfra', baseURL: 'https://api.deepinfra.com/v1/openai', base64Embeddings: false },
  {
    id: 'mistral',
    baseURL: 'https://api.mistral.ai/v1',
    rename: { seed: 'random_seed' },
    params: { logit_bias: 'drop', logprobs: 'drop', top_logprobs: 'drop', stream_options: 'drop' },
    streamUsage: false,
    base64Embeddings: false,
    endpoints: { completions: false },
  },
  { id: 'openrouter', baseURL: 'https://openrouter.ai/api/v1', endpoints: { embeddings: false } },
  { id: 'ollama', baseURL: 'http://127.0.0.1:11434/v1', auth: 'none', params: { logit_bias: 'drop', n: singleChoice }, base64Embeddings: false },
  // vLLM serves Whisper models at OpenAI's transcription paths; no speech.
  {
    id: 'vllm',
    baseURL: 'http://127.0.0.1:8000/v1',
    audio: { operations: ['transcriptions', 'translations'], abilities: { transcriptFormats: ['json', 'text'], streamTranscripts: true } },
  },
  {
    id: 'xai',
    baseURL: 'https://api.x.ai/v1',
    params: { logit_bias: 'drop' },
    endpoints: { embeddings: false },
    // grok-2-image: prompt, n and response_format only (its URLs are on imgen.x.ai).
    images: {
      operations: ['images'],
      abilities: generates('either', { urlHosts: ['imgen.x.ai'] }),
      params: () => Object.fromEntries(['size', 'quality', 'style', 'background', 'moderation', 'output_format', 'output_compression', 'user'].map((f) => [f, 'drop' as const])),
    },
  },
  {
    id: 'deepseek',
    baseURL: 'https://api.deepseek.com/v1',
    params: { logit_bias: 'drop', n: singleChoice },
    endpoints: { embeddings: false },
  },
  {
    id: 'cerebras',
    baseURL: 'https://api.cerebras.ai/v1',
    params: { frequency_penalty: 'drop', presence_penalty: 'drop', logit_bias: 'drop', n: singleChoice },
    endpoints: { embeddings: false },
  },
]

/** Realtime WebSockets: OpenAI's own, and servers that speak its API (their audio formats declared in `options.realtime`). */
const REALTIME: Record<string, RealtimeAdapter> = { openai: openAIRealtime, 'openai-compatible': compatibleRealtime() }

export const presetPlugins = PRESETS.map((preset) => openAICompatible(REALTIME[preset.id] ? { ...preset, realtime: REALTIME[preset.id] } : preset))
