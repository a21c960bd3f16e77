// Database faults under traffic (PostgreSQL only; skipped without TEST_DATABASE_URL): the server's
// database connections are terminated mid-traffic (pg_terminate_backend, only this test's
// database), and the database is made unreachable for seconds through a TCP proxy and brought back.
// And PostgreSQL itself restarted and crashed, on a server of the test's own (skipped without
// PostgreSQL's server binaries), under two server processes.
// Sends get new_message or `unavailable`, nothing else; what is broadcast is stored; the
// server recovers without a restart; history holds every acknowledged message exactly once, and
// nothing nobody sent. (The basic outage replies are in outage_test.ts; this is the traffic shape.)

import { assert, assertEquals } from "./support/assert.ts";
import { postgresUrl, sanitized, startTestServer, type TestClient, type TestServer } from "./support/helpers.ts";
import { proxiedUrl, startProxy, targetOf } from "./support/proxy.ts";
import { startNats, testBuses } from "./support/nats.ts";
import { postgresBinDir, startPrivatePostgres } from "./support/private_postgres.ts";
import { spawnServer } from "./support/process.ts";
import {
  assertIncreasingIds,
  closeSharedPglite,
  collectUntil,
  createScratchDatabase,
  duplicateTexts,
  newTrafficLog,
  readAllHistory,
  runTraffic,
  type TrafficLog,
} from "./support/reliability.ts";
import { sleep, waitUntil } from "./support/util.ts";

// These tests bring their own databases; the shared in-process PGlite is not needed.
await closeSharedPglite();

const SENDERS = 3;

interface Traffic {
  logs: TrafficLog[];
  stop(): Promise<void>;
}

/** Three logged-in senders, pipelined, until stopped. */
function startTraffic(clients: TestClient[]): Traffic {
  let stopped = false;
  const logs = clients.map(() => newTrafficLog());
  const running = Promise.all(
    clients.map((c, i) =>
      runTraffic(c, { prefix: `f${i}`, window: 8, maxMessages: 20_000, stop: () => stopped, pauseMs: 5 }, logs[i])
    ),
  );
  return {
    logs,
    async stop() {
      stopped = true;
      await running;
    },
  };
}

/** A send round trip succeeds again, retrying on unavailable, within `ms`: no restart needed. */
async function assertRecovers(client: TestClient, ms: number): Promise<void> {
  await waitUntil(
    async () => {
      const id = `recover-${crypto.randomUUID()}`;
      await client.send({ type: "send_message", message: id, request_id: id });
      const reply = await client.waitFor((f) => f.request_id === id, 10_000);
      if (reply.type === "error") assertEquals(reply.code, "unavailable");
      return reply.type === "new_message";
    },
    ms,
    "a send to succeed after the fault",
  );
}

/** History holds every acknowledged message exactly once, as broadcast, and nothing unsent. */
async function assertHistoryConsistent(client: TestClient, logs: TrafficLog[]): Promise<{ ambiguous: number }> {
  const history = (await readAllHistory(client)).filter((m) => /^f\d+-\d+$/.test(m.message));
  assertEquals(duplicateTexts(history), [], "a message is stored twice");
  const stored = new Map(history.map((m) => [m.message, m]));
  const sent = new Set(logs.flatMap((l) => l.sent));
  assertEquals(history.filter((m) => !sent.has(m.message)).map((m) => m.message), [], "stored but never sent");
  const broadcast = new Map<string, number>();
  for (const log of logs) for (const f of log.received) broadcast.set(f.message as string, f.id as number);
  for (const [text, id] of broadcast) {
    assert(stored.has(text), `${text} was broadcast but is not in history`);
    assertEquals(stored.get(text)!.id, id, `${text}: history id differs from the broadcast id`);
  }
  let ambiguous = 0;
  for (const log of logs) {
    for (const [text, code] of log.failed) {
      assertEquals(code, "unavailable", `${text}: unexpected error code: ${JSON.stringify(log.errors)}`);
      // Stored although refused: the commit went through and its reply was lost with the
      // connection (the unavoidable window of any commit acknowledgement). Such a message is
      // still delivered, in order, like any committed one (a client_msg_id resend gets it back).
      if (stored.has(text)) ambiguous++;
      else assert(!broadcast.has(text), `${text} was refused, never stored, yet broadcast`);
    }
  }
  return { ambiguous };
}

async function loggedInClients(server: Pick<TestServer, "connect">, count: number): Promise<TestClient[]> {
  const clients = await Promise.all(Array.from({ length: count }, () => server.connect()));
  for (const c of clients) await c.registerAndLogin();
  return clients;
}

Deno.test({
  name: "db faults: the server's database connections are terminated mid-traffic; nothing acknowledged is lost",
  ignore: !postgresUrl,
  ...sanitized,
  async fn() {
    await using db = await createScratchDatabase(postgresUrl!);
    await using server = await startTestServer({ name: "postgres", env: { DATABASE_URL: db.url } }, {
      RATE_LIMIT_PER_SEC: "0",
      DB_POOL_SIZE: "4",
    });
    const clients = await loggedInClients(server, SENDERS + 1);
    try {
      const traffic = startTraffic(clients.slice(0, SENDERS));
      let terminated = 0;
      try {
        await waitUntil(() => traffic.logs.some((l) => l.acked.size >= 20), 15_000, "traffic to flow");
        for (let round = 0; round < 6; round++) {
          terminated += await db.terminateServerBackends();
          await sleep(250);
        }
      } finally {
        await traffic.stop();
      }
      assert(terminated > 0, "no server connection was terminated: the fault was not injected");
      await assertRecovers(clients[SENDERS], 15_000);
      const acked = traffic.logs.reduce((n, l) => n + l.acked.size, 0);
      assert(acked >= 20, `only ${acked} acknowledged`);
      await assertHistoryConsistent(clients[SENDERS], traffic.logs);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  },
});

Deno.test({
  name: "db faults: the database is unreachable for 3 s mid-traffic; sends get unavailable, the server recovers",
  ignore: !postgresUrl,
  ...sanitized,
  async fn() {
    await using db = await createScratchDatabase(postgresUrl!);
    await using proxy = startProxy(targetOf(postgresUrl!));
    await using server = await startTestServer({ name: "postgres", env: { DATABASE_URL: proxiedUrl(db.url, proxy) } }, {
      RATE_LIMIT_PER_SEC: "0",
      DB_POOL_SIZE: "4",
    });
    const clients = await loggedInClients(server, SENDERS + 1);
    try {
      const traffic = startTraffic(clients.slice(0, SENDERS));
      let refusedDuringOutage = 0;
      try {
        await waitUntil(() => traffic.logs.some((l) => l.acked.size >= 20), 15_000, "traffic to flow");
        await proxy.cut();
        const failedBefore = traffic.logs.reduce((n, l) => n + l.failed.size, 0);
        // Bounded outage: traffic keeps coming for 3 s, then the database returns.
        await waitUntil(
          () => traffic.logs.reduce((n, l) => n + l.failed.size, 0) > failedBefore,
          10_000,
          "a send to be refused during the outage",
        );
        await sleep(3000);
        refusedDuringOutage = traffic.logs.reduce((n, l) => n + l.failed.size, 0) - failedBefore;
        proxy.restore();
        // Traffic continues after the database is back, on the same server process.
        const ackedAtRestore = traffic.logs.reduce((n, l) => n + l.acked.size, 0);
        await waitUntil(
          () => traffic.logs.reduce((n, l) => n + l.acked.size, 0) >= ackedAtRestore + 20,
          20_000,
          "sends to succeed again after the outage",
        );
      } finally {
        if (proxy.isCut) proxy.restore();
        await traffic.stop();
      }
      assert(refusedDuringOutage > 0, "no send was refused during the outage");
      await assertRecovers(clients[SENDERS], 15_000);
      await assertHistoryConsistent(clients[SENDERS], traffic.logs);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  },
});

for (const bus of testBuses(postgresBinDir === undefined)) {
  Deno.test({
    name:
      `db faults${bus.label}: PostgreSQL restarts and then crashes mid-traffic under two servers: nothing acknowledged is lost or doubled, and each server's messages reach the other's clients, once each, in id order`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using nats = bus.nats ? await startNats() : undefined;
      await using pg = await startPrivatePostgres();
      const env = {
        DATABASE_URL: pg.url,
        RATE_LIMIT_PER_SEC: "0",
        DB_POOL_SIZE: "4",
        ...(nats ? { NATS_URL: nats.url } : {}),
      };
      await using senders = await spawnServer(env);
      await using other = await spawnServer(env);
      const clients = await loggedInClients(senders, SENDERS + 1);
      const [watcher] = await loggedInClients(other, 1);
      try {
        const traffic = startTraffic(clients.slice(0, SENDERS));
        try {
          const acked = () => traffic.logs.reduce((n, l) => n + l.acked.size, 0);
          await waitUntil(() => acked() >= 20, 15_000, "traffic to flow");
          // A service restart: every session ends with FATAL 57P01, connections are refused meanwhile.
          await pg.restart("fast");
          let before = acked();
          await waitUntil(() => acked() >= before + 20, 20_000, "sends to succeed again after the restart");
          // A crash: sessions die without a word, and the server recovers from its WAL on the way up.
          await pg.restart("immediate");
          before = acked();
          await waitUntil(() => acked() >= before + 20, 20_000, "sends to succeed again after the crash");
        } finally {
          await traffic.stop();
        }
        await assertRecovers(clients[SENDERS], 15_000);
        await assertHistoryConsistent(clients[SENDERS], traffic.logs);

        // On NOTIFY the other server missed notifications while its LISTEN connection was down, and
        // on NATS a publish can come before a commit it cannot read yet: it catches up from the database.
        const marker = `marker-${crypto.randomUUID()}`;
        await clients[SENDERS].send({ type: "send_message", message: marker, request_id: marker });
        assertEquals((await clients[SENDERS].waitFor((f) => f.request_id === marker, 10_000)).type, "new_message");
        const seen = (await collectUntil(watcher, (f) => f.type === "new_message" && f.message === marker, 20_000))
          .filter((f) => f.type === "new_message") as unknown as { id: number; message: string }[];
        assertIncreasingIds(seen, "the other server's client");
        const seenTexts = new Set(seen.map((m) => m.message));
        const missed = traffic.logs.flatMap((l) => [...l.acked]).filter((text) => !seenTexts.has(text));
        assertEquals(missed, [], "acknowledged on one server, never delivered on the other");
      } finally {
        await Promise.all([...clients, watcher].map((c) => c.close()));
      }
    },
  });
}
