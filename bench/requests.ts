/**
 * Sends `n` chat completions, `c` at a time over keep-alive connections, and fails unless every one is a 200: the
 * load of bench/instructions.sh, where what counts is how many requests were served, not how fast.
 *
 *   bun bench/requests.ts <url> <key> <n> [c=16]
 */
import { chatBody } from './clients/http.ts'

const [url, key = '', n, c = '16'] = process.argv.slice(2)
if (!url || !n) throw new Error('usage: bun bench/requests.ts <url> <key> <n> [c]')
const body = chatBody('m', false)
const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` }
let left = Number(n)
const failures: string[] = []
async function lane() {
  while (left-- > 0) {
    const response = await fetch(url!, { method: 'POST', body, headers })
    const text = await response.text()
    if (response.status !== 200) failures.push(`${response.status} ${text.slice(0, 200)}`)
  }
}
await Promise.all(Array.from({ length: Number(c) }, lane))
if (failures.length > 0) {
  console.error(`${failures.length} of ${n} requests failed, the first: ${failures[0]}`)
  process.exit(1)
}
