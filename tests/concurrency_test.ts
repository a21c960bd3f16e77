// Concurrency: one name registered from many connections at once (exactly one wins), one user
// logged in on many connections at once, and broadcasts to many connections while some of them
// disconnect mid-write (the rest receive everything, in one order; no crash, no unhandled
// rejection). On every backend.

import { assert, assertEquals } from "./support/assert.ts";
import { backends, sanitized, startTestServer, type TestClient } from "./support/helpers.ts";
import {
  assertIncreasingIds,
  closeSharedPglite,
  collectUntil,
  privateDatabaseEnv,
  readAllHistory,
  runTraffic,
} from "./support/reliability.ts";
import { sleep, waitUntil } from "./support/util.ts";

// Each test opens its own database; the shared in-process PGlite would only trip the sanitizer.
await closeSharedPglite();

/** Unhandled rejections anywhere in the process (the in-process server included) during a test. */
function watchRejections(): { reasons: unknown[]; stop(): void } {
  const reasons: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    reasons.push(event.reason);
    event.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  return { reasons, stop: () => globalThis.removeEventListener("unhandledrejection", onRejection) };
}

async function connectMany(connect: () => Promise<TestClient>, count: number): Promise<TestClient[]> {
  return await Promise.all(Array.from({ length: count }, () => connect()));
}

for (const backend of backends) {
  Deno.test({
    name:
      `concurrency: one name registered from 30 connections at once, in mixed case: exactly one wins [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, privateDatabaseEnv(backend));
      const clients = await connectMany(() => server.connect(), 30);
      try {
        const base = `race_${crypto.randomUUID().slice(0, 8)}`;
        const variants = [base, base.toUpperCase(), base[0].toUpperCase() + base.slice(1)];
        // Every client writes first, then all read: the requests reach the server together.
        await Promise.all(
          clients.map((c, i) =>
            c.send({ type: "register", username: variants[i % variants.length], password: `pass-${i}-ok` })
          ),
        );
        const replies = await Promise.all(clients.map((c) => c.expect("register_response", 15_000)));
        const winners = replies.filter((r) => r.status === "success");
        assertEquals(winners.length, 1, JSON.stringify(replies));
        for (const r of replies) if (r.status !== "success") assertEquals(r.code, "username_taken");
        const rows = await server.service.db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM users WHERE lower(username) = lower($1)",
          [base],
        );
        assertEquals(Number(rows[0].n), 1);
        // The winner's password is the one that logs in.
        const winner = replies.indexOf(winners[0]);
        const login = await clients[0].request({
          type: "login",
          username: base,
          password: `pass-${winner}-ok`,
        });
        assertEquals(login.status, "success");
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
    },
  });

  Deno.test({
    name: `concurrency: one user logs in on 40 connections at once and each receives every message [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, privateDatabaseEnv(backend));
      const clients = await connectMany(() => server.connect(), 40);
      try {
        const name = `multi_${crypto.randomUUID().slice(0, 8)}`;
        assertEquals(
          (await clients[0].request({ type: "register", username: name, password: "secret123" })).status,
          "success",
        );
        await Promise.all(clients.map((c) => c.send({ type: "login", username: name, password: "secret123" })));
        const logins = await Promise.all(clients.map((c) => c.expect("login_response", 15_000)));
        assert(logins.every((l) => l.status === "success"), JSON.stringify(logins.find((l) => l.status !== "success")));
        assertEquals(new Set(logins.map((l) => l.user_id)).size, 1, "one user id");
        const users = await clients[1].request({ type: "list_users" });
        assertEquals((users.users as string[]).filter((u) => u === name), [name], "listed once");
        await clients[7].send({ type: "send_message", message: "to all my sessions" });
        const got = await Promise.all(clients.map((c) => c.expect("new_message")));
        assert(got.every((m) => m.message === "to all my sessions" && m.sender === name && m.id === got[0].id));
        // Logging out one connection leaves the others logged in.
        await clients[3].request({ type: "logout" });
        // (Other servers on a shared test database may list their users too: look for this one.)
        const after = (await clients[4].request({ type: "list_users" })).users as string[];
        assertEquals(after.filter((u) => u === name), [name], "still listed once");
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
    },
  });

  Deno.test({
    name:
      `concurrency: broadcast to 60 connections while 20 disconnect mid-write: the rest get everything in order [${backend.name}]`,
    ...sanitized,
    async fn() {
      const rejections = watchRejections();
      try {
        await using server = await startTestServer(backend, {
          ...privateDatabaseEnv(backend),
          RATE_LIMIT_PER_SEC: "0",
        });
        const receivers = await connectMany(() => server.connect(), 60);
        const senders = await connectMany(() => server.connect(), 4);
        try {
          await Promise.all([...receivers, ...senders].map((c) => c.registerAndLogin()));
          const leaving = receivers.slice(0, 20);
          const staying = receivers.slice(20);
          const perSender = 150;
          const traffic = Promise.all(senders.map((s, i) =>
            runTraffic(s, {
              prefix: `b${i}`,
              window: 20,
              maxMessages: perSender,
              stop: () => false,
              pad: " " + "p".repeat(500),
            })
          ));
          // Leave at staggered moments while the broadcasts stream to them (closed under the writes).
          await Promise.all(leaving.map(async (c, i) => {
            await sleep(5 + i * 7);
            c.conn.close();
            await c.close();
          }));
          const logs = await traffic;
          for (const log of logs) assertEquals(log.acked.size, perSender, "every send acknowledged");
          const total = senders.length * perSender;
          // Every staying receiver got all messages, in one order (id order), the same for all.
          const orders: number[][] = [];
          for (const c of staying) {
            await c.send({ type: "ping", request_id: "end" });
            const frames = await collectUntil(c, (f) => f.type === "pong", 30_000);
            const messages = frames.filter((f) => f.type === "new_message") as { id: number }[];
            assertEquals(messages.length, total);
            assertIncreasingIds(messages, "a receiver");
            orders.push(messages.map((m) => m.id));
          }
          for (const order of orders) assertEquals(order, orders[0]);
          // History's order is the broadcast order.
          const history = (await readAllHistory(staying[0])).filter((m) => orders[0].includes(m.id));
          assertEquals(history.map((m) => m.id), orders[0]);
          await waitUntil(() => server.service.registry.connectionCount === 44, 5000, "the leavers to be gone");
        } finally {
          await Promise.all([...receivers, ...senders].map((c) => c.close()));
        }
      } finally {
        rejections.stop();
      }
      assertEquals(rejections.reasons, [], "unhandled rejections");
    },
  });
}
