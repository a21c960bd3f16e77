// The database under test and its ceilings. PostgreSQL: a throw-away database `chat_bench_<pid>`
// created on the server named by DATABASE_URL (or on 127.0.0.1:5432) and dropped at the end.
// Embedded: the server runs PGlite in memory, and the ceilings use an in-memory PGlite here.
// The ceilings use the same driver as the server (postgres.js, same pool size; or PGlite).

import postgres from "postgres";
import { PGlite } from "@electric-sql/pglite";
import { Histogram } from "./stats.ts";

export const DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
/** The server's pool size in the bench (DB_POOL_SIZE); the ceilings use the same. */
export const POOL_SIZE = 10;

/** The `messages` table's shape (schema.sql), under another name. */
const CEILING_TABLE_SQL = `CREATE TABLE IF NOT EXISTS bench_ceiling_messages (
    id SERIAL PRIMARY KEY,
    sender_id INTEGER REFERENCES users(id),
    sender_username VARCHAR(50) NOT NULL,
    message_text TEXT NOT NULL,
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)`;

/** The server's own history query (lib/chat/messages.ts, NEWEST_SQL), copied so the ceiling runs the same SQL. */
const HISTORY_SQL = `SELECT id, sender_username AS sender, message_text AS message,
  to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp
  FROM messages
  WHERE id < $1::bigint AND id > $2::bigint ORDER BY id DESC LIMIT $3`;
const NO_UPPER_BOUND = "9223372036854775807";

export interface CeilingRow {
  senderId: number;
  senderUsername: string;
  messageText: string;
}

export interface InsertCeiling {
  rows: number;
  batch: number;
  concurrency: number;
  seconds: number;
  rows_per_s: number;
}

export interface QueryCeiling {
  requests: number;
  concurrency: number;
  seconds: number;
  requests_per_s: number;
  latency: ReturnType<Histogram["summary"]>;
}

/** A connection for the bench's own queries and ceilings. */
interface Runner {
  query(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /** Several statements without parameters (schema.sql). */
  exec(script: string): Promise<void>;
  insertRows(rows: CeilingRow[]): Promise<void>;
  close(): Promise<void>;
}

export interface BenchDatabase {
  readonly kind: "postgres" | "embedded";
  /** Environment that points the server at this database. */
  readonly serverEnv: Record<string, string>;
  /** Where it is, for the report (password hidden). */
  readonly description: string;
  /** A `pgrep -f` pattern for the PostgreSQL backends serving this database, if they run on this machine. */
  readonly backendPattern: string | undefined;
  /** Runs the server's schema first when the server has not (the ceilings need the users table). */
  query(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  insertCeiling(rows: CeilingRow[], batch: number, concurrency: number): Promise<InsertCeiling>;
  historyCeiling(requests: number, concurrency: number, limit: number): Promise<QueryCeiling>;
  close(): Promise<void>;
}

/** `suffix` tells apart several throw-away databases of one run (`chat_bench_<pid><suffix>`). */
export async function openBenchDatabase(
  embedded: boolean,
  databaseUrl: string | undefined,
  suffix = "",
): Promise<BenchDatabase> {
  if (embedded) return await openEmbedded();
  return await openPostgres(databaseUrl || DEFAULT_ADMIN_URL, suffix);
}

async function openPostgres(adminUrl: string, suffix: string): Promise<BenchDatabase> {
  const name = `chat_bench_${Deno.pid}${suffix}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name}`);
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } catch (err) {
    await admin.end({ timeout: 5 });
    throw new Error(
      `cannot create the throw-away database ${name} on ${redact(adminUrl)}: ${
        err instanceof Error ? err.message : String(err)
      } (set DATABASE_URL to a role that may CREATE DATABASE)`,
    );
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: POOL_SIZE, prepare: true, onnotice: () => {}, connect_timeout: 5 });
  const runner: Runner = {
    async query(text, params = []) {
      return await sql.unsafe(text, params as Parameters<typeof sql.unsafe>[1], { prepare: true });
    },
    async exec(script) {
      await sql.unsafe(script).simple();
    },
    async insertRows(rows) {
      const values = rows.map((r) => ({
        sender_id: r.senderId,
        sender_username: r.senderUsername,
        message_text: r.messageText,
      }));
      await sql`INSERT INTO bench_ceiling_messages ${
        sql(values, "sender_id", "sender_username", "message_text")
      } RETURNING id`;
    },
    async close() {
      await sql.end({ timeout: 5 });
    },
  };
  const local = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
  const pattern = local ? `postgres: .*${name} ` : undefined;
  return makeDatabase(
    "postgres",
    { DATABASE_URL: url.toString() },
    redact(url.toString()),
    pattern,
    runner,
    async () => {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      await admin.end({ timeout: 5 });
    },
  );
}

async function openEmbedded(): Promise<BenchDatabase> {
  const pg = await PGlite.create();
  const runner: Runner = {
    async query(text, params = []) {
      return (await pg.query<Record<string, unknown>>(text, params)).rows;
    },
    async exec(script) {
      await pg.exec(script);
    },
    async insertRows(rows) {
      const params: unknown[] = [];
      const tuples = rows.map((r, i) => {
        params.push(r.senderId, r.senderUsername, r.messageText);
        return `($${3 * i + 1}, $${3 * i + 2}, $${3 * i + 3})`;
      });
      await pg.query(
        `INSERT INTO bench_ceiling_messages (sender_id, sender_username, message_text) VALUES ${
          tuples.join(",")
        } RETURNING id`,
        params,
      );
    },
    async close() {
      await pg.close();
    },
  };
  return makeDatabase(
    "embedded",
    { DATABASE_URL: "", DATA_DIR: "memory://" },
    "PGlite in memory (server: its own; ceilings: one in the bench process)",
    undefined,
    runner,
    async () => {},
  );
}

function makeDatabase(
  kind: "postgres" | "embedded",
  serverEnv: Record<string, string>,
  description: string,
  backendPattern: string | undefined,
  runner: Runner,
  drop: () => Promise<void>,
): BenchDatabase {
  let schemaReady: Promise<void> | undefined;
  const ensureSchema = () =>
    schemaReady ??= (async () => {
      // The whole schema (idempotent, as the server applies it): tables, and the function the
      // locked-batch ceiling calls.
      await runner.exec(await Deno.readTextFile(new URL("../schema.sql", import.meta.url)));
      await runner.query(CEILING_TABLE_SQL);
    })();
  /** Users with these ids, for the foreign key (already there when the server made them). */
  const ensureUsers = async (ids: number[]) => {
    for (const id of ids) {
      await runner.query(
        "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x') ON CONFLICT DO NOTHING",
        [id, `bench_ceiling_${id}`],
      );
    }
  };
  return {
    kind,
    serverEnv,
    description,
    backendPattern,
    async query(text, params) {
      await ensureSchema();
      return await runner.query(text, params);
    },
    async insertCeiling(rows, batch, concurrency) {
      await ensureSchema();
      await ensureUsers([...new Set(rows.map((r) => r.senderId))]);
      await runner.query("TRUNCATE bench_ceiling_messages");
      // Warm-up batches, in parallel, so the prepared statements and the pool's connections exist.
      await Promise.all(Array.from({ length: concurrency }, () => runner.insertRows(rows.slice(0, batch))));
      let next = 0;
      const t0 = performance.now();
      const worker = async () => {
        while (next < rows.length) {
          const start = next;
          next += batch;
          await runner.insertRows(rows.slice(start, start + batch));
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      const seconds = (performance.now() - t0) / 1000;
      return { rows: rows.length, batch, concurrency, seconds, rows_per_s: rows.length / seconds };
    },
    async historyCeiling(requests, concurrency, limit) {
      await ensureSchema();
      // The server's database may be out of reach (embedded): then this one gets messages of its own.
      const have = Number((await runner.query("SELECT count(*)::int AS n FROM messages"))[0].n);
      if (have < limit) {
        await ensureUsers([1]);
        for (let i = have; i < limit * 4; i++) {
          await runner.query("INSERT INTO messages (sender_id, sender_username, message_text) VALUES (1, $1, $2)", [
            "bench_ceiling_1",
            `history ceiling ${i} ${"x".repeat(120)}`,
          ]);
        }
      }
      const latency = new Histogram();
      // Warm-up: as many queries at once as will run, so every pool connection is open and prepared.
      for (let i = 0; i < 10; i++) {
        await Promise.all(
          Array.from({ length: concurrency }, () => runner.query(HISTORY_SQL, [NO_UPPER_BOUND, "-1", limit])),
        );
      }
      let issued = 0;
      const t0 = performance.now();
      const worker = async () => {
        while (issued < requests) {
          issued++;
          const start = performance.now();
          await runner.query(HISTORY_SQL, [NO_UPPER_BOUND, "-1", limit]);
          latency.record((performance.now() - start) * 1000);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      const seconds = (performance.now() - t0) / 1000;
      return { requests, concurrency, seconds, requests_per_s: requests / seconds, latency: latency.summary() };
    },
    async close() {
      await runner.close().catch(() => {});
      await drop();
    },
  };
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}
