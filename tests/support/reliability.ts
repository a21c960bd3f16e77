// Helpers for the reliability tests (fuzz, durability, faults, hostile clients, concurrency): a
// seeded PRNG, throw-away PostgreSQL databases, whole-history reads, and small waiting tools.

import postgres from "postgres";
import { assert, fail } from "./assert.ts";
import { type Backend, type Frame, postgresUrl, sharedPgliteDatabase, type TestClient } from "./helpers.ts";
import { ERROR_CODES as CONTRACT_ERROR_CODES } from "../../lib/core/errors.ts";

// ---- seeded randomness --------------------------------------------------------------------------

/** The seed from `envName` (a whole number) or a fresh random one; tests print it in their names. */
export function seedFromEnv(envName: string): number {
  const text = Deno.env.get(envName);
  if (text !== undefined && text !== "") {
    const seed = Number(text);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`${envName}=${text}: must be a whole number`);
    return seed >>> 0;
  }
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** A small, fast, seeded PRNG (sfc32): the same seed gives the same sequence on every run. */
export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.uint32();
  }

  uint32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }

  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.uint32() & 0xff;
    return out;
  }
}

// ---- throw-away PostgreSQL databases -------------------------------------------------------------

export interface ScratchDatabase extends AsyncDisposable {
  /** The database's name (rel_…), unique to this test. */
  readonly name: string;
  /** A URL for the chat server: the base URL with this database. */
  readonly url: string;
  /** Runs SQL as the administrator, in this database's server (not inside the scratch database). */
  admin: postgres.Sql;
  /**
   * Terminates the chat server's connections to this database only (`role`: only its writer or
   * its LISTEN connection); returns how many.
   */
  terminateServerBackends(role?: "writer" | "listener"): Promise<number>;
  /** Rows of a query run inside the scratch database. */
  query<T extends Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

/** Creates an empty database next to `baseUrl`'s, to be dropped with `await using`. */
export async function createScratchDatabase(baseUrl: string): Promise<ScratchDatabase> {
  const name = `rel_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = postgres(baseUrl, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: "reliability-tests" },
  });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const parsed = new URL(baseUrl);
  parsed.pathname = `/${name}`;
  const url = parsed.href;
  let inside: postgres.Sql | undefined;
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    if (inside) await inside.end({ timeout: 5 });
    try {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } finally {
      await admin.end({ timeout: 5 });
    }
  };
  return {
    name,
    url,
    admin,
    async terminateServerBackends(role?: "writer" | "listener"): Promise<number> {
      const rows = await admin.unsafe(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
          WHERE application_name LIKE $2 AND datname = $1 AND pid <> pg_backend_pid()`,
        [name, role ? `chat-server/${role}` : "chat-server%"],
      );
      return rows.filter((r) => r.ok === true).length;
    },
    async query<T extends Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
      inside ??= postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: "reliability-tests" } });
      // deno-lint-ignore no-explicit-any
      return await inside.unsafe(text, params as any[]) as unknown as T[];
    },
    drop,
    [Symbol.asyncDispose]: drop,
  };
}

// ---- reading what the server stored --------------------------------------------------------------

export interface StoredMessage {
  id: number;
  sender: string;
  message: string;
  timestamp: string;
}

/** Every message in history, oldest first, read through the protocol (`after` paging). */
export async function readAllHistory(client: TestClient, pageSize = 500): Promise<StoredMessage[]> {
  const all: StoredMessage[] = [];
  let after = 0;
  for (let page = 0; page < 10_000; page++) {
    const reply = await client.request({ type: "get_history", after, limit: pageSize, request_id: `h${page}` }, 15_000);
    if (reply.type !== "history_response") fail(`history page failed: ${JSON.stringify(reply)}`);
    const messages = reply.messages as StoredMessage[];
    if (messages.length === 0) return all;
    all.push(...messages);
    after = messages[messages.length - 1].id;
  }
  fail("history did not end");
}

/** Texts that occur more than once in `messages`. */
export function duplicateTexts(messages: { message: string }[]): string[] {
  const seen = new Set<string>();
  const dups = new Set<string>();
  for (const m of messages) {
    if (seen.has(m.message)) dups.add(m.message);
    seen.add(m.message);
  }
  return [...dups];
}

/** Asserts that ids strictly increase (one total order, the order of id). */
export function assertIncreasingIds(messages: { id: number }[], what: string): void {
  for (let i = 1; i < messages.length; i++) {
    assert(messages[i].id > messages[i - 1].id, `${what}: id ${messages[i].id} after ${messages[i - 1].id} at ${i}`);
  }
}

// ---- waiting, memory, frames ---------------------------------------------------------------------

/** A message text no other test uses. */
export function uniqueText(prefix: string): string {
  return `${prefix} ${crypto.randomUUID()}`;
}

/**
 * Reads frames from `client` until one matches `done`; returns every frame before it (and it).
 * For tests that must see every frame, not skip to one. `into` receives them as they come, so a
 * caller can tell how far a failed wait got.
 */
export async function collectUntil(
  client: TestClient,
  done: (frame: Frame) => boolean,
  ms = 10_000,
  into: Frame[] = [],
): Promise<Frame[]> {
  const deadline = Date.now() + ms;
  while (true) {
    const left = deadline - Date.now();
    let frame: Frame;
    try {
      frame = await client.next(Math.max(0, left));
    } catch {
      fail(
        `no closing frame within ${ms} ms${client.ended ? " (connection closed)" : ""}; got ${into.length} frames, ` +
          `the last: ${JSON.stringify(into.slice(-3)).slice(0, 600)}`,
      );
    }
    into.push(frame);
    if (done(frame)) return into;
  }
}

/** Sends a ping with a fresh request_id and returns every frame up to its pong. */
export async function pingThrough(client: TestClient, tag: string, ms = 10_000, into: Frame[] = []): Promise<Frame[]> {
  await client.send({ type: "ping", request_id: tag });
  return await collectUntil(client, (f) => f.type === "pong" && f.request_id === tag, ms, into);
}

/** The contract's error codes. */
export const ERROR_CODES: ReadonlySet<string> = new Set(CONTRACT_ERROR_CODES);

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/;

/** Problems of a reply against the contract's shapes, or an empty list when it is a valid frame. */
export function contractProblems(frame: unknown): string[] {
  const problems: string[] = [];
  if (typeof frame !== "object" || frame === null || Array.isArray(frame)) return ["not a JSON object"];
  const f = frame as Frame;
  const errorFields = () => {
    if (typeof f.code !== "string" || !ERROR_CODES.has(f.code)) problems.push(`unknown code ${JSON.stringify(f.code)}`);
    if (typeof f.message !== "string" || f.message === "") problems.push("message is not a non-empty string");
    if (f.retry_after_ms !== undefined && !(Number.isInteger(f.retry_after_ms) && (f.retry_after_ms as number) > 0)) {
      problems.push(`bad retry_after_ms ${JSON.stringify(f.retry_after_ms)}`);
    }
  };
  const message = (m: unknown, where: string): void => {
    const r = m as Frame;
    if (typeof r !== "object" || r === null) {
      problems.push(`${where}: not an object`);
      return;
    }
    if (!Number.isSafeInteger(r.id) || (r.id as number) < 1) problems.push(`${where}: bad id ${JSON.stringify(r.id)}`);
    if (typeof r.sender !== "string") problems.push(`${where}: sender not a string`);
    if (typeof r.message !== "string") problems.push(`${where}: message not a string`);
    if (typeof r.timestamp !== "string" || !TIMESTAMP.test(r.timestamp)) problems.push(`${where}: bad timestamp`);
  };
  if (f.request_id !== undefined && typeof f.request_id !== "string" && typeof f.request_id !== "number") {
    problems.push("request_id is neither string nor number");
  }
  switch (f.type) {
    case "error":
      errorFields();
      break;
    case "register_response":
    case "login_response":
      if (f.status === "error") errorFields();
      else if (f.status !== "success") problems.push(`bad status ${JSON.stringify(f.status)}`);
      else if (f.type === "login_response" && (!Number.isSafeInteger(f.user_id) || typeof f.username !== "string")) {
        problems.push("login success without user_id and username");
      }
      break;
    case "new_message":
      message(f, "new_message");
      break;
    case "history_response":
      if (!Array.isArray(f.messages)) problems.push("messages is not an array");
      else f.messages.forEach((m, i) => message(m, `messages[${i}]`));
      break;
    case "users_response":
      if (!Array.isArray(f.users) || !f.users.every((u) => typeof u === "string")) problems.push("bad users");
      break;
    case "pong":
      break;
    case "logout_response":
      if (f.status !== "success") problems.push("logout_response without success");
      break;
    default:
      problems.push(`unknown type ${JSON.stringify(f.type)}`);
  }
  return problems;
}

// ---- a client that sends uniquely named messages and records every answer -------------------------

export interface TrafficLog {
  /** Own texts written to the socket, in order. */
  readonly sent: string[];
  /** Every new_message received (anyone's), in order of arrival. */
  readonly received: Frame[];
  /** Own texts whose new_message came back. */
  readonly acked: Set<string>;
  /** Own texts answered with an error: text → code. */
  readonly failed: Map<string, string>;
  /** Those error frames in full (for a failure's message). */
  readonly errors: Frame[];
  /** Other frames (not new_message, not an answer to an own send). */
  readonly other: Frame[];
}

export interface TrafficOptions {
  /** Unique prefix of this client's texts. */
  prefix: string;
  /** Sends awaiting an answer at most (pipelining). */
  window: number;
  /** Stops sending after this many. */
  maxMessages: number;
  /** Stops sending once this returns true. */
  stop: () => boolean;
  /** Pause between sends, if any. */
  pauseMs?: number;
  /** After stopping, how long to wait for the outstanding answers. */
  drainMs?: number;
  /** Appended to each message's text (the request_id stays `<prefix>-<n>`), to make them big. */
  pad?: string;
  /** Send each message with its text as `client_msg_id`, so that it can be resent safely. */
  clientMsgIds?: boolean;
}

export function newTrafficLog(): TrafficLog {
  return { sent: [], received: [], acked: new Set(), failed: new Map(), errors: [], other: [] };
}

/**
 * Sends `send_message` frames with texts `<prefix>-<n>` (each its own request_id) until told to
 * stop or the connection ends, then waits for the outstanding answers. Never throws on a closed
 * or reset connection: that is what the fault tests cause.
 */
export async function runTraffic(
  client: TestClient,
  options: TrafficOptions,
  log: TrafficLog = newTrafficLog(),
): Promise<TrafficLog> {
  let answered = 0;
  const take = (frame: Frame) => {
    const own = typeof frame.request_id === "string" && frame.request_id.startsWith(`${options.prefix}-`);
    if (frame.type === "new_message") {
      log.received.push(frame);
      if (own) {
        log.acked.add(frame.request_id as string);
        answered++;
      }
    } else if (own && frame.type === "error") {
      log.failed.set(frame.request_id as string, frame.code as string);
      log.errors.push(frame);
      answered++;
    } else {
      log.other.push(frame);
    }
  };
  const pump = async (ms: number) => {
    try {
      take(await client.next(ms));
      return true;
    } catch {
      return false;
    }
  };
  let writable = true;
  while (writable && !options.stop() && log.sent.length < options.maxMessages && !client.ended) {
    if (log.sent.length - answered < options.window) {
      const text = `${options.prefix}-${log.sent.length}`;
      try {
        const frame: Frame = { type: "send_message", message: text + (options.pad ?? ""), request_id: text };
        if (options.clientMsgIds) frame.client_msg_id = text;
        await client.send(frame);
        log.sent.push(text);
      } catch {
        writable = false;
      }
      if (options.pauseMs) await pump(options.pauseMs);
    } else {
      await pump(200);
    }
  }
  const drainUntil = Date.now() + (options.drainMs ?? 10_000);
  while (log.sent.length > answered && Date.now() < drainUntil) {
    if (!(await pump(Math.max(1, drainUntil - Date.now()))) && client.ended) break;
  }
  // Broadcasts of others may still be in flight: take what arrives, for a bounded time.
  const settleUntil = Date.now() + 2000;
  while (Date.now() < settleUntil && await pump(client.ended ? 1 : 100));
  return log;
}

/**
 * Closes the file's shared PGlite from _helpers.ts, for files whose tests bring their own database.
 * That instance arms a PostgreSQL timer (about 10 s, the idle statistics flush) when it applies
 * the schema at import; a test still running when it fires fails the op sanitizer ("a timer was
 * started before the test, but completed during the test"). Closing it clears the timer.
 */
export async function closeSharedPglite(): Promise<void> {
  await sharedPgliteDatabase().close();
}

/** The environment for a private database on `backend` (PGlite: its own in-memory instance). */
export function privateDatabaseEnv(backend: Backend): Record<string, string> {
  return backend.name === "pglite" ? { DATA_DIR: "memory://" } : {};
}

/** A database for server processes that the test restarts: a temporary DATA_DIR, or a scratch PostgreSQL database. */
export interface Store {
  readonly name: "pglite" | "postgres";
  /** The server's environment for this database. */
  readonly env: Record<string, string>;
  /** Terminates the server's connections of this role (PostgreSQL only). */
  terminateServerBackends?: (role?: "writer" | "listener") => Promise<number>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function pgliteStore(): Promise<Store> {
  const dir = await Deno.makeTempDir({ prefix: "chat-store-" });
  return { name: "pglite", env: { DATA_DIR: dir }, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** A scratch PostgreSQL database (needs TEST_DATABASE_URL). */
export async function postgresStore(): Promise<Store> {
  const db = await createScratchDatabase(postgresUrl!);
  return {
    name: "postgres",
    env: { DATABASE_URL: db.url, DB_POOL_SIZE: "4" },
    terminateServerBackends: (role) => db.terminateServerBackends(role),
    [Symbol.asyncDispose]: () => db.drop(),
  };
}

/** PGlite always; PostgreSQL when TEST_DATABASE_URL is set. */
export const stores: { name: "pglite" | "postgres"; open: () => Promise<Store> }[] = [
  { name: "pglite", open: pgliteStore },
  ...(postgresUrl ? [{ name: "postgres" as const, open: postgresStore }] : []),
];
