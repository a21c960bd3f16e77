// Background clean-up of the tables that only need recent rows: client_msg_ids past the
// exactly-once window, and login-failure buckets that are full again. Deletes go in small
// chunks, each its own short transaction, so sends never wait behind them.

import { type Database, databaseErrorFields } from "./db.ts";
import type { Logger } from "../core/log.ts";
import type { LoginThrottle } from "./login_throttle.ts";

/** The contract keeps a client_msg_id for at least 7 days. */
const CLIENT_MSG_ID_DAYS = 7;
const INTERVAL_MS = 60 * 60 * 1000;
/** The first run waits a little, so that start-up is not slowed by it. */
const FIRST_RUN_MS = 30_000;
const CHUNK_ROWS = 5000;

const PRUNE_CLIENT_MSG_IDS_SQL = `DELETE FROM chat_client_msg_ids WHERE ctid IN (
  SELECT ctid FROM chat_client_msg_ids
  WHERE created_at < (now() AT TIME ZONE 'UTC') - make_interval(days => ${CLIENT_MSG_ID_DAYS})
  LIMIT ${CHUNK_ROWS}) RETURNING 1 AS pruned`;

export class Maintenance {
  readonly #db: Database;
  readonly #throttle: LoginThrottle;
  readonly #log: Logger;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(db: Database, throttle: LoginThrottle, log: Logger) {
    this.#db = db;
    this.#throttle = throttle;
    this.#log = log;
  }

  start(): void {
    this.#schedule(FIRST_RUN_MS);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** One clean-up pass; returns how many client_msg_ids were pruned. Never rejects. */
  async runOnce(): Promise<number> {
    let pruned = 0;
    try {
      while (!this.#stopped) {
        const rows = await this.#db.query(PRUNE_CLIENT_MSG_IDS_SQL);
        pruned += rows.length;
        if (rows.length < CHUNK_ROWS) break;
      }
      await this.#throttle.forgetOld();
      if (pruned > 0) this.#log.info("pruned expired client_msg_ids", { count: pruned });
    } catch (err) {
      this.#log.warn("background clean-up failed; will retry", databaseErrorFields(err));
    }
    return pruned;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.runOnce().then(() => this.#schedule(INTERVAL_MS));
    }, ms);
  }

  /** Settles when a run in progress (if any) ends. */
  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }
}
