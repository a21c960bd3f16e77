// Shared test helpers: a real server on an ephemeral port, a real TCP test client, and the
// database backends the suite runs against (PGlite always; PostgreSQL when TEST_DATABASE_URL is set).

import "./pglite_timers.ts";
import { TestClient } from "./client.ts";
import { type ChatService, startChatService, type StartOptions } from "../../lib/app.ts";
import { type Environment, parseConfig } from "../../lib/core/config.ts";
import { type Database, openDatabase } from "../../lib/store/db.ts";
import { applySchema } from "../../lib/store/schema.ts";
import { Logger } from "../../lib/core/log.ts";

// The client side needs no database: process-only test files import it from _client.ts directly,
// which spares them this module's PGlite (and the internal timer it starts).
export { type Frame, sanitized, TestClient, uniqueName } from "./client.ts";

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
 * Its internal timers are kept out of the sanitizer's way by _pglite_timers.ts.
 */
const sharedPglite: Database = await openDatabase({
  databaseUrl: undefined,
  dataDir: "memory://",
  poolSize: 1,
  log: testLog,
});
await applySchema(sharedPglite, testLog);

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
export async function startTestServer(
  backend: Backend = backends[0],
  env: Environment = {},
  options: Omit<StartOptions, "database"> = {},
): Promise<TestServer> {
  const config = parseConfig({
    HOST: "127.0.0.1",
    PORT: "0",
    // HTTP off unless a test asks for it (options.httpPort: 0 for an ephemeral port).
    HTTP_PORT: "0",
    BCRYPT_COST: "4",
    // Tests register many users from 127.0.0.1; the registration throttle has tests of its own.
    REGISTER_LIMIT_PER_MIN: "0",
    METRICS_ADDR: "off",
    DB_POOL_SIZE: "4",
    ...backend.env,
    ...env,
  });
  const database = backend.name === "pglite" && !env.DATA_DIR ? sharedPgliteDatabase() : undefined;
  const service = await startChatService(config, testLog, { ...options, database });
  // Failed logins are throttled per address across servers, and every test connects from
  // 127.0.0.1: each test server starts with a clean slate, as a test of one server expects.
  await service.db.query("DELETE FROM chat_login_failures");
  const close = () => service.close();
  return {
    service,
    port: service.port,
    connect: () => TestClient.connect(service.port),
    close,
    [Symbol.asyncDispose]: close,
  };
}
