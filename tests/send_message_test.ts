// Contract tests for `send_message` over real sockets: login and sender checks, message rules,
// exact round-trips, who receives the broadcast, its shape, the rate limit and the one global order.

import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, type TestClient, uniqueName } from "./support/helpers.ts";
import { keysOf, line, lines, marker, RawClient, storedCount } from "./support/wire.ts";

const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/;
const decoder = new TextDecoder();

function assertError(reply: Frame, code: string, context = ""): void {
  assertEquals(reply.type, "error", `${context} ${JSON.stringify(reply)}`);
  assertEquals(reply.code, code, `${context} ${JSON.stringify(reply)}`);
  assert(typeof reply.message === "string" && reply.message.length > 0, context);
}

/** Collects `count` new_message frames whose text starts with `prefix`, ignoring other frames. */
async function collectMessages(client: TestClient, prefix: string, count: number): Promise<Frame[]> {
  const out: Frame[] = [];
  while (out.length < count) {
    out.push(await client.waitFor((f) => f.type === "new_message" && String(f.message).startsWith(prefix), 10_000));
  }
  return out;
}

for (const backend of backends) {
  Deno.test({
    name: `send_message without login is refused with not_authenticated and nothing is stored [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using anonymous = await server.connect();
      await using observer = await server.connect();
      await observer.registerAndLogin();
      const text = marker("anonymous");
      const reply = await anonymous.request({ type: "send_message", sender: "someone", message: text });
      assertEquals(keysOf(reply), ["code", "message", "type"]);
      assertError(reply, "not_authenticated");
      // A registered but not logged-in sender is refused alike.
      const username = uniqueName("reg");
      assertEquals((await anonymous.request({ type: "register", username, password: "secret123" })).status, "success");
      assertError(
        await anonymous.request({ type: "send_message", sender: username, message: text }),
        "not_authenticated",
      );
      await observer.expectNothing();
      assertEquals(await storedCount(server, text), 0);
    },
  });

  Deno.test({
    name: `send_message with another sender is refused with sender_mismatch and nothing is stored [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      await alice.registerAndLogin();
      const bobName = (await bob.registerAndLogin()).username as string;
      const text = marker("spoof");
      for (const sender of [bobName, uniqueName("nobody"), "", 42, ["x"]]) {
        const reply = await alice.request({ type: "send_message", sender, message: text });
        assertError(reply, "sender_mismatch", JSON.stringify(sender));
      }
      await bob.expectNothing();
      assertEquals(await storedCount(server, text), 0);
    },
  });

  Deno.test({
    name: `send_message stores and broadcasts the logged-in user as sender, with or without sender [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      const aliceName = (await alice.registerAndLogin()).username as string;
      await bob.registerAndLogin();
      for (const frame of [{ message: marker("omitted") }, { sender: aliceName, message: marker("given") }]) {
        await alice.send({ type: "send_message", ...frame });
        const own = await alice.expect("new_message");
        assertEquals(own.sender, aliceName);
        assertEquals(own.message, frame.message);
        assertEquals(await bob.expect("new_message"), own);
        const rows = await server.service.db.query<{ username: string }>(
          "SELECT u.username FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.id = $1::int",
          [own.id],
        );
        assertEquals(rows.map((r) => r.username), [aliceName]);
      }
    },
  });

  Deno.test({
    name: `send_message refuses invalid messages with invalid_message and stores nothing [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { MAX_MESSAGE_LENGTH: "10" });
      await using alice = await server.connect();
      await using bob = await server.connect();
      await alice.registerAndLogin();
      await bob.registerAndLogin();
      const tag = crypto.randomUUID().slice(0, 4);
      const cases: [string, unknown][] = [
        ["empty", ""],
        ["spaces", "     "],
        ["whitespace of all kinds", " \t\n\r "],
        ["11 characters", `${tag}-abcdef`],
        ["11 emoji", "😀".repeat(11)],
        ["NUL", `${tag}\0x`],
        ["number", 42],
        ["null", null],
        ["boolean", true],
        ["array", ["hi"]],
        ["object", { text: "hi" }],
      ];
      assertEquals(`${tag}-abcdef`.length, 11);
      for (const [label, message] of cases) {
        const reply = await alice.request({ type: "send_message", message });
        assertEquals(keysOf(reply), ["code", "message", "type"], label);
        assertError(reply, "invalid_message", label);
        // A NUL cannot even be looked up in PostgreSQL text: it was never stored.
        if (typeof message === "string" && !message.includes("\0")) {
          assertEquals(await storedCount(server, message), 0, label);
        }
      }
      assertError(await alice.request({ type: "send_message" }), "invalid_message", "missing");
      await bob.expectNothing();
      // The connection is still usable.
      await alice.send({ type: "send_message", message: `${tag} ok` });
      assertEquals((await bob.expect("new_message")).message, `${tag} ok`);
    },
  });

  Deno.test({
    name: `send_message accepts exactly MAX_MESSAGE_LENGTH characters, counted as code points [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { MAX_MESSAGE_LENGTH: "10" });
      await using alice = await server.connect();
      await alice.registerAndLogin();
      const texts = ["😀".repeat(10), `${crypto.randomUUID().slice(0, 5)}€😀é𝄞a`, " 😀😀😀😀😀😀😀😀 "];
      for (const text of texts) {
        assertEquals([...text].length, 10);
        await alice.send({ type: "send_message", message: text });
        const own = await alice.next();
        assertEquals(own.type, "new_message", JSON.stringify(own));
        assertEquals(own.message, text);
      }
    },
  });

  Deno.test({
    name: `send_message text round-trips exactly through broadcast, storage and history [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" });
      await using alice = await server.connect();
      await using bob = await server.connect();
      await alice.registerAndLogin();
      await bob.registerAndLogin();
      const tag = marker("rt");
      const texts = [
        `${tag} emoji 😀👍🏽👨‍👩‍👧‍👦🇫🇷`,
        `${tag} RTL مرحبا بالعالم שלום עולם`,
        `${tag} quotes "double" 'single' \`back\``,
        `${tag} backslashes \\ \\\\ \\n \\u0000 C:\\path\\file`,
        `${tag} '); DROP TABLE messages;--`,
        `${tag} ' OR '1'='1`,
        `${tag} line one\nline two\r\nline three`,
        `${tag}\ttabs\tand\u0001control\u001f`,
        `${tag} separators \u2028 \u2029 and BOM \uFEFF`,
        `  ${tag} padded with spaces  `,
        `${tag} {"type":"ping"}`,
        `${tag} %s %d $1 $$ ${"${x}"}`,
        `${tag} CJK 漢字 かな 한국어, combining e\u0301, 𝄞`,
      ];
      const sent: Frame[] = [];
      for (const text of texts) {
        await alice.send({ type: "send_message", message: text });
        const own = await alice.expect("new_message");
        assertEquals(own.message, text);
        assertEquals(await bob.expect("new_message"), own);
        assertEquals(await storedCount(server, text), 1, JSON.stringify(text));
        sent.push(own);
      }
      const history = await alice.request({
        type: "get_history",
        after: (sent[0].id as number) - 1,
        before: (sent.at(-1)!.id as number) + 1,
        limit: 500,
      });
      const mine = (history.messages as Frame[]).filter((m) => String(m.message).includes(tag));
      assertEquals(mine, sent.map(({ id, sender, message, timestamp }) => ({ id, sender, message, timestamp })));
    },
  });

  Deno.test({
    name: `send_message broadcast escapes newlines, so each message is one line on the wire [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using raw = await RawClient.connect(server.port);
      await alice.registerAndLogin();
      const username = uniqueName("raw");
      await alice.send({ type: "register", username, password: "secret123" });
      await alice.expect("register_response");
      await raw.write(line({ type: "login", username, password: "secret123" }));
      assertEquals((await raw.next()).status, "success");
      const text = `${marker("nl")}\nsecond line\r\nthird\u2028fourth`;
      await alice.send({ type: "send_message", message: text });
      const bytes = await raw.nextLine();
      const wire = decoder.decode(bytes);
      assertEquals(wire.indexOf("\n"), wire.length - 1, "only the frame's own line end is a raw newline");
      assert(!wire.includes("\r"), "no raw carriage return on the wire");
      assertEquals(JSON.parse(wire).message, text);
    },
  });

  Deno.test({
    name:
      `send_message broadcast reaches every logged-in connection, sender included, and no one else [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      await using carol = await server.connect();
      await using neverLoggedIn = await server.connect();
      await using registeredOnly = await server.connect();
      await using loggedOut = await server.connect();
      await alice.registerAndLogin();
      await bob.registerAndLogin();
      await carol.registerAndLogin();
      assertEquals(
        (await registeredOnly.request({ type: "register", username: uniqueName("ro"), password: "secret123" })).status,
        "success",
      );
      await loggedOut.registerAndLogin();
      assertEquals(await loggedOut.request({ type: "logout" }), { type: "logout_response", status: "success" });
      await alice.send({ type: "send_message", message: marker("everyone") });
      const own = await alice.expect("new_message");
      assertEquals(await bob.expect("new_message"), own);
      assertEquals(await carol.expect("new_message"), own);
      await Promise.all([neverLoggedIn.expectNothing(), registeredOnly.expectNothing(), loggedOut.expectNothing()]);
      await alice.expectNothing(0);
    },
  });

  Deno.test({
    name: `send_message new_message has exactly {type,id,sender,message,timestamp}, as in history [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      const aliceName = (await alice.registerAndLogin()).username as string;
      await bob.registerAndLogin();
      const text = marker("shape");
      await alice.send({ type: "send_message", sender: aliceName, message: text });
      const own = await alice.expect("new_message");
      assertEquals(keysOf(own), ["id", "message", "sender", "timestamp", "type"]);
      assert(typeof own.id === "number" && Number.isInteger(own.id) && own.id > 0, `id ${own.id}`);
      assertEquals(own.sender, aliceName);
      assertEquals(own.message, text);
      assertMatch(String(own.timestamp), TIMESTAMP);
      // UTC: read as UTC, it is close to now (a local-time zone would be hours off).
      const skewMs = Math.abs(Date.parse(`${own.timestamp}Z`) - Date.now());
      assert(skewMs < 10 * 60_000, `timestamp ${own.timestamp} is not UTC now`);
      assertEquals(await bob.expect("new_message"), own);
      const history = await bob.request({ type: "get_history", after: (own.id as number) - 1, limit: 1 });
      assertEquals(history, {
        type: "history_response",
        messages: [{ id: own.id, sender: aliceName, message: text, timestamp: own.timestamp }],
      });
    },
  });

  Deno.test({
    name:
      `send_message is rate limited per user with retry_after_ms and the refused message is not stored [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "1", RATE_LIMIT_BURST: "2" });
      await using alice = await server.connect();
      await using aliceAgain = await server.connect();
      await using bob = await server.connect();
      const aliceName = (await alice.registerAndLogin()).username as string;
      assertEquals(
        (await aliceAgain.request({ type: "login", username: aliceName, password: "secret123" })).status,
        "success",
      );
      await bob.registerAndLogin();
      const tag = marker("rate");
      const texts = [`${tag} 1`, `${tag} 2`, `${tag} 3`];
      // One write, so the bucket has no time to refill between them.
      await alice.send(lines(texts.map((message) => ({ type: "send_message", message }))));
      const replies = [await alice.next(), await alice.next(), await alice.next()];
      const delivered = replies.filter((r) => r.type === "new_message").map((r) => r.message);
      assertEquals(delivered, texts.slice(0, 2), JSON.stringify(replies));
      const refused = replies.find((r) => r.type === "error");
      assert(refused, JSON.stringify(replies));
      assertEquals(keysOf(refused), ["code", "message", "retry_after_ms", "type"]);
      assertError(refused, "rate_limited");
      assert(
        typeof refused.retry_after_ms === "number" && Number.isInteger(refused.retry_after_ms) &&
          refused.retry_after_ms > 0,
        `retry_after_ms ${refused.retry_after_ms}`,
      );
      assertEquals(await storedCount(server, texts[2]), 0);
      // The limit is the user's, not the connection's.
      assertEquals([(await aliceAgain.next()).message, (await aliceAgain.next()).message], texts.slice(0, 2));
      assertError(await aliceAgain.request({ type: "send_message", message: `${tag} 4` }), "rate_limited");
      assertEquals(await storedCount(server, `${tag} 4`), 0);
      // Another user has a bucket of their own.
      await bob.send({ type: "send_message", message: `${tag} bob` });
      assertEquals(
        (await bob.waitFor((f) => f.type === "new_message" && f.message === `${tag} bob`)).message,
        `${tag} bob`,
      );
      const bobSaw = (await bob.request({ type: "get_history", limit: 5 })).messages as Frame[];
      assert(!bobSaw.some((m) => m.message === texts[2]), "the refused message is not in history");
    },
  });

  Deno.test({
    name: `send_message with RATE_LIMIT_PER_SEC=0 is never rate limited [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0", RATE_LIMIT_BURST: "1" });
      await using alice = await server.connect();
      await alice.registerAndLogin();
      const tag = marker("free");
      const texts = Array.from({ length: 40 }, (_, i) => `${tag} ${i}`);
      await alice.send(lines(texts.map((message) => ({ type: "send_message", message }))));
      const replies: Frame[] = [];
      for (let i = 0; i < texts.length; i++) replies.push(await alice.next());
      assertEquals(replies.map((r) => r.type === "new_message" ? r.message : JSON.stringify(r)), texts);
    },
  });

  Deno.test({
    name:
      `send_message from several pipelining senders reaches everyone in one id order, history's order [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" });
      const senders = await Promise.all([server.connect(), server.connect(), server.connect()]);
      await using observer = await server.connect();
      try {
        await observer.registerAndLogin();
        for (const sender of senders) await sender.registerAndLogin();
        const tag = marker("order");
        const perSender = 30;
        await Promise.all(senders.map(async (sender, s) => {
          const frames = Array.from({ length: perSender }, (_, i) => ({
            type: "send_message",
            message: `${tag} s${s} #${String(i).padStart(2, "0")}`,
          }));
          // Two bursts per sender, so the messages of several senders interleave.
          await sender.send(lines(frames.slice(0, perSender / 2)));
          await sender.send(lines(frames.slice(perSender / 2)));
        }));
        const total = perSender * senders.length;
        const views = await Promise.all([observer, ...senders].map((c) => collectMessages(c, tag, total)));
        const ids = views[0].map((m) => m.id as number);
        for (let i = 1; i < ids.length; i++) {
          assert(ids[i] > ids[i - 1], `ids not increasing: ${ids[i - 1]}, ${ids[i]}`);
        }
        for (const view of views) assertEquals(view, views[0]);
        // Each sender's messages keep the order it sent them in.
        for (let s = 0; s < senders.length; s++) {
          const own = views[0].map((m) => String(m.message)).filter((m) => m.startsWith(`${tag} s${s} `));
          assertEquals(own, [...own].sort());
          assertEquals(own.length, perSender);
        }
        const history = await observer.request({
          type: "get_history",
          after: ids[0] - 1,
          before: ids.at(-1)! + 1,
          limit: 500,
        });
        const fromHistory = (history.messages as Frame[]).filter((m) => String(m.message).startsWith(tag));
        assertEquals(
          fromHistory,
          views[0].map(({ id, sender, message, timestamp }) => ({ id, sender, message, timestamp })),
        );
      } finally {
        await Promise.all(senders.map((s) => s.close()));
      }
    },
  });
}
