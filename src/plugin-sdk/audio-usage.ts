import { estimateTokens } from './tokens.ts'
import type { AudioUpload, Operation, Usage } from './types.ts'

/**
 * Usage of audio requests in the units they are priced in, for the core (what a request used) and for budget
 * plugins (what it may use at worst).
 */

/**
 * OpenAI prices gpt-4o-mini-tts output at $12 per million audio tokens and publishes it as about $0.015 a
 * minute: 1,250 audio tokens a minute. Used only when the audio's length is known but its tokens are not.
 */
export const SPEECH_TOKENS_PER_SECOND = 1250 / 60
/** Likewise gpt-4o-transcribe input: $6 per million audio tokens, about $0.006 a minute. */
export const TRANSCRIPTION_TOKENS_PER_SECOND = 1000 / 60
/** Speech runs at about 15 characters a second: the length of audio nobody measured. */
export const CHARACTERS_PER_SECOND = 15

/**
 * A transcription's usage: the provider's tokens when it reports them, and the seconds it reports (what it bills),
 * else the seconds we measured. A file's headers are the client's to write; the provider decoded the audio.
 */
export function transcriptionUsage(upload: AudioUpload, body: Record<string, any>, reported: any): Usage {
  const count = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : null)
  const reportedSeconds = reported?.type === 'duration' && typeof reported.seconds === 'number' && Number.isFinite(reported.seconds) && reported.seconds >= 0 ? reported.seconds : null
  const seconds = reportedSeconds ?? upload.durationSeconds ?? undefined
  if (reported && reported.type !== 'duration' && count(reported.input_tokens) !== null && count(reported.output_tokens) !== null) {
    const input = count(reported.input_tokens)!
    const output = count(reported.output_tokens)!
    const usage: Usage = { prompt_tokens: input, completion_tokens: output, total_tokens: input + output, audio_seconds: seconds }
    const audio = count(reported.input_token_details?.audio_tokens)
    if (audio !== null) usage.prompt_audio_tokens = Math.min(audio, input)
    return usage
  }
  // Seconds-priced models report seconds (or nothing); tokens are our estimate, for token-priced ones. The usage is
  // the provider's when it reported the seconds it bills by.
  const audioTokens = Math.ceil((seconds ?? 0) * TRANSCRIPTION_TOKENS_PER_SECOND)
  const prompt = audioTokens + estimateTokens(String(body.prompt ?? ''))
  const usage: Usage = { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt, prompt_audio_tokens: audioTokens, audio_seconds: seconds }
  if (reportedSeconds === null) usage.estimated = true
  return usage
}

/** Speech: the characters are exact; the tokens are estimated from the audio's length (measured for PCM, WAV and MP3). */
export function speechUsage(body: Record<string, any>, audioSeconds: number | null, reported?: any): Usage {
  const characters = [...String(body.input ?? '')].length
  if (reported && typeof reported.input_tokens === 'number' && typeof reported.output_tokens === 'number') {
    return {
      prompt_tokens: reported.input_tokens,
      completion_tokens: reported.output_tokens,
      total_tokens: reported.input_tokens + reported.output_tokens,
      completion_audio_tokens: reported.output_tokens,
      characters,
    }
  }
  const prompt = estimateTokens(String(body.input ?? '') + String(body.instructions ?? ''))
  const seconds = audioSeconds ?? characters / CHARACTERS_PER_SECOND
  const completion = Math.ceil(seconds * SPEECH_TOKENS_PER_SECOND)
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, completion_audio_tokens: completion, characters, estimated: true }
}


/** Audio a request may carry at worst when nothing could measure it: at 8 kbit/s, the lowest rate speech codecs use. */
const BYTES_PER_SECOND_AT_LEAST = 1000
/** Transcripts run at about 3 words a second; 10 tokens a second bounds them. */
const TRANSCRIPT_TOKENS_PER_SECOND_AT_MOST = 10

/** The most an audio request can use: its full input, the longest transcript, speech at a slow pace. Null for other operations. */
export function worstCaseAudioUsage(operation: Operation | null, body: Record<string, any>): Usage | null {
  if (operation === 'speech') {
    const usage = speechUsage(body, ([...String(body.input ?? '')].length / CHARACTERS_PER_SECOND) * 2)
    return { ...usage, estimated: true }
  }
  if (operation !== 'transcriptions' && operation !== 'translations') return null
  const file = body.file as AudioUpload | undefined
  // Providers bill whole seconds, rounded up (whisper-1 bills a 1.05 s clip as 2 s), and decode a frame or so more or
  // less than we measured: one second more covers both.
  const seconds = file ? Math.ceil(file.durationSeconds ?? file.size / BYTES_PER_SECOND_AT_LEAST) + 1 : 0
  const audio = Math.ceil(seconds * TRANSCRIPTION_TOKENS_PER_SECOND)
  const prompt = audio + Buffer.byteLength(String(body.prompt ?? ''))
  const completion = Math.ceil(seconds * TRANSCRIPT_TOKENS_PER_SECOND_AT_MOST) + 100
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_audio_tokens: audio, audio_seconds: seconds, estimated: true }
}
