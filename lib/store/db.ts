// The database: one postgres.js pool (DATABASE_URL) or embedded PGlite, behind one small interface.
// The drivers' errors become DatabaseError here.

import postgres from "postgres";
import { PGlite } from "@electric-sql/pglite";
import type { Logger } from "../core/log.ts";
import { DenoPgSocket, plainTcpTarget } from "./pg_socket.ts";

export type Row = Record<string, unknown>;

/** Reconnect attempts after a lost connection are at most this far apart. */
const MAX_RECONNECT_DELAY_MS = 1000;

/** Advisory lock key held while the schema is applied to a PostgreSQL server. */
const SCHEMA_LOCK_KEY = 5555;

export interface Database {
  /** "postgres" for a server, "embedded" for PGlite. */
  readonly kind: "postgres" | "embedded";
  /**
   * A parameterized query ($1, $2, …); rejects with DatabaseError. With `timeoutMs`, a query that
   * has not answered by then is cancelled and rejects (its outcome may still be a commit).
   */
  query<T extends Row = Row>(text: string, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  /**
   * Like `query`, but every call runs on one connection in the order of the calls, pipelined:
   * statements issued one after another execute and commit in that order. A timeout replaces
   * that connection (its other queries in flight then fail).
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
}

export interface DatabaseOptions {
  databaseUrl: string | undefined;
  dataDir: string;
  poolSize: number;
  log: Logger;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return options.databaseUrl
    ? openPostgres(options.databaseUrl, options.poolSize, options.log)
    : await openEmbedded(options.dataDir);
}

function openPostgres(url: string, poolSize: number, log: Logger): Database {
  const target = plainTcpTarget(url);
  /** When a connection last failed: postgres.js may have a reconnect timer pending until then + the backoff. */
  let lastFailure = -Infinity;
  /**
   * `role` names the connections in pg_stat_activity: chat-server, chat-server/writer,
   * chat-server/listener. `end()` also stops the instance from opening sockets: postgres.js
   * (3.4.9) can fire a reconnect timer after `end()`, and would open a connection nobody closes.
   */
  const connect = (max: number, role?: string): Driver => {
    let ended = false;
    // Deno's own TCP for plain connections (far cheaper per write); node:net for TLS and the rest.
    const socket = target
      ? {
        socket: () => {
          if (ended) throw new Error("the database connection pool was closed");
          const opened = new DenoPgSocket(target.hostname, target.port);
          opened.once("error", () => lastFailure = performance.now());
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
      connection: { application_name: role ? `chat-server/${role}` : "chat-server" },
    });
    return {
      sql,
      end(timeout: number) {
        ended = true;
        return sql.end({ timeout });
      },
    };
  };
  /**
   * A query that outlives its timeout most likely sits on a connection that will never answer (a
   * network partition leaves it open but silent), and the pool would keep handing such
   * connections out: start a fresh pool and drop the old one's connections.
   */
  const pool = new ReplaceablePool(() => connect(poolSize), "database pool", log);
  /** One connection: postgres.js pipelines the queries of one connection in the order they are made. */
  const writer = new ReplaceablePool(() => connect(1, "writer"), "database writer connection", log);
  /** LISTEN gets a connection of its own, which pool replacements leave alone. */
  let listener: Driver | undefined;
  return {
    kind: "postgres",
    query<T extends Row>(text: string, params: unknown[] = [], options: QueryOptions = {}): Promise<T[]> {
      return pool.query<T>(text, params, options);
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
            // deno-lint-ignore no-explicit-any
            query: <R extends Row>(text: string, params: unknown[] = []) => tx.unsafe<R[]>(text, params as any[]),
            exec: async (text: string) => void await tx.unsafe(text).simple(),
          });
        }) as Promise<T>);
    },
    async close(): Promise<void> {
      await Promise.all([pool.end(5), writer.end(5), listener?.end(0)]);
      // A reconnect timer postgres.js armed after a failure outlives end(); it does nothing once
      // ended (the socket factory refuses), but let it fire before saying the database is closed.
      const pending = lastFailure + MAX_RECONNECT_DELAY_MS + 50 - performance.now();
      if (pending > 0) await new Promise((resolve) => setTimeout(resolve, pending));
    },
  };
}

/** A postgres.js instance, and the way to end it for good. */
interface Driver {
  readonly sql: postgres.Sql;
  end(timeoutSeconds: number): Promise<void>;
}

/** A postgres.js instance that is swapped for a fresh one when a query times out. */
class ReplaceablePool {
  #driver: Driver;
  readonly #connect: () => Driver;
  readonly #name: string;
  readonly #log: Logger;

  constructor(connect: () => Driver, name: string, log: Logger) {
    this.#connect = connect;
    this.#name = name;
    this.#log = log;
    this.#driver = connect();
  }

  get sql(): postgres.Sql {
    return this.#driver.sql;
  }

  end(timeoutSeconds: number): Promise<void> {
    return this.#driver.end(timeoutSeconds);
  }

  async query<T extends Row>(text: string, params: unknown[], options: QueryOptions): Promise<T[]> {
    // deno-lint-ignore no-explicit-any
    const pending = this.sql.unsafe<T[]>(text, params as any[], { prepare: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      if (options.timeoutMs === undefined) return await pending;
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const message = `query timed out after ${options.timeoutMs} ms`;
          pending.catch(() => {}); // Settles later, if ever, after nobody waits for it.
          pending.cancel();
          this.#replace(message);
          reject(new DatabaseError(message, undefined, undefined));
        }, options.timeoutMs);
      });
      return await Promise.race([pending, timedOut]);
    } catch (err) {
      throw translate(err);
    } finally {
      clearTimeout(timer);
    }
  }

  #replace(reason: string): void {
    const stale = this.#driver;
    this.#driver = this.#connect();
    this.#log.warn(`${this.#name} replaced`, { reason });
    stale.end(0).catch(() => {});
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
