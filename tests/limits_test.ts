// Connection limits: MAX_CONNECTIONS and MAX_CONNECTIONS_PER_IP. The refused connection gets
// too_many_connections and is closed; the admitted ones keep working; a freed slot is reused.

import { NodeLineClient } from "./support/node_line_client.ts";
import { waitUntil } from "./support/util.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { backends, sanitized, startTestServer, type TestClient, type TestServer } from "./support/helpers.ts";

for (const backend of backends) {
  Deno.test({
    name: `limits: a connection over MAX_CONNECTIONS gets too_many_connections and is closed [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { MAX_CONNECTIONS: "3", MAX_CONNECTIONS_PER_IP: "100" });
      await using a = await admitted(server);
      await using b = await admitted(server);
      await using c = await admitted(server);
      await a.registerAndLogin();
      await b.registerAndLogin();

      await using d = await server.connect();
      await expectRefused(d);

      for (const client of [a, b, c]) assertEquals(await client.request({ type: "ping" }), { type: "pong" });
      await a.send({ type: "send_message", message: "still here" });
      const mine = await a.expect("new_message");
      assertEquals(mine.message, "still here");
      assertEquals(await b.expect("new_message"), mine);
      assert(!a.ended && !b.ended && !c.ended, "an admitted connection was closed");
    },
  });
}

Deno.test({
  name: "limits: a connection is admitted again once one below MAX_CONNECTIONS closes",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { MAX_CONNECTIONS: "2" });
    await using a = await admitted(server);
    await using b = await admitted(server);
    await using refused = await server.connect();
    await expectRefused(refused);

    await b.close();
    await waitUntil(
      () => server.service.registry.connectionCount === 1,
      5000,
      "the server to forget the closed connection",
    );
    await using c = await server.connect();
    assertEquals(await c.request({ type: "ping" }), { type: "pong" });
    assertEquals(await a.request({ type: "ping" }), { type: "pong" });
  },
});

Deno.test({
  name: "limits: MAX_CONNECTIONS_PER_IP counts each address apart",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { MAX_CONNECTIONS: "100", MAX_CONNECTIONS_PER_IP: "2" });
    await using a = await admitted(server);
    await using b = await admitted(server);
    await a.registerAndLogin();
    await using refused = await server.connect();
    await expectRefused(refused);

    // 127.0.0.2 is another loopback address: its own two connections are admitted, its third is not.
    await using x = await NodeLineClient.connect(server.port, "127.0.0.2");
    assertEquals(await x.request({ type: "ping" }), { type: "pong" });
    await using y = await NodeLineClient.connect(server.port, "127.0.0.2");
    assertEquals(await y.request({ type: "ping" }), { type: "pong" });
    await using z = await NodeLineClient.connect(server.port, "127.0.0.2");
    const refusal = await z.next();
    assertEquals([refusal.type, refusal.code], ["error", "too_many_connections"], JSON.stringify(refusal));
    await z.closed();

    assertEquals(await a.request({ type: "ping" }), { type: "pong" });
    await a.send({ type: "send_message", message: "from 127.0.0.1" });
    assertEquals((await a.expect("new_message")).message, "from 127.0.0.1");
    assertEquals(await x.request({ type: "ping" }), { type: "pong" });

    await b.close();
    await waitUntil(
      () => server.service.registry.connectionCount === 3,
      5000,
      "the server to forget the closed connection",
    );
    await using c = await server.connect();
    assertEquals(await c.request({ type: "ping" }), { type: "pong" });
  },
});

/** Connects and waits for a pong, so the server has admitted this connection before the next. */
async function admitted(server: TestServer): Promise<TestClient> {
  const client = await server.connect();
  try {
    assertEquals(await client.request({ type: "ping" }), { type: "pong" });
  } catch (err) {
    await client.close();
    throw err;
  }
  return client;
}

async function expectRefused(client: TestClient): Promise<void> {
  const frame = await client.next();
  assertEquals(frame.type, "error", JSON.stringify(frame));
  assertEquals(frame.code, "too_many_connections");
  assertEquals(typeof frame.message, "string");
  assertEquals(await client.expectClosed(), []);
}
