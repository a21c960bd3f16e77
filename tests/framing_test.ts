// Contract tests for the framing rules over real sockets: several frames per write, one frame over
// many writes, CRLF, empty lines, the line limit, bad bytes and bad JSON, unknown types, no banner,
// and replies that arrive whole.

import { assert, assertEquals } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, uniqueName } from "./support/helpers.ts";
import { keysOf, line, lines, RawClient } from "./support/wire.ts";
import { sleep } from "./support/util.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const PING = '{"type":"ping"}';

function assertError(reply: Frame, code: string, context = ""): void {
  assertEquals(keysOf(reply), ["code", "message", "type"], `${context} ${JSON.stringify(reply)}`);
  assertEquals(reply.type, "error", context);
  assertEquals(reply.code, code, `${context} ${JSON.stringify(reply)}`);
  assert(typeof reply.message === "string" && reply.message.length > 0, context);
}

/** A ping frame padded with spaces to exactly `bytes` bytes (no line end). */
function pingOfLength(bytes: number): string {
  return `{"type":"ping"${" ".repeat(bytes - PING.length)}}`;
}

for (const backend of backends) {
  Deno.test({
    name: `framing handles several frames in one write, answered in order [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const username = uniqueName("batch");
      await client.send(lines([
        { type: "register", username, password: "secret123" },
        { type: "login", username, password: "secret123" },
        { type: "ping" },
        { type: "send_message", message: "batched" },
        { type: "get_history", limit: 1 },
        { type: "list_users" },
      ]));
      assertEquals((await client.expect("register_response")).status, "success");
      assertEquals((await client.expect("login_response")).status, "success");
      await client.expect("pong");
      const sent = await client.expect("new_message");
      assertEquals(sent.message, "batched");
      const history = await client.expect("history_response");
      const newest = history.messages as Frame[];
      assertEquals(newest.length, 1);
      // Other tests may share the database: the newest message is this one or a later one.
      assert((newest[0].id as number) >= (sent.id as number), JSON.stringify(newest));
      assertEquals((await client.expect("users_response")).users, [username]);
    },
  });

  Deno.test({
    name: `framing reassembles a frame sent byte by byte, splitting multi-byte characters [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      client.conn.setNoDelay(true);
      await client.registerAndLogin();
      const text = `split €𝄞😀 é ${uniqueName()}`;
      const bytes = line({ type: "send_message", message: text });
      for (let i = 0; i < bytes.length; i++) {
        await client.send(bytes.subarray(i, i + 1));
        // Now and then let the server read what has arrived, so the frame really spans reads.
        if (i % 16 === 0) await sleep(1);
      }
      assertEquals((await client.expect("new_message")).message, text);
      // Splits exactly inside each multi-byte character, with a pause at each split.
      const frame = line({ type: "send_message", message: text });
      // € is E2 82 AC, 𝄞 is F0 9D 84 9E, 😀 is F0 9F 98 80, é is C3 A9.
      const cuts = [
        frame.indexOf(0xe2) + 1,
        frame.indexOf(0xf0) + 2,
        frame.lastIndexOf(0xf0) + 3,
        frame.indexOf(0xc3) + 1,
      ];
      let start = 0;
      for (const cut of [...cuts.sort((a, b) => a - b), frame.length]) {
        await client.send(frame.subarray(start, cut));
        await sleep(5);
        start = cut;
      }
      assertEquals((await client.expect("new_message")).message, text);
    },
  });

  Deno.test({
    name: `framing accepts CRLF line ends [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await client.send(`${PING}\r\n`);
      assertEquals(await client.next(), { type: "pong" });
      await client.send(`${PING}\r\n${PING}\n${PING}\r\n`);
      for (let i = 0; i < 3; i++) assertEquals(await client.next(), { type: "pong" });
      // "\r" and "\n" in different writes.
      await client.send(`${PING}\r`);
      await sleep(20);
      await client.send("\n");
      assertEquals(await client.next(), { type: "pong" });
      const username = uniqueName("crlf");
      await client.send(`{"type":"register","username":"${username}","password":"secret123"}\r\n`);
      assertEquals((await client.next()).status, "success");
      await client.send(`{"type":"login","username":"${username}","password":"secret123"}\r\n`);
      assertEquals((await client.next()).username, username, "the \\r is not part of the password or the name");
    },
  });

  Deno.test({
    name: `framing ignores empty lines without a reply [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await client.send("\n\n\r\n\n");
      await client.expectNothing();
      await client.send(`\n${PING}\n\r\n\n${PING}\n\n`);
      assertEquals(await client.next(), { type: "pong" });
      assertEquals(await client.next(), { type: "pong" });
      await client.expectNothing();
    },
  });

  Deno.test({
    name: `framing accepts a line of exactly MAX_LINE_BYTES [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { MAX_LINE_BYTES: "1024" });
      await using client = await server.connect();
      const exact = pingOfLength(1024);
      assertEquals(encoder.encode(exact).length, 1024);
      await client.send(`${exact}\n`);
      assertEquals(await client.next(), { type: "pong" });
      await client.send(`${exact}\r\n`);
      assertEquals(await client.next(), { type: "pong" }, "the CR does not count");
      // Multi-byte text: the limit is in bytes.
      const message = "€".repeat(300);
      await client.registerAndLogin();
      const frame = JSON.stringify({ type: "send_message", message });
      const padded = frame.slice(0, -1) + " ".repeat(1024 - encoder.encode(frame).length) + "}";
      assertEquals(encoder.encode(padded).length, 1024);
      await client.send(`${padded}\n`);
      assertEquals((await client.expect("new_message")).message, message);
    },
  });

  Deno.test({
    name: `framing answers a line over MAX_LINE_BYTES with line_too_long and closes [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { MAX_LINE_BYTES: "1024" });
      await using client = await RawClient.connect(server.port);
      await client.write(`${PING}\n${pingOfLength(1025)}\n${PING}\n`);
      assertEquals(await client.next(), { type: "pong" }, "the frame before the long line is answered");
      const error = await client.next();
      assertError(error, "line_too_long");
      assertEquals(decoder.decode(await client.expectClosed()), "", "nothing after the error");
    },
  });

  Deno.test({
    name: `framing answers line_too_long before any newline arrives, and closes [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { MAX_LINE_BYTES: "1024" });
      await using other = await server.connect();
      // Just past the bound, and a flood far past it: the server stops reading and answers.
      for (const padding of [2000, 1_000_000]) {
        await using client = await RawClient.connect(server.port);
        await client.write(`{"type":"ping","pad":"${"x".repeat(padding)}`);
        assertError(await client.next(), "line_too_long", `${padding} bytes`);
        await client.expectClosed();
      }
      // Other connections are untouched.
      assertEquals(await other.request({ type: "ping" }), { type: "pong" });
    },
  });

  Deno.test({
    name: `framing answers bytes that are not UTF-8 with bad_request and stays open [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const invalid: Uint8Array[] = [
        new Uint8Array([0xff, 0xfe, 0xfd, 0x0a]),
        new Uint8Array([...encoder.encode('{"type":"ping","x":"'), 0xc3, ...encoder.encode('"}\n')]),
        new Uint8Array([...encoder.encode('{"type":"ping","x":"'), 0xed, 0xa0, 0x80, ...encoder.encode('"}\n')]),
        new Uint8Array([...encoder.encode('{"type":"ping","x":"'), 0xc0, 0xaf, ...encoder.encode('"}\n')]),
      ];
      for (const bytes of invalid) {
        await client.send(bytes);
        assertError(await client.next(), "bad_request", JSON.stringify([...bytes]));
      }
      assertEquals(await client.request({ type: "ping" }), { type: "pong" });
    },
  });

  Deno.test({
    name: `framing answers text that is not a JSON object with bad_request and stays open [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await client.registerAndLogin();
      const notObjects = [
        "hello",
        "{",
        '{"type":"ping"',
        "{'type':'ping'}",
        '{"type":"ping"}}',
        "[1,2]",
        '[{"type":"ping"}]',
        "42",
        '"ping"',
        "null",
        "true",
      ];
      for (const text of notObjects) {
        await client.send(`${text}\n`);
        assertError(await client.next(), "bad_request", text);
      }
      assertEquals(await client.request({ type: "ping" }), { type: "pong" });
      // Still logged in: the errors did not drop the session.
      assertEquals((await client.request({ type: "get_history", limit: 1 })).type, "history_response");
    },
  });

  Deno.test({
    name: `framing answers a missing or unknown type with unknown_type [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const unknown = await client.request({ type: "dance" });
      assertEquals(unknown, { type: "error", code: "unknown_type", message: "Unknown message type: dance" });
      for (const type of ["toString", "__proto__", "constructor", "hasOwnProperty", "PING", ""]) {
        const reply = await client.request({ type });
        assertEquals(reply, { type: "error", code: "unknown_type", message: `Unknown message type: ${type}` });
      }
      const numeric = await client.request({ type: 42 });
      assertEquals(numeric, { type: "error", code: "unknown_type", message: "Unknown message type: 42" });
      for (const frame of [{}, { username: "x" }, { type: null }]) {
        const reply = await client.request(frame);
        assertError(reply, "unknown_type", JSON.stringify(frame));
        assert(String(reply.message).startsWith("Unknown message type: "), String(reply.message));
      }
      assertEquals(await client.request({ type: "ping" }), { type: "pong" });
    },
  });

  Deno.test({
    name: `framing: the server sends nothing before the first frame [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await RawClient.connect(server.port);
      await client.expectNothing(500);
      await client.write(`${PING}\n`);
      assertEquals(await client.next(), { type: "pong" });
    },
  });

  Deno.test({
    name: `framing: a client that sends login and does one recv(4096) gets the whole reply [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      const username = uniqueName("recv");
      {
        await using setup = await server.connect();
        assertEquals((await setup.request({ type: "register", username, password: "secret123" })).status, "success");
      }
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      try {
        const buffer = new Uint8Array(4096);
        await writeAll(conn, line({ type: "login", username, password: "secret123" }));
        await sleep(300);
        const n = await conn.read(buffer);
        assert(n !== null, "connection closed");
        const text = decoder.decode(buffer.subarray(0, n));
        assert(text.endsWith("\n"), `one recv got a partial reply: ${JSON.stringify(text)}`);
        assertEquals(text.indexOf("\n"), text.length - 1, "exactly one line");
        const reply = JSON.parse(text);
        assertEquals(reply.type, "login_response");
        assertEquals(reply.status, "success");
        assertEquals(reply.username, username);
        // The same for a broadcast and a history reply of about 600 bytes.
        await writeAll(conn, line({ type: "send_message", message: "x".repeat(500) }));
        await sleep(300);
        const m = await conn.read(buffer);
        assert(m !== null);
        const sent = decoder.decode(buffer.subarray(0, m));
        assertEquals(sent.indexOf("\n"), sent.length - 1, "the new_message is one whole line");
        const sentFrame = JSON.parse(sent);
        assertEquals(sentFrame.type, "new_message");
        // Only this test's message, so that other tests' large messages cannot pass 4096 bytes.
        await writeAll(conn, line({ type: "get_history", after: sentFrame.id - 1, limit: 1 }));
        await sleep(300);
        const h = await conn.read(buffer);
        assert(h !== null);
        const history = decoder.decode(buffer.subarray(0, h));
        assertEquals(history.indexOf("\n"), history.length - 1, "the history reply is one whole line");
        assertEquals(JSON.parse(history).type, "history_response");
      } finally {
        conn.close();
      }
    },
  });
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}
