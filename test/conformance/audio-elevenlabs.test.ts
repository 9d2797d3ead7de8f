import { FAKE_ELEVENLABS_KEY, FAKE_TRANSCRIPT, FAKE_VOICE_IDS, startFakeElevenLabs } from '../helpers/fake-elevenlabs.ts'
import { runAudioConformance } from './audio-kit.ts'

runAudioConformance({
  name: 'elevenlabs',
  providerType: 'elevenlabs',
  startFake: () => startFakeElevenLabs(),
  provider: { api_key: FAKE_ELEVENLABS_KEY, options: { voices: { alloy: FAKE_VOICE_IDS[0] } } },
  speech: { model: 'eleven_flash_v2_5', voice: 'alloy', native: ['mp3', 'opus', 'pcm'], upstreamVoice: FAKE_VOICE_IDS[0] },
  transcription: { model: 'scribe_v1', text: FAKE_TRANSCRIPT, diarization: true, unknownModel: { model: 'whisper-1', status: 400 } },
  unknownSpeechModel: { model: 'eleven_nonexistent_v9', status: 400 },
  dropped: { speech: { instructions: 'Speak like a pirate.' }, transcription: { prompt: 'Acme Corp glossary' } },
})
