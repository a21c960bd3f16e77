// Database outage, in-process: the server reaches PostgreSQL through a proxy the test cuts and
// restores. Needs TEST_DATABASE_URL (PGlite is embedded and cannot go away).
//
// The pools are kept small: postgres.js's end() waits out its timeout (5 s) for a pooled
// connection whose query failed during the outage (porsager/postgres#1130), which a larger pool
// hits more often. That slows close() down; it does not change what these tests check.

import { assert, assertEquals } from "./support/assert.ts";
import { type Backend, postgresUrl, sanitized, startTestServer, uniqueName } from "./support/helpers.ts";
import { proxiedUrl, startProxy, targetOf } from "./support/proxy.ts";

const ignore = postgresUrl === undefined;

Deno.test({
  name: "outage: sends fail with unavailable while the database is cut, and succeed again after it returns",
  ignore,
  ...sanitized,
  async fn() {
    await using proxy = startProxy(targetOf(postgresUrl!));
    const backend: Backend = { name: "postgres", env: { DATABASE_URL: proxiedUrl(postgresUrl!, proxy) } };
    await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0", DB_POOL_SIZE: "2" });
    await using alice = await server.connect();
    await using bob = await server.connect();
    await alice.registerAndLogin();
    await bob.registerAndLogin();
    const carolName = uniqueName("carol");
    await using carol = await server.connect();
    assertEquals(
      (await carol.request({ type: "register", username: carolName, password: "secret123" })).status,
      "success",
    );

    await alice.send({ type: "send_message", message: "before the outage", request_id: 1 });
    const before = await alice.expect("new_message");
    assertEquals((await bob.expect("new_message")).id, before.id);

    await proxy.cut();
    assert(proxy.connectionCount === 0);

    await alice.send({ type: "send_message", message: "during the outage", request_id: 2 });
    const failed = await alice.next(10_000);
    assertEquals(failed.type, "error", JSON.stringify(failed));
    assertEquals(failed.code, "unavailable");
    assertEquals(failed.request_id, 2);
    await bob.expectNothing(300);
    await alice.expectNothing(0);

    const login = await carol.request({ type: "login", username: carolName, password: "secret123" }, 10_000);
    assertEquals(login.type, "login_response", JSON.stringify(login));
    assertEquals(login.status, "error");
    assertEquals(login.code, "unavailable");

    assertEquals(await alice.request({ type: "ping" }), { type: "pong" });
    assertEquals(await carol.request({ type: "ping" }), { type: "pong" });
    assert(!alice.ended && !bob.ended && !carol.ended, "a connection was closed during the outage");

    proxy.restore();

    await alice.send({ type: "send_message", message: "after the outage", request_id: 3 });
    const after = await alice.next(10_000);
    assertEquals(after.type, "new_message", JSON.stringify(after));
    assertEquals(after.message, "after the outage");
    assertEquals(after.request_id, 3);
    const bobsCopy = await bob.expect("new_message");
    assertEquals(bobsCopy.id, after.id);
    assert(bobsCopy.request_id === undefined, "request_id leaked into another client's copy");

    const relogin = await carol.request({ type: "login", username: carolName, password: "secret123" });
    assertEquals(relogin.status, "success", JSON.stringify(relogin));

    const history = await alice.request({ type: "get_history", after: Number(before.id) - 1, limit: 500 });
    const texts = (history.messages as { message: string; sender: string }[])
      .filter((m) => m.sender === before.sender)
      .map((m) => m.message);
    assertEquals(texts, ["before the outage", "after the outage"]);
  },
});

Deno.test({
  name: "outage: register, and a get_history that needs the database, answer unavailable while it is cut",
  ignore,
  ...sanitized,
  async fn() {
    await using proxy = startProxy(targetOf(postgresUrl!));
    const backend: Backend = { name: "postgres", env: { DATABASE_URL: proxiedUrl(postgresUrl!, proxy) } };
    // The server keeps the newest MAX_HISTORY_LIMIT messages in memory; with 5 and 6 new messages,
    // the oldest messages after id 0 can only come from the database.
    await using server = await startTestServer(backend, { DB_POOL_SIZE: "2", MAX_HISTORY_LIMIT: "5" });
    await using alice = await server.connect();
    await alice.registerAndLogin();
    for (let i = 0; i < 6; i++) {
      await alice.send({ type: "send_message", message: `filler ${i}` });
      await alice.expect("new_message");
    }
    await proxy.cut();

    const history = await alice.request({ type: "get_history", after: 0, limit: 5 }, 10_000);
    assertEquals([history.type, history.code], ["error", "unavailable"], JSON.stringify(history));
    const register = await alice.request({ type: "register", username: uniqueName(), password: "secret123" }, 10_000);
    assertEquals([register.type, register.status, register.code], ["register_response", "error", "unavailable"]);
    assertEquals(await alice.request({ type: "ping" }), { type: "pong" });

    proxy.restore();
    const recovered = await alice.request({ type: "get_history", after: 0, limit: 5 }, 10_000);
    assertEquals(recovered.type, "history_response", JSON.stringify(recovered));
    assertEquals((recovered.messages as unknown[]).length, 5);
  },
});

Deno.test({
  name: "proxy: cut closes forwarded connections and refuses new ones until restore",
  ignore,
  ...sanitized,
  async fn() {
    await using proxy = startProxy(targetOf(postgresUrl!));
    const first = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    try {
      // PostgreSQL answers an SSLRequest with one byte, "N" or "S": proof that bytes flow both ways.
      await first.write(new Uint8Array([0, 0, 0, 8, 4, 210, 22, 47]));
      const reply = new Uint8Array(1);
      assertEquals(await first.read(reply), 1);
      assert(reply[0] === 78 || reply[0] === 83, `unexpected reply byte ${reply[0]}`);
      assertEquals(proxy.connectionCount, 1);

      await proxy.cut();
      assert(proxy.isCut);
      let ended: number | null | "error" = 0;
      try {
        ended = await first.read(new Uint8Array(16));
      } catch {
        ended = "error";
      }
      assert(ended === null || ended === "error", "the forwarded connection stayed open after cut()");
      await assertConnectRefused(proxy.port);
    } finally {
      first.close();
    }

    proxy.restore();
    const second = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    second.close();
  },
});

async function assertConnectRefused(port: number): Promise<void> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
  } catch (err) {
    assert(err instanceof Deno.errors.ConnectionRefused, `expected ConnectionRefused, got ${err}`);
    return;
  }
  assert(false, `port ${port} still accepts connections after cut()`);
}
