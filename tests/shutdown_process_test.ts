// Graceful shutdown of the server process: SIGTERM or SIGINT with clients connected and sends in
// flight exits 0, closes every connection, and loses no message a client saw (checked after a
// restart on the same database). The in-process close() is in shutdown_test.ts.

import { assert, assertEquals, fail } from "./support/assert.ts";
import { type Frame, sanitized, type TestClient, uniqueName } from "./support/client.ts";
import { type ServerProcess, spawnServer } from "./support/process.ts";
import { proxiedUrl, startProxy, targetOf } from "./support/proxy.ts";
import { sleep } from "./support/util.ts";

const postgresUrl = Deno.env.get("TEST_DATABASE_URL") || undefined;

/** The default SHUTDOWN_TIMEOUT_SEC (20 s), and room for process start-up and teardown. */
const EXIT_WAIT_MS = 25_000;
const MAX_SENDS_PER_CLIENT = 300;
/** Broadcasts seen before the signal: the restart then checks several messages. */
const MESSAGES_BEFORE_SIGNAL = 3;

interface ProcessBackend {
  name: "pglite" | "postgres";
  /** The environment of the server; the same for the restart. */
  env(dataDir: string): Record<string, string>;
}

const processBackends: ProcessBackend[] = [
  { name: "pglite", env: (dataDir) => ({ DATA_DIR: dataDir }) },
  ...(postgresUrl ? [{ name: "postgres" as const, env: () => ({ DATABASE_URL: postgresUrl! }) }] : []),
];

for (const backend of processBackends) {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    // Signals are handled the same whatever the storage: SIGINT on PGlite (two ~3 s start-ups)
    // only when there is no PostgreSQL to run it on quickly.
    if (signal === "SIGINT" && backend.name === "pglite" && postgresUrl) continue;
    Deno.test({
      name: `shutdown: ${signal} with sends in flight exits 0 and loses no message a client saw [${backend.name}]`,
      ...sanitized,
      async fn() {
        const dataDir = await Deno.makeTempDir({ prefix: "chat-shutdown-" });
        try {
          await signalDuringSends(backend.env(dataDir), signal);
        } finally {
          await Deno.remove(dataDir, { recursive: true });
        }
      },
    });
  }
}

async function signalDuringSends(env: Record<string, string>, signal: Deno.Signal): Promise<void> {
  const password = "secret123";
  const names = [uniqueName("sd"), uniqueName("sd"), uniqueName("sd")];
  const seen = new Map<number, Frame>();
  {
    await using server = await spawnServer({ ...env, RATE_LIMIT_PER_SEC: "0" });
    await using a = await server.connect();
    await using b = await server.connect();
    await using c = await server.connect();
    const clients = [a, b, c];
    for (let i = 0; i < clients.length; i++) {
      assertEquals((await clients[i].request({ type: "register", username: names[i], password })).status, "success");
      assertEquals((await clients[i].request({ type: "login", username: names[i], password })).status, "success");
    }
    // Each client keeps sending until its connection goes; the signal comes in the middle.
    const senders = clients.map((client, i) => keepSending(client, names[i]));
    // A few broadcasts first, so that the check after the restart covers messages whatever the
    // machine's speed (on a loaded machine the signal could otherwise beat every send but one).
    for (let k = 0; k < MESSAGES_BEFORE_SIGNAL; k++) {
      const frame = await a.waitFor((f) => f.type === "new_message", 10_000);
      seen.set(Number(frame.id), frame);
    }
    const code = await stopWithin(server, signal);
    const stopped = await Promise.all(senders);
    assertEquals(code, 0, `exit code after ${signal}; logs: ${JSON.stringify(server.logs.slice(-5))}`);
    for (const client of clients) {
      const rest = await client.expectClosed(5000);
      for (const frame of rest) {
        if (frame.type === "new_message") seen.set(Number(frame.id), frame);
        else if (frame.type !== "error" || frame.code !== "unavailable") {
          fail(`unexpected frame ${JSON.stringify(frame)}`);
        }
      }
    }
    assert(stopped.some((sent) => sent > 1), "no client got a second send in before the shutdown");
    // Distinct ids: a message broadcast twice would show as fewer ids than broadcasts waited for.
    assert(seen.size >= MESSAGES_BEFORE_SIGNAL, `only ${seen.size} distinct messages were broadcast`);
  }

  // The same database, a new process: every message a client saw is in history, as it was seen.
  await using server = await spawnServer(env);
  await using reader = await server.connect();
  assertEquals((await reader.request({ type: "login", username: names[0], password })).status, "success");
  const ids = [...seen.keys()].sort((x, y) => x - y);
  const history = await reader.request({ type: "get_history", after: ids[0] - 1, limit: 500 });
  assertEquals(history.type, "history_response", JSON.stringify(history));
  const stored = new Map((history.messages as Frame[]).map((m) => [Number(m.id), m]));
  for (const id of ids) {
    const frame = seen.get(id)!;
    const row = stored.get(id);
    if (!row) fail(`message ${id} was broadcast but is not in history after the restart`);
    assertEquals(
      { sender: row.sender, message: row.message, timestamp: row.timestamp },
      { sender: frame.sender, message: frame.message, timestamp: frame.timestamp },
    );
  }
  assertEquals(await stopWithin(server, "SIGTERM"), 0);
}

/** Sends one message every few ms until the connection fails or the bound; returns how many went out. */
async function keepSending(client: TestClient, name: string): Promise<number> {
  let sent = 0;
  try {
    while (sent < MAX_SENDS_PER_CLIENT && !client.ended) {
      await client.send({ type: "send_message", message: `${name} #${sent}` });
      sent++;
      await sleep(5);
    }
  } catch {
    // The server closed the connection under the write: that is the shutdown.
  }
  return sent;
}

/** Signals the server and waits for its exit code, failing (and killing it) past EXIT_WAIT_MS. */
async function stopWithin(server: ServerProcess, signal: Deno.Signal): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), EXIT_WAIT_MS));
  try {
    const result = await Promise.race([server.stop(signal), timeout]);
    if (result === "timeout") fail(`the server did not exit within ${EXIT_WAIT_MS} ms of ${signal}`);
    return result;
  } finally {
    clearTimeout(timer);
  }
}

// Supervisors (and these tests) wait for "chat server listening": a signal sent right after it
// must already find the shutdown handlers installed, not the default action (exit 143 / 130).
Deno.test({
  name: "shutdown: SIGTERM sent right after the start-up line exits 0",
  ...sanitized,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "chat-shutdown-" });
    try {
      for (let i = 0; i < 3; i++) {
        await using server = await spawnServer(postgresUrl ? { DATABASE_URL: postgresUrl } : { DATA_DIR: dataDir });
        assertEquals(await stopWithin(server, "SIGTERM"), 0, `attempt ${i}`);
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "shutdown: graceful steps the database holds up past SHUTDOWN_TIMEOUT_SEC are cut short there, with exit code 1",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    await using proxy = startProxy(targetOf(postgresUrl!));
    await using server = await spawnServer({
      DATABASE_URL: proxiedUrl(postgresUrl!, proxy),
      SHUTDOWN_TIMEOUT_SEC: "2",
    });
    await using client = await server.connect();
    await client.registerAndLogin();
    // A send stuck on a silent database: its commit (10 s) and the database's closing outlast 2 s.
    proxy.stall();
    await client.send({ type: "send_message", message: "held up", request_id: 1 });
    await sleep(200);
    const started = performance.now();
    const code = await stopWithin(server, "SIGTERM");
    const elapsed = performance.now() - started;
    proxy.resume();
    assertEquals(code, 1, `exit code; logs: ${JSON.stringify(server.logs.slice(-3))}`);
    assert(elapsed >= 1900 && elapsed < 6000, `exited ${Math.round(elapsed)} ms after SIGTERM (deadline 2 s)`);
    assert(
      server.logs.some((l) => String(l.msg).includes("SHUTDOWN_TIMEOUT_SEC")),
      "the log does not say the shutdown was cut short",
    );
  },
});
