/**
 * Standard output through Bun's own file writer. `process.stdout` builds Node's stream machinery on first use,
 * 6.7 MB of RSS in every process that touches it (a bare Bun process: 24.3 MB, 31.0 once it has written a line
 * there); this writer costs 0.7 MB. What it cannot write at once (a full pipe) it keeps and writes as the reader
 * drains, as process.stdout does.
 */
let sink: ReturnType<typeof Bun.stdout.writer> | null = null

/**
 * Writes `text` (lines: one after another, in one write) to stdout. A reader that went away (a closed pipe) costs
 * the lines, never the process.
 */
export function writeStdout(text: string | readonly string[]) {
  try {
    sink ??= Bun.stdout.writer()
    // The writer copies each into its buffer: joining them first would be one more copy of every line.
    if (typeof text === 'string') sink.write(text)
    else for (const line of text) sink.write(line)
    const pending = sink.flush()
    if (pending instanceof Promise) pending.catch(() => {})
  } catch {
    // stdout is closed: nothing to tell, and nobody to tell it to.
  }
}
