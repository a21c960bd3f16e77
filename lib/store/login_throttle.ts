// Login and registration throttling shared by every server on the database: token buckets in
// chat_login_failures, taken when an attempt starts (schema.sql: chat_bucket_take), so attempts
// spread over several servers, or made at once, are throttled as sequential ones on one server.

import type { Database } from "./db.ts";

/** Login attempts allowed per username before throttling, then one more every 12 s. */
const USERNAME_BURST = 5;
const USERNAME_PER_SEC = 1 / 12;
/** Login attempts allowed per address (NAT can put many users behind one), then one every 3 s. */
const ADDRESS_BURST = 20;
const ADDRESS_PER_SEC = 1 / 3;
/** A bucket untouched this long is full again, and its row can go. */
const FORGET_AFTER_SEC = 3600;

const TAKE_SQL = `SELECT chat_bucket_take($1::text[], $2::float8[], $3::float8[]) AS wait_ms`;
const GIVE_SQL = `SELECT chat_bucket_give($1::text, $2::float8, $3::float8)`;
const SUCCEEDED_SQL = `DELETE FROM chat_login_failures WHERE key = $1::text`;
const FORGET_SQL = `DELETE FROM chat_login_failures
  WHERE updated_at < now() - make_interval(secs => ${FORGET_AFTER_SEC})`;

export interface RegistrationLimit {
  /** Registrations allowed from one address at once. */
  registerLimitBurst: number;
  /** Then this many a minute; 0 turns the limit off. */
  registerLimitPerMin: number;
}

export class LoginThrottle {
  readonly #db: Database;
  readonly #registration: RegistrationLimit;

  constructor(db: Database, registration: RegistrationLimit = { registerLimitBurst: 50, registerLimitPerMin: 6 }) {
    this.#db = db;
    this.#registration = registration;
  }

  /**
   * Counts a login attempt against the username (if it can be one: `usernameKey`, lower case) and
   * the address. Returns 0 when it may go on, else the milliseconds until it may try again (and
   * then nothing was counted). Rejects with DatabaseError.
   */
  async takeLogin(usernameKey: string | undefined, address: string): Promise<number> {
    const keys = usernameKey === undefined ? [addressKey(address)] : [`user:${usernameKey}`, addressKey(address)];
    return await this.#take(
      keys,
      keys.map((k) => (k.startsWith("user:") ? USERNAME_BURST : ADDRESS_BURST)),
      keys.map((k) => (k.startsWith("user:") ? USERNAME_PER_SEC : ADDRESS_PER_SEC)),
    );
  }

  /**
   * A login that succeeded: the username's attempts are forgotten, and the address gets its token
   * back (many honest users behind one NAT must not throttle each other by logging in).
   */
  async loginSucceeded(usernameKey: string, address: string): Promise<void> {
    await this.#db.query(SUCCEEDED_SQL, [`user:${usernameKey}`]);
    await this.#db.query(GIVE_SQL, [addressKey(address), ADDRESS_BURST, ADDRESS_PER_SEC]);
  }

  /** Counts a registration attempt from `address`: 0 when it may go on, else the wait in ms. */
  async takeRegistration(address: string): Promise<number> {
    const { registerLimitBurst, registerLimitPerMin } = this.#registration;
    if (registerLimitPerMin === 0) return 0;
    return await this.#take([`register:${address}`], [registerLimitBurst], [registerLimitPerMin / 60]);
  }

  /** Removes buckets that are full again; run in the background. */
  async forgetOld(): Promise<void> {
    await this.#db.query(FORGET_SQL);
  }

  async #take(keys: string[], bursts: number[], rates: number[]): Promise<number> {
    const rows = await this.#db.query<{ wait_ms: number }>(TAKE_SQL, [keys, bursts, rates]);
    return Number(rows[0]?.wait_ms ?? 0);
  }
}

function addressKey(address: string): string {
  return `addr:${address}`;
}
