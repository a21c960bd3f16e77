// The database: one postgres.js pool (DATABASE_URL) or embedded PGlite, behind one small interface.
// The drivers' errors become DatabaseError here.

import postgres from "postgres";
import { PGlite } from "@electric-sql/pglite";
import type { Logger } from "./log.ts";
import { DenoPgSocket, plainTcpTarget } from "./pg_socket.ts";

export type Row = Record<string, unknown>;

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
  /** Runs several statements without parameters (the schema) in one transaction. */
  execScript(text: string): Promise<void>;
  close(): Promise<void>;
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
  // Deno's own TCP for plain connections (far cheaper per write); node:net for TLS and the rest.
  const socket = target
    ? { socket: () => new DenoPgSocket(target.hostname, target.port) as unknown as import("node:net").Socket }
    : {};
  const connect = () =>
    postgres(url, {
      ...socket,
      max: poolSize,
      prepare: true,
      connect_timeout: 5,
      idle_timeout: 60,
      // postgres.js reconnects on the next query after a connection is lost; nothing to do here.
      onnotice: (notice) => log.debug("database notice", { message: notice.message }),
      connection: { application_name: "chat-server" },
    });
  let sql = connect();
  /**
   * A query that outlives its timeout most likely sits on a connection that will never answer (a
   * network partition leaves it open but silent), and the pool would keep handing such
   * connections out: start a fresh pool and drop the old one's connections.
   */
  const replacePool = (reason: string) => {
    const stale = sql;
    sql = connect();
    log.warn("database pool replaced", { reason });
    stale.end({ timeout: 0 }).catch(() => {});
  };
  return {
    kind: "postgres",
    async query<T extends Row>(text: string, params: unknown[] = [], options: QueryOptions = {}): Promise<T[]> {
      // deno-lint-ignore no-explicit-any
      const pending = sql.unsafe<T[]>(text, params as any[], { prepare: true });
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        if (options.timeoutMs === undefined) return await pending;
        const timedOut = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const message = `query timed out after ${options.timeoutMs} ms`;
            pending.catch(() => {}); // Settles later, if ever, after nobody waits for it.
            pending.cancel();
            replacePool(message);
            reject(new DatabaseError(message, undefined, undefined));
          }, options.timeoutMs);
        });
        return await Promise.race([pending, timedOut]);
      } catch (err) {
        throw translate(err);
      } finally {
        clearTimeout(timer);
      }
    },
    async execScript(text: string): Promise<void> {
      try {
        await sql.begin(async (tx) => {
          // Serialises servers that start at once: CREATE … IF NOT EXISTS can race otherwise.
          await tx.unsafe("SELECT pg_advisory_xact_lock($1)", [SCHEMA_LOCK_KEY]);
          await tx.unsafe(text).simple();
        });
      } catch (err) {
        throw translate(err);
      }
    },
    async close(): Promise<void> {
      await sql.end({ timeout: 5 });
    },
  };
}

async function openEmbedded(dataDir: string): Promise<Database> {
  let pg: PGlite;
  try {
    pg = await PGlite.create(dataDir === "memory://" ? undefined : dataDir);
  } catch (err) {
    throw translate(err);
  }
  return {
    kind: "embedded",
    async query<T extends Row>(text: string, params: unknown[] = []): Promise<T[]> {
      try {
        return (await pg.query<T>(text, params)).rows;
      } catch (err) {
        throw translate(err);
      }
    },
    async execScript(text: string): Promise<void> {
      try {
        await pg.transaction((tx) => tx.exec(text));
      } catch (err) {
        throw translate(err);
      }
    },
    async close(): Promise<void> {
      await pg.close();
    },
  };
}

/** The schema file, read from beside main.ts (it is included in the compiled binary). */
export async function readSchema(): Promise<string> {
  return await Deno.readTextFile(new URL("../schema.sql", import.meta.url));
}

/** Applies schema.sql; idempotent, and safe when several servers start at once. */
export async function applySchema(db: Database): Promise<void> {
  await db.execScript(await readSchema());
}
