// Contract tests for `register` over real sockets: reply shapes, username and password rules,
// uniqueness regardless of case, no implicit login, bcrypt storage and concurrent registration.

import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, type TestServer, uniqueName } from "./support/helpers.ts";
import { keysOf, storedCount } from "./support/wire.ts";
import { randomString } from "./support/util.ts";

const USERNAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";

const randomName = (length: number) => randomString(USERNAME_CHARS, length);

async function usersNamed(server: TestServer, username: string): Promise<Record<string, unknown>[]> {
  return [...await server.service.db.query("SELECT * FROM users WHERE lower(username) = lower($1::text)", [username])];
}

/** Removes a user this test made with a short (collision-prone) name, so that a later run can reuse it. */
async function dropUser(server: TestServer, username: string): Promise<void> {
  await server.service.db.query(
    "DELETE FROM users u WHERE u.username = $1::text AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.sender_id = u.id)",
    [username],
  );
}

function assertRegisterError(reply: Frame, code: string, context: string): void {
  assertEquals(keysOf(reply), ["code", "message", "status", "type"], `${context}: ${JSON.stringify(reply)}`);
  assertEquals(reply.type, "register_response", context);
  assertEquals(reply.status, "error", context);
  assertEquals(reply.code, code, `${context}: ${JSON.stringify(reply)}`);
  assert(typeof reply.message === "string" && reply.message.length > 0, context);
}

for (const backend of backends) {
  Deno.test({
    name: `register success reply has the exact shape [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const reply = await client.request({ type: "register", username: uniqueName("reg"), password: "secret123" });
      assertEquals(reply, { type: "register_response", status: "success", message: "User registered successfully" });
    },
  });

  Deno.test({
    name: `register accepts usernames of 3 and 50 characters of [A-Za-z0-9_.-] [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const short = randomName(3);
      const long = uniqueName("Ab.-_").padEnd(50, "x.-_Z9");
      assertEquals(long.length, 50);
      try {
        for (const username of [short, long, `${uniqueName("a")}.B-c_9`]) {
          const registered = await client.request({ type: "register", username, password: "secret123" });
          assertEquals(registered.status, "success", `${username}: ${JSON.stringify(registered)}`);
          const login = await client.request({ type: "login", username, password: "secret123" });
          assertEquals(login.status, "success", `${username}: ${JSON.stringify(login)}`);
          assertEquals(login.username, username);
        }
      } finally {
        await dropUser(server, short);
      }
    },
  });

  Deno.test({
    name: `register refuses invalid usernames with invalid_username [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const tooLong = uniqueName("long").padEnd(51, "x");
      assertEquals(tooLong.length, 51);
      const cases: [string, unknown][] = [
        ["2 characters", "ab"],
        ["51 characters", tooLong],
        ["empty", ""],
        ["space", `${uniqueName("sp")} x`],
        ["exclamation mark", `${uniqueName("ex")}!`],
        ["at sign", `${uniqueName("at")}@x`],
        ["non-ASCII letters", `${uniqueName("na")}é`],
        ["trailing newline", `${uniqueName("nl")}\n`],
        ["NUL", `${uniqueName("nul")}\0`],
        ["number", 12345],
        ["null", null],
        ["array", ["abc"]],
        ["object", { name: "abc" }],
        ["boolean", true],
      ];
      for (const [label, username] of cases) {
        const reply = await client.request({ type: "register", username, password: "secret123" });
        assertRegisterError(reply, "invalid_username", label);
      }
      const missing = await client.request({ type: "register", password: "secret123" });
      assertRegisterError(missing, "invalid_username", "missing");
      assertEquals(await usersNamed(server, tooLong), [], "a refused name is not stored");
    },
  });

  Deno.test({
    name: `register counts password length in UTF-8 bytes, 6 to 72 [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const accepted: [string, string][] = [
        ["6 ASCII bytes", "abcdef"],
        ["72 ASCII bytes", "p".repeat(71) + "!"],
        ["24 euro signs = 72 bytes", "€".repeat(24)],
        ["2 euro signs = 6 bytes", "€€"],
        ["3 two-byte letters = 6 bytes", "ééé"],
      ];
      for (const [label, password] of accepted) {
        const username = uniqueName("pw");
        const reply = await client.request({ type: "register", username, password });
        assertEquals(reply.status, "success", `${label}: ${JSON.stringify(reply)}`);
        // The whole password was kept: it logs in, and a shorter prefix does not.
        const login = await client.request({ type: "login", username, password });
        assertEquals(login.status, "success", `${label}: ${JSON.stringify(login)}`);
        const prefix = await client.request({ type: "login", username, password: [...password].slice(0, -1).join("") });
        assertEquals(prefix.status, "error", `${label}: a prefix must not log in`);
      }
    },
  });

  Deno.test({
    name: `register refuses invalid passwords with invalid_password [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const cases: [string, unknown][] = [
        ["5 bytes", "abcde"],
        ["73 bytes", "p".repeat(73)],
        ["25 euro signs = 75 bytes, 25 characters", "€".repeat(25)],
        ["72 bytes then one more byte", "€".repeat(24) + "a"],
        ["NUL inside", "abc\0defgh"],
        ["only NUL characters", "\0\0\0\0\0\0"],
        ["empty", ""],
        ["number", 12345678],
        ["null", null],
        ["array", ["secret123"]],
        ["object", { password: "secret123" }],
        ["boolean", true],
      ];
      for (const [label, password] of cases) {
        const username = uniqueName("badpw");
        const reply = await client.request({ type: "register", username, password });
        assertRegisterError(reply, "invalid_password", label);
        assertEquals(await usersNamed(server, username), [], `${label}: a refused user is not stored`);
      }
      const missing = await client.request({ type: "register", username: uniqueName("nopw") });
      assertRegisterError(missing, "invalid_password", "missing");
    },
  });

  Deno.test({
    name: `register refuses a taken username in any case with username_taken [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const username = uniqueName("Taken");
      const first = await client.request({ type: "register", username, password: "secret123" });
      assertEquals(first.status, "success");
      for (const again of [username, username.toLowerCase(), username.toUpperCase()]) {
        const reply = await client.request({ type: "register", username: again, password: "other-pass" });
        assertRegisterError(reply, "username_taken", again);
      }
      const rows = await usersNamed(server, username);
      assertEquals(rows.length, 1);
      assertEquals(rows[0].username, username, "the first spelling is kept");
      // The first password still works: the refused attempts changed nothing.
      const login = await client.request({ type: "login", username, password: "secret123" });
      assertEquals(login.status, "success");
    },
  });

  Deno.test({
    name: `register does not log the connection in [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const username = uniqueName("nolog");
      assertEquals((await client.request({ type: "register", username, password: "secret123" })).status, "success");
      const text = `after register ${uniqueName()}`;
      const send = await client.request({ type: "send_message", sender: username, message: text });
      assertEquals(send.type, "error");
      assertEquals(send.code, "not_authenticated");
      assertEquals((await client.request({ type: "get_history" })).code, "not_authenticated");
      assertEquals((await client.request({ type: "list_users" })).code, "not_authenticated");
      assertEquals(await storedCount(server, text), 0);
    },
  });

  Deno.test({
    name: `register stores a bcrypt hash and never the plaintext [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const username = uniqueName("hash");
      const password = `plain-${crypto.randomUUID().slice(0, 12)}`;
      assertEquals((await client.request({ type: "register", username, password })).status, "success");
      const rows = await usersNamed(server, username);
      assertEquals(rows.length, 1);
      const hash = String(rows[0].password_hash);
      assertMatch(hash, /^\$2[ab]\$04\$[./A-Za-z0-9]{53}$/);
      for (const [column, value] of Object.entries(rows[0])) {
        assert(!String(value).includes(password), `column ${column} holds the plaintext password`);
      }
    },
  });

  Deno.test({
    name: `register of one name on many connections at once: exactly one succeeds [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      const username = uniqueName("Race");
      const spellings = [username, username.toLowerCase(), username.toUpperCase()];
      const clients = await Promise.all(Array.from({ length: 12 }, () => server.connect()));
      try {
        const replies = await Promise.all(clients.map((client, i) =>
          client.request({
            type: "register",
            username: spellings[i % spellings.length],
            password: `secret-${i}`,
          })
        ));
        const successes = replies.filter((r) => r.status === "success");
        assertEquals(successes.length, 1, JSON.stringify(replies));
        for (const reply of replies) {
          if (reply.status !== "success") assertRegisterError(reply, "username_taken", JSON.stringify(reply));
        }
        assertEquals((await usersNamed(server, username)).length, 1);
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
    },
  });
}
