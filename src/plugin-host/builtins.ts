import type { Plugin } from '../plugin-sdk/types.ts'
import audioTranscode from '../plugins/audio-transcode/index.ts'
import auth from '../plugins/auth/index.ts'
import budget from '../plugins/budget/index.ts'
import rateLimit from '../plugins/rate-limit/index.ts'
import requestLog from '../plugins/request-log/index.ts'
import anthropic from '../providers/anthropic/index.ts'
import bedrock from '../providers/bedrock/index.ts'
import azure from '../providers/azure/index.ts'
import cohere from '../providers/cohere/index.ts'
import deepgram from '../providers/deepgram/index.ts'
import elevenlabs from '../providers/elevenlabs/index.ts'
import gemini from '../providers/gemini/index.ts'
import { presetPlugins } from '../providers/openai-compatible/presets.ts'

/**
 * Built-in plugins, registered through the same door as external ones. Static imports keep them inside the
 * compiled binary. They are loaded by default; a config entry `builtin:<name>` configures or disables one.
 */
export const BUILTINS: Record<string, Plugin> = Object.fromEntries(
  [auth, rateLimit, budget, requestLog, audioTranscode, anthropic, azure, cohere, gemini, bedrock, elevenlabs, deepgram, ...presetPlugins].map((plugin) => [plugin.name, plugin]),
)
