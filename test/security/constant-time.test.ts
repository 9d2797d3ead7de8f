import { describe, expect, test } from 'bun:test'
import { Glob } from 'bun'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { secretEquals } from '../../src/store/crypto.ts'

/** SE4: secrets are compared in constant time, and nothing in the source compares one with `===`. */
describe('SE4 constant-time comparison of secrets', () => {
  test('secretEquals compares digests: inputs of any length never throw, and only equal ones match', () => {
    const master = 'test-master-key-0123456789'
    expect(secretEquals(master, master)).toBe(true)
    for (const other of ['', 't', master.slice(0, -1), master + 'x', master.toUpperCase(), 'x'.repeat(10_000), '€ü漢🚀']) {
      expect(secretEquals(master, other)).toBe(false)
      expect(secretEquals(other, master)).toBe(false)
    }
  })

  test('no === or !== on a secret anywhere in src/ (only against null, undefined or a literal)', () => {
    const root = path.resolve(import.meta.dir, '../../src')
    const secretName = String.raw`[\w.]*(?:token|secret|masterkey|apikey|password|passphrase|keyhash)\w*`
    const operand = String.raw`(?:null|undefined|'[^']*'|"[^"]*"|\d+)`
    const comparisons = new RegExp(String.raw`(${secretName})\s*[!=]==\s*([^\s;),&|]+)|([^\s(;,&|!]+)\s*[!=]==\s*(${secretName})\b`, 'gi')
    const offenders: string[] = []
    let scanned = 0
    for (const file of new Glob('**/*.ts').scanSync(root)) {
      scanned++
      const lines = readFileSync(path.join(root, file), 'utf8').split('\n')
      lines.forEach((line, i) => {
        for (const m of line.matchAll(comparisons)) {
          const other = m[2] ?? m[3]!
          // `typeof x === 'string'`, `x.length === 0`: a type or a size, not the secret's value.
          if (new RegExp(`^${operand}$`).test(other) || /typeof\s+\S+\s*[!=]==/.test(m[0]) || /\.length\b/.test(m[0])) continue
          offenders.push(`${file}:${i + 1}: ${line.trim()}`)
        }
      })
    }
    expect(scanned).toBeGreaterThan(50)
    expect(offenders).toEqual([])
  })

  test('the scan is not blind: it finds a planted comparison', () => {
    const planted = 'if (token === expectedHash) return true'
    expect(/(?:token)\w*\s*[!=]==\s*([^\s;),&|]+)/i.test(planted)).toBe(true)
  })
})
