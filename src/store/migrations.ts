/** Append-only; each version runs once, in a transaction. Portable between SQLite and PostgreSQL. */
export const MIGRATIONS: { version: number; statements: string[] }[] = [
  {
    version: 1,
    statements: [
      `CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)`,
      `CREATE TABLE providers (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL, base_url TEXT,
        api_key_secret TEXT, api_key_last4 TEXT, options TEXT NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)`,
      `CREATE TABLE models (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, targets TEXT NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)`,
      `CREATE TABLE virtual_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, key_prefix TEXT NOT NULL,
        key_last4 TEXT NOT NULL, allowed_models TEXT, expires_at BIGINT, enabled INTEGER NOT NULL,
        metadata TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)`,
    ],
  },
  {
    version: 2,
    statements: [`ALTER TABLE virtual_keys ADD COLUMN limits TEXT`, `ALTER TABLE virtual_keys ADD COLUMN allowed_endpoints TEXT`],
  },
  {
    version: 3,
    statements: [
      // One row per request, keyed by its id: a retried write can never count a request twice.
      `CREATE TABLE spend_ledger (
        request_id TEXT PRIMARY KEY, key_id TEXT, endpoint TEXT NOT NULL, model TEXT, provider TEXT, upstream_model TEXT,
        prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL,
        estimated INTEGER NOT NULL, aborted INTEGER NOT NULL, status INTEGER NOT NULL, created_at BIGINT NOT NULL)`,
      `CREATE INDEX spend_ledger_key_time ON spend_ledger (key_id, created_at)`,
      `CREATE INDEX spend_ledger_time ON spend_ledger (created_at)`,
    ],
  },
  {
    version: 4,
    statements: [`ALTER TABLE models ADD COLUMN limits TEXT`],
  },
  {
    version: 5,
    statements: [`ALTER TABLE models ADD COLUMN routing TEXT`],
  },
  {
    version: 6,
    statements: [
      // The request's `user` (per-user budgets are rebuilt from it), and whether its target had no price (cost 0).
      `ALTER TABLE spend_ledger ADD COLUMN end_user TEXT`,
      `ALTER TABLE spend_ledger ADD COLUMN unpriced INTEGER NOT NULL DEFAULT 0`,
      // Only rows that name a user: requests without one cost this index nothing.
      `CREATE INDEX spend_ledger_key_user_time ON spend_ledger (key_id, end_user, created_at) WHERE end_user IS NOT NULL`,
    ],
  },
  {
    version: 7,
    statements: [
      // Audio: what a transcription carried and a speech request said, the units those models are priced in.
      `ALTER TABLE spend_ledger ADD COLUMN audio_ms BIGINT NOT NULL DEFAULT 0`,
      `ALTER TABLE spend_ledger ADD COLUMN characters BIGINT NOT NULL DEFAULT 0`,
    ],
  },
  {
    version: 8,
    statements: [
      // The Requests page: one row per request, refusals included, kept request_log.retention_days (see request-records.ts).
      `CREATE TABLE request_records (
        request_id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, key_id TEXT, endpoint TEXT NOT NULL, model TEXT, provider TEXT,
        upstream_model TEXT, status INTEGER NOT NULL, error_code TEXT, stream INTEGER NOT NULL, aborted INTEGER NOT NULL,
        attempts INTEGER NOT NULL, latency_ms DOUBLE PRECISION NOT NULL, ttft_ms DOUBLE PRECISION,
        prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL, estimated INTEGER NOT NULL,
        end_user TEXT, client_ip TEXT, request_body TEXT)`,
      `CREATE INDEX request_records_time ON request_records (created_at, request_id)`,
      `CREATE INDEX request_records_key_time ON request_records (key_id, created_at)`,
      `CREATE INDEX request_records_model_time ON request_records (model, created_at)`,
      // The Overview's charts: one row per minute, instance, key and model, rewritten whole by its instance (see timeseries.ts).
      `CREATE TABLE metric_buckets (
        minute BIGINT NOT NULL, instance TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
        requests BIGINT NOT NULL, errors BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,
        cost_micros BIGINT NOT NULL, latency_hist TEXT NOT NULL, ttft_hist TEXT NOT NULL,
        PRIMARY KEY (minute, instance, key_id, model))`,
      `CREATE INDEX metric_buckets_key_minute ON metric_buckets (key_id, minute)`,
      // Web UI sign-ins: the cookie's SHA-256 only; a virtual-key session names its key (read-only, its own data).
      `CREATE TABLE ui_sessions (
        token_hash TEXT PRIMARY KEY, role TEXT NOT NULL, key_id TEXT, principal TEXT NOT NULL,
        created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)`,
      `CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at)`,
    ],
  },
  {
    version: 9,
    statements: [
      // Realtime sessions created ahead of their WebSocket (POST /v1/realtime/sessions, /client_secrets): the settings
      // sent as the first session.update, the key they are bound to, and the ephemeral secret's SHA-256 only.
      // connected_at is set once, atomically: one secret opens one session.
      `CREATE TABLE realtime_sessions (
        id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL UNIQUE, key_id TEXT NOT NULL, model TEXT NOT NULL, settings TEXT NOT NULL,
        created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, connected_at BIGINT)`,
      `CREATE INDEX realtime_sessions_expiry ON realtime_sessions (expires_at)`,
    ],
  },
  {
    version: 10,
    statements: [
      // Images the gateway serves by URL (a client asked `url` of a base64-only provider): base64 TEXT, portable
      // across SQLite and PostgreSQL; any instance serves them; gone after their hour.
      `CREATE TABLE image_files (
        id TEXT PRIMARY KEY, content_type TEXT NOT NULL, data TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)`,
      `CREATE INDEX image_files_expiry ON image_files (expires_at)`,
      // Images a request produced: what per-image prices go by.
      `ALTER TABLE spend_ledger ADD COLUMN images BIGINT NOT NULL DEFAULT 0`,
    ],
  },
  {
    version: 11,
    statements: [
      // Responses API objects the gateway keeps (`store`, default true), whichever provider answered: read back by
      // GET /v1/responses/{id} and continued by `previous_response_id`, for the key that made them only. `context`
      // is the conversation up to this response's input (what a follow-up sends before this response's output);
      // kept responses.retention_days (see src/core/responses/store.ts).
      `CREATE TABLE stored_responses (
        id TEXT PRIMARY KEY, key_id TEXT NOT NULL, created_at BIGINT NOT NULL, response TEXT NOT NULL,
        input_items TEXT NOT NULL, context TEXT NOT NULL)`,
      `CREATE INDEX stored_responses_time ON stored_responses (created_at)`,
      // Their input and output items by id, for `item_reference` inputs (the AI SDK sends earlier answers so).
      `CREATE TABLE stored_response_items (
        key_id TEXT NOT NULL, item_id TEXT NOT NULL, response_id TEXT NOT NULL, created_at BIGINT NOT NULL, item TEXT NOT NULL,
        PRIMARY KEY (key_id, item_id))`,
      `CREATE INDEX stored_response_items_response ON stored_response_items (response_id)`,
      `CREATE INDEX stored_response_items_time ON stored_response_items (created_at)`,
    ],
  },
  {
    version: 12,
    statements: [
      // A budget's spend is summed from the ledger when its state is loaded, and for each budgeted key on the Keys
      // page. With the cost in the index the sum reads the index alone instead of a table row per request, scattered
      // among every other key's (a key's 50,000 rows among a million: 44–94 ms → 2–3 ms, on SQLite's event loop).
      `CREATE INDEX spend_ledger_key_time_cost ON spend_ledger (key_id, created_at, cost_micros)`,
      `DROP INDEX spend_ledger_key_time`,
      `CREATE INDEX spend_ledger_key_user_time_cost ON spend_ledger (key_id, end_user, created_at, cost_micros) WHERE end_user IS NOT NULL`,
      `DROP INDEX spend_ledger_key_user_time`,
    ],
  },
  {
    version: 13,
    statements: [
      // Per-hour totals of the ledger for usage reports (spend-rollup.ts), from what the ledger already holds.
      `CREATE TABLE spend_hours (
        hour BIGINT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL, requests BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL, unpriced BIGINT NOT NULL,
        audio_ms BIGINT NOT NULL, characters BIGINT NOT NULL, PRIMARY KEY (key_id, hour, model, provider))`,
      `CREATE INDEX spend_hours_hour ON spend_hours (hour)`,
      `CREATE TABLE spend_user_hours (
        hour BIGINT NOT NULL, key_id TEXT NOT NULL, end_user TEXT NOT NULL, requests BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL, unpriced BIGINT NOT NULL,
        audio_ms BIGINT NOT NULL, characters BIGINT NOT NULL, PRIMARY KEY (key_id, hour, end_user))`,
      `CREATE INDEX spend_user_hours_hour ON spend_user_hours (hour)`,
      `INSERT INTO spend_hours (hour, key_id, model, provider, requests, prompt_tokens, completion_tokens, cost_micros, unpriced, audio_ms, characters)
        SELECT created_at - created_at % 3600000, COALESCE(key_id, ''), COALESCE(model, ''), COALESCE(provider, ''), COUNT(*), SUM(prompt_tokens),
          SUM(completion_tokens), SUM(cost_micros), SUM(unpriced), SUM(audio_ms), SUM(characters)
        FROM spend_ledger GROUP BY 1, 2, 3, 4`,
      `INSERT INTO spend_user_hours (hour, key_id, end_user, requests, prompt_tokens, completion_tokens, cost_micros, unpriced, audio_ms, characters)
        SELECT created_at - created_at % 3600000, COALESCE(key_id, ''), COALESCE(end_user, ''), COUNT(*), SUM(prompt_tokens),
          SUM(completion_tokens), SUM(cost_micros), SUM(unpriced), SUM(audio_ms), SUM(characters)
        FROM spend_ledger GROUP BY 1, 2, 3`,
    ],
  },
  {
    version: 14,
    statements: [
      // Nothing reads the ledger by time alone any more (usage reports read the hourly totals, budgets the key's
      // index): this index only cost every request an insert into it.
      `DROP INDEX spend_ledger_time`,
    ],
  },
  {
    version: 15,
    statements: [
      // Pictures in the hourly totals, as seconds and characters are: usage reports count them.
      `ALTER TABLE spend_hours ADD COLUMN images BIGINT NOT NULL DEFAULT 0`,
      `ALTER TABLE spend_user_hours ADD COLUMN images BIGINT NOT NULL DEFAULT 0`,
      `UPDATE spend_hours SET images = t.images FROM (
        SELECT created_at - created_at % 3600000 AS hour, COALESCE(key_id, '') AS key_id, COALESCE(model, '') AS model,
          COALESCE(provider, '') AS provider, SUM(images) AS images
        FROM spend_ledger WHERE images > 0 GROUP BY 1, 2, 3, 4) AS t
        WHERE spend_hours.hour = t.hour AND spend_hours.key_id = t.key_id AND spend_hours.model = t.model AND spend_hours.provider = t.provider`,
      `UPDATE spend_user_hours SET images = t.images FROM (
        SELECT created_at - created_at % 3600000 AS hour, COALESCE(key_id, '') AS key_id, COALESCE(end_user, '') AS end_user, SUM(images) AS images
        FROM spend_ledger WHERE images > 0 GROUP BY 1, 2, 3) AS t
        WHERE spend_user_hours.hour = t.hour AND spend_user_hours.key_id = t.key_id AND spend_user_hours.end_user = t.end_user`,
    ],
  },
  {
    version: 16,
    statements: [
      // Key names are unique, as providers' and models' are: checked only before the insert, two keys of one name
      // were made by two instances at once (a config seed started on several), and every later start seeding that
      // name stopped. Twins from before keep the oldest's name; the others get their id after it.
      `UPDATE virtual_keys SET name = name || ' (' || id || ')' WHERE EXISTS (
        SELECT 1 FROM virtual_keys older WHERE older.name = virtual_keys.name
          AND (older.created_at < virtual_keys.created_at OR (older.created_at = virtual_keys.created_at AND older.id < virtual_keys.id)))`,
      `CREATE UNIQUE INDEX virtual_keys_name ON virtual_keys (name)`,
    ],
  },
  {
    version: 17,
    statements: [
      // A base URL with a password in it (a server behind basic auth), sealed like an API key; base_url then holds it
      // masked (see sealBaseURLs in secrets.ts, which seals those stored before).
      `ALTER TABLE providers ADD COLUMN base_url_secret TEXT`,
    ],
  },
]
