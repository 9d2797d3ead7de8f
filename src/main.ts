import { loadConfig } from './config/config.ts'
import { createGateway } from './core/gateway.ts'
import { listen } from './http/server.ts'
import { createLogger } from './services/logger.ts'

const config = await loadConfig(process.argv.slice(2), process.env)
const log = createLogger()
const gateway = await createGateway(config, log)
const server = listen(gateway, config)

const lines = [`Conduit: ${gateway.host.plugins.length} plugins loaded, data in ${config.databaseURL ? 'PostgreSQL (DATABASE_URL)' : config.dataDir}`]
if (gateway.generatedMasterKey) {
  lines.push('', '  A master key was generated. It is shown only this once; only its hash is stored:', `    ${gateway.generatedMasterKey}`)
  lines.push('  Use it as "Authorization: Bearer <master key>" on /admin/v1, or set CONDUIT_MASTER_KEY.')
}
for (const { name, key } of gateway.generatedKeys) lines.push(`  Virtual key '${name}' created from the config (shown once): ${key}`)
lines.push(`Conduit listening on http://${config.hostname === '0.0.0.0' ? 'localhost' : config.hostname}:${server.port}/v1`)
// Printed, not logged: the logger redacts keys, and this is the one time the operator must see one.
process.stdout.write(lines.join('\n') + '\n')

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  log.info({ signal }, 'shutting down')
  await server.stop()
  await gateway.close()
  process.exit(0)
}
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))
