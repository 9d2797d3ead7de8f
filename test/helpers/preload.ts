// Test-wide setup: quiet logs, and a folder for Bun's JUnit report (Bun does not create it).
import { mkdirSync } from 'node:fs'

process.env.CONDUIT_LOG_LEVEL ??= 'silent'
mkdirSync('test-results', { recursive: true })
