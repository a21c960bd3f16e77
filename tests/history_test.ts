// Contract tests for `get_history` over real sockets: login, limit (default, clamp, invalid),
// `before` / `after` paging and their combination, invalid ids, and oldest-first order.
//
// Many tests (and, on PostgreSQL, other test runs) share the database, so expectations are
// computed from the ids this test created and from the stored ids in their range.

import { assert, assertEquals } from "./support/assert.ts";
import {
  backends,
  type Frame,
  sanitized,
  startTestServer,
  type TestClient,
  type TestServer,
} from "./support/helpers.ts";
import { keysOf, lines, marker, storedIdsBetween } from "./support/wire.ts";

/** Sends `count` messages in one write and returns their broadcasts, in id order. */
async function postMessages(client: TestClient, count: number, tag = marker("h")): Promise<Frame[]> {
  const texts = Array.from({ length: count }, (_, i) => `${tag} ${String(i).padStart(3, "0")}`);
  await client.send(lines(texts.map((message) => ({ type: "send_message", message }))));
  const out: Frame[] = [];
  for (let i = 0; i < count; i++) {
    const frame = await client.next();
    assertEquals(frame.type, "new_message", JSON.stringify(frame));
    out.push(frame);
  }
  assertEquals(out.map((m) => m.message), texts);
  return out;
}

async function history(client: TestClient, query: Frame): Promise<number[]> {
  const reply = await client.request({ type: "get_history", ...query });
  assertEquals(reply.type, "history_response", JSON.stringify(reply));
  assertEquals(keysOf(reply), ["messages", "type"]);
  const messages = reply.messages as Frame[];
  assert(Array.isArray(messages));
  const ids = messages.map((m) => m.id as number);
  for (let i = 1; i < ids.length; i++) assert(ids[i] > ids[i - 1], `not oldest first: ${ids}`);
  return ids;
}

function assertError(reply: Frame, code: string, context: string): void {
  assertEquals(keysOf(reply), ["code", "message", "type"], context);
  assertEquals(reply.type, "error", context);
  assertEquals(reply.code, code, `${context}: ${JSON.stringify(reply)}`);
}

/** The stored ids from the first to the last of `posted`, which must include all of `posted`. */
async function window(server: TestServer, posted: Frame[]): Promise<number[]> {
  const first = posted[0].id as number;
  const last = posted.at(-1)!.id as number;
  const ids = await storedIdsBetween(server, first - 1, last + 1);
  for (const m of posted) assert(ids.includes(m.id as number));
  return ids;
}

for (const backend of backends) {
  Deno.test({
    name: `get_history requires login [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      assertError(await client.request({ type: "get_history" }), "not_authenticated", "no login");
      assertError(await client.request({ type: "get_history", limit: 5 }), "not_authenticated", "with limit");
      await client.registerAndLogin();
      assertEquals(await client.request({ type: "logout" }), { type: "logout_response", status: "success" });
      assertError(await client.request({ type: "get_history" }), "not_authenticated", "after logout");
    },
  });

  Deno.test({
    name: `get_history entries are exactly {id,sender,message,timestamp} as broadcast [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await client.registerAndLogin();
      const posted = await postMessages(client, 3);
      const reply = await client.request({
        type: "get_history",
        after: (posted[0].id as number) - 1,
        before: (posted[2].id as number) + 1,
      });
      const expected = await window(server, posted);
      const messages = reply.messages as Frame[];
      assertEquals(messages.map((m) => m.id), expected);
      for (const m of messages) assertEquals(keysOf(m), ["id", "message", "sender", "timestamp"]);
      const mine = messages.filter((m) => posted.some((p) => p.id === m.id));
      assertEquals(mine, posted.map(({ id, sender, message, timestamp }) => ({ id, sender, message, timestamp })));
    },
  });

  Deno.test({
    name: `get_history returns the newest 50 by default, oldest first [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" });
      await using client = await server.connect();
      await client.registerAndLogin();
      const posted = await postMessages(client, 55);
      const last = posted.at(-1)!.id as number;
      const expected = (await storedIdsBetween(server, -1, last + 1)).slice(-50);
      assertEquals(await history(client, { before: last + 1 }), expected);
      assertEquals(expected.at(-1), last);
      // Without any bound: the newest 50 overall, the last of them no older than ours.
      const newest = await history(client, {});
      assertEquals(newest.length, 50);
      assert(newest.at(-1)! >= last);
    },
  });

  Deno.test({
    name: `get_history clamps limit to MAX_HISTORY_LIMIT [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { MAX_HISTORY_LIMIT: "5", RATE_LIMIT_PER_SEC: "0" });
      await using client = await server.connect();
      await client.registerAndLogin();
      const posted = await postMessages(client, 7);
      const last = posted.at(-1)!.id as number;
      const stored = await storedIdsBetween(server, -1, last + 1);
      assertEquals(await history(client, { before: last + 1, limit: 1000 }), stored.slice(-5));
      assertEquals(await history(client, { before: last + 1 }), stored.slice(-5), "the default 50 is clamped too");
      assertEquals(await history(client, { before: last + 1, limit: 5 }), stored.slice(-5));
      assertEquals(await history(client, { before: last + 1, limit: 3 }), stored.slice(-3));
      assertEquals(await history(client, { before: last + 1, limit: 1 }), [last]);
      const first = posted[0].id as number;
      const after = await storedIdsBetween(server, first - 1, Number.MAX_SAFE_INTEGER);
      assertEquals(await history(client, { after: first - 1, limit: 100 }), after.slice(0, 5));
    },
  });

  Deno.test({
    name: `get_history refuses limits that are not integers of at least 1 with invalid_limit [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await client.registerAndLogin();
      for (const limit of [0, -1, -50, 1.5, 0.5, "10", "", true, false, [10], { n: 10 }]) {
        assertError(await client.request({ type: "get_history", limit }), "invalid_limit", JSON.stringify(limit));
      }
      // The connection still works after the errors.
      assertEquals((await client.request({ type: "get_history", limit: 1 })).type, "history_response");
    },
  });

  Deno.test({
    name: `get_history refuses before and after that are not non-negative integers with bad_request [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await client.registerAndLogin();
      for (const name of ["before", "after"]) {
        for (const value of [-1, 1.5, "3", "", true, [3], { id: 3 }]) {
          const reply = await client.request({ type: "get_history", [name]: value });
          assertError(reply, "bad_request", `${name}=${JSON.stringify(value)}`);
        }
      }
      assertEquals(await history(client, { before: 0 }), [], "nothing is older than id 0");
      assertEquals(await history(client, { after: Number.MAX_SAFE_INTEGER }), []);
    },
  });

  Deno.test({
    name: `get_history pages back with before [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" });
      await using client = await server.connect();
      await client.registerAndLogin();
      const posted = await postMessages(client, 8);
      const w = await window(server, posted);
      const first = w[0];
      // Page back three at a time from just after the last message, as a client scrolling up.
      const pages: number[][] = [];
      let before = w.at(-1)! + 1;
      while (before > first) {
        const page = await history(client, { before, limit: 3 });
        assert(page.length === 3 || (page.length > 0 && page[0] <= first), `page ${page}`);
        for (const id of page) assert(id < before);
        pages.unshift(page);
        before = page[0];
      }
      assertEquals(pages.flat().filter((id) => id >= first), w);
      assertEquals(pages.at(-1), w.slice(-3));
      // Without a lower bound: the newest below `before`, ending right below it.
      const below = await history(client, { before: w[4], limit: 3 });
      assertEquals(below, w.slice(1, 4));
    },
  });

  Deno.test({
    name: `get_history with after returns the oldest limit after it [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" });
      await using client = await server.connect();
      await client.registerAndLogin();
      const posted = await postMessages(client, 8);
      const w = await window(server, posted);
      assertEquals(await history(client, { after: w[0] - 1, limit: 3 }), w.slice(0, 3));
      assertEquals(await history(client, { after: w[2], limit: 2 }), w.slice(3, 5));
      // Catching up from the last one seen: everything after it, oldest first, up to the limit.
      const rest = await history(client, { after: w[4], limit: 500 });
      assertEquals(rest.slice(0, w.length - 5), w.slice(5));
      assert(rest.every((id) => id > w[4]));
      // Default limit applies with after too.
      const defaulted = await history(client, { after: w[0] - 1 });
      assertEquals(defaulted.slice(0, w.length), w);
      assert(defaulted.length <= 50);
    },
  });

  Deno.test({
    name: `get_history combines before and after [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" });
      await using client = await server.connect();
      await client.registerAndLogin();
      const posted = await postMessages(client, 8);
      const w = await window(server, posted);
      // Strictly between the two ids; with a limit, the oldest of them.
      assertEquals(await history(client, { after: w[1], before: w[6] }), w.slice(2, 6));
      assertEquals(await history(client, { after: w[1], before: w[6], limit: 2 }), w.slice(2, 4));
      assertEquals(await history(client, { after: w[3], before: w[4] }), []);
      assertEquals(await history(client, { after: w[5], before: w[2] }), []);
    },
  });

  Deno.test({
    name: `get_history answers queries beyond the newest MAX_HISTORY_LIMIT messages exactly [${backend.name}]`,
    ...sanitized,
    async fn() {
      // A small limit, so that most of these queries reach past the newest few messages.
      await using server = await startTestServer(backend, { MAX_HISTORY_LIMIT: "3", RATE_LIMIT_PER_SEC: "0" });
      await using client = await server.connect();
      await client.registerAndLogin();
      const posted = await postMessages(client, 8);
      const w = await window(server, posted);
      const byId = new Map(
        posted.map(({ id, sender, message, timestamp }) => [id, { id, sender, message, timestamp }]),
      );
      const reply = await client.request({ type: "get_history", before: w[4], limit: 3 });
      assertEquals(reply.messages, w.slice(1, 4).map((id) => byId.get(id)), "entries read back equal the broadcasts");
      assertEquals(
        await history(client, { before: w[1], limit: 3 }),
        (await storedIdsBetween(server, -1, w[1])).slice(-3),
      );
      assertEquals(await history(client, { after: w[0] - 1, limit: 3 }), w.slice(0, 3));
      assertEquals(await history(client, { after: w[0] - 1, limit: 100 }), w.slice(0, 3), "clamped");
      assertEquals(await history(client, { after: w[1], before: w[6] }), w.slice(2, 5));
      assertEquals(await history(client, { after: w[1], before: w[6], limit: 2 }), w.slice(2, 4));
      assertEquals(await history(client, { before: w.at(-1)! + 1 }), w.slice(-3));
    },
  });

  Deno.test({
    name: `get_history gives the same answers after a server restart [${backend.name}]`,
    ...sanitized,
    async fn() {
      const env = { MAX_HISTORY_LIMIT: "4", RATE_LIMIT_PER_SEC: "0" };
      const queries = (w: number[]): Frame[] => [
        { before: w.at(-1)! + 1 },
        { before: w[3], limit: 2 },
        { after: w[0] - 1, limit: 3 },
        { after: w[4], before: w.at(-1)! + 1 },
        { after: w[1], before: w[5] },
      ];
      let w: number[];
      const before: Frame[] = [];
      {
        await using first = await startTestServer(backend, env);
        await using client = await first.connect();
        await client.registerAndLogin();
        w = await window(first, await postMessages(client, 6));
        for (const query of queries(w)) before.push(await client.request({ type: "get_history", ...query }));
      }
      await using second = await startTestServer(backend, env);
      await using client = await second.connect();
      await client.registerAndLogin();
      for (const [i, query] of queries(w).entries()) {
        assertEquals(await client.request({ type: "get_history", ...query }), before[i], JSON.stringify(query));
      }
      assertEquals((before[0].messages as Frame[]).map((m) => m.id), w.slice(-4));
    },
  });
}
