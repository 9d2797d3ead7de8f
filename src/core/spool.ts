import { mkdirSync, rmSync } from 'node:fs'
import { open, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import { cutShort, refuseEncoded } from './body.ts'

/**
 * Multipart uploads (audio files), streamed off the socket: a file stays in memory up to a small threshold and
 * goes to disk past it, so fifty 20 MB uploads at once cost disk, not RSS. The file comes back as a Blob that
 * every attempt can read again (a retry or a fallback never finds it consumed).
 */

export interface SpoolOptions {
  /** Largest file part, bytes. */
  maxFileBytes: number
  /** Longest wait for the next bytes of the body: an upload may take minutes, but never stall. */
  idleMs: number
  /** Files up to this size stay in memory. */
  memoryBytes: number
  /** Largest body, every part included (several files: image edits); default `maxFileBytes` plus the fields' allowance. */
  maxBodyBytes?: number
}

export interface SpooledForm {
  fields: Record<string, string | string[]>
  file: { blob: Blob; filename: string; size: number } | null
  /** Every file part in order, named as sent less a trailing `[]` (`image[]` → `image`), `file` included. */
  files: { name: string; blob: Blob; filename: string; size: number }[]
}

/** Form fields OpenAI's SDKs send as `name[]` (arrays); repeated names become arrays too. */
const MAX_FIELDS = 64
/** File parts one form may carry (an image edit takes up to 16 images and a mask). */
const MAX_FILES = 32
const MAX_FIELD_BYTES = 64 * 1024

let directory: string | null = null
let sequence = 0

/** The process's spool directory, created on first use and removed at exit (with what a crash left). */
function spoolDir(): string {
  if (directory) return directory
  directory = join(tmpdir(), `conduit-spool-${process.pid}-${crypto.randomUUID().slice(0, 8)}`)
  mkdirSync(directory, { recursive: true, mode: 0o700 })
  const dir = directory
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A new file in the spool directory and the function that deletes it (idempotent, never throws). */
export function spoolPath(suffix = ''): { path: string; remove: () => void } {
  const path = join(spoolDir(), `${(sequence++).toString(36)}${suffix}`)
  let removed = false
  return {
    path,
    remove: () => {
      if (removed) return
      removed = true
      unlink(path).catch(() => {})
    },
  }
}

/** Writes a stream to a spooled file; the caller owns `remove`. */
export async function spoolStream(stream: ReadableStream<Uint8Array>, maxBytes: number, tooLarge: () => GatewayError) {
  const file = spoolPath()
  const handle = await open(file.path, 'w', 0o600)
  let size = 0
  try {
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      if ((size += chunk.byteLength) > maxBytes) throw tooLarge()
      await handle.write(chunk)
    }
  } catch (error) {
    file.remove()
    throw error
  } finally {
    await handle.close()
  }
  return { blob: Bun.file(file.path), size, remove: file.remove }
}

/** The boundary of a `multipart/form-data` content type, or null. */
function boundaryOf(type: string): string | null {
  if (!/^multipart\/form-data\s*;/i.test(type)) return null
  const match = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(type)
  return match ? (match[1] ?? match[2])! : null
}

const HEADER_END = Buffer.from('\r\n\r\n')
const MAX_HEADER_BYTES = 16 * 1024
/** What a form may carry besides its file: fields and part headers. */
const FORM_OVERHEAD_BYTES = 256 * 1024
/** A slow client must still average this (a 100 MB upload gets about 26 minutes) on top of the body deadline. */
const MIN_UPLOAD_BYTES_PER_SECOND = 64 * 1024

/**
 * Reads a `multipart/form-data` body: its fields, and the part named `file` as a Blob. The raw body goes to disk
 * first (by Bun itself when the length is declared: no JS chunk is ever allocated, so fifty 20 MB uploads at once
 * cost disk, not RSS), then the parts are found in it and the file is a slice of that spool. `cleanup` receives
 * the spool's deletion, so the request's end removes it whatever happened.
 */
export async function readMultipart(request: Request, options: SpoolOptions, cleanup: (fn: () => void) => void): Promise<SpooledForm> {
  const boundary = boundaryOf(request.headers.get('content-type') ?? '')
  if (!boundary) {
    throw badRequest('This endpoint takes a multipart/form-data body (with a boundary).', null, 'invalid_content_type')
  }
  if (!request.body) throw badRequest("Missing required parameter: 'file'.", 'file', 'missing_required_parameter')
  refuseEncoded(request)
  const raw = await spoolBody(request, options, cleanup).catch((error) => {
    throw cutShort(request, error)
  })
  const source = await Spooled.open(raw)
  try {
    return await parseForm(source, boundary, options)
  } finally {
    await source.close()
  }
}

/** The request body as a Blob: in memory when small, else a spooled file; capped, and within a deadline. */
async function spoolBody(request: Request, options: SpoolOptions, cleanup: (fn: () => void) => void): Promise<Blob> {
  const limit = options.maxBodyBytes ?? options.maxFileBytes + FORM_OVERHEAD_BYTES
  const tooLarge = () =>
    options.maxBodyBytes
      ? new GatewayError(413, `The request body is larger than the limit of ${options.maxBodyBytes} bytes.`, { code: 'request_too_large' })
      : new GatewayError(413, `The uploaded file is larger than the limit of ${options.maxFileBytes} bytes.`, { param: 'file', code: 'file_too_large' })
  const declared = Number(request.headers.get('content-length') ?? NaN)
  if (declared > limit) {
    request.body?.cancel().catch(() => {})
    throw tooLarge()
  }
  if (declared <= options.memoryBytes) return new Blob([await withDeadline(request.bytes(), options.idleMs)])
  const file = spoolPath('.form')
  cleanup(file.remove)
  if (Number.isFinite(declared)) {
    const ms = options.idleMs + (declared / MIN_UPLOAD_BYTES_PER_SECOND) * 1000
    const written = Bun.write(file.path, request)
    written.catch(() => {}) // after a timeout the connection closes and the write fails: nothing to report
    await withDeadline(written, ms)
    return Bun.file(file.path)
  }
  // No declared length (chunked): our own loop, so that the cap and an idle deadline apply as it arrives.
  const handle = await open(file.path, 'w', 0o600)
  const reader = request.body!.getReader()
  let size = 0
  try {
    for (;;) {
      const next = await withDeadline(reader.read(), options.idleMs)
      if (next.done) break
      if ((size += next.value.byteLength) > limit) throw tooLarge()
      await handle.write(next.value)
    }
  } catch (error) {
    reader.cancel().catch(() => {})
    throw error
  } finally {
    await handle.close()
  }
  return Bun.file(file.path)
}

/** Bytes read per look into the spool while searching for a boundary. */
const WINDOW_BYTES = 64 * 1024

/**
 * Reads a spooled body at any offset into one reused buffer (a view valid until the next read): scanning a
 * 100 MB upload for its boundary allocates 256 KiB, not 100 MB of garbage.
 */
class Spooled {
  private constructor(
    readonly blob: Blob,
    private readonly handle: Awaited<ReturnType<typeof open>> | null,
    private readonly bytes: Buffer | null,
    private readonly buffer = Buffer.allocUnsafe(handle ? WINDOW_BYTES : 0),
  ) {}

  static async open(blob: Blob): Promise<Spooled> {
    const path = (blob as { name?: string }).name
    if (typeof path === 'string') return new Spooled(blob, await open(path, 'r'), null)
    return new Spooled(blob, null, Buffer.from(await blob.arrayBuffer()))
  }

  get size() {
    return this.blob.size
  }

  async read(from: number, length: number): Promise<Buffer> {
    const to = Math.min(this.size, from + Math.min(length, WINDOW_BYTES))
    if (this.bytes) return this.bytes.subarray(from, to)
    const { bytesRead } = await this.handle!.read(this.buffer, 0, to - from, from)
    return this.buffer.subarray(0, bytesRead)
  }

  /** Where `needle` next occurs at or after `from`; -1 when it does not. */
  async indexOf(needle: Buffer, from: number): Promise<number> {
    for (let start = from; start < this.size; start += WINDOW_BYTES - needle.length + 1) {
      const window = await this.read(start, WINDOW_BYTES)
      const at = window.indexOf(needle)
      if (at !== -1) return start + at
      if (start + window.length >= this.size) break
    }
    return -1
  }

  async text(from: number, to: number): Promise<string> {
    return (await this.read(from, to - from)).toString('utf8')
  }

  async close() {
    await this.handle?.close()
  }
}

/** The parts of a spooled multipart body: fields as text, the `file` part as a slice of the spool (no copy). */
async function parseForm(raw: Spooled, boundary: string, options: SpoolOptions): Promise<SpooledForm> {
  const malformed = (why: string) => badRequest(`The multipart body is malformed: ${why}.`, null, 'invalid_multipart')
  const delimiter = Buffer.from(`\r\n--${boundary}`)
  const text = (from: number, to: number) => raw.text(from, to)
  const fields: Record<string, string | string[]> = {}
  let file: SpooledForm['file'] = null
  const files: SpooledForm['files'] = []
  let count = 0
  // The first delimiter may open the body without the CRLF that precedes every other one.
  let pos = (await text(0, delimiter.length - 2)) === `--${boundary}` ? delimiter.length - 2 : await raw.indexOf(delimiter, 0)
  if (pos === -1) throw malformed('no boundary found')
  if (pos !== delimiter.length - 2) pos += delimiter.length
  for (;;) {
    const after = await text(pos, pos + 2)
    if (after === '--') break
    if (after !== '\r\n') throw malformed(after.length < 2 ? 'it ends before its closing boundary' : 'a boundary is not followed by CRLF')
    const head = await raw.read(pos + 2, MAX_HEADER_BYTES)
    const headerEnd = head.indexOf(HEADER_END)
    if (headerEnd === -1) throw malformed('part headers are missing or too long')
    const { name, filename } = partName(head.subarray(0, headerEnd).toString('utf8'), malformed)
    const start = pos + 2 + headerEnd + HEADER_END.length
    const end = await raw.indexOf(delimiter, start)
    if (end === -1) throw malformed('it ends before its closing boundary')
    if (filename !== undefined) {
      const part = name.endsWith('[]') ? name.slice(0, -2) : name
      if (end - start > options.maxFileBytes) {
        throw new GatewayError(413, `The uploaded file is larger than the limit of ${options.maxFileBytes} bytes.`, { param: part, code: 'file_too_large' })
      }
      if (files.length >= MAX_FILES) throw badRequest(`The multipart body has more than ${MAX_FILES} files.`, null, 'invalid_multipart')
      const spooled = { blob: raw.blob.slice(start, end), filename: filename || part, size: end - start }
      files.push({ name: part, ...spooled })
      if (name === 'file' && !file) file = { ...spooled, filename: filename || 'audio' }
    } else {
      if (++count > MAX_FIELDS) throw badRequest('The multipart body has too many fields.', null, 'invalid_multipart')
      if (end - start > MAX_FIELD_BYTES) throw badRequest(`The form field '${name}' is longer than ${MAX_FIELD_BYTES} bytes.`, name, 'invalid_value')
      const value = await text(start, end)
      const key = name.endsWith('[]') ? name.slice(0, -2) : name
      const existing = fields[key]
      if (name.endsWith('[]') || existing !== undefined) fields[key] = [...(existing === undefined ? [] : Array.isArray(existing) ? existing : [existing]), value]
      else fields[key] = value
    }
    pos = end + delimiter.length
  }
  return { fields, file, files }
}

/** `name` and `filename` from a part's Content-Disposition (quoted, with backslash escapes, or bare). */
function partName(headers: string, malformed: (why: string) => GatewayError): { name: string; filename: string | undefined } {
  const disposition = /^content-disposition:\s*form-data(.*)$/im.exec(headers)?.[1] ?? ''
  const param = (key: string) => {
    const quoted = new RegExp(`;\\s*${key}="((?:[^"\\\\]|\\\\.)*)"`, 'i').exec(disposition)?.[1]
    return quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : new RegExp(`;\\s*${key}=([^;\\s]+)`, 'i').exec(disposition)?.[1]
  }
  const name = param('name')
  if (name === undefined) throw malformed('a part has no name')
  return { name, filename: param('filename') }
}

const timedOut = (ms: number) =>
  new GatewayError(408, `The request body did not arrive in time (${Math.round(ms)} ms).`, { code: 'request_timeout', headers: { connection: 'close' } })

async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: Timer | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(timedOut(ms)), ms)))])
  } finally {
    clearTimeout(timer)
  }
}
