// The search indexes' pending lists, emptied in the background. A GIN index (fastupdate, the
// default) takes new rows into a pending list, and the insert that finds that list past
// gin_pending_list_limit (4 MB) merges it into the index itself, inside its transaction: at full
// ingest one send batch in some tens of thousands waited 100 ms and more (ingest1's p99 127–138
// ms, against 36–37 ms with the index dropped). Emptied here, off the send path, four times a
// second while this server commits messages (at 30k msg/s a list fills in about a second), the
// list seldom reaches the limit. (fastupdate = off has no such stalls, but costs every insert more:
// 22k msg/s against 27k.) PostgreSQL only: the embedded database serves one connection.

import type { Logger } from "../core/log.ts";
import { type Database, databaseErrorFields } from "./db.ts";

const EVERY_MS = 250;
/** A merge of a full list takes about a tenth of a second; never hold a pool connection for ever. */
const CLEAN_TIMEOUT_MS = 30_000;
const CLEAN_SQL = `SELECT gin_clean_pending_list(c.oid) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
  WHERE c.relname = ANY($1::text[]) AND c.relnamespace = current_schema()::regnamespace AND i.indisvalid`;

export class SearchIndexUpkeep {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #indexes: string[];
  /** Messages this server has committed so far, and how many when the lists were last emptied. */
  readonly #committed: () => number;
  #cleanedAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  /** A failure was warned about and no run has succeeded since. */
  #warned = false;

  constructor(db: Database, log: Logger, indexes: string[], committed: () => number) {
    this.#committed = committed;
    this.#db = db;
    this.#log = log;
    this.#indexes = indexes;
  }

  start(): void {
    if (this.#db.kind === "postgres") this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Settles when a run in progress (if any) ends. */
  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      const committed = this.#committed();
      // Nothing new since the last run: no query (an idle server asks nothing of the database).
      if (committed === this.#cleanedAt) return this.#schedule();
      this.#cleanedAt = committed;
      this.#running = this.#clean().finally(() => {
        this.#running = undefined;
        this.#schedule();
      });
    }, EVERY_MS);
  }

  async #clean(): Promise<void> {
    try {
      await this.#db.query(CLEAN_SQL, [this.#indexes], { timeoutMs: CLEAN_TIMEOUT_MS });
      // Recovered: said, and the warning re-armed, so that a later lasting failure is not left unlogged.
      if (!this.#warned) return;
      this.#warned = false;
      this.#log.info("emptying the search indexes' pending lists in the background works again");
    } catch (err) {
      // Not the indexes' owner (a database set up by another role), or the database is away:
      // inserts then merge the lists themselves, as PostgreSQL does by default. Said once until it works again.
      if (this.#stopped || this.#warned) return;
      this.#warned = true;
      this.#log.warn("cannot empty the search indexes' pending lists in the background", databaseErrorFields(err));
    }
  }
}
