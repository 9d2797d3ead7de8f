import { describe, expect, test } from 'bun:test'
import { BatchWriter } from '../../src/store/batch-writer.ts'
import { createLogger } from '../../src/services/logger.ts'

/** An insert whose every call waits until the test lets it finish, as a database write is still under way. */
function heldInsert() {
  const batches: number[][] = []
  const releases: (() => void)[] = []
  const insert = (rows: number[]) => {
    batches.push([...rows])
    return new Promise<void>((resolve) => releases.push(resolve))
  }
  return { batches, insert, release: () => releases.shift()!() }
}

const log = createLogger('silent')
/** Waits for `done`, up to 5 s: a loaded machine may run timers late. */
const until = async (done: () => boolean) => {
  const deadline = performance.now() + 5_000
  while (!done() && performance.now() < deadline) await Bun.sleep(1)
}

describe('BatchWriter', () => {
  test('rows that arrive while a batch is written wait for the next flush instead of a transaction each', async () => {
    const db = heldInsert()
    const writer = new BatchWriter('rows', db.insert, log, { batch: 100, flushEveryMs: 300, maxQueued: 1000 })
    writer.push(1)
    const flushed = writer.flush()
    writer.push(2)
    writer.push(3)
    db.release()
    await Bun.sleep(5)
    // A drain that took them too went on with 2 and 3 at once, and under steady traffic never stopped.
    expect(db.batches).toEqual([[1]])
    await flushed
    await until(() => db.batches.length === 2)
    expect(db.batches).toEqual([[1], [2, 3]]) // together, when the timer their push armed ran out
    db.release()
    await writer.close()
  })

  test('a flush asked for during a write also writes what was queued before it', async () => {
    const db = heldInsert()
    const writer = new BatchWriter('rows', db.insert, log, { batch: 100, flushEveryMs: 60_000, maxQueued: 1000 })
    writer.push(1)
    writer.flush()
    writer.push(2)
    writer.push(3)
    let done = false
    const second = writer.flush().then(() => (done = true))
    db.release()
    await until(() => db.batches.length === 2)
    expect(db.batches).toEqual([[1], [2, 3]]) // at once, not when the timer (a minute) runs out
    expect(done).toBe(false) // not before its own rows are written
    db.release()
    await second
    expect(writer.pending).toBe(0)
    await writer.close()
  })

  test('a flush writes what it found in batches of the configured size', async () => {
    const batches: number[][] = []
    const writer = new BatchWriter('rows', async (rows: number[]) => void batches.push([...rows]), log, { batch: 2, flushEveryMs: 60_000, maxQueued: 1000 })
    for (let i = 1; i <= 5; i++) writer.push(i)
    await writer.flush()
    expect(batches).toEqual([[1, 2], [3, 4], [5]])
    await writer.close()
  })
})
