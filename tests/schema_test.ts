// The seed's database, exactly (contract: "storage"): a database made and filled by the seed's
// Python design is served as is and reads back what this server stores; db:setup changes none of
// its columns; a database of this project's earlier layout is migrated keeping every row and id;
// one of neither shape stops start-up with one line; and schema.sql's columns equal the seed's DDL.

import "./support/pglite_timers.ts";
import { assert, assertEquals, assertMatch, fail } from "./support/assert.ts";
import { sanitized, TestClient } from "./support/client.ts";
import { runDenoTask, runServerCommand, spawnServer } from "./support/process.ts";
import { type BackendName, scratchBackends, scratchDatabase, withOpen } from "./support/scratch_db.ts";
import { startChatService } from "../lib/app.ts";
import { parseConfig } from "../lib/core/config.ts";
import { type Database, openDatabase, type Row, type Transaction } from "../lib/store/db.ts";
import { Logger } from "../lib/core/log.ts";
import { applySchema, SchemaMismatchError } from "../lib/store/schema.ts";
import { RecordingLogger } from "./support/recording_logger.ts";

const quiet = new Logger("error");

/** The seed design's DDL, verbatim (the contract's "storage" section, as its database.py runs it). */
const SEED_DDL = `
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE messages (
    id SERIAL PRIMARY KEY,
    sender_id INTEGER REFERENCES users(id),
    sender_username VARCHAR(50) NOT NULL,
    message_text TEXT NOT NULL,
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
`;

/** This project's schema.sql before the seed's columns were adopted (commit 65f8a31), verbatim. */
const EARLIER_DDL = `
CREATE TABLE IF NOT EXISTS users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS messages (
    id SERIAL PRIMARY KEY,
    sender_id INTEGER REFERENCES users(id),
    content TEXT NOT NULL,
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

DO $$
BEGIN
    CREATE UNIQUE INDEX IF NOT EXISTS users_username_lower_key ON users (lower(username));
EXCEPTION WHEN unique_violation THEN
    RAISE WARNING 'users_username_lower_key not created: usernames differing only in case exist';
END
$$;
`;

/**
 * Users as the seed's server registers them. The hashes come from another bcrypt implementation
 * than the server's (npm bcrypt): libxcrypt's, made once with Python 3.11's
 * `crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=4096))` (cost 12, prefix $2b$).
 */
const SEED_USERS = [
  {
    username: "Alice_Seed",
    password: "alice-seed-pw",
    hash: "$2b$12$0O3OWVxowpdGMKvkuLEfYe1EIhANUFIyQf88Ui/Nn2mmtg1LfTQrK",
  },
  {
    username: "bob_seed",
    password: "bob-seed-pw",
    hash: "$2b$12$DERWHrixarcfYkn8fdSNwu/JEEaeghSRq.jsq.u7N.Z5ssvLzKPPq",
  },
];

/** The seed's Python server reads history with this statement. */
const PYTHON_SELECT = "SELECT id, sender_username, message_text, timestamp FROM messages ORDER BY id DESC";

const TIMESTAMP_TEXT = `to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS')`;

async function exec(db: Database, script: string): Promise<void> {
  await db.schemaTransaction((tx) => tx.exec(script));
}

/** Fills a database as the seed's server does: users, then messages with the sender's name. */
async function fillAsSeed(db: Database): Promise<{ id: number; sender: string; message: string }[]> {
  const ids = new Map<string, number>();
  for (const user of SEED_USERS) {
    const [row] = await db.query<{ id: number }>(
      "INSERT INTO users (username, password_hash) VALUES ($1, $2) RETURNING id",
      [user.username, user.hash],
    );
    ids.set(user.username, Number(row.id));
  }
  const sent = [
    ["Alice_Seed", "hello from the seed's server"],
    ["bob_seed", 'ünïcödé and "quotes" 🎉'],
    ["Alice_Seed", "third"],
  ];
  const stored = [];
  for (const [sender, message] of sent) {
    const [row] = await db.query<{ id: number }>(
      "INSERT INTO messages (sender_id, sender_username, message_text) VALUES ($1, $2, $3) RETURNING id",
      [ids.get(sender), sender, message],
    );
    stored.push({ id: Number(row.id), sender, message });
  }
  return stored;
}

interface ColumnShape {
  table_name: string;
  column_name: string;
  data_type: string;
  character_maximum_length: number | null;
  is_nullable: string;
  column_default: string | null;
}

/** The live columns of `tables` in `schema`, in table and column order. */
async function columnsOf(
  db: Pick<Transaction, "query">,
  schema = "public",
  tables = ["messages", "users"],
): Promise<ColumnShape[]> {
  const rows = await db.query<ColumnShape & Row>(
    `SELECT table_name::text, column_name::text, data_type::text, character_maximum_length::int,
       is_nullable::text, column_default::text
     FROM information_schema.columns
     WHERE table_schema = $1 AND table_name = ANY($2::text[])
     ORDER BY table_name, ordinal_position`,
    [schema, tables],
  );
  return rows.map((r) => ({
    table_name: r.table_name,
    column_name: r.column_name,
    data_type: r.data_type,
    character_maximum_length: r.character_maximum_length === null ? null : Number(r.character_maximum_length),
    is_nullable: r.is_nullable,
    // A sequence default names its schema when that schema is not first on the search path.
    column_default: r.column_default?.replace(/^nextval\('[a-z_]+\./, "nextval('") ?? null,
  }));
}

/** Everything db:setup could change: columns, indexes, constraints, rows. */
async function snapshot(db: Database): Promise<unknown> {
  return {
    columns: await columnsOf(db),
    indexes: await db.query(
      // The seed's tables only: v1.1's own tables come with indexes of their own.
      "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename IN ('users', 'messages') ORDER BY indexname",
    ),
    constraints: await db.query(
      `SELECT conname::text, contype::text, pg_get_constraintdef(oid) AS def FROM pg_constraint
       WHERE conrelid IN ('public.users'::regclass, 'public.messages'::regclass) ORDER BY conname`,
    ),
    users: await db.query("SELECT id, username, password_hash FROM users ORDER BY id"),
    messages: await db.query(`SELECT id, sender_id, sender_username, message_text, ${TIMESTAMP_TEXT} AS ts
      FROM messages ORDER BY id`),
  };
}

async function login(port: number, username: string, password: string): Promise<TestClient> {
  const client = await TestClient.connect(port);
  const reply = await client.request({ type: "login", username, password });
  assertEquals(reply.status, "success", `${username}: ${JSON.stringify(reply)}`);
  return client;
}

function memoryOrScratch(backend: BackendName): Promise<{ db: Database; dispose(): Promise<void> }> {
  if (backend === "pglite") {
    return openDatabase({ databaseUrl: undefined, dataDir: "memory://", poolSize: 1, log: quiet })
      .then((db) => ({ db, dispose: () => db.close() }));
  }
  return scratchDatabase(backend).then(async (scratch) => {
    const db = await scratch.open();
    return {
      db,
      async dispose() {
        await db.close();
        await scratch[Symbol.asyncDispose]();
      },
    };
  });
}

for (const backend of scratchBackends) {
  Deno.test({
    name:
      `schema: a database the seed's design made and filled is served as is, and reads back what is sent [${backend}]`,
    ...sanitized,
    async fn() {
      const { db, dispose } = await memoryOrScratch(backend);
      try {
        await exec(db, SEED_DDL);
        const seeded = await fillAsSeed(db);
        const config = parseConfig({ HOST: "127.0.0.1", PORT: "0", BCRYPT_COST: "4" });
        await using service = await startChatService(config, quiet, { database: db });

        await using alice = await login(service.port, "Alice_Seed", "alice-seed-pw");
        await using bob = await login(service.port, "bob_seed", "bob-seed-pw");
        const wrong = await bob.request({ type: "login", username: "bob_seed", password: "alice-seed-pw" });
        assertEquals(wrong.code, "invalid_credentials", "a wrong password was accepted");

        const stamps = await db.query<{ id: number; ts: string }>(
          `SELECT id, ${TIMESTAMP_TEXT} AS ts FROM messages ORDER BY id`,
        );
        const history = await alice.request({ type: "get_history", limit: 50 });
        assertEquals(history.type, "history_response", JSON.stringify(history));
        assertEquals(
          history.messages,
          seeded.map((m, i) => ({ id: m.id, sender: m.sender, message: m.message, timestamp: stamps[i].ts })),
        );

        const text = `sent through the server ${crypto.randomUUID()}`;
        await bob.send({ type: "send_message", message: text });
        const echoed = await bob.waitFor((f) => f.type === "new_message" && f.message === text);
        const [newest] = await db.query<{ id: number; sender_username: string; message_text: string; ts: string }>(
          PYTHON_SELECT.replace("timestamp FROM", `${TIMESTAMP_TEXT} AS ts FROM`) + " LIMIT 1",
        );
        assertEquals(
          { id: Number(newest.id), sender: newest.sender_username, message: newest.message_text, ts: newest.ts },
          { id: echoed.id, sender: "bob_seed", message: text, ts: echoed.timestamp },
        );
        // The statement verbatim works too: every row it returns has a sender and a text.
        const all = await db.query<{ sender_username: string; message_text: string }>(PYTHON_SELECT);
        assertEquals(all.length, seeded.length + 1);
        assert(all.every((r) => r.sender_username.length > 0 && typeof r.message_text === "string"));
      } finally {
        await dispose();
      }
    },
  });

  Deno.test({
    name: `schema: db:setup on a seed-made database changes no column, and a second run changes nothing [${backend}]`,
    ...sanitized,
    async fn() {
      await using scratch = await scratchDatabase(backend);
      const before = await withOpen(scratch, async (db) => {
        await exec(db, SEED_DDL);
        await fillAsSeed(db);
        return await snapshot(db);
      });
      const first = await runDenoTask("db:setup", scratch.env);
      assertEquals(first.code, 0, first.stdout + first.stderr);
      assert(!/schema migrated/.test(first.stdout + first.stderr), first.stdout + first.stderr);
      const afterFirst = await withOpen(scratch, snapshot) as Record<string, unknown>;
      const { indexes: indexesBefore, ...restBefore } = before as Record<string, unknown>;
      const { indexes: indexesAfter, ...restAfter } = afterFirst;
      assertEquals(restAfter, restBefore, "db:setup changed a column, a constraint or a row");
      // The one addition: the case-insensitive username index.
      const added = (indexesAfter as { indexname: string }[]).map((i) => i.indexname)
        .filter((name) => !(indexesBefore as { indexname: string }[]).some((i) => i.indexname === name));
      assertEquals(added, ["users_username_lower_key"]);

      const second = await runServerCommand({ LOG_FORMAT: "json", ...scratch.env }, ["db:setup"]);
      assertEquals(second.code, 0, second.stdout + second.stderr);
      assertMatch(second.stdout, /schema applied/);
      assertEquals(await withOpen(scratch, snapshot), afterFirst, "a second db:setup changed something");
    },
  });

  Deno.test({
    name: `schema: a database of the earlier layout is migrated at start-up, keeping every row and id [${backend}]`,
    ...sanitized,
    async fn() {
      await using scratch = await scratchDatabase(backend);
      const before = await withOpen(scratch, async (db) => {
        await exec(db, EARLIER_DDL);
        const ids: number[] = [];
        for (const user of SEED_USERS) {
          const [row] = await db.query<{ id: number }>(
            "INSERT INTO users (username, password_hash) VALUES ($1, $2) RETURNING id",
            [user.username, user.hash],
          );
          ids.push(Number(row.id));
        }
        // Ids with gaps (a rolled-back batch leaves them), and a row whose sender is NULL.
        await db.query("SELECT setval('messages_id_seq', 40)");
        const rows = [[ids[0], "old one"], [ids[1], "old two"], [null, "no sender"], [ids[0], "old four"]];
        for (const [sender, content] of rows) {
          await db.query("INSERT INTO messages (sender_id, content) VALUES ($1, $2)", [sender, content]);
        }
        await db.query("DELETE FROM messages WHERE content = 'old two'");
        return await db.query<{ id: number; sender_id: number | null; sender: string; content: string; ts: string }>(
          `SELECT m.id, m.sender_id, COALESCE(u.username, '') AS sender, m.content,
             to_char(m.timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS ts
           FROM messages m LEFT JOIN users u ON u.id = m.sender_id ORDER BY m.id`,
        );
      });
      assertEquals(before.map((r) => r.sender), ["Alice_Seed", "", "Alice_Seed"]);

      {
        await using server = await spawnServer(scratch.env);
        const migrated = server.logs.filter((l) => /schema migrated/.test(String(l.msg)));
        assertEquals(migrated.length, 1, JSON.stringify(server.logs));
        assertEquals(migrated[0].level, "info");
        assertMatch(String(migrated[0].msg), /content renamed to message_text.*sender_username added.* 2 rows.*1 row/);
        await using alice = await login(server.port, "Alice_Seed", "alice-seed-pw");
        const history = await alice.request({ type: "get_history", limit: 10 });
        assertEquals(
          history.messages,
          before.map((r) => ({
            id: Number(r.id),
            sender: r.sender,
            message: r.content,
            timestamp: r.ts,
          })),
        );
        assertEquals(await server.stop(), 0);
      }

      await withOpen(scratch, async (db) => {
        const after = await db.query<{ id: number; sender_id: number | null; message_text: string; ts: string }>(
          `SELECT id, sender_id, sender_username, message_text, ${TIMESTAMP_TEXT} AS ts FROM messages ORDER BY id`,
        );
        assertEquals(
          after.map((r) => ({ ...r, id: Number(r.id) })),
          before.map((r) => ({
            id: Number(r.id),
            sender_id: r.sender_id,
            sender_username: r.sender,
            message_text: r.content,
            ts: r.ts,
          })),
        );
        const columns = (await columnsOf(db)).filter((c) => c.table_name === "messages")
          .sort((a, b) => a.column_name.localeCompare(b.column_name));
        const seedColumns = await seedShape(db, "messages");
        assertEquals(columns, seedColumns.sort((a, b) => a.column_name.localeCompare(b.column_name)));
      });

      // Idempotent: nothing left to migrate.
      const again = await runServerCommand({ LOG_FORMAT: "json", ...scratch.env }, ["db:setup"]);
      assertEquals(again.code, 0, again.stdout + again.stderr);
      assert(!/schema migrated/.test(again.stdout + again.stderr), again.stdout + again.stderr);
    },
  });

  Deno.test({
    name: `schema: a database of neither shape stops start-up with one line naming table and column [${backend}]`,
    ...sanitized,
    async fn() {
      await using scratch = await scratchDatabase(backend);
      await withOpen(scratch, (db) =>
        exec(
          db,
          `CREATE TABLE users (id SERIAL PRIMARY KEY, username VARCHAR(50) UNIQUE NOT NULL,
             password_hash VARCHAR(255) NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
           CREATE TABLE messages (id SERIAL PRIMARY KEY, sender_id INTEGER REFERENCES users(id),
             body TEXT NOT NULL, timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP);`,
        ));
      const result = await runServerCommand({ LOG_FORMAT: "text", ...scratch.env });
      assertEquals(result.code, 1, result.stdout + result.stderr);
      const output = result.stdout + result.stderr;
      const errors = output.split("\n").filter((line) => / ERROR /.test(line));
      assertEquals(errors.length, 1, output);
      assertMatch(
        errors[0],
        /does not have the chat schema: table messages, column message_text: the column is missing/,
      );
      assert(!/\n\s+at /.test(output), `a stack trace was printed:\n${output}`);
      assert(!/listening/.test(output), output);
      const setup = await runServerCommand({ LOG_FORMAT: "text", ...scratch.env }, ["db:setup"]);
      assertEquals(setup.code, 1, setup.stdout + setup.stderr);
      assertMatch(setup.stderr, /ERROR .*table messages, column message_text/);
      assert(!/\n\s+at /.test(setup.stdout + setup.stderr), `db:setup printed a stack trace:\n${setup.stderr}`);

      await withOpen(scratch, async (db) => {
        // Untouched: the transaction rolled back before schema.sql's index.
        const index = await db.query("SELECT 1 FROM pg_indexes WHERE indexname = 'users_username_lower_key'");
        assertEquals(index.length, 0, "the refused database was changed");
        // users without password_hash, messages fine: named as well.
        await exec(
          db,
          `ALTER TABLE messages RENAME COLUMN body TO message_text;
           ALTER TABLE messages ADD COLUMN sender_username VARCHAR(50) NOT NULL DEFAULT '';
           ALTER TABLE users DROP COLUMN password_hash;`,
        );
        try {
          await applySchema(db, quiet);
          fail("applySchema accepted users without password_hash");
        } catch (err) {
          if (!(err instanceof SchemaMismatchError)) throw err;
          assertEquals([err.table, err.column], ["users", "password_hash"]);
        }
      });
    },
  });

  Deno.test({
    name: `schema: after db:setup on an empty database, users and messages have the seed DDL's columns [${backend}]`,
    ...sanitized,
    async fn() {
      const { db, dispose } = await memoryOrScratch(backend);
      try {
        await applySchema(db, quiet);
        const live = await columnsOf(db);
        assertEquals(live, [...await seedShape(db, "messages"), ...await seedShape(db, "users")]);
        // Pinned as well, so that a change to both the DDL copy and schema.sql is seen.
        assertEquals(
          live.map((c) =>
            `${c.table_name}.${c.column_name} ${c.data_type}${c.character_maximum_length ?? ""} ${c.is_nullable} ${
              c.column_default ?? "-"
            }`
          ),
          [
            "messages.id integer NO nextval('messages_id_seq'::regclass)",
            "messages.sender_id integer YES -",
            "messages.sender_username character varying50 NO -",
            "messages.message_text text NO -",
            "messages.timestamp timestamp without time zone YES CURRENT_TIMESTAMP",
            "users.id integer NO nextval('users_id_seq'::regclass)",
            "users.username character varying50 NO -",
            "users.password_hash character varying255 NO -",
            "users.created_at timestamp without time zone YES CURRENT_TIMESTAMP",
          ],
        );
      } finally {
        await dispose();
      }
    },
  });
}

Deno.test({
  name: "schema: four servers starting at once on an earlier-layout database: one migrates it, all start [postgres]",
  ignore: !scratchBackends.includes("postgres"),
  ...sanitized,
  async fn() {
    await using scratch = await scratchDatabase("postgres");
    await withOpen(scratch, async (db) => {
      await exec(db, EARLIER_DDL);
      const [user] = await db.query<{ id: number }>(
        "INSERT INTO users (username, password_hash) VALUES ('carol', 'x') RETURNING id",
      );
      await db.query("INSERT INTO messages (sender_id, content) SELECT $1, 'm' || g FROM generate_series(1, 50) g", [
        user.id,
      ]);
    });
    const log = new RecordingLogger(["info"]);
    const handles = await Promise.all(Array.from({ length: 4 }, () => scratch.open()));
    try {
      // Without the advisory lock, all would see `content` and all but one would fail renaming it.
      await Promise.all(handles.map((db) => applySchema(db, log)));
      const said = log.lines.map((l) => l.msg);
      assertEquals(said.filter((m) => /schema migrated/.test(m)).length, 1, JSON.stringify(said));
      const rows = await handles[0].query<{ n: number }>(
        "SELECT count(*)::int AS n FROM messages WHERE sender_username = 'carol' AND message_text LIKE 'm%'",
      );
      assertEquals(Number(rows[0].n), 50);
    } finally {
      await Promise.all(handles.map((db) => db.close()));
    }
  },
});

/**
 * The columns of `table` as the seed's DDL makes them, read from a throw-away schema of the same
 * database (created and rolled back in one transaction).
 */
async function seedShape(db: Database, table: string): Promise<ColumnShape[]> {
  const rollback = new Error("rollback");
  let shape: ColumnShape[] = [];
  try {
    await db.schemaTransaction(async (tx) => {
      await tx.exec(`CREATE SCHEMA seed_ddl; SET LOCAL search_path TO seed_ddl; ${SEED_DDL}`);
      shape = await columnsOf(tx, "seed_ddl", [table]);
      throw rollback;
    });
  } catch (err) {
    if (err !== rollback) throw err;
  }
  return shape;
}
