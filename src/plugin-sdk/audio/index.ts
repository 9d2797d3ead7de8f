/** Pure-TypeScript audio helpers for plugins: format sniffing, header durations, WAV, G.711 and resampling. */
export { AUDIO_MIME, sniffAudioFormat } from './sniff.ts'
export { audioInfo, mp3ByteRate, type AudioInfo } from './info.ts'
export { readWavHeader, wavHeader, type WavHeader } from './wav.ts'
export { alawToLinear, alawToPcm16, linearToAlaw, linearToMulaw, mulawToLinear, mulawToPcm16, pcm16ToAlaw, pcm16ToMulaw } from './g711.ts'
export { PcmResampler, pcm16FromBytes, pcm16ToBytes } from './pcm.ts'
