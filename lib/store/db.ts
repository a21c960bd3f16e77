// The database: one postgres.js pool (DATABASE_URL) or embedded PGlite, behind one small interface.
// The drivers' errors become DatabaseError here.

import postgres from "postgres";
import { PGlite } from "@electric-sql/pglite";
import type { Logger } from "../core/log.ts";
import { settledWithin } from "../core/settled_within.ts";
import { DenoPgSocket, plainTcpTarget } from "./pg_socket.ts";
import { guardTypeFetchFailures } from "./pg_type_fetch_guard.ts";

export type Row = Record<string, unknown>;

/** Reconnect attempts after a lost connection are at most this far apart. */
const MAX_RECONNECT_DELAY_MS = 1000;
/** A query with no timeout of its own is cancelled after this long (a silent database must not hang a request). */
const DEFAULT_QUERY_TIMEOUT_MS = 10_000;
/**
 * A timed-out query is cancelled; if neither it nor its cancel has come back this much later, its
 * connections are not answering at all (a network partition): they are replaced.
 */
const CANCEL_GRACE_MS = 2000;
/** How long close() waits for its sockets' 'close' events (they come within milliseconds). */
const SOCKETS_CLOSE_WAIT_MS = 1000;
/** Timeouts in a row, with no query answered in between, that prove an instance's connections dead. */
const MAX_TIMEOUTS_IN_A_ROW = 2;
/**
 * How long a query may wait for a free connection. Waiting is not the query's own time (a busy
 * pool is not a failing one), but a queue must not grow without end either.
 */
const ADMISSION_TIMEOUT_MS = 30_000;
/** How long a replaced pool's queries still in flight may finish before its connections are closed. */
const REPLACED_POOL_GRACE_SEC = 5;

/** Advisory lock key held while the schema is applied to a PostgreSQL server. */
const SCHEMA_LOCK_KEY = 5555;

export interface Database {
  /** "postgres" for a server, "embedded" for PGlite. */
  readonly kind: "postgres" | "embedded";
  /**
   * A parameterized query ($1, $2, …); rejects with DatabaseError. A query that has not answered
   * `timeoutMs` (default 10 s) after a connection was free for it is cancelled, and rejects (its
   * outcome may still be a commit); waiting for a free connection counts only past that long.
   */
  query<T extends Row = Row>(text: string, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  /**
   * Like `query`, but every call runs on one connection in the order of the calls, pipelined:
   * statements issued one after another execute and commit in that order. A timed-out query is
   * cancelled; the connection is replaced only if the cancel goes unanswered too.
   */
  ordered<T extends Row = Row>(text: string, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  /**
   * Subscribes to a NOTIFY channel. `onListen` runs after every (re)subscription, which is when
   * notifications may have been missed. The embedded database serves one server only: it calls
   * `onListen` once and delivers nothing.
   */
  listen(channel: string, onNotify: (payload: string) => void, onListen: () => void): Promise<void>;
  /**
   * Runs `work` in one transaction (the schema and its migration); on a PostgreSQL server under an
   * advisory lock, so that servers starting at once take turns. Errors thrown by `work` itself
   * (not by the driver) reach the caller unchanged; the transaction is rolled back either way.
   */
  schemaTransaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** The queries of one open transaction. */
export interface Transaction {
  query<T extends Row = Row>(text: string, params?: unknown[]): Promise<T[]>;
  /** Several statements without parameters (a script such as schema.sql). */
  exec(text: string): Promise<void>;
}

/**
 * postgres.js (3.4.9) counts a result's rows on the connection and does not reset that count when
 * the connection dies mid-result: once it has reconnected, the next result's rows start at the old
 * count, behind holes (a batch's outcome read as missing). Moves them back to the front, in place,
 * so that the result keeps its other fields.
 */
function withoutLeadingHoles<T>(rows: T[]): T[] {
  if (rows.length === 0 || 0 in rows) return rows;
  rows.splice(0, rows.findIndex((row) => row !== undefined));
  return rows;
}

/**
 * postgres.js (3.4.9) keeps a FATAL error that ended a connection (PostgreSQL terminating it) and
 * fails the first query given to the reconnected connection with it, before that query is sent. A
 * FATAL error never reaches a query that was sent: its connection's close fails that one with
 * CONNECTION_CLOSED. The other FATAL errors come at connection startup, before the query is sent too.
 */
function neverSent(err: unknown): boolean {
  return typeof err === "object" && err !== null && "severity" in err && err.severity === "FATAL";
}

/** A driver error at the boundary: `sqlState` is PostgreSQL's code when the server gave one. */
export class DatabaseError extends Error {
  override readonly name = "DatabaseError";
  readonly sqlState: string | undefined;
  constructor(message: string, sqlState: string | undefined, cause: unknown) {
    super(message, { cause });
    this.sqlState = sqlState;
  }
  get isUniqueViolation(): boolean {
    return this.sqlState === "23505";
  }
}

/** The fields a log line gives a database failure: PostgreSQL's code and the message, no SQL text. */
export function databaseErrorFields(err: unknown): { sql_state: string | undefined; error: string } {
  return {
    sql_state: err instanceof DatabaseError ? err.sqlState : undefined,
    error: err instanceof Error ? err.message : String(err),
  };
}

function translate(err: unknown): DatabaseError {
  if (err instanceof DatabaseError) return err;
  const sqlState = typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" &&
      /^[0-9A-Z]{5}$/.test(err.code)
    ? err.code
    : undefined;
  const message = err instanceof Error ? err.message : String(err);
  return new DatabaseError(message, sqlState, err);
}

export interface QueryOptions {
  timeoutMs?: number;
  /**
   * "control": the server's own small queries (health, presence) run on a connection of their
   * own, so that user load neither starves them nor is disturbed by them.
   */
  lane?: "control";
}

export interface DatabaseOptions {
  databaseUrl: string | undefined;
  dataDir: string;
  poolSize: number;
  log: Logger;
  /**
   * Nothing this server writes is announced by NOTIFY (its connections set chat.quiet): it
   * announces its commits on another bus (NATS).
   */
  quiet?: boolean;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return options.databaseUrl
    ? openPostgres(options.databaseUrl, options.poolSize, options.log, options.quiet ?? false)
    : await openEmbedded(options.dataDir);
}

function openPostgres(url: string, poolSize: number, log: Logger, quiet: boolean): Database {
  guardTypeFetchFailures(log);
  const target = plainTcpTarget(url);
  /**
   * When a connection last closed while its instance was in use (an error, or the database or a
   * proxy closing it): postgres.js may have a reconnect timer pending until then + the backoff.
   */
  let lastUnplannedClose = -Infinity;
  /** Sockets that have not emitted 'close' yet (a closed one emits it a moment later: pg_socket.ts). */
  const sockets = new Set<DenoPgSocket>();
  /**
   * `role` names the connections in pg_stat_activity: chat-server, chat-server/writer,
   * chat-server/listener. `end()` also stops the instance from opening sockets: postgres.js
   * (3.4.9) can fire a reconnect timer after `end()`, and would open a connection nobody closes.
   */
  const connect = (max: number, role?: string): Driver => {
    let ended = false;
    let closes = 0;
    // Deno's own TCP for plain connections (far cheaper per write); node:net for TLS and the rest.
    const socket = target
      ? {
        socket: () => {
          if (ended) throw new Error("the database connection pool was closed");
          const opened = new DenoPgSocket(target.hostname, target.port);
          sockets.add(opened);
          opened.once("close", () => {
            sockets.delete(opened);
            if (!ended) lastUnplannedClose = performance.now();
          });
          return opened as unknown as import("node:net").Socket;
        },
      }
      : {};
    const sql = postgres(url, {
      ...socket,
      max,
      prepare: true,
      connect_timeout: 5,
      idle_timeout: 60,
      // Reconnect attempts after an outage: quick, and never more than 1 s apart (the default
      // grows to 20 s, which would keep a server away long after its database is back).
      backoff: (retries: number) => Math.min(0.05 * 2 ** retries, MAX_RECONNECT_DELAY_MS / 1000),
      // postgres.js reconnects on the next query after a connection is lost; nothing to do here.
      onnotice: (notice) => log.debug("database notice", { message: notice.message }),
      onclose: () => void closes++,
      connection: {
        application_name: role ? `chat-server/${role}` : "chat-server",
        ...(quiet ? { "chat.quiet": "on" } : {}),
      },
    });
    return {
      sql,
      closesSinceAsked() {
        const count = closes;
        closes = 0;
        return count;
      },
      end(timeout: number) {
        ended = true;
        return sql.end({ timeout });
      },
    };
  };
  // A running query is cancelled with pg_cancel_backend() on another connection: postgres.js's own
  // cancel (3.4.9) leaves its failure an unhandled rejection.
  const cancelOn = (other: () => Pool) => (pid: number) =>
    other().query("SELECT pg_cancel_backend($1::int)", [pid], { timeoutMs: CANCEL_GRACE_MS });
  const pool: Pool = new Pool(() => connect(poolSize), poolSize, "database pool", log, cancelOn(() => control));
  /** One connection: postgres.js pipelines the queries of one connection in the order they are made. */
  const writer = new Pool(
    () => connect(1, "writer"),
    undefined,
    "database writer connection",
    log,
    cancelOn(() => control),
  );
  const control: Pool = new Pool(
    () => connect(1, "control"),
    1,
    "database control connection",
    log,
    cancelOn(() => pool),
  );
  /** LISTEN gets a connection of its own, which pool replacements leave alone. */
  let listener: Driver | undefined;
  return {
    kind: "postgres",
    query<T extends Row>(text: string, params: unknown[] = [], options: QueryOptions = {}): Promise<T[]> {
      return (options.lane === "control" ? control : pool).query<T>(text, params, options);
    },
    ordered<T extends Row>(text: string, params: unknown[] = [], options: QueryOptions = {}): Promise<T[]> {
      return writer.query<T>(text, params, options);
    },
    async listen(channel: string, onNotify: (payload: string) => void, onListen: () => void): Promise<void> {
      listener ??= connect(1, "listener");
      try {
        await listener.sql.listen(channel, onNotify, onListen);
      } catch (err) {
        throw translate(err);
      }
    },
    async schemaTransaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
      return await runWork(work, (guarded) =>
        pool.sql.begin(async (tx) => {
          // Serialises servers that start at once: CREATE … IF NOT EXISTS and migrations can race otherwise.
          await tx.unsafe("SELECT pg_advisory_xact_lock($1)", [SCHEMA_LOCK_KEY]);
          return await guarded({
            query: async <R extends Row>(text: string, params: unknown[] = []) =>
              // deno-lint-ignore no-explicit-any
              withoutLeadingHoles(await tx.unsafe<R[]>(text, params as any[])),
            exec: async (text: string) => void await tx.unsafe(text).simple(),
          });
        }) as Promise<T>);
    },
    async close(): Promise<void> {
      await Promise.all([pool.end(5), writer.end(5), control.end(5), listener?.end(0)]);
      // Every socket has been told to close; its 'close' (and postgres.js's cleanup on it) follows.
      if (sockets.size > 0) {
        const closed = [...sockets].map((socket) => new Promise((resolve) => socket.once("close", resolve)));
        await settledWithin(Promise.all(closed), SOCKETS_CLOSE_WAIT_MS);
      }
      // A reconnect timer postgres.js armed after a failure outlives end(); it does nothing once
      // ended (the socket factory refuses), but let it fire before saying the database is closed.
      const pending = lastUnplannedClose + MAX_RECONNECT_DELAY_MS + 50 - performance.now();
      if (pending > 0) await new Promise((resolve) => setTimeout(resolve, pending));
    },
  };
}

/** A postgres.js instance, and the way to end it for good. */
interface Driver {
  readonly sql: postgres.Sql;
  /** How many of its connections have closed since the last call. */
  closesSinceAsked(): number;
  end(timeoutSeconds: number): Promise<void>;
}

/**
 * A postgres.js instance with the timeouts of its queries. With `slots`, queries are admitted one
 * per connection (the rest wait in line), so that a query's timeout runs from when a connection is
 * free for it, never while it is queued; without, they are pipelined (the writer).
 *
 * A query past its timeout is cancelled (PostgreSQL stops that statement; the connection goes on).
 * The instance is replaced only when its connections are proven not to answer: neither a query
 * nor its cancel comes back (open but silent, as in a network partition), or queries keep timing
 * out with none answered in between (a connection that never came back after an outage). The
 * pipelined writer is replaced at its first timeout: every batch after a stuck one waits behind
 * it on that one connection, and a batch takes milliseconds, so one past its timeout is stuck.
 */
class Pool {
  #driver: Driver;
  readonly #connect: () => Driver;
  readonly #slots: number | undefined;
  readonly #name: string;
  readonly #log: Logger;
  readonly #cancelBackend: (pid: number) => Promise<unknown>;
  #free: number;
  readonly #waiting: (() => void)[] = [];
  /** Queries of this instance timed out since the last one that answered. */
  #timeoutsInARow = 0;
  /** Cancels waiting to be proven answered, and replaced instances still closing: end() waits for them. */
  readonly #graceTimers = new Set<ReturnType<typeof setTimeout>>();
  readonly #retiring = new Set<Promise<void>>();

  constructor(
    connect: () => Driver,
    slots: number | undefined,
    name: string,
    log: Logger,
    cancelBackend: (pid: number) => Promise<unknown>,
  ) {
    this.#cancelBackend = cancelBackend;
    this.#connect = connect;
    this.#slots = slots;
    this.#free = slots ?? Infinity;
    this.#name = name;
    this.#log = log;
    this.#driver = connect();
  }

  get sql(): postgres.Sql {
    return this.#driver.sql;
  }

  async end(timeoutSeconds: number): Promise<void> {
    for (const timer of this.#graceTimers) clearTimeout(timer);
    this.#graceTimers.clear();
    await Promise.all([this.#driver.end(timeoutSeconds), ...this.#retiring]);
  }

  async query<T extends Row>(text: string, params: unknown[], options: QueryOptions): Promise<T[]> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
    const driver = await this.#admit();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#release(driver);
    };
    if (this.#slots === undefined && driver.closesSinceAsked() > 0) {
      // The writer's connection closed: the first query given to it again may meet the stale error
      // of neverSent(). A probe takes it, so that no batch does; the batches queue behind it. (If
      // the database refuses that reconnect, restarting, the error waits for the next connection
      // that starts, and the query then first in line meets it: answered unavailable, never lost.)
      driver.sql.unsafe("SELECT 1").catch(() => {});
    }
    // deno-lint-ignore no-explicit-any
    const issue = () => driver.sql.unsafe<T[]>(text, params as any[], { prepare: true });
    let current = issue();
    let toldTimedOut = false;
    // Pooled queries are independent, so one never sent is sent again (on any of the pool's
    // connections, so no probe can take the stale error for it), unless its caller has been told
    // it timed out; the writer's are answered in order, so they are never sent twice.
    const pending = this.#slots === undefined ? current : current.catch((err) => {
      if (!neverSent(err) || toldTimedOut) throw err;
      current = issue();
      return current;
    });
    // The connection is free again once the query has settled, whoever still waits for it.
    pending.then(() => {
      if (driver === this.#driver) this.#timeoutsInARow = 0;
      release();
    }, release);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          toldTimedOut = true;
          const limit = this.#slots === undefined ? 1 : MAX_TIMEOUTS_IN_A_ROW;
          if (driver === this.#driver && ++this.#timeoutsInARow >= limit) {
            this.#replace(`${this.#timeoutsInARow} queries in a row timed out`);
          }
          this.#cancel(driver, pending, current, release);
          reject(new DatabaseError(`query timed out after ${timeoutMs} ms`, undefined, undefined));
        }, timeoutMs);
      });
      return withoutLeadingHoles(await Promise.race([pending, timedOut]));
    } catch (err) {
      throw translate(err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Cancels a timed-out query; replaces the instance if neither it nor the cancel comes back. */
  #cancel(driver: Driver, pending: Promise<unknown>, current: { cancel(): unknown }, release: () => void): void {
    pending.catch(() => {}); // Settles later, if ever, after nobody waits for it.
    const grace = setTimeout(() => {
      this.#graceTimers.delete(grace);
      release();
      if (driver === this.#driver) this.#replace("a query and its cancel went unanswered");
    }, CANCEL_GRACE_MS);
    this.#graceTimers.add(grace);
    const settled = () => {
      clearTimeout(grace);
      this.#graceTimers.delete(grace);
    };
    pending.then(settled, settled);
    const query = current as unknown as { active?: boolean; state?: unknown };
    if (query.active) {
      // Running: PostgreSQL stops that statement. A cancel that fails is this query's timeout, told already.
      const pid = (query.state as { pid?: number } | undefined)?.pid;
      if (pid !== undefined) this.#cancelBackend(pid).catch(() => {});
      return;
    }
    if (query.state !== undefined) {
      // Written to a connection behind others (pipelined): left to run, its answer ignored.
      // postgres.js (3.4.9) would drop it from its list of sent queries while PostgreSQL still
      // answers it, so the next query on that connection would get its answer (a batch's outcome
      // read from another query's rows); and it sends that cancel on a connection of its own,
      // whose failure to open is an uncaught TypeError that ends the process.
      return;
    }
    try {
      // Not given to a connection yet: postgres.js drops it from its queue, nothing is sent.
      current.cancel();
    } catch {
      // Settled meanwhile.
    }
  }

  /** Waits for a free connection; returns the instance the query runs on. */
  async #admit(): Promise<Driver> {
    if (this.#free > 0) {
      this.#free--;
      return this.#driver;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const turn = new Promise<void>((resolve, reject) => {
      const waiter = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiting.push(waiter);
      timer = setTimeout(() => {
        const at = this.#waiting.indexOf(waiter);
        if (at >= 0) this.#waiting.splice(at, 1);
        reject(
          new DatabaseError(`no database connection was free for ${ADMISSION_TIMEOUT_MS} ms`, undefined, undefined),
        );
      }, ADMISSION_TIMEOUT_MS);
    });
    await turn;
    return this.#driver;
  }

  #release(driver: Driver): void {
    if (driver !== this.#driver || this.#slots === undefined) return;
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }

  #replace(reason: string): void {
    this.#timeoutsInARow = 0;
    const stale = this.#driver;
    this.#driver = this.#connect();
    this.#log.warn(`${this.#name} replaced`, { reason });
    // Queries still running on its other connections may finish; the silent ones are closed.
    const retired = stale.end(REPLACED_POOL_GRACE_SEC).catch(() => {}).finally(() => this.#retiring.delete(retired));
    this.#retiring.add(retired);
    if (this.#slots === undefined) return;
    this.#free = this.#slots;
    while (this.#free > 0 && this.#waiting.length > 0) {
      this.#free--;
      this.#waiting.shift()!();
    }
  }
}

/** The embedded database serves one process: a second server on the same DATA_DIR is refused. */
export class DataDirInUseError extends Error {
  override readonly name = "DataDirInUseError";
  constructor(readonly dataDir: string) {
    super(`the embedded database in ${dataDir} is in use by another server (it serves one server only)`);
  }
}

async function openEmbedded(dataDir: string): Promise<Database> {
  const inMemory = dataDir === "memory://";
  const lock = inMemory ? undefined : await lockDataDir(dataDir);
  let pg: PGlite;
  try {
    pg = await PGlite.create(inMemory ? undefined : dataDir);
  } catch (err) {
    lock?.close();
    throw translate(err);
  }
  const query = async <T extends Row>(text: string, params: unknown[] = []): Promise<T[]> => {
    try {
      return (await pg.query<T>(text, params)).rows;
    } catch (err) {
      throw translate(err);
    }
  };
  return {
    kind: "embedded",
    query,
    // PGlite has one connection and runs queries in the order they are made.
    ordered: query,
    listen(_channel: string, _onNotify: (payload: string) => void, onListen: () => void): Promise<void> {
      onListen();
      return Promise.resolve();
    },
    async schemaTransaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
      return await runWork(work, (guarded) =>
        pg.transaction((tx) =>
          guarded({
            query: async <R extends Row>(text: string, params: unknown[] = []) =>
              (await tx.query<R>(text, params)).rows,
            exec: async (text: string) => void await tx.exec(text),
          })
        ));
    },
    async close(): Promise<void> {
      try {
        await pg.close();
      } finally {
        lock?.close();
      }
    },
  };
}

/** Holds an exclusive lock on DATA_DIR/.chat-server.lock for as long as the database is open. */
async function lockDataDir(dataDir: string): Promise<Deno.FsFile> {
  await Deno.mkdir(dataDir, { recursive: true });
  const file = await Deno.open(`${dataDir}/.chat-server.lock`, { create: true, write: true });
  if (await file.tryLock(true)) return file;
  file.close();
  throw new DataDirInUseError(dataDir);
}

/**
 * Runs `work` inside `transact` (which opens the transaction): the driver's errors, from the
 * transaction's queries or from BEGIN/COMMIT, become DatabaseError; an error of `work`'s own (a
 * SchemaMismatchError, say) is passed on as it was thrown.
 */
async function runWork<T>(
  work: (tx: Transaction) => Promise<T>,
  transact: (guarded: (tx: Transaction) => Promise<T>) => Promise<T>,
): Promise<T> {
  const translating = (tx: Transaction): Transaction => ({
    async query<R extends Row>(text: string, params?: unknown[]): Promise<R[]> {
      try {
        return await tx.query<R>(text, params);
      } catch (err) {
        throw translate(err);
      }
    },
    async exec(text: string): Promise<void> {
      try {
        await tx.exec(text);
      } catch (err) {
        throw translate(err);
      }
    },
  });
  let ownError: unknown;
  try {
    return await transact(async (tx) => {
      try {
        return await work(translating(tx));
      } catch (err) {
        ownError = err;
        throw err;
      }
    });
  } catch (err) {
    throw err === ownError ? err : translate(err);
  }
}
