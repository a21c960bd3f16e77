// Throw-away databases for tests that need one of their own, made in a given shape before a server
// sees it: on PostgreSQL a new database `<TEST_DATABASE_URL's name>_<random>` (created and dropped
// through TEST_DATABASE_URL), on PGlite a temporary directory. Import ./_pglite_timers.ts first.

import postgres from "postgres";
import { type Database, openDatabase } from "../../lib/store/db.ts";
import { Logger } from "../../lib/core/log.ts";

export type BackendName = "pglite" | "postgres";

const TEST_DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") || undefined;

/** PGlite always; PostgreSQL as well when TEST_DATABASE_URL is set. */
export const scratchBackends: BackendName[] = TEST_DATABASE_URL ? ["pglite", "postgres"] : ["pglite"];

export interface ScratchDatabase extends AsyncDisposable {
  readonly backend: BackendName;
  /** DATABASE_URL or DATA_DIR for a server process or a config. */
  readonly env: Record<string, string>;
  /**
   * Opens it in this process. A PGlite directory admits one process at a time: close this
   * handle before a server process opens the same directory.
   */
  open(): Promise<Database>;
}

export async function scratchDatabase(backend: BackendName): Promise<ScratchDatabase> {
  const quiet = new Logger("error");
  if (backend === "pglite") {
    const dataDir = await Deno.makeTempDir({ prefix: "chat-scratch-" });
    return {
      backend,
      env: { DATA_DIR: dataDir },
      open: () => openDatabase({ databaseUrl: undefined, dataDir, poolSize: 1, log: quiet }),
      [Symbol.asyncDispose]: () => Deno.remove(dataDir, { recursive: true }),
    };
  }
  const base = new URL(TEST_DATABASE_URL!);
  const name = `${base.pathname.slice(1)}_${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`unusable scratch database name ${name}`);
  const admin = postgres(base.href, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } catch (err) {
    await admin.end({ timeout: 5 });
    throw err;
  }
  const url = new URL(base.href);
  url.pathname = `/${name}`;
  return {
    backend,
    env: { DATABASE_URL: url.href },
    open: () => openDatabase({ databaseUrl: url.href, dataDir: "", poolSize: 2, log: quiet }),
    async [Symbol.asyncDispose]() {
      try {
        await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end({ timeout: 5 });
      }
    },
  };
}

/** Opens `scratch`, runs `work` on it, and closes it again. */
export async function withOpen<T>(scratch: ScratchDatabase, work: (db: Database) => Promise<T>): Promise<T> {
  const db = await scratch.open();
  try {
    return await work(db);
  } finally {
    await db.close();
  }
}
