// The WebSocket at /ws: the same protocol, limits and codes as TCP, frames batched into messages
// (v1.2), broadcasts shared with TCP clients in one order, and the outbound bound.

import { assert, assertEquals } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, type TestServer, uniqueName } from "./support/helpers.ts";
import { RawWsClient, WsTestClient } from "./support/ws_client.ts";
import { sleep } from "./support/util.ts";

function wsUrl(server: TestServer): string {
  return `ws://127.0.0.1:${server.service.httpPort}/ws`;
}

for (const backend of backends) {
  Deno.test({
    name: `websocket: every request type works as on TCP [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, {}, { httpPort: 0 });
      await using ws = await WsTestClient.connect(wsUrl(server));
      await using tcp = await server.connect();

      assertEquals(await ws.request({ type: "ping" }), { type: "pong" });
      assertEquals((await ws.request({ type: "get_history" })).code, "not_authenticated");
      assertEquals((await ws.request({ type: "list_users" })).code, "not_authenticated");
      assertEquals(
        (await ws.request({ type: "send_message", message: "no" })).code,
        "not_authenticated",
      );
      assertEquals((await ws.request({ type: "bogus" })).code, "unknown_type");
      assertEquals((await ws.request("not json")).code, "bad_request");
      assertEquals((await ws.request("[1,2]")).code, "bad_request");
      // A trailing newline is allowed; request_id is echoed.
      assertEquals(await ws.request('{"type":"ping","request_id":7}\n'), { type: "pong", request_id: 7 });

      const name = uniqueName("ws");
      assertEquals(
        (await ws.request({ type: "register", username: name, password: "x" })).code,
        "invalid_password",
      );
      const login = await ws.registerAndLogin(name);
      assertEquals(login.username, name);
      const tcpName = String((await tcp.registerAndLogin()).username);

      assertEquals((await ws.request({ type: "send_message", message: "  " })).code, "invalid_message");
      assertEquals(
        (await ws.request({ type: "send_message", sender: tcpName, message: "hi" })).code,
        "sender_mismatch",
      );
      ws.send({ type: "send_message", message: "hello from a browser", request_id: "r1" });
      const own = await ws.expect("new_message");
      assertEquals([own.sender, own.message, own.request_id], [name, "hello from a browser", "r1"]);
      const seen = await tcp.expect("new_message");
      assertEquals([seen.id, seen.message, seen.request_id], [own.id, "hello from a browser", undefined]);

      await tcp.send({ type: "send_message", message: "hello from a terminal" });
      const fromTcp = await ws.expect("new_message");
      assertEquals([fromTcp.sender, fromTcp.message], [tcpName, "hello from a terminal"]);
      await tcp.expect("new_message");

      const users = await ws.request({ type: "list_users" });
      assert((users.users as string[]).includes(name) && (users.users as string[]).includes(tcpName));
      const history = await ws.request({ type: "get_history", limit: 2 });
      assertEquals((history.messages as Frame[]).map((m) => m.id), [own.id, fromTcp.id]);
      const before = await ws.request({ type: "get_history", limit: 1, before: fromTcp.id });
      assertEquals((before.messages as Frame[]).map((m) => m.id), [own.id]);
      const after = await ws.request({ type: "get_history", limit: 5, after: own.id });
      assertEquals((after.messages as Frame[]).map((m) => m.id), [fromTcp.id]);
      assertEquals((await ws.request({ type: "get_history", limit: 0 })).code, "invalid_limit");

      assertEquals((await ws.request({ type: "logout" })).status, "success");
      await tcp.send({ type: "send_message", message: "after logout" });
      await tcp.expect("new_message");
      await ws.expectNothing(200);
      // Every message was one JSON object or several separated by "\n", with no line end after the last.
      for (const text of ws.raw) assertWholeFrames(text);
    },
  });

  Deno.test({
    name: `websocket: the replies of one turn go as one message, frames separated by "\\n" (v1.2) [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" }, { httpPort: 0 });
      await using ws = await WsTestClient.connect(wsUrl(server));
      await ws.registerAndLogin();
      const before = ws.raw.length;
      // Three sends in one message: read in one turn, stored in one batch, answered in one delivery.
      ws.send(
        [1, 2, 3].map((n) => JSON.stringify({ type: "send_message", message: `m${n}`, request_id: n })).join("\n"),
      );
      const own = [await ws.expect("new_message"), await ws.expect("new_message"), await ws.expect("new_message")];
      assertEquals(own.map((frame) => [frame.message, frame.request_id]), [["m1", 1], ["m2", 2], ["m3", 3]]);
      const messages = ws.raw.slice(before);
      assertEquals(messages.length, 1, `one message expected: ${JSON.stringify(messages)}`);
      assertWholeFrames(messages[0]);
      assertEquals(messages[0].split("\n").length, 3);
    },
  });

  Deno.test({
    name: `websocket: TCP and WebSocket clients see the same messages in the same order [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" }, { httpPort: 0 });
      const wsClients = await Promise.all([0, 1, 2].map(() => WsTestClient.connect(wsUrl(server))));
      const tcpClients = await Promise.all([0, 1, 2].map(() => server.connect()));
      try {
        for (const client of [...wsClients, ...tcpClients]) await client.registerAndLogin();
        const PER_CLIENT = 20;
        for (let i = 0; i < PER_CLIENT; i++) {
          for (const [n, client] of wsClients.entries()) client.send({ type: "send_message", message: `w${n}-${i}` });
          for (const [n, client] of tcpClients.entries()) {
            await client.send({ type: "send_message", message: `t${n}-${i}` });
          }
        }
        const total = PER_CLIENT * 6;
        const orders: number[][] = [];
        for (const client of [...wsClients, ...tcpClients]) {
          const ids: number[] = [];
          while (ids.length < total) ids.push(Number((await client.expect("new_message")).id));
          orders.push(ids);
        }
        for (const ids of orders) assertEquals(ids, orders[0]);
        assertEquals([...orders[0]].sort((a, b) => a - b), orders[0]);
      } finally {
        for (const client of wsClients) await client.close();
        for (const client of tcpClients) await client.close();
      }
    },
  });
}

Deno.test({
  name: "websocket: a binary message gets an error frame and close code 1003",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], {}, { httpPort: 0 });
    await using ws = await WsTestClient.connect(wsUrl(server));
    ws.send(new TextEncoder().encode('{"type":"ping"}'));
    const { code, frames } = await ws.expectClosed();
    assertEquals(code, 1003);
    assertEquals(frames.map((f) => f.code), ["bad_request"]);
  },
});

Deno.test({
  name: "websocket: a text message longer than MAX_LINE_BYTES gets line_too_long and close code 1009",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { MAX_LINE_BYTES: "2048" }, { httpPort: 0 });
    await using ws = await WsTestClient.connect(wsUrl(server));
    // Exactly the limit (plus its allowed newline) is fine.
    const atLimit = JSON.stringify({ type: "ping", pad: "x".repeat(2048 - 24) });
    assertEquals(new TextEncoder().encode(atLimit).length, 2048);
    assertEquals((await ws.request(atLimit + "\n")).type, "pong");
    ws.send(JSON.stringify({ type: "ping", pad: "é".repeat(1100) }));
    const { code, frames } = await ws.expectClosed();
    assertEquals(code, 1009);
    assertEquals(frames.map((f) => f.code), ["line_too_long"]);
  },
});

Deno.test({
  name: "websocket: connection limits count TCP and WebSocket connections together",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { MAX_CONNECTIONS_PER_IP: "2" }, { httpPort: 0 });
    await using tcp = await server.connect();
    await using ws = await WsTestClient.connect(wsUrl(server));
    assertEquals(await ws.request({ type: "ping" }), { type: "pong" });
    // A third connection over either transport is refused; the first two are untouched.
    await using refusedWs = await WsTestClient.connect(wsUrl(server));
    const { code, frames } = await refusedWs.expectClosed();
    assertEquals(frames.map((f) => f.code), ["too_many_connections"]);
    assertEquals(code, 1013);
    await using refusedTcp = await server.connect();
    assertEquals((await refusedTcp.expectClosed()).map((f) => f.code), ["too_many_connections"]);
    assertEquals(await tcp.request({ type: "ping" }), { type: "pong" });
    assertEquals(await ws.request({ type: "ping" }), { type: "pong" });
    assertEquals(server.service.registry.connectionCount, 2);
  },
});

Deno.test({
  name: "websocket: MAX_CONNECTIONS counts WebSockets, and a closed one frees its place",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { MAX_CONNECTIONS: "1" }, { httpPort: 0 });
    const first = await WsTestClient.connect(wsUrl(server));
    await using refused = await server.connect();
    assertEquals((await refused.expectClosed()).map((f) => f.code), ["too_many_connections"]);
    await first.close();
    const deadline = Date.now() + 5000;
    while (server.service.registry.connectionCount > 0 && Date.now() < deadline) {
      await sleep(20);
    }
    await using second = await WsTestClient.connect(wsUrl(server));
    assertEquals(await second.request({ type: "ping" }), { type: "pong" });
  },
});

Deno.test({
  name: "websocket: a connection that does not log in is closed with idle_timeout",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { LOGIN_IDLE_TIMEOUT_SEC: "1" }, { httpPort: 0 });
    await using ws = await WsTestClient.connect(wsUrl(server));
    const { frames } = await ws.expectClosed(5000);
    assertEquals(frames.map((f) => f.code), ["idle_timeout"]);
  },
});

Deno.test({
  name: "websocket: graceful shutdown closes WebSockets with 1001 after in-flight messages",
  ...sanitized,
  async fn() {
    const server = await startTestServer(backends[0], {}, { httpPort: 0 });
    await using ws = await WsTestClient.connect(wsUrl(server));
    await ws.registerAndLogin();
    ws.send({ type: "send_message", message: "last words" });
    await ws.expect("new_message");
    await server.close();
    const { code } = await ws.expectClosed();
    assertEquals(code, 1001);
  },
});

Deno.test({
  name: "websocket: a client that stops reading is cut off, and the others miss nothing",
  ...sanitized,
  async fn() {
    const MAX_OUTBOUND_BYTES = 65536;
    await using server = await startTestServer(backends[0], {
      RATE_LIMIT_PER_SEC: "0",
      MAX_OUTBOUND_BYTES: String(MAX_OUTBOUND_BYTES),
    }, { httpPort: 0 });
    await using sender = await server.connect();
    await using reader = await WsTestClient.connect(wsUrl(server));
    await sender.registerAndLogin();
    await reader.registerAndLogin();
    const slowName = uniqueName("slow");
    assertEquals(
      (await reader.request({ type: "register", username: slowName, password: "secret123" })).status,
      "success",
    );
    await using slow = await RawWsClient.connect(server.service.httpPort!);
    await slow.sendText(JSON.stringify({ type: "login", username: slowName, password: "secret123" }));
    await slow.readUntil("login_response");
    assertEquals(server.service.registry.connectionCount, 3);

    // The slow client reads no more. Bursts of long messages fill its socket, then its backlog.
    const text = "x".repeat(4000);
    let sent = 0;
    const deadline = Date.now() + 30_000;
    while (server.service.registry.connectionCount === 3 && Date.now() < deadline && sent < 12 * 600) {
      for (let i = 0; i < 12; i++) await sender.send({ type: "send_message", message: text });
      sent += 12;
      for (let i = 0; i < 12; i++) await sender.expect("new_message", 10_000);
      for (let i = 0; i < 12; i++) await reader.expect("new_message", 10_000);
    }
    assertEquals(server.service.registry.connectionCount, 2, "the slow consumer is still connected");
    assertEquals(server.service.metrics.slowConsumers.value, 1);
    // The others go on as before.
    await sender.send({ type: "send_message", message: "still here" });
    assertEquals((await reader.expect("new_message")).message, "still here");
    // Read at last, its socket ends with the close frame (code 1008, reason slow_consumer).
    await slow.readUntil("slow_consumer", 10_000);
  },
});

Deno.test({
  name: "websocket: frames piling up behind a request still being answered are bounded (rate_limited, close 1008)",
  ...sanitized,
  async fn() {
    // bcrypt at cost 10 keeps the login busy for tens of milliseconds, while the flood arrives.
    await using server = await startTestServer(backends[0], { MAX_LINE_BYTES: "1024", BCRYPT_COST: "10" }, {
      httpPort: 0,
    });
    await using ws = await WsTestClient.connect(wsUrl(server));
    const name = uniqueName("flood");
    assertEquals((await ws.request({ type: "register", username: name, password: "secret123" })).status, "success");
    ws.send({ type: "login", username: name, password: "secret123" });
    // 16 lines of MAX_LINE_BYTES may wait: the 17th frame of 1,000 bytes is one too many. Nothing is sent after
    // it, so that the closing handshake is not cut short by frames still arriving.
    const padded = JSON.stringify({ type: "ping", pad: "x".repeat(1000 - 24) });
    assertEquals(padded.length, 1000);
    for (let i = 0; i < 17; i++) ws.send(padded);
    const { code, frames } = await ws.expectClosed(10_000);
    assertEquals(code, 1008);
    assertEquals(frames.at(-1)?.code, "rate_limited");
  },
});

Deno.test({
  name: "websocket: a flood of tiny frames behind a request still being answered is bounded by count, not only bytes",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { BCRYPT_COST: "10" }, { httpPort: 0 });
    await using ws = await WsTestClient.connect(wsUrl(server));
    const name = uniqueName("tiny");
    assertEquals((await ws.request({ type: "register", username: name, password: "secret123" })).status, "success");
    ws.send({ type: "login", username: name, password: "secret123" });
    // 257 pings of 16 bytes are far below 16 lines of MAX_LINE_BYTES, but each held frame costs
    // memory too: 256 may wait. Nothing is sent after the one too many (see above).
    for (let i = 0; i < 257; i++) ws.send('{"type":"ping"}');
    const { code, frames } = await ws.expectClosed(10_000);
    assertEquals(code, 1008);
    assertEquals(frames.at(-1)?.code, "rate_limited");
  },
});

Deno.test({
  name: "websocket: one message may carry several frames, one a line (contract v1.2), each answered in order",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { MAX_LINE_BYTES: "1024" }, { httpPort: 0 });
    await using ws = await WsTestClient.connect(wsUrl(server));
    ws.send('{"type":"ping","request_id":1}\n{"type":"ping","request_id":2}\r\n\n{"type":"nope","request_id":3}\n');
    assertEquals(await ws.next(), { type: "pong", request_id: 1 });
    assertEquals(await ws.next(), { type: "pong", request_id: 2 });
    assertEquals((await ws.next()).code, "unknown_type");
    // Each frame of a message is held to MAX_LINE_BYTES, whatever the message's size.
    ws.send(`{"type":"ping"}\n{"type":"ping","pad":"${"x".repeat(1100)}"}`);
    assertEquals(await ws.next(), { type: "pong" });
    const { code, frames } = await ws.expectClosed(5000);
    assertEquals(code, 1009);
    assertEquals(frames.at(-1)?.code, "line_too_long");
  },
});

/** A server message: one JSON object, or several separated by "\n", with nothing else. */
function assertWholeFrames(text: string): void {
  assert(!text.endsWith("\n") && !text.includes("\n\n"), `stray line end: ${JSON.stringify(text)}`);
  for (const line of text.split("\n")) assertEquals(typeof JSON.parse(line), "object");
}
