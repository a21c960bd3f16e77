// The command line and configuration of the server process: invalid settings stop start-up with
// one message naming each, `.env` in the working directory is read and the real environment wins,
// `db:setup` applies the schema (twice is fine), and the start-up log names the storage.

import postgres from "postgres";
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { sanitized } from "./support/client.ts";
import { runDenoTask, runServerCommand, spawnServer } from "./support/process.ts";
import { sleep } from "./support/util.ts";

/** The seed's two tables and the v1.1 additions (exactly-once ids, presence, login throttling). */
const SCHEMA_TABLES = [
  "chat_client_msg_ids",
  "chat_lobby_markers",
  "chat_login_failures",
  "chat_room_events",
  "chat_room_members",
  "chat_rooms",
  "chat_servers",
  "messages",
  "users",
];

const postgresUrl = Deno.env.get("TEST_DATABASE_URL") || undefined;
const ROOT = new URL("..", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

Deno.test({
  name: "cli: invalid PORT, BCRYPT_COST and LOG_FORMAT stop start-up with one message naming all three",
  ...sanitized,
  async fn() {
    const result = await runServerCommand({ PORT: "abc", BCRYPT_COST: "99", LOG_FORMAT: "xml", DATA_DIR: "memory://" });
    const output = result.stdout + result.stderr;
    assert(result.code !== 0, `exit code ${result.code}`);
    assertEquals(output.match(/Invalid configuration/g)?.length, 1, output);
    for (const name of ["PORT", "BCRYPT_COST", "LOG_FORMAT"]) assertMatch(output, new RegExp(`\\b${name}\\b`));
    assert(!output.includes("listening"), output);
  },
});

Deno.test({
  name: "cli: an unknown command exits non-zero and names it",
  ...sanitized,
  async fn() {
    const result = await runServerCommand({ DATA_DIR: "memory://" }, ["frobnicate"]);
    assert(result.code !== 0, `exit code ${result.code}`);
    assertMatch(result.stdout + result.stderr, /frobnicate/);
  },
});

Deno.test({
  name: "cli: a .env file in the working directory is read, and the real environment wins over it",
  ...sanitized,
  async fn() {
    const cwd = await Deno.makeTempDir({ prefix: "chat-dotenv-" });
    try {
      // The storage comes from .env as well: a relative DATA_DIR is under the working directory.
      const storage = postgresUrl ? `DATABASE_URL=${postgresUrl}` : "DATA_DIR=./data-from-dotenv";
      await Deno.writeTextFile(`${cwd}/.env`, `# written by cli_test\nMAX_LINE_BYTES=2048\n${storage}\n`);
      const padded = JSON.stringify({ type: "ping", padding: "p".repeat(3000) }) + "\n";

      {
        await using server = await spawnServer({}, [], { cwd });
        await using client = await server.connect();
        await client.send(padded);
        const frames = await client.expectClosed();
        assertEquals(frames.map((f) => f.code), ["line_too_long"], "MAX_LINE_BYTES=2048 from .env");
        assertEquals(await server.stop("SIGTERM"), 0);
      }
      if (!postgresUrl) {
        assert((await Deno.stat(`${cwd}/data-from-dotenv`)).isDirectory, "DATA_DIR from .env not used");
      }
      {
        await using server = await spawnServer({ MAX_LINE_BYTES: "8192" }, [], { cwd });
        await using client = await server.connect();
        await client.send(padded);
        assertEquals(await client.next(), { type: "pong" }, "MAX_LINE_BYTES=8192 from the environment");
        assertEquals(await server.stop("SIGTERM"), 0);
      }
    } finally {
      await Deno.remove(cwd, { recursive: true });
    }
  },
});

Deno.test({
  name: "cli: db:setup applies the schema to a fresh embedded database, and again without harm",
  ...sanitized,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "chat-setup-" });
    try {
      const first = await runDenoTask("db:setup", { DATA_DIR: dataDir });
      assertEquals(first.code, 0, first.stdout + first.stderr);
      assertMatch(first.stdout + first.stderr, /schema applied/);
      const second = await runServerCommand({ DATA_DIR: dataDir }, ["db:setup"]);
      assertEquals(second.code, 0, second.stdout + second.stderr);
      assertEquals(await embeddedSchema(dataDir), { tables: SCHEMA_TABLES, lower_index: 1 });
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cli: db:setup applies the schema to a fresh PostgreSQL database, and again without harm",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    const name = `chat_setup_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const admin = postgres(postgresUrl!, { max: 1, onnotice: () => {} });
    let inside: postgres.Sql | undefined;
    try {
      await admin.unsafe(`CREATE DATABASE ${name}`);
      const url = new URL(postgresUrl!);
      url.pathname = `/${name}`;
      const first = await runDenoTask("db:setup", { DATABASE_URL: url.href });
      assertEquals(first.code, 0, first.stdout + first.stderr);
      const second = await runServerCommand({ DATABASE_URL: url.href }, ["db:setup"]);
      assertEquals(second.code, 0, second.stdout + second.stderr);
      assertMatch(second.stdout + second.stderr, /schema applied/);

      inside = postgres(url.href, { max: 1, onnotice: () => {} });
      const tables = await inside.unsafe(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
      );
      assertEquals(tables.map((r) => r.table_name), SCHEMA_TABLES);
      const indexes = await inside.unsafe("SELECT 1 FROM pg_indexes WHERE indexname = 'users_username_lower_key'");
      assertEquals(indexes.length, 1);
    } finally {
      await inside?.end({ timeout: 5 });
      try {
        await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end({ timeout: 5 });
      }
    }
  },
});

Deno.test({
  name: "cli: the start-up log names the storage, and calls the embedded database a development database",
  ...sanitized,
  async fn() {
    {
      await using server = await spawnServer({ DATA_DIR: "memory://" });
      const listening = server.logs.find((l) => l.msg === "chat server listening");
      assertEquals(listening?.kind, "embedded", JSON.stringify(server.logs));
      assertMatch(String(listening?.storage), /PGlite.*development database/);
      // The warning follows the listening line, on stderr: give it a moment to be read.
      await waitForLog(server.logs, (l) => l.level === "warn" && /development database/.test(String(l.msg)));
      assertEquals(await server.stop("SIGTERM"), 0);
    }
    if (postgresUrl) {
      // Trust authentication ignores the password; the log must not show it.
      const url = new URL(postgresUrl);
      url.password = "hunter2secret";
      await using server = await spawnServer({ DATABASE_URL: url.href });
      const listening = server.logs.find((l) => l.msg === "chat server listening");
      assertEquals(listening?.kind, "postgres", JSON.stringify(server.logs));
      assertMatch(String(listening?.storage), /^PostgreSQL at /);
      assert(!JSON.stringify(server.logs).includes("hunter2secret"), "the database password is in the log");
      assert(!server.logs.some((l) => /development database/.test(String(l.msg))), "PostgreSQL called a dev database");
      assertEquals(await server.stop("SIGTERM"), 0);
    }
  },
});

async function waitForLog(
  logs: Record<string, unknown>[],
  predicate: (line: Record<string, unknown>) => boolean,
  ms = 5000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!logs.some(predicate)) {
    if (Date.now() > deadline) throw new Error(`no such log line within ${ms} ms: ${JSON.stringify(logs)}`);
    await sleep(20);
  }
}

/**
 * The public tables and the case-insensitive username index of a PGlite directory, read by a
 * separate process (an in-process PGlite would leave its internal timers to the op sanitizer).
 */
async function embeddedSchema(dataDir: string): Promise<unknown> {
  const script = `
    import { PGlite } from "@electric-sql/pglite";
    const pg = await PGlite.create(Deno.env.get("CHECK_DATA_DIR"));
    const tables = (await pg.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")).rows.map((r) => r.table_name);
    const lower_index = (await pg.query("SELECT 1 FROM pg_indexes WHERE indexname = 'users_username_lower_key'")).rows.length;
    await pg.close();
    console.log(JSON.stringify({ tables, lower_index }));
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", CONFIG, script],
    cwd: ROOT,
    env: { CHECK_DATA_DIR: dataDir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assertEquals(output.code, 0, new TextDecoder().decode(output.stderr));
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}
