// Test-wide setup: quiet logs, loopback upstreams allowed, and a folder for Bun's JUnit report (Bun does not create it).
import { mkdirSync } from 'node:fs'
import { LOOPBACK_ALLOW } from './process.ts'

process.env.CONDUIT_LOG_LEVEL ??= 'silent'
// Every fake upstream listens on loopback, which the egress policy refuses by default (test/e2e/egress.test.ts
// runs with its own list).
process.env.CONDUIT_EGRESS_ALLOW ??= LOOPBACK_ALLOW
mkdirSync('test-results', { recursive: true })
