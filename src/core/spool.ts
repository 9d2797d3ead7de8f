import Busboy from 'busboy'
import { mkdirSync, rmSync } from 'node:fs'
import { open, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'

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
}

export interface SpooledForm {
  fields: Record<string, string | string[]>
  file: { blob: Blob; filename: string; size: number } | null
}

/** Form fields OpenAI's SDKs send as `name[]` (arrays); repeated names become arrays too. */
const MAX_FIELDS = 64
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

/**
 * Reads a `multipart/form-data` body: its fields, and the part named `file` (spooled). `cleanup` receives the
 * deletion of any file written, so the request's end removes it whatever happened.
 */
export async function readMultipart(request: Request, options: SpoolOptions, cleanup: (fn: () => void) => void): Promise<SpooledForm> {
  const type = request.headers.get('content-type') ?? ''
  if (!/^multipart\/form-data\s*;/i.test(type)) {
    throw badRequest('This endpoint takes a multipart/form-data body with the audio under "file".', null, 'invalid_content_type')
  }
  if (!request.body) throw badRequest("Missing required parameter: 'file'.", 'file', 'missing_required_parameter')
  const tooLarge = () =>
    new GatewayError(413, `The uploaded file is larger than the limit of ${options.maxFileBytes} bytes.`, { param: 'file', code: 'file_too_large' })

  let parser: Busboy.Busboy
  try {
    parser = Busboy({
      headers: { 'content-type': type },
      limits: { files: 1, fields: MAX_FIELDS, fieldSize: MAX_FIELD_BYTES, fileSize: options.maxFileBytes + 1, parts: MAX_FIELDS + 2 },
    })
  } catch {
    throw badRequest('The multipart body has no usable boundary.', null, 'invalid_multipart')
  }
  const fields: Record<string, string | string[]> = {}
  let file: SpooledForm['file'] = null
  const pending: Promise<void>[] = []
  let failure: unknown = null
  const fail = (error: unknown) => {
    failure ??= error
  }

  parser.on('field', (rawName, value, info) => {
    if (info.valueTruncated) return fail(badRequest(`The form field '${rawName}' is longer than ${MAX_FIELD_BYTES} bytes.`, rawName, 'invalid_value'))
    const name = rawName.endsWith('[]') ? rawName.slice(0, -2) : rawName
    const existing = fields[name]
    if (rawName.endsWith('[]') || existing !== undefined) fields[name] = [...(existing === undefined ? [] : Array.isArray(existing) ? existing : [existing]), value]
    else fields[name] = value
  })
  parser.on('file', (name, stream, info) => {
    if (name !== 'file' || file) {
      stream.resume() // another file part: not ours to keep
      return
    }
    pending.push(
      spoolPart(stream, options, cleanup, tooLarge).then(
        (spooled) => {
          file = { ...spooled, filename: info.filename || 'audio' }
        },
        (error) => fail(error),
      ),
    )
  })
  parser.on('filesLimit', () => {})
  parser.on('partsLimit', () => fail(badRequest('The multipart body has too many parts.', null, 'invalid_multipart')))
  parser.on('fieldsLimit', () => fail(badRequest('The multipart body has too many fields.', null, 'invalid_multipart')))
  const finished = new Promise<void>((resolve, reject) => {
    parser.on('close', resolve)
    parser.on('error', (error: Error) => reject(badRequest(`The multipart body is malformed: ${error.message}.`, null, 'invalid_multipart')))
  })
  finished.catch(() => {})

  const reader = request.body.getReader()
  try {
    for (;;) {
      const next = await withIdle(reader.read(), options.idleMs)
      if (failure) throw failure
      if (next.done) break
      if (!parser.write(next.value)) await new Promise((resolve) => parser.once('drain', resolve))
    }
    parser.end()
    await withIdle(finished, options.idleMs)
    await Promise.all(pending)
  } catch (error) {
    reader.cancel().catch(() => {})
    parser.destroy()
    throw error
  }
  if (failure) throw failure
  return { fields, file }
}

/** One file part, in memory up to `memoryBytes`, then on disk. */
async function spoolPart(stream: NodeJS.ReadableStream, options: SpoolOptions, cleanup: (fn: () => void) => void, tooLarge: () => GatewayError) {
  const memory: Uint8Array[] = []
  let size = 0
  let handle: Awaited<ReturnType<typeof open>> | null = null
  let path: string | null = null
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.byteLength
      if (size > options.maxFileBytes) throw tooLarge()
      if (handle) {
        await handle.write(chunk)
        continue
      }
      memory.push(chunk)
      if (size > options.memoryBytes) {
        const file = spoolPath()
        cleanup(file.remove)
        path = file.path
        handle = await open(path, 'w', 0o600)
        await handle.write(Buffer.concat(memory))
        memory.length = 0
      }
    }
  } finally {
    await handle?.close()
  }
  return { blob: path ? Bun.file(path) : new Blob(memory as BlobPart[]), size }
}

const timedOut = (ms: number) =>
  new GatewayError(408, `The request body stalled: no bytes for ${ms} ms.`, { code: 'request_timeout', headers: { connection: 'close' } })

async function withIdle<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: Timer | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(timedOut(ms)), ms)))])
  } finally {
    clearTimeout(timer)
  }
}
