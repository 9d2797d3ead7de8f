/**
 * @conduit/plugin-sdk — the public API for Conduit plugins.
 * External plugins import this specifier; the host provides it as a virtual module so plugins share its copy.
 */
export { Type as t } from '@sinclair/typebox'
export type { Static, TSchema } from '@sinclair/typebox'
export { within } from './deadline.ts'
export { GatewayError, badRequest, type ErrorBody, type GatewayErrorOptions } from './errors.ts'
export {
  OPENAI_AUDIO_ABILITIES,
  declaredAudioAbilities,
  openAICompatible,
  parseOpenAIError,
  singleChoice,
  transcriptionUpload,
  PERMISSIVE_IMAGE_ABILITIES,
  declaredImageAbilities,
  imageUpload,
  openAIImageAbilities,
  openAIImageParams,
  type OpenAICompatibleOptions,
  type ParamAction,
  type ParamPolicy,
} from './openai-compatible.ts'
export * from './audio/index.ts'
export { multipartBody, type MultipartValue } from './multipart.ts'
export { clientFormat, languageName, speakerLabel } from './transcripts.ts'
export { speechUsage, transcriptionUsage, worstCaseAudioUsage } from './audio-usage.ts'
export { imageUsage, requestedImages, worstCaseImageUsage } from './images-usage.ts'
export { OPENAI_REALTIME_FORMATS, compatibleRealtime } from './openai-realtime.ts'
export { estimatePromptTokens, estimateTokens, imageParts } from './tokens.ts'
export { endUserOf } from './end-user.ts'
export { jsonText, type SentJson } from './json-text.ts'
export { clusterOptions, commandTimeoutOf, connectionLike } from './redis.ts'
export { assistantTexts, hasMedia, parseDataUrl, promptCacheUsage, textOf, toolArguments, userParts, type PartHandlers } from './translate.ts'
export * from './types.ts'
import type { Plugin } from './types.ts'

/** Identity function that gives plugin authors type inference for their config. */
export const definePlugin = <C = any>(plugin: Plugin<C>): Plugin<C> => plugin
