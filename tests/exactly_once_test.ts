// Exactly-once sends (contract v1.1, `client_msg_id`) over real sockets on both backends: a resend
// stores and broadcasts nothing and gets the original back, alone; concurrent and same-batch
// duplicates make one row; ids are per user; bad ids are refused; the window survives restarts
// and is pruned after it.

import { assert, assertEquals } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, type TestClient } from "./support/helpers.ts";
import { marker, storedCount } from "./support/wire.ts";

function sendFrame(message: string, clientMsgId: unknown, extra: Frame = {}): Frame {
  return { type: "send_message", message, client_msg_id: clientMsgId, ...extra };
}

/** The new_message frames with this text that arrive within `ms`. */
async function messagesWithText(client: TestClient, text: string, ms = 500): Promise<Frame[]> {
  const out: Frame[] = [];
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      const frame = await client.next(Math.max(1, until - Date.now()));
      if (frame.type === "new_message" && frame.message === text) out.push(frame);
    } catch {
      break;
    }
  }
  return out;
}

async function loginAs(server: { connect(): Promise<TestClient> }, username: string): Promise<TestClient> {
  const client = await server.connect();
  const reply = await client.request({ type: "login", username, password: "secret123" });
  assertEquals(reply.status, "success", JSON.stringify(reply));
  return client;
}

for (const backend of backends) {
  Deno.test({
    name:
      `exactly-once: a resend of an acknowledged message returns the original, alone, and stores nothing [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      const aliceName = (await alice.registerAndLogin()).username as string;
      await bob.registerAndLogin();
      const text = marker("once");
      const id = crypto.randomUUID();
      const first = await alice.request(sendFrame(text, id, { request_id: "r1" }));
      assertEquals(first.type, "new_message");
      assertEquals(first.client_msg_id, id);
      assertEquals(first.request_id, "r1");
      assertEquals(first.duplicate, undefined);
      const seen = await bob.waitFor((f) => f.type === "new_message" && f.message === text);
      assertEquals(seen.client_msg_id, undefined, "other connections' copies carry no client_msg_id");

      // The same id again, with other text: the original comes back, marked, with the new request_id.
      const again = await alice.request(sendFrame(`${text} edited`, id, { request_id: "r2" }));
      assertEquals(again, {
        type: "new_message",
        id: first.id,
        sender: aliceName,
        message: text,
        timestamp: first.timestamp,
        request_id: "r2",
        client_msg_id: id,
        duplicate: true,
      });
      await bob.expectNothing(300);
      assertEquals(await storedCount(server, text), 1);
      assertEquals(await storedCount(server, `${text} edited`), 0);
      // History holds it once.
      const history = await alice.request({ type: "get_history", limit: 500 });
      assertEquals((history.messages as Frame[]).filter((m) => m.message === text).length, 1);
    },
  });

  Deno.test({
    name:
      `exactly-once: the same client_msg_id on two connections of one user at once is stored once [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using first = await server.connect();
      const username = (await first.registerAndLogin()).username as string;
      await using second = await loginAs(server, username);
      await using observer = await server.connect();
      await observer.registerAndLogin();
      const text = marker("race");
      const id = `race:${crypto.randomUUID()}`;
      await Promise.all([first.send(sendFrame(text, id)), second.send(sendFrame(text, id))]);
      const answers = await Promise.all([first, second].map((c) => c.waitFor((f) => f.client_msg_id === id)));
      assertEquals(answers[0].id, answers[1].id);
      assertEquals(answers.filter((a) => a.duplicate === true).length, 1, JSON.stringify(answers));
      assertEquals((await messagesWithText(observer, text)).length, 1, "one broadcast");
      assertEquals(await storedCount(server, text), 1);
    },
  });

  Deno.test({
    name: `exactly-once: two sends with one client_msg_id in the same batch make one row [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      await alice.registerAndLogin();
      await bob.registerAndLogin();
      const text = marker("batch");
      const id = crypto.randomUUID();
      // One write, so both frames reach the server in the same turn and share a batch.
      await alice.send(
        new TextEncoder().encode(
          `${JSON.stringify(sendFrame(text, id, { request_id: 1 }))}\n${
            JSON.stringify(sendFrame(text, id, { request_id: 2 }))
          }\n`,
        ),
      );
      const one = await alice.waitFor((f) => f.request_id === 1);
      const two = await alice.waitFor((f) => f.request_id === 2);
      assertEquals(one.duplicate, undefined);
      assertEquals(two.duplicate, true);
      assertEquals(two.id, one.id);
      assertEquals((await messagesWithText(bob, text)).length, 1);
      assertEquals(await storedCount(server, text), 1);
    },
  });

  Deno.test({
    name: `exactly-once: the same client_msg_id from two users is two messages [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      await alice.registerAndLogin();
      await bob.registerAndLogin();
      const text = marker("shared-id");
      const id = "same-id-for-both";
      await alice.send(sendFrame(text, id, { request_id: "a" }));
      const fromAlice = await alice.waitFor((f) => f.request_id === "a");
      await bob.send(sendFrame(text, id, { request_id: "b" }));
      const fromBob = await bob.waitFor((f) => f.request_id === "b");
      assertEquals(fromAlice.duplicate, undefined);
      assertEquals(fromBob.duplicate, undefined);
      assert(fromAlice.id !== fromBob.id);
      assertEquals(await storedCount(server, text), 2);
    },
  });

  Deno.test({
    name:
      `exactly-once: an invalid client_msg_id is bad_request, nothing is stored, the connection goes on [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      await alice.registerAndLogin();
      await bob.registerAndLogin();
      const text = marker("bad-id");
      for (const bad of ["", "x".repeat(65), "has space", "ünï", "a/b", 12, true, ["a"], { id: 1 }]) {
        const reply = await alice.request(sendFrame(text, bad, { request_id: "bad" }));
        assertEquals(reply.type, "error", JSON.stringify(bad));
        assertEquals(reply.code, "bad_request", JSON.stringify(bad));
        assertEquals(reply.request_id, "bad");
      }
      await bob.expectNothing(300);
      assertEquals(await storedCount(server, text), 0);
      // 64 characters is the longest accepted, and null counts as absent.
      assertEquals((await alice.request(sendFrame(text, "y".repeat(64)))).client_msg_id, "y".repeat(64));
      const plain = await alice.request(sendFrame(`${text} plain`, null));
      assertEquals(plain.type, "new_message");
      assertEquals(plain.client_msg_id, undefined);
    },
  });

  Deno.test({
    name: `exactly-once: a resend after a server restart is still recognised [${backend.name}]`,
    ...sanitized,
    async fn() {
      const text = marker("restart");
      const id = crypto.randomUUID();
      let username: string;
      let original: Frame;
      {
        await using server = await startTestServer(backend);
        await using alice = await server.connect();
        username = (await alice.registerAndLogin()).username as string;
        original = await alice.request(sendFrame(text, id));
      }
      await using server = await startTestServer(backend);
      await using alice = await loginAs(server, username);
      const again = await alice.request(sendFrame(text, id));
      assertEquals(again.duplicate, true);
      assertEquals(again.id, original.id);
      assertEquals(again.timestamp, original.timestamp);
      assertEquals(await storedCount(server, text), 1);
    },
  });

  Deno.test({
    name: `exactly-once: ids older than 7 days are pruned in the background, newer ones kept [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await alice.registerAndLogin();
      const oldText = marker("old");
      const newText = marker("new");
      const oldId = crypto.randomUUID();
      const newId = crypto.randomUUID();
      await alice.request(sendFrame(oldText, oldId));
      await alice.request(sendFrame(newText, newId));
      const db = server.service.db;
      await db.query(
        `UPDATE chat_client_msg_ids SET created_at = created_at - interval '7 days 1 hour' WHERE client_msg_id = $1`,
        [oldId],
      );
      assert((await server.service.maintenance.runOnce()) >= 1);
      const left = await db.query<{ client_msg_id: string }>(
        "SELECT client_msg_id FROM chat_client_msg_ids WHERE client_msg_id = ANY($1::text[])",
        [[oldId, newId]],
      );
      assertEquals(left.map((r) => r.client_msg_id), [newId]);
      // Within the window a resend is still recognised.
      assertEquals((await alice.request(sendFrame(newText, newId))).duplicate, true);
    },
  });
}

for (const backend of backends) {
  Deno.test({
    name: `exactly-once: an id whose message was deleted since is stored anew, once [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await alice.registerAndLogin();
      const text = marker("deleted");
      const id = crypto.randomUUID();
      const first = await alice.request(sendFrame(text, id));
      await server.service.db.query("DELETE FROM messages WHERE id = $1", [first.id]);
      const again = await alice.request(sendFrame(text, id));
      assertEquals(again.duplicate, undefined);
      assert((again.id as number) > (first.id as number));
      assertEquals(await storedCount(server, text), 1);
      const third = await alice.request(sendFrame(text, id));
      assertEquals([third.duplicate, third.id], [true, again.id]);
    },
  });
}

for (const backend of backends) {
  Deno.test({
    name: `own copies: senders' lines in one batch of multi-byte texts are exact for everyone [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" });
      await using alice = await server.connect();
      await using bob = await server.connect();
      await using carol = await server.connect();
      await alice.registerAndLogin();
      await bob.registerAndLogin();
      await carol.registerAndLogin();
      const texts = ["héllo wörld", "😀 emoji 🎉 pair", "中文 and עברית", "plain ascii", "ß".repeat(300)];
      const tag = marker("mb");
      // Pipelined from two senders at once, so that they share batches.
      await Promise.all([
        alice.send(
          new TextEncoder().encode(
            texts.map((t, i) => JSON.stringify(sendFrame(`${tag} a${i} ${t}`, `a-${tag}-${i}`, { request_id: i })))
              .join("\n") + "\n",
          ),
        ),
        bob.send(
          new TextEncoder().encode(
            texts.map((t, i) => JSON.stringify({ type: "send_message", message: `${tag} b${i} ${t}` })).join("\n") +
              "\n",
          ),
        ),
      ]);
      const expected = texts.flatMap((t, i) => [`${tag} a${i} ${t}`, `${tag} b${i} ${t}`]).sort();
      for (const client of [alice, bob, carol]) {
        const got: Frame[] = [];
        while (got.length < expected.length) {
          const frame = await client.waitFor((f) => f.type === "new_message" && String(f.message).startsWith(tag));
          got.push(frame);
        }
        assertEquals(got.map((f) => f.message as string).sort(), expected);
        const own = got.filter((f) => f.request_id !== undefined);
        assertEquals(own.length, client === alice ? texts.length : 0);
        for (const f of own) assertEquals(f.client_msg_id, `a-${tag}-${f.request_id}`);
      }
    },
  });
}
