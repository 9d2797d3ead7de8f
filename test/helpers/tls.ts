import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

/** A self-signed certificate for 127.0.0.1 and localhost (or another name), made by openssl for this run. */
export function selfSignedCert(name = 'localhost'): { cert: string; key: string; pem: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'conduit-tls-'))
  const cert = path.join(dir, 'cert.pem')
  const key = path.join(dir, 'key.pem')
  const made = Bun.spawnSync(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${name}`, '-addext', name === 'localhost' ? 'subjectAltName=IP:127.0.0.1,DNS:localhost' : `subjectAltName=DNS:${name}`], { stderr: 'pipe' })
  if (made.exitCode !== 0) throw new Error(`openssl failed: ${made.stderr.toString()}`)
  return { cert, key, pem: readFileSync(cert, 'utf8') }
}
