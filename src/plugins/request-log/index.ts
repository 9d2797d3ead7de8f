import { definePlugin, t } from '../../plugin-sdk/index.ts'

/** One structured line per request, written after the last byte (or abort). Never bodies, never secrets. */
export default definePlugin({
  name: 'request-log',
  version: '1.0.0',
  apiVersion: 1,
  configSchema: t.Object({ level: t.Union([t.Literal('info'), t.Literal('debug')], { default: 'info' }) }),
  setup(api) {
    const level = api.config.level as 'info' | 'debug'
    return {
      onLog(f) {
        api.log.record(
          level,
          {
            requestId: f.ctx.id,
            endpoint: f.ctx.endpoint,
            keyId: f.ctx.principal?.keyId ?? null,
            model: f.ctx.model?.name ?? null,
            provider: f.target?.provider.name ?? null,
            upstreamModel: f.target?.model ?? null,
            status: f.status,
            errorCode: f.error?.code ?? null,
            stream: f.stream,
            aborted: f.aborted,
            attempts: f.attempts,
            usage: f.usage,
            durationMs: Math.round(f.durationMs * 100) / 100,
            firstByteMs: f.firstByteMs === null ? null : Math.round(f.firstByteMs * 100) / 100,
          },
          'request',
        )
      },
    }
  },
})
