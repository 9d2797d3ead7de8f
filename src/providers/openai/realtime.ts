import { compatibleRealtime } from '../../plugin-sdk/index.ts'

/**
 * OpenAI's realtime API: `wss://api.openai.com/v1/realtime?model=…`, GA events by default and the beta ones with
 * `OpenAI-Beta: realtime=v1` (both relayed as they are), pcm16 and G.711 both ways.
 */
export const openAIRealtime = compatibleRealtime('https://api.openai.com/v1')
