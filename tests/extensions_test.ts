// Contract tests for the extensions over real sockets: ping, logout, list_users, request_id, and
// the two shapes of error (register/login responses vs. the error frame).

import { assert, assertEquals } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, type TestClient, uniqueName } from "./support/helpers.ts";
import { keysOf, lines, marker, storedCount } from "./support/wire.ts";
import { waitUntil } from "./support/util.ts";

async function usersOnline(client: TestClient): Promise<string[]> {
  const reply = await client.request({ type: "list_users" });
  assertEquals(keysOf(reply), ["type", "users"], JSON.stringify(reply));
  assertEquals(reply.type, "users_response");
  assert(Array.isArray(reply.users));
  return reply.users as string[];
}

for (const backend of backends) {
  Deno.test({
    name: `ping replies pong, with or without login [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      assertEquals(await client.request({ type: "ping" }), { type: "pong" });
      await client.registerAndLogin();
      assertEquals(await client.request({ type: "ping" }), { type: "pong" });
    },
  });

  Deno.test({
    name: `logout replies logout_response and the connection stops receiving broadcasts [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      const aliceName = (await alice.registerAndLogin()).username as string;
      await bob.registerAndLogin();
      assertEquals(await alice.request({ type: "logout" }), { type: "logout_response", status: "success" });
      await bob.send({ type: "send_message", message: marker("after-logout") });
      await bob.expect("new_message");
      await alice.expectNothing();
      // Logged out means not authenticated.
      const text = marker("logged-out");
      const refused = await alice.request({ type: "send_message", message: text });
      assertEquals(refused.type, "error");
      assertEquals(refused.code, "not_authenticated");
      assertEquals(await storedCount(server, text), 0);
      assertEquals((await alice.request({ type: "list_users" })).code, "not_authenticated");
      // Logging in again restores the broadcasts.
      assertEquals(
        (await alice.request({ type: "login", username: aliceName, password: "secret123" })).status,
        "success",
      );
      await bob.send({ type: "send_message", message: "welcome back" });
      assertEquals((await alice.expect("new_message")).message, "welcome back");
    },
  });

  Deno.test({
    name: `list_users requires login [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const reply = await client.request({ type: "list_users" });
      assertEquals(keysOf(reply), ["code", "message", "type"]);
      assertEquals(reply.type, "error");
      assertEquals(reply.code, "not_authenticated");
    },
  });

  Deno.test({
    name: `list_users lists the users online now, sorted, each once [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      const tag = crypto.randomUUID().slice(0, 6);
      const [aName, bName, cName] = [`c_${tag}`, `a_${tag}`, `b_${tag}`];
      await using a1 = await server.connect();
      await using a2 = await server.connect();
      await using b = await server.connect();
      await using c = await server.connect();
      await using anonymous = await server.connect();
      await a1.registerAndLogin(aName);
      assertEquals((await a2.request({ type: "login", username: aName, password: "secret123" })).status, "success");
      await b.registerAndLogin(bName);
      assertEquals((await c.request({ type: "register", username: cName, password: "secret123" })).status, "success");
      assertEquals(await anonymous.request({ type: "ping" }), { type: "pong" });
      // c registered but did not log in: not online.
      assertEquals(await usersOnline(a1), [bName, aName]);
      assertEquals((await c.request({ type: "login", username: cName, password: "secret123" })).status, "success");
      assertEquals(await usersOnline(c), [bName, cName, aName]);
      // b disconnects: gone once the server has noticed.
      await b.close();
      await waitUntil(async () => !(await usersOnline(a1)).includes(bName), 5000, "b gone from list_users");
      assertEquals(await usersOnline(a1), [cName, aName]);
      // a logs out on one of two connections: still online; on both: gone.
      await a1.request({ type: "logout" });
      assertEquals(await usersOnline(c), [cName, aName]);
      await a2.request({ type: "logout" });
      assertEquals(await usersOnline(c), [cName]);
    },
  });

  Deno.test({
    name: `request_id, string or number, is echoed on direct replies and errors [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "1", RATE_LIMIT_BURST: "1" });
      await using client = await server.connect();
      const username = uniqueName("rid");
      const ids: (string | number)[] = ["req-1", 42, 0, -7, 1.5, "", "ünï 😀"];
      for (const request_id of ids) {
        const context = JSON.stringify(request_id);
        const cases: [Frame, Frame][] = [
          [{ type: "ping" }, { type: "pong" }],
          [{ type: "list_users" }, { type: "error", code: "not_authenticated" }],
          [{ type: "get_history" }, { type: "error", code: "not_authenticated" }],
          [{ type: "send_message", message: "hi" }, { type: "error", code: "not_authenticated" }],
          [{ type: "dance" }, { type: "error", code: "unknown_type" }],
          [{ type: "register", username: "x", password: "secret123" }, {
            type: "register_response",
            code: "invalid_username",
          }],
          [{ type: "login", username: uniqueName("nobody"), password: "wrong-pass" }, {
            type: "login_response",
            code: "invalid_credentials",
          }],
        ];
        for (const [frame, expected] of cases) {
          const reply = await client.request({ ...frame, request_id });
          for (const [key, value] of Object.entries(expected)) {
            assertEquals(reply[key], value, `${context} ${frame.type}`);
          }
          assertEquals(reply.request_id, request_id, `${context} ${JSON.stringify(reply)}`);
        }
      }
      // Successes of each request type.
      const register = await client.request({ type: "register", username, password: "secret123", request_id: "r" });
      assertEquals(register, {
        type: "register_response",
        status: "success",
        message: "User registered successfully",
        request_id: "r",
      });
      const login = await client.request({ type: "login", username, password: "secret123", request_id: 7 });
      assertEquals(login.status, "success");
      assertEquals(login.request_id, 7);
      const cases: [Frame, string][] = [
        [{ type: "get_history", limit: 1 }, "history_response"],
        [{ type: "get_history", limit: 0 }, "error"],
        [{ type: "get_history", before: -1 }, "error"],
        [{ type: "list_users" }, "users_response"],
        [{ type: "send_message", message: "" }, "error"],
        [{ type: "send_message", sender: "someone-else", message: "x" }, "error"],
      ];
      for (const [frame, type] of cases) {
        const reply = await client.request({ ...frame, request_id: `id-${frame.type}` });
        assertEquals(reply.type, type, JSON.stringify(reply));
        assertEquals(reply.request_id, `id-${frame.type}`, JSON.stringify(reply));
      }
      // A rate-limited send is an error for that request, with its id.
      await client.send(lines([
        { type: "send_message", message: marker("first"), request_id: "s1" },
        { type: "send_message", message: marker("second"), request_id: "s2" },
      ]));
      const replies = [await client.next(), await client.next()];
      assertEquals(replies.map((r) => [r.type, r.request_id]), [["new_message", "s1"], ["error", "s2"]]);
      assertEquals(replies[1].code, "rate_limited");
      assertEquals(await client.request({ type: "logout", request_id: "bye" }), {
        type: "logout_response",
        status: "success",
        request_id: "bye",
      });
    },
  });

  Deno.test({
    name: `request_id appears only on the sender's own copy of its new_message [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" });
      await using sender = await server.connect();
      await using sameUser = await server.connect();
      await using other = await server.connect();
      const username = (await sender.registerAndLogin()).username as string;
      assertEquals((await sameUser.request({ type: "login", username, password: "secret123" })).status, "success");
      await other.registerAndLogin();
      const tag = marker("rid");
      await sender.send(lines([
        { type: "send_message", message: `${tag} 1`, request_id: "first" },
        { type: "send_message", message: `${tag} 2` },
        { type: "send_message", message: `${tag} 3`, request_id: 3 },
      ]));
      const own = [await sender.next(), await sender.next(), await sender.next()];
      assertEquals(own.map((m) => [m.type, m.message, m.request_id]), [
        ["new_message", `${tag} 1`, "first"],
        ["new_message", `${tag} 2`, undefined],
        ["new_message", `${tag} 3`, 3],
      ]);
      assert(!Object.hasOwn(own[1], "request_id"), "no request_id key when none was given");
      for (const receiver of [sameUser, other]) {
        const copies = [await receiver.next(), await receiver.next(), await receiver.next()];
        for (let i = 0; i < 3; i++) {
          assertEquals(keysOf(copies[i]), ["id", "message", "sender", "timestamp", "type"], JSON.stringify(copies[i]));
          const { request_id: _, ...expected } = own[i];
          assertEquals(copies[i], expected);
        }
      }
    },
  });

  Deno.test({
    name: `request_id that is not a string or a number is refused with bad_request [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await using observer = await server.connect();
      await observer.registerAndLogin();
      const username = uniqueName("badrid");
      for (const request_id of [{ id: 1 }, [1], true, false]) {
        const context = JSON.stringify(request_id);
        const ping = await client.request({ type: "ping", request_id });
        assertEquals(keysOf(ping), ["code", "message", "type"], context);
        assertEquals([ping.type, ping.code], ["error", "bad_request"], context);
        const register = await client.request({ type: "register", username, password: "secret123", request_id });
        assertEquals([register.type, register.status, register.code], ["register_response", "error", "bad_request"]);
      }
      // The refused register created nothing; a valid one now succeeds.
      assertEquals((await client.request({ type: "register", username, password: "secret123" })).status, "success");
      const login = await client.request({ type: "login", username, password: "secret123", request_id: { x: 1 } });
      assertEquals([login.type, login.status, login.code], ["login_response", "error", "bad_request"]);
      assertEquals(
        (await client.request({ type: "list_users" })).code,
        "not_authenticated",
        "the refused login did not log in",
      );
      assertEquals((await client.request({ type: "login", username, password: "secret123" })).status, "success");
      const text = marker("badrid");
      for (const request_id of [{ id: 1 }, [1], true]) {
        const reply = await client.request({ type: "send_message", message: text, request_id });
        assertEquals([reply.type, reply.code], ["error", "bad_request"], JSON.stringify(request_id));
        const history = await client.request({ type: "get_history", request_id });
        assertEquals([history.type, history.code], ["error", "bad_request"]);
      }
      await observer.expectNothing();
      assertEquals(await storedCount(server, text), 0);
    },
  });

  Deno.test({
    name: `errors: register and login use their response type, all others the error frame [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      const authErrors: Frame[] = [
        { type: "register", username: "no", password: "secret123" },
        { type: "register", username: uniqueName(), password: "short" },
        { type: "login", username: uniqueName(), password: "secret123" },
      ];
      for (const frame of authErrors) {
        const reply = await client.request(frame);
        assertEquals(keysOf(reply), ["code", "message", "status", "type"], JSON.stringify(reply));
        assertEquals([reply.type, reply.status], [`${frame.type}_response`, "error"]);
        assert(typeof reply.code === "string" && typeof reply.message === "string");
      }
      const others: Frame[] = [
        { type: "send_message", message: "x" },
        { type: "get_history" },
        { type: "list_users" },
        { type: "nope" },
      ];
      for (const frame of others) {
        const reply = await client.request(frame);
        assertEquals(keysOf(reply), ["code", "message", "type"], JSON.stringify(reply));
        assertEquals(reply.type, "error");
        assert(typeof reply.code === "string" && typeof reply.message === "string" && reply.message.length > 0);
      }
    },
  });
}
