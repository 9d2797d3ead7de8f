import type { Logger } from '../../plugin-sdk/types.ts'
import type { Store } from '../../store/store.ts'
import type { StoredItemRow, StoredResponseRow } from '../../store/tables.ts'

/** A Responses API object the gateway keeps, with what a follow-up (`previous_response_id`) needs of it. */
export interface StoredResponse {
  id: string
  /** The key that made it: the only one that may read, continue or delete it. */
  keyId: string
  createdAt: number
  /** The object as the client received it. */
  response: Record<string, any>
  /** This request's input items, with ids (`GET …/input_items`). */
  inputItems: Record<string, any>[]
  /** The conversation up to and including this request's input; a follow-up continues it with `response.output`. */
  context: Record<string, any>[]
}

const DAY_MS = 86_400_000
const PURGE_EVERY_MS = 3_600_000

/**
 * `stored_responses` (and their items, `stored_response_items`), kept `retentionDays`: rows past it are deleted hourly (as request records are) and never
 * read in between.
 */
export class ResponseStore {
  private readonly purger: Timer

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    readonly retentionDays: number,
  ) {
    this.purger = setInterval(() => void this.purge(), PURGE_EVERY_MS)
    this.purger.unref()
  }

  /** Saves waiting for the write at the end of this turn of the event loop (see save). */
  private turn: { responses: StoredResponseRow[]; items: StoredItemRow[]; written: Promise<void> } | null = null

  /**
   * Keeps the response, and its input and output items for `item_reference`s to them; resolves once written. The
   * saves of one turn of the event loop are written together: on SQLite the commit is most of a save's cost, and
   * under load several responses finish in one turn.
   */
  save(r: StoredResponse): Promise<void> {
    let turn = this.turn
    if (!turn) {
      const responses: StoredResponseRow[] = []
      const items: StoredItemRow[] = []
      const written = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.turn = null
        return this.store.insertStoredResponses(responses, items)
      })
      turn = this.turn = { responses, items, written }
    }
    for (const item of [...r.inputItems, ...(r.response.output ?? [])]) {
      if (typeof item?.id === 'string') turn.items.push({ key_id: r.keyId, item_id: item.id, response_id: r.id, created_at: r.createdAt, item: JSON.stringify(item) })
    }
    turn.responses.push({
      id: r.id,
      key_id: r.keyId,
      created_at: r.createdAt,
      response: JSON.stringify(r.response),
      input_items: JSON.stringify(r.inputItems),
      context: JSON.stringify(r.context),
    })
    return turn.written
  }

  /** An item of one of `keyId`'s kept responses, by its id. */
  async item(id: string, keyId: string, now = Date.now()): Promise<Record<string, any> | null> {
    const [row] = await this.store.sql`SELECT item FROM stored_response_items WHERE key_id = ${keyId} AND item_id = ${id} AND created_at >= ${this.oldestKept(now)}`
    return row ? JSON.parse(row.item) : null
  }

  /** The response, when it exists, is still kept, and belongs to `keyId`. */
  async get(id: string, keyId: string, now = Date.now()): Promise<StoredResponse | null> {
    const [row] = await this.store.sql`SELECT * FROM stored_responses WHERE id = ${id} AND key_id = ${keyId} AND created_at >= ${this.oldestKept(now)}`
    if (!row) return null
    return {
      id: row.id,
      keyId: row.key_id,
      createdAt: Number(row.created_at),
      response: JSON.parse(row.response),
      inputItems: JSON.parse(row.input_items),
      context: JSON.parse(row.context),
    }
  }

  /** Whether there was such a response of `keyId`'s to delete. */
  async delete(id: string, keyId: string): Promise<boolean> {
    const rows = await this.store.sql`DELETE FROM stored_responses WHERE id = ${id} AND key_id = ${keyId} RETURNING id`
    if (rows.length > 0) await this.store.sql`DELETE FROM stored_response_items WHERE response_id = ${id}`
    return rows.length > 0
  }

  /** Deletes what is past the retention; returns the rows removed. */
  async purge(now = Date.now()): Promise<number> {
    try {
      const before = this.oldestKept(now)
      await this.store.purge('stored_response_items', 'created_at', before)
      return await this.store.purge('stored_responses', 'created_at', before)
    } catch (err) {
      this.log.warn({ err }, 'stored responses: retention purge failed; will try again')
      return 0
    }
  }

  close() {
    clearInterval(this.purger)
  }

  private oldestKept(now: number) {
    return now - this.retentionDays * DAY_MS
  }
}
