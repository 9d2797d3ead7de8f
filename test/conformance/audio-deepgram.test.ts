import { FAKE_DEEPGRAM_KEY, FAKE_DG_TRANSCRIPT, startFakeDeepgram } from '../helpers/fake-deepgram.ts'
import { runAudioConformance } from './audio-kit.ts'

runAudioConformance({
  name: 'deepgram',
  providerType: 'deepgram',
  startFake: () => startFakeDeepgram(),
  provider: { api_key: FAKE_DEEPGRAM_KEY, options: { voices: { alloy: 'aura-2-zeus-en' } } },
  speech: { model: 'aura-2-thalia-en', voice: 'alloy', native: ['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm'], upstreamVoice: 'aura-2-zeus-en', voiceIsModel: true },
  transcription: { model: 'nova-3', text: FAKE_DG_TRANSCRIPT, diarization: true, unknownModel: { model: 'whisper-1', status: 400 } },
  // An unmapped voice leaves the target's model to speak.
  unknownSpeechModel: { model: 'aura-9-nobody-en', status: 400, voice: 'nova' },
  dropped: { speech: { instructions: 'Speak like a pirate.' }, transcription: { prompt: 'Acme Corp glossary' } },
})
