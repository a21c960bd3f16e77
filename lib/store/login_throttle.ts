// Failed-login throttling shared by every server on the database: a token bucket per username
// and per address in chat_login_failures, so guesses spread over several servers are throttled
// as on one.

import type { Database } from "./db.ts";

/** Failed logins allowed per username before throttling, then one more every 12 s. */
const USERNAME_FAILURE_BURST = 5;
const USERNAME_FAILURES_PER_SEC = 1 / 12;
/** Failed logins allowed per address (NAT can put many users behind one), then one every 3 s. */
const ADDRESS_FAILURE_BURST = 20;
const ADDRESS_FAILURES_PER_SEC = 1 / 3;
/** A bucket untouched this long is full again, and its row can go. */
const FORGET_AFTER_SEC = 3600;

// $2/$3: burst and rate of usernames' buckets; $4/$5: of addresses'.
const BUCKET_PARAMS = [
  USERNAME_FAILURE_BURST,
  USERNAME_FAILURES_PER_SEC,
  ADDRESS_FAILURE_BURST,
  ADDRESS_FAILURES_PER_SEC,
];
const TOKENS_NOW = `LEAST(CASE WHEN f.key LIKE 'user:%' THEN $2::float8 ELSE $4::float8 END,
  f.tokens + extract(epoch FROM now() - f.updated_at)::float8 * CASE WHEN f.key LIKE 'user:%' THEN $3::float8 ELSE $5::float8 END)`;
const RATE = `CASE WHEN f.key LIKE 'user:%' THEN $3::float8 ELSE $5::float8 END`;

const WAIT_SQL = `SELECT COALESCE(max(ceil((1 - t.tokens) / t.rate * 1000)), 0)::int AS wait_ms
  FROM (SELECT ${TOKENS_NOW} AS tokens, ${RATE} AS rate FROM chat_login_failures f WHERE f.key = ANY($1::text[])) t
  WHERE t.tokens < 1`;
const FAILED_SQL = `INSERT INTO chat_login_failures AS f (key, tokens, updated_at)
  SELECT k, CASE WHEN k LIKE 'user:%' THEN $2::float8 ELSE $4::float8 END - 1, now() FROM unnest($1::text[]) AS k
  ON CONFLICT (key) DO UPDATE SET tokens = ${TOKENS_NOW} - 1, updated_at = now()`;
const SUCCEEDED_SQL = `DELETE FROM chat_login_failures WHERE key = $1::text`;
const FORGET_SQL = `DELETE FROM chat_login_failures
  WHERE updated_at < now() - make_interval(secs => ${FORGET_AFTER_SEC})`;

export class LoginThrottle {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * Milliseconds until this username may try again from this address (0 = now); `usernameKey`
   * is undefined for what cannot be a username. Rejects with DatabaseError.
   */
  async waitMs(usernameKey: string | undefined, address: string): Promise<number> {
    const rows = await this.#db.query<{ wait_ms: number }>(WAIT_SQL, [keys(usernameKey, address), ...BUCKET_PARAMS]);
    return Number(rows[0]?.wait_ms ?? 0);
  }

  /** Counts a failed login against the username (if it can be one) and the address. */
  async failed(usernameKey: string | undefined, address: string): Promise<void> {
    await this.#db.query(FAILED_SQL, [keys(usernameKey, address), ...BUCKET_PARAMS]);
  }

  /** A successful login clears the username's failures (not the address's). */
  async succeeded(usernameKey: string): Promise<void> {
    await this.#db.query(SUCCEEDED_SQL, [`user:${usernameKey}`]);
  }

  /** Removes buckets that are full again; run in the background. */
  async forgetOld(): Promise<void> {
    await this.#db.query(FORGET_SQL);
  }
}

function keys(usernameKey: string | undefined, address: string): string[] {
  return usernameKey === undefined ? [`addr:${address}`] : [`user:${usernameKey}`, `addr:${address}`];
}
