// Shared test helpers: a real server on an ephemeral port, a real TCP test client, and the
// database backends the suite runs against (PGlite always; PostgreSQL when TEST_DATABASE_URL is set).

import { assertEquals, fail } from "./_assert.ts";
import { type ChatService, startChatService } from "../lib/app.ts";
import { type Environment, parseConfig } from "../lib/config.ts";
import { applySchema, type Database, openDatabase } from "../lib/db.ts";
import { readLines } from "../lib/framing.ts";
import { Logger } from "../lib/log.ts";

export type Frame = Record<string, unknown>;

/** Quiet by default; TEST_LOG_LEVEL=debug shows the servers' logs. */
export const testLog = new Logger(
  (Deno.env.get("TEST_LOG_LEVEL") as "debug" | "info" | "warn" | "error" | undefined) ?? "error",
);

export interface Backend {
  readonly name: "pglite" | "postgres";
  /** Environment for a server on this backend. */
  readonly env: Environment;
}

const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") || undefined;

/** PGlite always; PostgreSQL as well when TEST_DATABASE_URL is set. */
export const backends: Backend[] = [
  { name: "pglite", env: { DATA_DIR: "memory://" } },
  ...(TEST_DATABASE_URL ? [{ name: "postgres" as const, env: { DATABASE_URL: TEST_DATABASE_URL } }] : []),
];

export const postgresUrl: string | undefined = TEST_DATABASE_URL;

/**
 * One in-memory PGlite per test file (opening one takes ~2 s); tests keep apart by unique names.
 * It is opened, with the schema applied, when this module loads: PGlite's first schema change
 * starts an internal timer that the op sanitizer would otherwise pin on whichever test came first.
 */
const sharedPglite: Database = await openDatabase({
  databaseUrl: undefined,
  dataDir: "memory://",
  poolSize: 1,
  log: testLog,
});
await applySchema(sharedPglite);

export function sharedPgliteDatabase(): Database {
  return sharedPglite;
}

export interface TestServer extends AsyncDisposable {
  readonly service: ChatService;
  readonly port: number;
  connect(): Promise<TestClient>;
  close(): Promise<void>;
}

/**
 * Starts a chat service on 127.0.0.1 and an ephemeral port with fast bcrypt. `env` overrides any
 * setting (as the environment would). PGlite servers share the file's database.
 */
export async function startTestServer(backend: Backend = backends[0], env: Environment = {}): Promise<TestServer> {
  const config = parseConfig({
    HOST: "127.0.0.1",
    PORT: "0",
    BCRYPT_COST: "4",
    DB_POOL_SIZE: "4",
    ...backend.env,
    ...env,
  });
  const database = backend.name === "pglite" && !env.DATA_DIR ? sharedPgliteDatabase() : undefined;
  const service = await startChatService(config, testLog, { database });
  const close = () => service.close();
  return {
    service,
    port: service.port,
    connect: () => TestClient.connect(service.port),
    close,
    [Symbol.asyncDispose]: close,
  };
}

let nameCounter = 0;
/** A username no other test uses: prefix + random + counter, within 50 characters. */
export function uniqueName(prefix = "u"): string {
  return `${prefix.slice(0, 20)}_${crypto.randomUUID().slice(0, 8)}${nameCounter++}`;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A real TCP client that reads frames in the background; every wait has a timeout. */
export class TestClient implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  readonly #frames: Frame[] = [];
  #waiter: (() => void) | undefined;
  #ended = false;
  #readLoop: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#readLoop = this.#read();
  }

  static async connect(port: number, hostname = "127.0.0.1"): Promise<TestClient> {
    return new TestClient(await Deno.connect({ hostname, port }));
  }

  /** True once the server closed the connection (or it failed). */
  get ended(): boolean {
    return this.#ended;
  }

  async #read(): Promise<void> {
    try {
      for await (const line of readLines(this.conn, 64 * 1024 * 1024)) {
        this.#frames.push(JSON.parse(decoder.decode(line)));
        this.#waiter?.();
      }
    } catch {
      // Closed by us or reset by the server: both end the stream.
    } finally {
      this.#ended = true;
      this.#waiter?.();
    }
  }

  /** Sends an object as one JSON line, or a string / bytes exactly as given. */
  async send(frame: Frame | string | Uint8Array): Promise<void> {
    const bytes = frame instanceof Uint8Array
      ? frame
      : encoder.encode(typeof frame === "string" ? frame : JSON.stringify(frame) + "\n");
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /** The next frame, whatever it is. */
  async next(ms = 5000): Promise<Frame> {
    const frame = await this.#take(() => this.#frames.length > 0 ? 0 : -1, ms);
    if (frame === undefined) fail(`no frame within ${ms} ms${this.#ended ? " (connection closed)" : ""}`);
    return frame;
  }

  /** The next frame, which must be of `type`. */
  async expect(type: string, ms = 5000): Promise<Frame> {
    const frame = await this.next(ms);
    assertEquals(frame.type, type, `expected a ${type} frame, got ${JSON.stringify(frame)}`);
    return frame;
  }

  /** The first frame matching `predicate`, skipping (and dropping) the others before it. */
  async waitFor(predicate: (frame: Frame) => boolean, ms = 5000): Promise<Frame> {
    const frame = await this.#take(() => {
      const index = this.#frames.findIndex(predicate);
      if (index === -1) this.#frames.length = 0;
      return index;
    }, ms);
    if (frame === undefined) fail(`no matching frame within ${ms} ms`);
    return frame;
  }

  /** Sends a request and returns the next frame. */
  async request(frame: Frame, ms = 5000): Promise<Frame> {
    await this.send(frame);
    return await this.next(ms);
  }

  /** Registers and logs in a new user (or the given one); returns the login reply. */
  async registerAndLogin(username = uniqueName(), password = "secret123"): Promise<Frame> {
    const registered = await this.request({ type: "register", username, password });
    assertEquals(registered.status, "success", JSON.stringify(registered));
    const login = await this.request({ type: "login", username, password });
    assertEquals(login.status, "success", JSON.stringify(login));
    return login;
  }

  /** Waits until the server closes the connection; frames still unread are returned. */
  async expectClosed(ms = 5000): Promise<Frame[]> {
    const deadline = Date.now() + ms;
    while (!this.#ended) {
      if (Date.now() > deadline) fail(`connection still open after ${ms} ms`);
      await this.#wait(deadline - Date.now());
    }
    return this.#frames.splice(0);
  }

  /** Asserts that nothing arrives for `ms`. */
  async expectNothing(ms = 300): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.#frames.length > 0) fail(`unexpected frame: ${JSON.stringify(this.#frames[0])}`);
  }

  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
    await this.#readLoop;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #take(find: () => number, ms: number): Promise<Frame | undefined> {
    const deadline = Date.now() + ms;
    while (true) {
      const index = find();
      if (index >= 0) return this.#frames.splice(index, 1)[0];
      if (this.#ended || Date.now() >= deadline) return undefined;
      await this.#wait(deadline - Date.now());
    }
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#waiter = () => {
        this.#waiter = undefined;
        done();
      };
    });
  }
}

/** Deno.test options with the sanitizers on (Deno 2.8+ turns them off by default). */
export const sanitized = { sanitizeOps: true, sanitizeResources: true, sanitizeExit: true } as const;
