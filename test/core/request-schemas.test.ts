import { describe, expect, test } from 'bun:test'
import { isUpstreamURLKey, refuseUpstreamOverrides } from '../../src/core/request-schemas.ts'

describe('isUpstreamURLKey (verdicts remembered by key)', () => {
  test('the same answer the first time and from memory, for refused keys and allowed ones', () => {
    for (let round = 0; round < 3; round++) {
      for (const key of ['api_base', 'baseURL', 'OPENAI_API_BASE', 'azure-endpoint', 'proxy_url', 'endpoint_url']) expect(isUpstreamURLKey(key)).toBe(true)
      for (const key of ['model', 'messages', 'url', 'endpoint', 'content', 'base']) expect(isUpstreamURLKey(key)).toBe(false)
    }
  })

  test('long keys (which are not remembered) get the same verdicts as short ones', () => {
    expect(isUpstreamURLKey(`${'x'.repeat(100_000)}_base_url`)).toBe(false)
    expect(isUpstreamURLKey(`api_base${'_'.repeat(100)}`)).toBe(true)
    expect(isUpstreamURLKey(`api_base${'_'.repeat(100)}`)).toBe(true)
  })

  test('past the memory bound, keys are still decided', () => {
    for (let i = 0; i < 5_000; i++) expect(isUpstreamURLKey(`field_${i}`)).toBe(false)
    expect(isUpstreamURLKey('upstream_base_url_never_seen')).toBe(false)
    expect(isUpstreamURLKey('Upstream-Base-URL')).toBe(true)
    expect(() => refuseUpstreamOverrides({ model: 'm', extra: { 'Custom_Base_Uri': 'http://evil' } })).toThrow(/not allowed/)
    expect(() => refuseUpstreamOverrides({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })).not.toThrow()
  })
})
