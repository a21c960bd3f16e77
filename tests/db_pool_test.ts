// The database pool under a slow query: only that query is cancelled at its timeout; the queries
// around it (logins, history reads, health probes) go on. And a connection whose start fails
// fails its query, never the process. Needs TEST_DATABASE_URL (pg_sleep and
// a real pool of connections).

import { assert, assertEquals } from "./support/assert.ts";
import { type Backend, postgresUrl, sanitized, startTestServer, testLog, uniqueName } from "./support/helpers.ts";
import { type Database, DatabaseError, openDatabase } from "../lib/store/db.ts";
import { typeFetchFailuresSetAside } from "../lib/store/pg_type_fetch_guard.ts";
import { sleep, waitUntil } from "./support/util.ts";

Deno.test({
  name: "db pool: a slow query times out alone, while logins, history reads and health probes all succeed",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    const backend: Backend = { name: "postgres", env: { DATABASE_URL: postgresUrl! } };
    // History from the database (the memory window holds 2 messages), a pool of 4.
    await using server = await startTestServer(backend, { DB_POOL_SIZE: "4", MAX_HISTORY_LIMIT: "2" }, {
      httpPort: 0,
    });
    const db = server.service.db;
    const names = Array.from({ length: 6 }, () => uniqueName("pool"));
    await using setup = await server.connect();
    for (const username of names) await setup.request({ type: "register", username, password: "secret123" });
    await setup.request({ type: "login", username: names[0], password: "secret123" });
    for (let i = 0; i < 5; i++) await setup.request({ type: "send_message", message: `m${i}` });

    // The slow query: cancelled at 1 s. Another user query is in flight when that happens.
    const slow = db.query("SELECT pg_sleep(3)", [], { timeoutMs: 1000 }).then(() => "answered", (err) => String(err));
    await sleep(500);
    const inFlight = db.query("SELECT pg_sleep(0.8) AS slept", []).then(() => "ok", (err) => `failed: ${err}`);

    const failures: string[] = [];
    const until = Date.now() + 1800;
    const logins = names.slice(1).map(async (username) => {
      await using client = await server.connect();
      while (Date.now() < until) {
        const login = await client.request({ type: "login", username, password: "secret123" }, 10_000);
        if (login.status !== "success") failures.push(`login: ${JSON.stringify(login)}`);
        const history = await client.request({ type: "get_history", after: 0, limit: 2 }, 10_000);
        if (history.type !== "history_response") failures.push(`history: ${JSON.stringify(history)}`);
      }
    });
    const probes = (async () => {
      while (Date.now() < until) {
        const statuses = await Promise.all(Array.from({ length: 10 }, async () => {
          const response = await fetch(`http://127.0.0.1:${server.service.httpPort}/healthz`);
          await response.body?.cancel();
          return response.status;
        }));
        for (const status of statuses) if (status !== 200) failures.push(`healthz ${status}`);
      }
    })();
    await Promise.all([...logins, probes]);
    assertEquals(await inFlight, "ok");
    const slowOutcome = await slow;
    assert(/timed out after 1000 ms/.test(slowOutcome), `the slow query: ${slowOutcome}`);
    assertEquals(failures, []);
  },
});

Deno.test({
  name: "db pool: a query waiting for a busy pool is not timed out for the time it waited",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    const backend: Backend = { name: "postgres", env: { DATABASE_URL: postgresUrl! } };
    await using server = await startTestServer(backend, { DB_POOL_SIZE: "2" });
    const db = server.service.db;
    // Both connections busy for 0.6 s; a query with a 0.5 s timeout queued behind them still answers.
    const busy = [db.query("SELECT pg_sleep(0.6)"), db.query("SELECT pg_sleep(0.6)")];
    const queued = await db.query<{ n: number }>("SELECT 1 AS n", [], { timeoutMs: 500 });
    assertEquals(queued[0].n, 1);
    await Promise.all(busy);
  },
});

Deno.test({
  name:
    "db pool: a query that times out while pipelined behind another is left to run, and the queries after it get their own answers",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    const backend: Backend = { name: "postgres", env: { DATABASE_URL: postgresUrl! } };
    await using server = await startTestServer(backend, {});
    const db = server.service.db;
    // On the ordered connection (the writer, where batches are pipelined): a slow statement, one
    // queued behind it that times out while it waits, then one more.
    const slow = db.ordered<{ a: number }>("SELECT 1 AS a FROM pg_sleep(0.6)", [], { timeoutMs: 5000 });
    const behind = db.ordered<{ b: number }>("SELECT 2 AS b", [], { timeoutMs: 200 }).then(
      (rows) => rows,
      (err) => String(err),
    );
    assert(String(await behind).includes("timed out"), `the queued query did not time out: ${await behind}`);
    const after = db.ordered<{ c: number }>("SELECT 3 AS c", [], { timeoutMs: 5000 });
    assertEquals([...await slow], [{ a: 1 }]);
    assertEquals([...await after], [{ c: 3 }], "a query got another query's answer");
  },
});

Deno.test({
  name: "db pool: a connection whose startup read of the array types fails fails its query, never the process",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    // statement_timeout = 1 ms on the connections cancels postgres.js's own array-type read, the
    // first statement of every new connection, from a promise postgres.js never awaits.
    const url = new URL(postgresUrl!);
    url.searchParams.set("statement_timeout", "1");
    const before = typeFetchFailuresSetAside();
    const db = await openDatabase({ databaseUrl: url.href, poolSize: 1, dataDir: "unused", log: testLog });
    try {
      const first = await db.query("SELECT 1 AS one").then(() => "answered", (err) => err);
      assert(first instanceof DatabaseError, `the query that opened the connection: ${first}`);
      // Deno hands an unhandled rejection to its listeners a turn or two later.
      await waitUntil(() => typeFetchFailuresSetAside() > before, 2000, "the failed type read to be set aside");
      // The connection goes on (or reconnects) and answers.
      let answered = false;
      for (let attempt = 0; attempt < 20 && !answered; attempt++) {
        answered = await db.query<{ one: number }>("SELECT 1 AS one").then((rows) => rows[0].one === 1, () => false);
      }
      assert(answered, "no query was answered after the failed start");
    } finally {
      await db.close();
    }
  },
});

/** A database of one pooled connection (and one writer, one control), and another to terminate its connections from. */
async function withPoolOfOne(work: (db: Database, admin: Database) => Promise<void>): Promise<void> {
  const db = await openDatabase({ databaseUrl: postgresUrl!, poolSize: 1, dataDir: "unused", log: testLog });
  const admin = await openDatabase({ databaseUrl: postgresUrl!, poolSize: 1, dataDir: "unused", log: testLog });
  try {
    await work(db, admin);
  } finally {
    await db.close();
    await admin.close();
  }
}

Deno.test({
  name: "db pool: a query on a connection that reconnected after dying mid-result gets its rows from the first",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    await withPoolOfOne(async (db, admin) => {
      const [{ pid }] = await db.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      // Its first row (20 kB, so PostgreSQL sends it at once) arrives; the second never does.
      const dying = db.query(
        `SELECT x, repeat('x', 20000) AS pad FROM generate_series(1, 2) AS x WHERE x = 1 OR pg_sleep(10) IS NULL`,
        [],
        { timeoutMs: 15_000 },
      ).then(() => "answered", (err) => err);
      await sleep(500);
      await admin.query("SELECT pg_terminate_backend($1)", [pid]);
      assert((await dying) instanceof DatabaseError, "the query whose connection was terminated");
      // postgres.js counts a result's rows per connection and did not reset the count when the
      // connection died mid-result: the next result's first row went to index 1, behind a hole.
      const rows = await db.query<{ one: number }>("SELECT 1 AS one");
      assertEquals(rows.length, 1);
      assertEquals(rows[0], { one: 1 });
    });
  },
});

Deno.test({
  name:
    "db pool: the first query after PostgreSQL terminated a connection in use is answered, not failed, pooled and on the writer",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    await withPoolOfOne(async (db, admin) => {
      for (const lane of [undefined, "control"] as const) {
        const [{ pid }] = await db.query<{ pid: number }>("SELECT pg_backend_pid() AS pid", [], { lane });
        const dying = db.query("SELECT pg_sleep(10)", [], { lane, timeoutMs: 15_000 }).then(
          () => "answered",
          (err) => err,
        );
        await sleep(300);
        await admin.query("SELECT pg_terminate_backend($1)", [pid]);
        const failure = await dying;
        assert(failure instanceof DatabaseError, `the ${lane ?? "pooled"} query whose connection was terminated`);
        // postgres.js kept the terminating FATAL error and failed the next query with it, unsent.
        const [{ other }] = await db.query<{ other: number }>("SELECT pg_backend_pid() AS other", [], { lane });
        assert(other !== pid, `the ${lane ?? "pooled"} query ran on a new connection`);
      }
      // The writer's queries are never sent twice: a probe takes the stale error instead.
      const [{ pid }] = await db.ordered<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      const dying = db.ordered("SELECT pg_sleep(10)", [], { timeoutMs: 15_000 }).then(() => "answered", (err) => err);
      await sleep(300);
      await admin.query("SELECT pg_terminate_backend($1)", [pid]);
      assert((await dying) instanceof DatabaseError, "the writer's query whose connection was terminated");
      const [{ other }] = await db.ordered<{ other: number }>("SELECT pg_backend_pid() AS other");
      assert(other !== pid, "the writer's query ran on a new connection");
    });
  },
});
