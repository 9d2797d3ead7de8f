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
]
