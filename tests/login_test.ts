// Contract tests for `login` over real sockets: reply shapes, the stored spelling of the name,
// identical failures, throttling, foreign bcrypt hashes, re-login and one user on many connections.

import { assert, assertEquals } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, type TestServer, uniqueName } from "./support/helpers.ts";
import { keysOf, line, lines, RawClient } from "./support/wire.ts";

const decoder = new TextDecoder();

/**
 * Made with Python's bcrypt (pyca/bcrypt 3.2.2, Debian's python3-bcrypt):
 * `bcrypt.hashpw(b"python-made-pw", bcrypt.gensalt(12))`.
 */
const PYTHON_HASH = "$2b$12$S9s/ngNXBdd3ftxF7.b4pO8mKiIaiw83sLbQRxPZIUSP66Rijki.C";
const PYTHON_PASSWORD = "python-made-pw";
/** A published test vector of pyca/bcrypt's test suite (tests/test_bcrypt.py), a `$2b$04$` hash. */
const PYCA_VECTOR_HASH = "$2b$04$cVWp4XaNU8a4v1uMRum2SO026BWLIoQMD/TXg5uZV.0P.uO8m3YEm";
const PYCA_VECTOR_PASSWORD = "Kk4DQuMMfZL9o";
/** The OpenBSD / pyca `$2a$` vector for a password longer than 72 bytes (only the first 72 count there). */
const OPENBSD_2A_HASH = "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui";
const OPENBSD_2A_PASSWORD_72 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

const INVALID_CREDENTIALS = {
  type: "login_response",
  status: "error",
  code: "invalid_credentials",
  message: "Invalid username or password",
};

async function userId(server: TestServer, username: string): Promise<number> {
  const rows = await server.service.db.query<{ id: number }>("SELECT id FROM users WHERE username = $1::text", [
    username,
  ]);
  assertEquals(rows.length, 1);
  return Number(rows[0].id);
}

async function insertUser(server: TestServer, username: string, hash: string): Promise<void> {
  await server.service.db.query("INSERT INTO users (username, password_hash) VALUES ($1::text, $2::text)", [
    username,
    hash,
  ]);
}

function assertThrottled(reply: Frame, context: string): void {
  assertEquals(keysOf(reply), ["code", "message", "retry_after_ms", "status", "type"], context);
  assertEquals(reply.type, "login_response", context);
  assertEquals(reply.status, "error", context);
  assertEquals(reply.code, "too_many_attempts", `${context}: ${JSON.stringify(reply)}`);
  assert(
    typeof reply.retry_after_ms === "number" && Number.isInteger(reply.retry_after_ms) && reply.retry_after_ms > 0,
    `${context}: retry_after_ms ${reply.retry_after_ms}`,
  );
}

for (const backend of backends) {
  Deno.test({
    name:
      `login with a username that cannot exist (NUL, lone surrogate, too long) fails as a wrong password [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      for (const username of ["nul\u0000name", "\ud800lone", "x".repeat(500)]) {
        const reply = await client.request({ type: "login", username, password: "secret123" });
        assertEquals(
          reply.code,
          "invalid_credentials",
          `${JSON.stringify(username.slice(0, 20))}: ${JSON.stringify(reply)}`,
        );
      }
      assertEquals(await client.request({ type: "ping" }), { type: "pong" });
    },
  });

  Deno.test({
    name: `login success reply has the exact shape [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const username = uniqueName("login");
      assertEquals((await client.request({ type: "register", username, password: "secret123" })).status, "success");
      const reply = await client.request({ type: "login", username, password: "secret123" });
      assertEquals(reply, {
        type: "login_response",
        status: "success",
        user_id: await userId(server, username),
        username,
      });
    },
  });

  Deno.test({
    name: `login replies with the username as stored when typed in another case [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const username = uniqueName("MiXeD");
      assertEquals((await client.request({ type: "register", username, password: "Secret123" })).status, "success");
      for (const typed of [username.toLowerCase(), username.toUpperCase()]) {
        const reply = await client.request({ type: "login", username: typed, password: "Secret123" });
        assertEquals(reply.status, "success", JSON.stringify(reply));
        assertEquals(reply.username, username);
        assertEquals(reply.user_id, await userId(server, username));
      }
      // The password, unlike the name, is case-sensitive.
      const wrongCase = await client.request({ type: "login", username, password: "secret123" });
      assertEquals(wrongCase, INVALID_CREDENTIALS);
    },
  });

  Deno.test({
    name: `login failures for a wrong password and an unknown user are byte-identical [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      const username = uniqueName("same");
      {
        await using setup = await server.connect();
        assertEquals((await setup.request({ type: "register", username, password: "secret123" })).status, "success");
      }
      await using wrongPassword = await RawClient.connect(server.port);
      await using unknownUser = await RawClient.connect(server.port);
      await wrongPassword.write(line({ type: "login", username, password: "wrong-pass" }));
      await unknownUser.write(line({ type: "login", username: uniqueName("nobody"), password: "wrong-pass" }));
      const a = await wrongPassword.nextLine();
      const b = await unknownUser.nextLine();
      assertEquals(decoder.decode(a), decoder.decode(b));
      assertEquals(a, b);
      assertEquals(JSON.parse(decoder.decode(a)), INVALID_CREDENTIALS);
      // Unknown user with the password of an existing user: still the same bytes.
      await unknownUser.write(line({ type: "login", username: uniqueName("nobody"), password: "secret123" }));
      assertEquals(await unknownUser.nextLine(), a);
    },
  });

  Deno.test({
    name: `login with malformed fields fails as login_response and the connection stays open [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const frames: Frame[] = [
        { type: "login" },
        { type: "login", username: 42, password: "secret123" },
        { type: "login", username: uniqueName(), password: null },
        { type: "login", username: ["a"], password: { p: 1 } },
        { type: "login", username: "x", password: "secret123" },
      ];
      for (const frame of frames) {
        const reply = await client.request(frame);
        assertEquals(reply.type, "login_response", JSON.stringify(frame));
        assertEquals(reply.status, "error", JSON.stringify(frame));
        assert(typeof reply.code === "string" && typeof reply.message === "string", JSON.stringify(reply));
      }
      assertEquals(await client.request({ type: "ping" }), { type: "pong" });
    },
  });

  Deno.test({
    name: `login is throttled after 5 failures for one username, whatever the case or connection [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using first = await server.connect();
      await using second = await server.connect();
      const username = uniqueName("Throttle");
      assertEquals((await first.request({ type: "register", username, password: "secret123" })).status, "success");
      for (let i = 0; i < 5; i++) {
        const client = i % 2 === 0 ? first : second;
        const typed = i % 2 === 0 ? username : username.toLowerCase();
        assertEquals(
          await client.request({ type: "login", username: typed, password: `wrong-${i}` }),
          INVALID_CREDENTIALS,
        );
      }
      // Now refused even with the right password, on either connection and in any case.
      assertThrottled(await first.request({ type: "login", username, password: "secret123" }), "right password");
      assertThrottled(
        await second.request({ type: "login", username: username.toUpperCase(), password: "secret123" }),
        "other case",
      );
      // The limit is per username: another user from the same address still logs in.
      const other = uniqueName("other");
      assertEquals(
        (await second.request({ type: "register", username: other, password: "secret123" })).status,
        "success",
      );
      const login = await second.request({ type: "login", username: other, password: "secret123" });
      assertEquals(login.status, "success", JSON.stringify(login));
    },
  });

  Deno.test({
    name: `login is throttled after 20 failures from one address [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const username = uniqueName("addr");
      assertEquals((await client.request({ type: "register", username, password: "secret123" })).status, "success");
      // 20 failures, each for a different name, so no per-username limit is reached.
      const failures = Array.from({ length: 20 }, () => ({
        type: "login",
        username: uniqueName("miss"),
        password: "wrong-pass",
      }));
      await client.send(lines(failures));
      for (let i = 0; i < failures.length; i++) assertEquals(await client.next(), INVALID_CREDENTIALS, `failure ${i}`);
      assertThrottled(await client.request({ type: "login", username, password: "secret123" }), "after 20 failures");
    },
  });

  Deno.test({
    name: `login verifies a $2b$12$ hash made by Python's bcrypt and published $2b$/$2a$ vectors [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const vectors: [string, string, string][] = [
        [uniqueName("py"), PYTHON_HASH, PYTHON_PASSWORD],
        [uniqueName("pyca"), PYCA_VECTOR_HASH, PYCA_VECTOR_PASSWORD],
        [uniqueName("obsd"), OPENBSD_2A_HASH, OPENBSD_2A_PASSWORD_72],
      ];
      for (const [username, hash, password] of vectors) {
        await insertUser(server, username, hash);
        const reply = await client.request({ type: "login", username, password }, 10_000);
        assertEquals(
          reply,
          { type: "login_response", status: "success", user_id: await userId(server, username), username },
          hash,
        );
        const wrong = await client.request({ type: "login", username, password: password + "x" }, 10_000);
        assertEquals(wrong, INVALID_CREDENTIALS, `${hash}: a wrong password`);
      }
    },
  });

  Deno.test({
    name: `login again on the same connection switches to the new user [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using switcher = await server.connect();
      await using observer = await server.connect();
      const firstUser = uniqueName("first");
      const secondUser = uniqueName("second");
      await observer.registerAndLogin();
      await switcher.registerAndLogin(firstUser);
      assertEquals(
        (await switcher.request({ type: "register", username: secondUser, password: "secret123" })).status,
        "success",
      );
      const login = await switcher.request({ type: "login", username: secondUser, password: "secret123" });
      assertEquals(login.username, secondUser);
      await switcher.send({ type: "send_message", message: "who am I" });
      const own = await switcher.expect("new_message");
      const seen = await observer.expect("new_message");
      assertEquals(own.sender, secondUser);
      assertEquals(seen, own);
      // The old name no longer matches the connection.
      const mismatch = await switcher.request({ type: "send_message", sender: firstUser, message: "as before" });
      assertEquals(mismatch.code, "sender_mismatch");
      const users = await observer.request({ type: "list_users" });
      assert(Array.isArray(users.users));
      assert(users.users.includes(secondUser), JSON.stringify(users));
      assert(!users.users.includes(firstUser), `${firstUser} is still listed: ${JSON.stringify(users)}`);
    },
  });

  Deno.test({
    name: `login of one user on many connections: every connection gets the broadcasts [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using a1 = await server.connect();
      await using a2 = await server.connect();
      await using a3 = await server.connect();
      await using other = await server.connect();
      const username = uniqueName("multi");
      await a1.registerAndLogin(username);
      for (const client of [a2, a3]) {
        assertEquals((await client.request({ type: "login", username, password: "secret123" })).status, "success");
      }
      await other.registerAndLogin();
      await other.send({ type: "send_message", message: "to every copy" });
      const fromOther = await other.expect("new_message");
      for (const client of [a1, a2, a3]) assertEquals(await client.expect("new_message"), fromOther);
      await a2.send({ type: "send_message", message: "from the second connection" });
      const fromA2 = await a2.expect("new_message");
      assertEquals(fromA2.sender, username);
      for (const client of [a1, a3, other]) assertEquals(await client.expect("new_message"), fromA2);
    },
  });
}
