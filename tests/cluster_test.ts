// Several servers on one PostgreSQL database (contract v1.1, "several servers on one database"):
// real server processes on ephemeral ports, each with its own clients. Every client must see every
// committed message exactly once, in id order, the same sequence as every other client and as the
// database's rows; also when a server is killed, when the LISTEN connections are terminated, and
// when one server loses its database for 3 s. Presence, login throttling and exactly-once sends
// hold across servers; rows the seed's server inserts appear in history everywhere; the embedded
// database refuses a second server. PostgreSQL only (skipped without TEST_DATABASE_URL), except
// the embedded-database test.

import postgres from "postgres";
import { assert, assertEquals, fail } from "./support/assert.ts";
import { type Frame, postgresUrl, sanitized, type TestClient, uniqueName } from "./support/helpers.ts";
import { runServerCommand, type ServerProcess, spawnServer } from "./support/process.ts";
import { proxiedUrl, startProxy, targetOf } from "./support/proxy.ts";
import {
  assertIncreasingIds,
  closeSharedPglite,
  createScratchDatabase,
  readAllHistory,
  type ScratchDatabase,
  type StoredMessage,
} from "./support/reliability.ts";
import { sleep, waitUntil, Wakeup } from "./support/util.ts";
import { connect as connectNats } from "nats";
import { type NatsServer, startNats, testBuses } from "./support/nats.ts";
import { sample, scrapeMetrics } from "./support/metrics.ts";

// These tests bring their own databases; the shared in-process PGlite is not needed.
await closeSharedPglite();

const ignore = !postgresUrl;
const PASSWORD = "cluster-pass";
/** The delivery buses the main cluster tests run on (NATS where a nats-server is installed). */
const BUSES = testBuses(ignore);
/** Bounds of every wait for messages to arrive everywhere. */
const CONVERGE_MS = 20_000;

// ---- servers ---------------------------------------------------------------------------------------

/** A group of servers on one database, killed at the end whatever happened. */
interface Cluster extends AsyncDisposable {
  servers: ServerProcess[];
}

function serverEnv(url: string): Record<string, string> {
  return { DATABASE_URL: url, DB_POOL_SIZE: "4", RATE_LIMIT_PER_SEC: "0" };
}

/** Starts one server per URL, at once (`extraEnv` over each one's environment). */
async function startCluster(urls: string[], extraEnv: Record<string, string> = {}): Promise<Cluster> {
  const started = await Promise.allSettled(urls.map((url) => spawnServer({ ...serverEnv(url), ...extraEnv })));
  const servers = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
  const dispose = async () => {
    await Promise.all(servers.map((s) => s.stop("SIGKILL")));
  };
  const failed = started.find((s) => s.status === "rejected");
  if (failed) {
    await dispose();
    throw failed.reason;
  }
  return { servers, [Symbol.asyncDispose]: dispose };
}

// ---- clients ---------------------------------------------------------------------------------------

/**
 * A logged-in client whose frames are read in the background, so it can send and receive at once:
 * broadcasts are kept in arrival order, replies by request_id.
 */
class Peer implements AsyncDisposable {
  readonly client: TestClient;
  readonly username: string;
  /** new_message broadcasts (duplicates' replies excluded), in arrival order. */
  readonly messages: Frame[] = [];
  /** Own sends: acknowledged (own copy) and refused (error code), by request_id. */
  readonly acked = new Map<string, Frame>();
  readonly failed = new Map<string, string>();
  readonly #replies = new Map<string, Frame>();
  readonly #changed = new Wakeup();
  #closing = false;
  readonly #pump: Promise<void>;
  #nextRequest = 0;

  private constructor(client: TestClient, username: string) {
    this.client = client;
    this.username = username;
    this.#pump = this.#run();
  }

  /** Connects to `server` and logs in as `username` (registering it first when asked). */
  static async login(server: ServerProcess, username: string, register = false): Promise<Peer> {
    const client = await server.connect();
    try {
      if (register) {
        const reply = await client.request({ type: "register", username, password: PASSWORD }, 10_000);
        assertEquals(reply.status, "success", JSON.stringify(reply));
      }
      const login = await client.request({ type: "login", username, password: PASSWORD }, 10_000);
      assertEquals(login.status, "success", JSON.stringify(login));
    } catch (err) {
      await client.close();
      throw err;
    }
    return new Peer(client, username);
  }

  get lastId(): number {
    return (this.messages.at(-1)?.id as number | undefined) ?? 0;
  }

  async #run(): Promise<void> {
    while (!this.#closing && !this.client.ended) {
      let frame: Frame;
      try {
        frame = await this.client.next(250);
      } catch {
        continue;
      }
      const requestId = frame.request_id === undefined ? undefined : String(frame.request_id);
      if (frame.type === "new_message" && frame.duplicate !== true) {
        this.messages.push(frame);
        if (requestId?.startsWith("s:")) this.acked.set(requestId, frame);
        else if (requestId !== undefined) this.#replies.set(requestId, frame);
      } else if (frame.type === "error" && requestId !== undefined && requestId.startsWith("s:")) {
        this.failed.set(requestId, frame.code as string);
      } else if (requestId !== undefined) {
        this.#replies.set(requestId, frame);
      }
      this.#changed.wake();
    }
    this.#changed.wake();
  }

  /** Waits until `condition` holds, re-checking on every frame; fails with `what` after `ms`. */
  async until(condition: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!condition()) {
      const left = deadline - Date.now();
      if (left <= 0) fail(`${this.username}: timed out after ${ms} ms waiting for ${what}`);
      await this.#changed.wait(left);
    }
  }

  /** Sends a request with a fresh request_id and returns its reply. */
  async request(frame: Frame, ms = 10_000): Promise<Frame> {
    const requestId = `q:${this.#nextRequest++}`;
    await this.client.send({ ...frame, request_id: requestId });
    return await this.reply(requestId, ms);
  }

  /** The reply with this request_id (not an `s:` send's), once it has come. */
  async reply(requestId: string, ms = 10_000): Promise<Frame> {
    await this.until(() => this.#replies.has(requestId), ms, `the reply to ${requestId}`);
    const reply = this.#replies.get(requestId)!;
    this.#replies.delete(requestId);
    return reply;
  }

  /**
   * Sends messages `<tag>-<n>` (request_id `s:<tag>-<n>`), at most `window` unanswered, `pauseMs`
   * apart, until `max` are sent or `stop()` or the connection ends; then waits (bounded) for the
   * answers. Returns the texts sent.
   */
  async sendMany(
    tag: string,
    options: { max: number; window: number; pauseMs?: number; stop?: () => boolean },
  ): Promise<string[]> {
    const sent: string[] = [];
    const answered = () => sent.filter((t) => this.acked.has(`s:${t}`) || this.failed.has(`s:${t}`)).length;
    let unanswered = 0;
    while (sent.length < options.max && !(options.stop?.() ?? false) && !this.client.ended) {
      if (unanswered >= options.window) {
        const before = unanswered;
        try {
          await this.until(() => this.client.ended || sent.length - answered() < before, 15_000, "an answer");
        } catch {
          break;
        }
        unanswered = sent.length - answered();
        continue;
      }
      const text = `${tag}-${sent.length}`;
      try {
        await this.client.send({ type: "send_message", message: text, request_id: `s:${text}` });
      } catch {
        break;
      }
      sent.push(text);
      unanswered++;
      if (options.pauseMs) await sleep(options.pauseMs);
    }
    await this.until(() => this.client.ended || answered() === sent.length, 15_000, "every send answered")
      .catch(() => {});
    return sent;
  }

  /** Every message in this server's history, oldest first (`after` paging). */
  async history(): Promise<StoredMessage[]> {
    const all: StoredMessage[] = [];
    for (let page = 0; page < 100; page++) {
      const reply = await this.request({ type: "get_history", after: all.at(-1)?.id ?? 0, limit: 500 });
      assertEquals(reply.type, "history_response", JSON.stringify(reply));
      const messages = reply.messages as StoredMessage[];
      if (messages.length === 0) return all;
      all.push(...messages);
    }
    fail("history did not end");
  }

  async usersOnline(): Promise<string[]> {
    const reply = await this.request({ type: "list_users" });
    assertEquals(reply.type, "users_response", JSON.stringify(reply));
    return reply.users as string[];
  }

  async close(): Promise<void> {
    this.#closing = true;
    await this.client.close();
    await this.#pump;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Closes every peer (the `using` of a list). */
function closing(peers: Peer[]): AsyncDisposable {
  return { [Symbol.asyncDispose]: () => Promise.all(peers.map((p) => p.close())).then(() => {}) };
}

/** A sender and a receiver logged in on each server, users registered on that server. */
async function sendersAndReceivers(servers: ServerProcess[]): Promise<{ senders: Peer[]; receivers: Peer[] }> {
  const senders: Peer[] = [];
  const receivers: Peer[] = [];
  try {
    for (const server of servers) {
      senders.push(await Peer.login(server, uniqueName("send"), true));
      receivers.push(await Peer.login(server, uniqueName("recv"), true));
    }
  } catch (err) {
    await Promise.all([...senders, ...receivers].map((p) => p.close()));
    throw err;
  }
  return { senders, receivers };
}

// ---- what the database holds -------------------------------------------------------------------------

const ROWS_SQL = `SELECT id, sender_username AS sender, message_text AS message,
  to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp FROM messages ORDER BY id`;

async function databaseRows(db: ScratchDatabase): Promise<StoredMessage[]> {
  const rows = await db.query<Record<string, string | number>>(ROWS_SQL);
  return rows.map((r) => ({
    id: Number(r.id),
    sender: String(r.sender),
    message: String(r.message),
    timestamp: String(r.timestamp),
  }));
}

function plain(messages: Frame[] | StoredMessage[]): StoredMessage[] {
  return messages.map((m) => ({
    id: m.id as number,
    sender: m.sender as string,
    message: m.message as string,
    timestamp: m.timestamp as string,
  }));
}

/** Waits until each peer has received every row the database holds now. */
async function converge(peers: Peer[], db: ScratchDatabase): Promise<StoredMessage[]> {
  const rows = await databaseRows(db);
  const last = rows.at(-1)?.id ?? 0;
  await Promise.all(peers.map((p) => p.until(() => p.lastId >= last, CONVERGE_MS, `id ${last}`)));
  return rows;
}

/**
 * The peer received exactly `rows` (the database's, in id order): no gap, no duplicate, no
 * reordering, and every field as stored.
 */
function assertSawExactly(peer: Peer, rows: StoredMessage[], what: string): void {
  const got = plain(peer.messages);
  assertIncreasingIds(got, `${what} (${peer.username})`);
  const missing = rows.filter((r) => !got.some((g) => g.id === r.id)).map((r) => r.id);
  const extra = got.filter((g) => !rows.some((r) => r.id === g.id)).map((g) => g.id);
  assertEquals({ missing, extra }, { missing: [], extra: [] }, `${what} (${peer.username}): ids differ`);
  assertEquals(got, rows, `${what} (${peer.username}): messages differ from the database's rows`);
}

/** Each sender's messages are stored (and so delivered) in the order it sent them. */
function assertSenderOrder(rows: StoredMessage[]): void {
  const lastSeq = new Map<string, number>();
  for (const row of rows) {
    const match = /^(.+)-(\d+)$/.exec(row.message);
    if (!match) continue;
    const seq = Number(match[2]);
    assert((lastSeq.get(match[1]) ?? -1) < seq, `${row.message} stored after a later send of its sender`);
    lastSeq.set(match[1], seq);
  }
}

const count = (peers: Peer[]) => peers.reduce((n, p) => n + p.acked.size, 0);

// ---- the tests -----------------------------------------------------------------------------------------

for (const bus of BUSES) {
  Deno.test({
    name:
      `cluster${bus.label}: three servers, senders on each at once: every client gets every message once, in id order, the same sequence; history equal on every server and to the database; a server started later serves it at once`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using nats = bus.nats ? await startNats() : undefined;
      await using db = await createScratchDatabase(postgresUrl!);
      await using cluster = await startCluster([db.url, db.url, db.url], nats ? { NATS_URL: nats.url } : {});
      const { senders, receivers } = await sendersAndReceivers(cluster.servers);
      const peers = [...senders, ...receivers];
      await using _peers = closing(peers);

      const PER_SENDER = 200;
      const sent = await Promise.all(senders.map((s, i) => s.sendMany(`c${i}`, { max: PER_SENDER, window: 10 })));
      for (const [i, s] of senders.entries()) {
        assertEquals(sent[i].length, PER_SENDER);
        assertEquals(s.failed.size, 0, `sender ${i} refused: ${JSON.stringify([...s.failed])}`);
        assertEquals(s.acked.size, PER_SENDER);
      }
      const rows = await converge(peers, db);
      assertEquals(rows.length, senders.length * PER_SENDER);
      assertSenderOrder(rows);
      for (const peer of peers) assertSawExactly(peer, rows, "live delivery");
      // The acknowledgement is the message as stored.
      for (const s of senders) {
        for (const [requestId, frame] of s.acked) assertEquals(`s:${frame.message}`, requestId);
      }

      // History, the same on every server: from memory (the newest) and from the database (older).
      for (const peer of receivers) {
        assertEquals(plain(await peer.history()), rows, `history on ${peer.username}'s server`);
      }
      const newest = await receivers[0].request({ type: "get_history", limit: 50 });
      assertEquals(plain(newest.messages as Frame[]), rows.slice(-50));

      // A server started now serves all of it at once, without any message sent since.
      await using late = await spawnServer(serverEnv(db.url));
      await using client = await late.connect();
      await client.registerAndLogin(uniqueName("late"), PASSWORD);
      assertEquals(plain(await readAllHistory(client)), rows, "history on a server started after the traffic");
      const lateNewest = await client.request({ type: "get_history", limit: 50 });
      assertEquals(plain(lateNewest.messages as Frame[]), rows.slice(-50));
    },
  });
}

for (const bus of BUSES) {
  Deno.test({
    name:
      `cluster${bus.label}: list_users spans the servers; one server is SIGKILLed mid-traffic: clients on the others miss nothing and see no reordering; its users leave list_users within 30 s`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using nats = bus.nats ? await startNats() : undefined;
      await using db = await createScratchDatabase(postgresUrl!);
      await using cluster = await startCluster([db.url, db.url, db.url], nats ? { NATS_URL: nats.url } : {});
      const [a, b, c] = cluster.servers;
      const { senders, receivers } = await sendersAndReceivers(cluster.servers);
      await using _peers = closing([...senders, ...receivers]);
      const usersOn = (i: number) => [senders[i].username, receivers[i].username];

      // list_users on one server lists the users of every server (bounded poll: others publish within ~50 ms).
      const everyone = [0, 1, 2].flatMap(usersOn).sort();
      await waitUntil(
        async () => {
          const online = await receivers[0].usersOnline();
          return everyone.every((u) => online.includes(u));
        },
        10_000,
        "list_users on server A to list the users of B and C",
      );
      const onB = await receivers[1].usersOnline();
      assert(everyone.every((u) => onB.includes(u)), `list_users on B: ${JSON.stringify(onB)}`);

      let stopped = false;
      const traffic = senders.map((s, i) =>
        s.sendMany(`k${i}`, { max: 3000, window: 8, pauseMs: 5, stop: () => stopped && i !== 2 })
      );
      let killedAt: number;
      try {
        await waitUntil(() => senders.every((s) => s.acked.size >= 30), 15_000, "traffic to flow on every server");
        await c.stop("SIGKILL");
        killedAt = Date.now();
        // Traffic on the survivors goes on for a while after the kill.
        const ackedAtKill = count(senders.slice(0, 2));
        await waitUntil(() => count(senders.slice(0, 2)) >= ackedAtKill + 60, 15_000, "traffic after the kill");
      } finally {
        stopped = true;
        await Promise.all(traffic);
      }
      assert(senders[2].client.ended, "the killed server's clients were not disconnected");

      const survivors = [senders[0], senders[1], receivers[0], receivers[1]];
      const rows = await converge(survivors, db);
      for (const peer of survivors) assertSawExactly(peer, rows, "a surviving server's client");
      assertSenderOrder(rows);
      // Everything the killed server acknowledged is stored (and so reached the survivors' clients).
      const stored = new Set(rows.map((r) => r.message));
      const ackedByKilled = [...senders[2].acked.values()].map((f) => f.message as string);
      assert(ackedByKilled.length >= 30);
      assertEquals(ackedByKilled.filter((t) => !stored.has(t)), [], "acknowledged by the killed server, not stored");
      // Its own clients saw a prefix of the one order, no gap.
      for (const peer of [senders[2], receivers[2]]) {
        const got = plain(peer.messages);
        assertEquals(got, rows.slice(0, got.length), `${peer.username} on the killed server: not a prefix`);
      }

      // Its users leave list_users in time; the others' stay.
      let gone = false;
      while (Date.now() - killedAt < 30_000) {
        const online = await receivers[0].usersOnline();
        for (const u of [...usersOn(0), ...usersOn(1)]) {
          assert(online.includes(u), `${u} (on a live server) not listed`);
        }
        if (!usersOn(2).some((u) => online.includes(u))) {
          gone = true;
          break;
        }
        await sleep(500);
      }
      assert(gone, "the killed server's users were still listed 30 s after the kill");
      void a;
      void b;
    },
  });
}

for (const bus of BUSES) {
  Deno.test({
    name:
      `cluster${bus.label}: the LISTEN connections are terminated mid-traffic: no gap, no duplicate, no reordering anywhere`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using nats = bus.nats ? await startNats() : undefined;
      await using db = await createScratchDatabase(postgresUrl!);
      await using cluster = await startCluster([db.url, db.url, db.url], nats ? { NATS_URL: nats.url } : {});
      const { senders, receivers } = await sendersAndReceivers(cluster.servers);
      const peers = [...senders, ...receivers];
      await using _peers = closing(peers);

      let stopped = false;
      const traffic = senders.map((s, i) =>
        s.sendMany(`l${i}`, { max: 3000, window: 8, pauseMs: 5, stop: () => stopped })
      );
      let terminated = 0;
      try {
        await waitUntil(() => senders.every((s) => s.acked.size >= 30), 15_000, "traffic to flow on every server");
        for (let round = 0; round < 3; round++) {
          terminated += await db.terminateServerBackends("listener");
          const acked = count(senders);
          await waitUntil(() => count(senders) >= acked + 30, 15_000, "traffic after terminating the listeners");
        }
      } finally {
        stopped = true;
        await Promise.all(traffic);
      }
      assert(terminated >= 3, `only ${terminated} LISTEN connections terminated`);
      for (const s of senders) assertEquals([...s.failed], [], "a send was refused");
      const rows = await converge(peers, db);
      for (const peer of peers) assertSawExactly(peer, rows, "after the LISTEN connections were terminated");
      // Every server listens again (not only its periodic resync keeps it in step).
      await waitUntil(async () => (await listenerCount(db)) === 3, 10_000, "three LISTEN connections again");
    },
  });
}

/** A server's warnings and errors (message and error text), for failure messages. */
function problems(server: ServerProcess): string[] {
  return server.logs.filter((l) => l.level === "warn" || l.level === "error" || l.level === "text")
    .map((l) => `${l.msg}${l.error ? `: ${l.error}` : ""}`).slice(0, 30);
}

/** The servers' LISTEN connections open on the scratch database now. */
async function listenerCount(db: ScratchDatabase): Promise<number> {
  const rows = await db.admin.unsafe(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'chat-server/listener'`,
    [db.name],
  );
  return Number(rows[0].n);
}

for (const bus of BUSES) {
  Deno.test({
    name:
      `cluster${bus.label}: one server's database is unreachable for 3 s mid-traffic: afterwards no gap, no duplicate, no reordering on any client`,
    ignore: bus.ignore,
    ...sanitized,
    async fn() {
      await using nats = bus.nats ? await startNats() : undefined;
      await using db = await createScratchDatabase(postgresUrl!);
      await using proxy = startProxy(targetOf(postgresUrl!));
      await using cluster = await startCluster(
        [db.url, db.url, proxiedUrl(db.url, proxy)],
        nats ? { NATS_URL: nats.url } : {},
      );
      const { senders, receivers } = await sendersAndReceivers(cluster.servers);
      const peers = [...senders, ...receivers];
      await using _peers = closing(peers);

      let stopped = false;
      const traffic = senders.map((s, i) =>
        s.sendMany(`o${i}`, { max: 3000, window: 8, pauseMs: 5, stop: () => stopped })
      );
      try {
        await waitUntil(() => senders.every((s) => s.acked.size >= 30), 15_000, "traffic to flow on every server");
        await proxy.cut();
        const cutAt = Date.now();
        await waitUntil(() => senders[2].failed.size > 0, 10_000, "a send to be refused during the outage");
        // More than one catch-up page (1,000 rows) is committed while the server is cut off.
        const burst = await receivers[0].sendMany("burst", { max: 1100, window: 50 });
        assertEquals(burst.length, 1100);
        assertEquals(receivers[0].acked.size, 1100);
        await sleep(Math.max(0, 3000 - (Date.now() - cutAt)));
        proxy.restore();
        const ackedAtRestore = senders[2].acked.size;
        await waitUntil(() => senders[2].acked.size >= ackedAtRestore + 30, 20_000, "the cut-off server to recover")
          .catch((err) => fail(`${err}; its warnings: ${JSON.stringify(problems(cluster.servers[2]))}`));
      } finally {
        if (proxy.isCut) proxy.restore();
        stopped = true;
        await Promise.all(traffic);
      }
      for (const [i, s] of senders.entries()) {
        for (const [requestId, code] of s.failed) assertEquals(code, "unavailable", `${requestId} on server ${i}`);
      }
      assertEquals(senders[0].failed.size + senders[1].failed.size, 0, "servers with a database refused a send");
      const rows = await converge(peers, db);
      for (const peer of peers) assertSawExactly(peer, rows, "after the outage");
      await waitUntil(async () => (await listenerCount(db)) === 3, 10_000, "three LISTEN connections again");
    },
  });
}

Deno.test({
  name:
    "cluster: a resend with the same client_msg_id through another server is deduplicated (the original back, one row, no second broadcast), also when both servers get it at once",
  ignore,
  ...sanitized,
  async fn() {
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url]);
    const [a, b] = cluster.servers;
    const alice = uniqueName("alice");
    await using aliceOnA = await Peer.login(a, alice, true);
    await using aliceOnB = await Peer.login(b, alice);
    await using watchA = await Peer.login(a, uniqueName("watch"), true);
    await using watchB = await Peer.login(b, uniqueName("watch"), true);
    const everyone = [aliceOnA, aliceOnB, watchA, watchB];

    const clientMsgId = crypto.randomUUID();
    const text = `once ${clientMsgId}`;
    await aliceOnA.client.send({ type: "send_message", message: text, client_msg_id: clientMsgId, request_id: "s:1" });
    await aliceOnA.until(() => aliceOnA.acked.has("s:1"), 10_000, "the first send's acknowledgement");
    const original = aliceOnA.acked.get("s:1")!;
    assertEquals(original.client_msg_id, clientMsgId);
    await Promise.all(everyone.map((p) => p.until(() => p.lastId >= (original.id as number), 10_000, "the original")));

    // The resend through B, as a client that lost its connection to A would.
    const again = await aliceOnB.request({ type: "send_message", message: text, client_msg_id: clientMsgId });
    assertEquals(again.type, "new_message", JSON.stringify(again));
    assertEquals(again.duplicate, true);
    assertEquals(again.id, original.id);
    assertEquals(again.timestamp, original.timestamp);
    assertEquals(again.message, text);
    assertEquals(again.client_msg_id, clientMsgId);

    // One row, one broadcast: a later message is the next thing every client gets.
    const after = await watchB.request({ type: "send_message", message: "after the resend" });
    assertEquals(after.type, "new_message");
    await Promise.all(
      everyone.map((p) => p.until(() => p.lastId >= (after.id as number), 10_000, "the later message")),
    );
    for (const p of everyone) {
      assertEquals(p.messages.filter((m) => m.message === text).length, 1, `${p.username} got it more than once`);
      assertEquals(p.messages.map((m) => m.id), [original.id, after.id]);
    }
    const stored = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM messages WHERE message_text = $1", [
      text,
    ]);
    assertEquals(stored[0].n, 1);

    // The same client_msg_id through both servers at once: one row, one broadcast; one sender gets the duplicate.
    const raceId = `race:${crypto.randomUUID()}`;
    const raceText = `race ${raceId}`;
    const racers = [aliceOnA, aliceOnB];
    await Promise.all(
      racers.map((p, i) =>
        p.client.send({ type: "send_message", message: raceText, client_msg_id: raceId, request_id: `r${i}` })
      ),
    );
    const answers = await Promise.all(racers.map((p, i) => p.reply(`r${i}`)));
    assertEquals(answers[0].id, answers[1].id, JSON.stringify(answers));
    assertEquals(answers.filter((a) => a.duplicate === true).length, 1, JSON.stringify(answers));
    const raced = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM messages WHERE message_text = $1", [
      raceText,
    ]);
    assertEquals(raced[0].n, 1);
    const last = await watchA.request({ type: "send_message", message: "after the race" });
    await Promise.all(everyone.map((p) => p.until(() => p.lastId >= (last.id as number), 10_000, "the last message")));
    for (const p of everyone) {
      assertEquals(p.messages.filter((m) => m.message === raceText).length, 1, `${p.username}: the race's broadcasts`);
    }
  },
});

Deno.test({
  name: "cluster: failed logins spread over three servers are throttled as on one",
  ignore,
  ...sanitized,
  async fn() {
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url, db.url]);
    const clients = await Promise.all(cluster.servers.map((s) => s.connect()));
    await using _clients = {
      [Symbol.asyncDispose]: async () => void await Promise.all(clients.map((c) => c.close())),
    };
    const victim = uniqueName("victim");
    assertEquals(
      (await clients[0].request({ type: "register", username: victim, password: PASSWORD })).status,
      "success",
    );

    // Guesses round-robin over the servers: the 6th fails with too_many_attempts, as on one server.
    const codes: unknown[] = [];
    for (let guess = 0; guess < 6; guess++) {
      const reply = await clients[guess % 3].request({ type: "login", username: victim, password: `guess-${guess}` });
      codes.push(reply.code);
      if (reply.code === "too_many_attempts") assert((reply.retry_after_ms as number) > 0, JSON.stringify(reply));
    }
    assertEquals(codes, [...Array(5).fill("invalid_credentials"), "too_many_attempts"]);
    // Every server throttles now, the right password included.
    for (const client of clients) {
      const reply = await client.request({ type: "login", username: victim, password: PASSWORD });
      assertEquals(reply.code, "too_many_attempts", JSON.stringify(reply));
    }

    // The same guesses at one server, for another user: the same count.
    const other = uniqueName("other");
    assertEquals(
      (await clients[1].request({ type: "register", username: other, password: PASSWORD })).status,
      "success",
    );
    const oneServer: unknown[] = [];
    for (let guess = 0; guess < 6; guess++) {
      oneServer.push((await clients[1].request({ type: "login", username: other, password: `guess-${guess}` })).code);
    }
    assertEquals(oneServer, codes);
  },
});

Deno.test({
  name:
    "cluster: rows inserted directly as the seed's server does are ordered and announced like the servers' own: live on every server in id order, and in every server's history",
  ignore,
  ...sanitized,
  async fn() {
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url]);
    const [a, b] = cluster.servers;
    const alice = await Peer.login(a, uniqueName("alice"), true);
    const bob = await Peer.login(b, uniqueName("bob"), true);
    await using _peers = closing([alice, bob]);
    const peers = [alice, bob];
    const [{ id: aliceId }] = await db.query<{ id: number }>("SELECT id FROM users WHERE username = $1", [
      alice.username,
    ]);
    const arrived = (id: number, what: string) =>
      Promise.all(peers.map((p) => p.until(() => p.lastId >= id, 10_000, what)));

    // 1. The seed's INSERT, alone (no server commits after it): announced on commit, so delivered at once.
    const [{ id: alone }] = await db.query<{ id: number }>(
      "INSERT INTO messages (sender_id, sender_username, message_text) VALUES ($1, $2, $3) RETURNING id",
      [aliceId, alice.username, "seed alone"],
    );
    await arrived(alone, "the seed row");

    // 2. Several rows in one statement, then a server's message: all arrive, in id order.
    const many = await db.query<{ id: number }>(
      `INSERT INTO messages (sender_id, sender_username, message_text)
        SELECT $1, $2, 'seed batch ' || n FROM generate_series(1, 3) AS n RETURNING id`,
      [aliceId, alice.username],
    );
    assertEquals(many.length, 3);
    const sent = await alice.request({ type: "send_message", message: "sent after the seed rows" });
    assertEquals(sent.type, "new_message");
    await arrived(sent.id as number, "the sent message");

    // 3. A seed transaction that stays open: it holds the messages lock, so a server's send waits
    // for its COMMIT and draws a later id. (Without the lock the send would commit first, and the
    // seed row, committed later with a smaller id, would reach no client and no in-memory history.)
    const seedSql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const tx = await seedSql.reserve();
      try {
        await tx`BEGIN`;
        const [{ id: open }] = await tx`INSERT INTO messages (sender_id, sender_username, message_text)
          VALUES (${aliceId}, ${alice.username}, 'seed in an open transaction') RETURNING id`;
        await alice.client.send({
          type: "send_message",
          message: "sent during the seed transaction",
          request_id: "s:u",
        });
        await sleep(500);
        assert(!alice.acked.has("s:u") && !alice.failed.has("s:u"), "the send did not wait for the seed's COMMIT");
        await tx`COMMIT`;
        await alice.until(() => alice.acked.has("s:u"), 10_000, "the send after the seed's COMMIT");
        assert((alice.acked.get("s:u")!.id as number) > Number(open));
      } finally {
        tx.release();
      }
    } finally {
      await seedSql.end({ timeout: 5 });
    }
    await arrived(alice.acked.get("s:u")!.id as number, "the send after the seed transaction");

    const rows = await databaseRows(db);
    assertEquals(rows.length, 7);
    for (const peer of peers) assertSawExactly(peer, rows, "seed rows and sent messages");
    for (const peer of peers) assertEquals(plain(await peer.history()), rows, `history on ${peer.username}'s server`);
    const newest = await bob.request({ type: "get_history", limit: 10 });
    assertEquals(plain(newest.messages as Frame[]), rows);
  },
});

Deno.test({
  name: "cluster: a second server on the same DATA_DIR refuses to start with one clear line; the first keeps serving",
  ...sanitized,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "chat-cluster-" });
    try {
      await using first = await spawnServer({ DATA_DIR: dataDir });
      const second = await runServerCommand({ DATA_DIR: dataDir, LOG_FORMAT: "text" });
      assertEquals(second.code, 1, `exit code; stderr: ${second.stderr}`);
      const lines = `${second.stdout}\n${second.stderr}`.split("\n")
        .filter((l) => l.trim() !== "" && !/Permissions in the config file/.test(l));
      assertEquals(lines.length, 1, `expected one line, got: ${JSON.stringify(lines)}`);
      assert(lines[0].includes("in use by another server"), lines[0]);
      assert(lines[0].includes(dataDir), lines[0]);

      await using client = await first.connect();
      await client.registerAndLogin(uniqueName("still"), PASSWORD);
      const reply = await client.request({ type: "send_message", message: "the first server still serves" });
      assertEquals(reply.type, "new_message", JSON.stringify(reply));
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});

// ---- the NATS bus (NATS_URL): servers announce their commits on NATS, not by NOTIFY ------------------

/** How many times `server` logged `msg`. */
function logged(server: ServerProcess, msg: string): number {
  return server.logs.filter((l) => l.msg === msg).length;
}

/** Waits until each of `servers` has connected to the bus `times` times in all ("NATS bus connected"). */
async function onTheBus(servers: ServerProcess[], times: number, ms: number, what: string): Promise<void> {
  await waitUntil(() => servers.every((s) => logged(s, "NATS bus connected") === times), ms, what);
}

Deno.test({
  name:
    "cluster (NATS bus): three servers, senders on each; NATS killed for 2 s mid-traffic and started again: every client gets every message once, in id order; every server reconnects",
  ignore: BUSES[1].ignore,
  ...sanitized,
  async fn() {
    await using nats = await startNats();
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url, db.url], { NATS_URL: nats.url });
    await onTheBus(cluster.servers, 1, 10_000, "every server on the bus");
    const { senders, receivers } = await sendersAndReceivers(cluster.servers);
    const peers = [...senders, ...receivers];
    await using _peers = closing(peers);

    let stopped = false;
    const traffic = senders.map((s, i) =>
      s.sendMany(`n${i}`, { max: 3000, window: 8, pauseMs: 5, stop: () => stopped })
    );
    try {
      await waitUntil(() => senders.every((s) => s.acked.size >= 30), 15_000, "traffic to flow on every server");
      await nats.stop();
      await waitUntil(
        () => cluster.servers.every((s) => logged(s, "NATS bus away; catching up from the database") >= 1),
        10_000,
        "every server to see the bus go",
      );
      const ackedWhileAway = count(senders);
      await waitUntil(() => count(senders) >= ackedWhileAway + 30, 15_000, "traffic while NATS is away");
      await sleep(1000);
      await nats.start();
      await onTheBus(cluster.servers, 2, 20_000, "every server back on the bus");
      const acked = count(senders);
      await waitUntil(() => count(senders) >= acked + 30, 15_000, "traffic after NATS came back");
    } finally {
      stopped = true;
      await Promise.all(traffic);
    }
    for (const s of senders) assertEquals([...s.failed], [], "a send was refused");
    const rows = await converge(peers, db);
    assertSenderOrder(rows);
    for (const peer of peers) assertSawExactly(peer, rows, "across a NATS outage");
  },
});

Deno.test({
  name:
    "cluster (NATS bus): servers started while NATS is down serve, and deliver each other's messages from the database; when NATS starts they join the bus",
  ignore: BUSES[1].ignore,
  ...sanitized,
  async fn() {
    await using nats = await startNats();
    await nats.stop();
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url], { NATS_URL: nats.url });
    const { senders, receivers } = await sendersAndReceivers(cluster.servers);
    const peers = [...senders, ...receivers];
    await using _peers = closing(peers);

    const sent = await Promise.all(senders.map((s, i) => s.sendMany(`d${i}`, { max: 40, window: 4 })));
    for (const [i, s] of senders.entries()) assertEquals(s.acked.size, sent[i].length, `sender ${i}`);
    let rows = await converge(peers, db);
    for (const peer of peers) assertSawExactly(peer, rows, "with NATS down");
    assert(cluster.servers.every((s) => logged(s, "NATS bus connected") === 0), "a server saw a bus that is not there");

    await nats.start();
    await onTheBus(cluster.servers, 1, 20_000, "every server on the bus");
    await Promise.all(senders.map((s, i) => s.sendMany(`u${i}`, { max: 40, window: 4 })));
    rows = await converge(peers, db);
    assertEquals(rows.length, 160);
    for (const peer of peers) assertSawExactly(peer, rows, "after NATS started");
  },
});

Deno.test({
  name:
    "cluster (NATS bus): a message committed and never published (its server died between COMMIT and publish) reaches every client by the periodic check; a row the seed's server inserts comes by its NOTIFY",
  ignore: BUSES[1].ignore,
  ...sanitized,
  async fn() {
    await using nats = await startNats();
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url], { NATS_URL: nats.url });
    const { senders, receivers } = await sendersAndReceivers(cluster.servers);
    const peers = [...senders, ...receivers];
    await using _peers = closing(peers);
    await Promise.all(senders.map((s, i) => s.sendMany(`q${i}`, { max: 10, window: 2 })));

    // Written as a server on the bus writes (chat.quiet: no NOTIFY), and published by nobody.
    await db.query(
      `WITH quiet AS (SELECT set_config('chat.quiet', 'on', true))
       INSERT INTO messages (sender_username, message_text) SELECT 'ghost', 'never published' FROM quiet`,
    );
    let rows = await converge(peers, db);
    for (const peer of peers) assertSawExactly(peer, rows, "a message nobody published");
    // The seed's server inserts plainly: its row NOTIFYs, which servers on the bus still LISTEN for.
    await db.query(`INSERT INTO messages (sender_username, message_text) VALUES ('seed', 'from the seed server')`);
    rows = await converge(peers, db);
    for (const peer of peers) assertSawExactly(peer, rows, "a row the seed's server inserted");
    assertEquals(rows.length, 22);
  },
});

Deno.test({
  name:
    "cluster (NATS bus): NATS frozen for 3 s mid-traffic (connections open, nothing moving): messages come by the head check meanwhile, the late publishes are dropped: every client gets every message once, in id order",
  ignore: BUSES[1].ignore,
  ...sanitized,
  async fn() {
    await using nats = await startNats();
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url, db.url], { NATS_URL: nats.url });
    const { senders, receivers } = await sendersAndReceivers(cluster.servers);
    const peers = [...senders, ...receivers];
    await using _peers = closing(peers);

    let stopped = false;
    const traffic = senders.map((s, i) =>
      s.sendMany(`f${i}`, { max: 3000, window: 8, pauseMs: 5, stop: () => stopped })
    );
    try {
      await waitUntil(() => senders.every((s) => s.acked.size >= 30), 15_000, "traffic to flow on every server");
      nats.pause();
      const acked = count(senders);
      // A receiver on server A still gets server B's messages, from the database.
      const fromB = () => receivers[0].messages.filter((m) => String(m.message).startsWith("f1-")).length;
      const seen = fromB();
      await waitUntil(() => count(senders) >= acked + 60, 15_000, "traffic while NATS is frozen");
      await waitUntil(() => fromB() > seen, 15_000, "server B's messages on server A while NATS is frozen");
      await sleep(3000);
      nats.resume();
      const after = count(senders);
      await waitUntil(() => count(senders) >= after + 30, 15_000, "traffic after NATS resumed");
    } finally {
      nats.resume();
      stopped = true;
      await Promise.all(traffic);
    }
    for (const s of senders) assertEquals([...s.failed], [], "a send was refused");
    const rows = await converge(peers, db);
    assertSenderOrder(rows);
    for (const peer of peers) assertSawExactly(peer, rows, "across a frozen NATS");
  },
});

Deno.test({
  name:
    "cluster (NATS bus): a server that stops reading is cut off by NATS as a slow consumer; it reconnects and catches up: every client gets every message once, in id order",
  ignore: BUSES[1].ignore,
  ...sanitized,
  async fn() {
    await using nats = await startNats({ maxPendingBytes: 256 * 1024 });
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url, db.url], { NATS_URL: nats.url });
    await onTheBus(cluster.servers, 1, 10_000, "every server on the bus");
    const { senders, receivers } = await sendersAndReceivers(cluster.servers);
    const peers = [...senders, ...receivers];
    await using _peers = closing(peers);
    await Promise.all(senders.map((s, i) => s.sendMany(`a${i}`, { max: 30, window: 5 })));
    await converge(peers, db);

    // Server C stops reading. A publisher floods the lobby's subject with rows every server has
    // delivered already (the others drop them): NATS holds C's share until it may hold no more,
    // then cuts C off.
    const stalled = cluster.servers[2];
    Deno.kill(stalled.pid, "SIGSTOP");
    const flood = await connectNats({ servers: nats.url });
    try {
      const stale = JSON.stringify({
        s: "flood",
        f: "lobby",
        p: 0,
        r: [{ id: 1, sender: "x", message: "x".repeat(100_000), timestamp: "2026-01-01T00:00:00" }],
      });
      const bytes = new TextEncoder().encode(stale);
      for (let i = 0; i < 400; i++) flood.publish("chat.lobby", bytes);
      await flood.flush();
      // Meanwhile the others go on.
      await Promise.all(senders.slice(0, 2).map((s, i) => s.sendMany(`b${i}`, { max: 30, window: 5 })));
    } finally {
      Deno.kill(stalled.pid, "SIGCONT");
      await flood.close();
    }
    await waitUntil(
      () => logged(stalled, "NATS bus away; catching up from the database") > 0,
      20_000,
      "the stalled server to be cut off",
    );
    await onTheBus([stalled], 2, 20_000, "the stalled server back on the bus");
    await Promise.all(senders.map((s, i) => s.sendMany(`c${i}`, { max: 30, window: 5 })));
    for (const s of senders) assertEquals([...s.failed], [], "a send was refused");
    const rows = await converge(peers, db);
    assertEquals(rows.length, 30 * 3 + 30 * 2 + 30 * 3);
    for (const peer of peers) assertSawExactly(peer, rows, "after a slow-consumer cut-off");
  },
});

Deno.test({
  name:
    "cluster (NATS bus): servers started while NATS is down subscribe to the rooms their users are already in once it starts",
  ignore: BUSES[1].ignore,
  ...sanitized,
  async fn() {
    await using nats = await startNats();
    await nats.stop();
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url], { NATS_URL: nats.url });
    // A room with a member on each server, made while NATS is away.
    const clients: TestClient[] = [];
    try {
      for (const server of cluster.servers) {
        const client = await server.connect();
        clients.push(client);
        await client.registerAndLogin(uniqueName("nr"), PASSWORD);
        await client.request({ type: "hello", protocol: 2 });
      }
      await clients[0].send({ type: "room_create", name: uniqueName("nr"), visibility: "public", request_id: "c" });
      const room = ((await clients[0].waitFor((f) => f.request_id === "c")).room as Frame).id as string;
      await clients[1].send({ type: "room_join", room, request_id: "j" });
      assertEquals((await clients[1].waitFor((f) => f.request_id === "j")).type, "room_response");

      await nats.start();
      await waitUntil(
        async () => (await nats.subjects()).filter((s) => s === `chat.room.${room}`).length === 2,
        20_000,
        "both servers subscribed to the room",
      );
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  },
});

/** The subscriptions to `room`'s subject on NATS now, of every server together. */
async function roomSubscriptions(nats: NatsServer, room: string): Promise<number> {
  return (await nats.subjects()).filter((s) => s === `chat.room.${room}`).length;
}

Deno.test({
  name:
    "cluster (NATS bus): a server subscribes to a room only while a connected user is a member: not for a non-member, a previewer or an invitee; the subscription goes when the last local member leaves or disconnects",
  ignore: BUSES[1].ignore,
  ...sanitized,
  async fn() {
    await using nats = await startNats();
    await using db = await createScratchDatabase(postgresUrl!);
    await using cluster = await startCluster([db.url, db.url], { NATS_URL: nats.url });
    const [a, b] = cluster.servers;
    await onTheBus(cluster.servers, 1, 10_000, "every server on the bus");
    const alice = await Peer.login(a, uniqueName("owner"), true);
    const bob = await Peer.login(b, uniqueName("other"), true);
    await using _peers = closing([alice, bob]);
    for (const peer of [alice, bob]) {
      assertEquals((await peer.request({ type: "hello", protocol: 2 })).type, "hello_response");
    }

    const created = await alice.request({ type: "room_create", name: uniqueName("subs"), visibility: "public" });
    assertEquals(created.type, "room_response", JSON.stringify(created));
    const room = (created.room as Frame).id as string;
    await waitUntil(async () => (await roomSubscriptions(nats, room)) === 1, 10_000, "server A subscribed to the room");

    // Bob, on B, is no member: he reads the public room's history, and a message is sent in it;
    // B still does not subscribe.
    const sent = await alice.request({ type: "send_message", room, message: "for members only" });
    assertEquals(sent.type, "new_message", JSON.stringify(sent));
    const preview = await bob.request({ type: "get_history", room });
    assertEquals(preview.type, "history_response", JSON.stringify(preview));
    assert((preview.messages as Frame[]).some((m) => m.message === "for members only"), JSON.stringify(preview));
    await sleep(500);
    assertEquals(await roomSubscriptions(nats, room), 1, "a server with no member of the room subscribed to it");

    // A member on B: B subscribes; he leaves: B's subscription goes, A's stays.
    assertEquals((await bob.request({ type: "room_join", room })).type, "room_response");
    await waitUntil(async () => (await roomSubscriptions(nats, room)) === 2, 10_000, "server B subscribed");
    assertEquals((await bob.request({ type: "room_leave", room })).type, "room_left");
    await waitUntil(async () => (await roomSubscriptions(nats, room)) === 1, 10_000, "B's subscription gone");

    // He joins again, then disconnects: B's subscription goes.
    assertEquals((await bob.request({ type: "room_join", room })).type, "room_response");
    await waitUntil(async () => (await roomSubscriptions(nats, room)) === 2, 10_000, "server B subscribed again");
    await bob.close();
    await waitUntil(async () => (await roomSubscriptions(nats, room)) === 1, 10_000, "B's subscription gone");

    // A private room whose invitee is on B: the invitation reaches him, and B does not keep a subscription.
    await using invitee = await b.connect();
    const inviteeName = uniqueName("invitee");
    await invitee.registerAndLogin(inviteeName, PASSWORD);
    assertEquals((await invitee.request({ type: "hello", protocol: 2 })).type, "hello_response");
    const privateRoom = await alice.request({ type: "room_create", name: uniqueName("priv"), visibility: "private" });
    const secret = (privateRoom.room as Frame).id as string;
    await waitUntil(async () => (await roomSubscriptions(nats, secret)) === 1, 10_000, "server A subscribed");
    const invited = await alice.request({ type: "room_invite", room: secret, user: inviteeName });
    assertEquals(invited.type, "invite_response", JSON.stringify(invited));
    const invitation = await invitee.waitFor((f) => f.type === "member_event", 10_000);
    assertEquals([invitation.room, invitation.membership], [secret, "invite"]);
    await sleep(500);
    assertEquals(await roomSubscriptions(nats, secret), 1, "the invitee's server subscribed to the private room");

    // The last member anywhere disconnects: no server subscribes to either room.
    await alice.close();
    await waitUntil(
      async () => (await roomSubscriptions(nats, room)) + (await roomSubscriptions(nats, secret)) === 0,
      10_000,
      "A's subscriptions gone",
    );
  },
});

/** METRICS_ADDR's /healthz of a server (its port given): the status and the body. */
async function healthz(port: number): Promise<{ status: number; body: Frame }> {
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: response.status, body: await response.json() as Frame };
}

/** One value of METRICS_ADDR's /metrics of a server (its port given). */
async function metric(port: number, name: string): Promise<number> {
  return sample(await scrapeMetrics(port), name);
}

Deno.test({
  name:
    "cluster (NATS bus): /healthz says the bus is degraded (200) while NATS is down and nats again after; /metrics counts a gap repaired and the bus's reconnect",
  ignore: BUSES[1].ignore,
  ...sanitized,
  async fn() {
    await using nats = await startNats();
    await using db = await createScratchDatabase(postgresUrl!);
    const spawn = () => spawnServer({ ...serverEnv(db.url), NATS_URL: nats.url, METRICS_ADDR: "127.0.0.1:0" });
    await using a = await spawn();
    await using b = await spawn();
    const servers = [a, b];
    const monitors = await Promise.all(servers.map((server) => server.metricsPort()));
    await onTheBus(servers, 1, 10_000, "both on the bus");
    /** Each server's /healthz comes to say `bus` (200 either way), and chat_bus_up agrees. */
    const busReported = async (bus: "degraded" | "nats", ms: number) => {
      for (const port of monitors) {
        await waitUntil(async () => (await healthz(port)).body.bus === bus, ms, `/healthz on :${port} to say ${bus}`);
        assertEquals(await healthz(port), { status: 200, body: { status: "ok", bus } });
        assertEquals(await metric(port, "chat_bus_up"), bus === "nats" ? 1 : 0);
      }
    };

    await busReported("nats", 0);
    for (const port of monitors) assertEquals(await metric(port, "chat_bus_reconnects"), 0);
    const sender = await Peer.login(a, uniqueName("send"), true);
    const receiver = await Peer.login(b, uniqueName("recv"), true);
    await using _peers = closing([sender, receiver]);
    const delivered = async (text: string) => {
      const sent = await sender.request({ type: "send_message", message: text });
      assertEquals(sent.type, "new_message", JSON.stringify(sent));
      await receiver.until(() => receiver.lastId >= (sent.id as number), 10_000, text);
    };

    // Messages published in order leave no gap to repair.
    const gapsBefore = await metric(monitors[1], "chat_stream_gaps_repaired_total");
    for (let i = 0; i < 3; i++) await delivered(`in order ${i}`);
    assertEquals(await metric(monitors[1], "chat_stream_gaps_repaired_total"), gapsBefore);

    // A row committed and never published (as by a server that died between COMMIT and publish),
    // then A's next message, whose `prev` is that row: B sees the gap by id and reads it from the
    // database. (B's periodic head check, every 5 s, may read the row first and leave no gap: a
    // few tries make that vanishingly rare.)
    let repaired = gapsBefore;
    for (let attempt = 0; attempt < 3 && repaired === gapsBefore; attempt++) {
      await db.query(
        `WITH quiet AS (SELECT set_config('chat.quiet', 'on', true))
         INSERT INTO messages (sender_username, message_text) SELECT 'ghost', 'never published' FROM quiet`,
      );
      await delivered(`after a gap ${attempt}`);
      repaired = await metric(monitors[1], "chat_stream_gaps_repaired_total");
    }
    assert(repaired > gapsBefore, "a gap on the bus was not counted as repaired");
    assert(await metric(monitors[1], "chat_stream_gaps_total") >= repaired - gapsBefore);
    assertSawExactly(receiver, await databaseRows(db), "across the gaps");

    // NATS down: both servers still serve, say so with 200, and deliver from the database.
    await nats.stop();
    await busReported("degraded", 10_000);
    await delivered("while NATS is down");

    // Back: healthy again, one reconnect counted each.
    await nats.start();
    await busReported("nats", 15_000);
    for (const port of monitors) {
      assert(await metric(port, "chat_bus_reconnects") >= 1, `no reconnect counted on :${port}`);
    }
    await delivered("after NATS came back");
    assertSawExactly(receiver, await databaseRows(db), "across the NATS outage");
  },
});

Deno.test({
  name:
    "cluster (NATS bus): NATS_URL with a user and password: the servers connect, deliver and reconnect, and no log line at debug level carries the password (nor a wrong one)",
  ignore: BUSES[1].ignore,
  ...sanitized,
  async fn() {
    const user = "chatbus";
    // An @, / and : in the password: written percent-encoded in the URL, decoded by the server.
    const pass = `pw@/:${crypto.randomUUID()}`;
    const wrong = `wrong-${crypto.randomUUID()}`;
    await using nats = await startNats({ auth: { user, pass } });
    const withCredentials = (password: string) =>
      nats.url.replace("nats://", `nats://${user}:${encodeURIComponent(password)}@`);
    // Started while NATS is down, so that the first connection's failures are logged too.
    await nats.stop();
    await using db = await createScratchDatabase(postgresUrl!);
    const env = { NATS_URL: withCredentials(pass), LOG_LEVEL: "debug" };
    await using cluster = await startCluster([db.url, db.url], env);
    await using refused = await spawnServer({ ...serverEnv(db.url), ...env, NATS_URL: withCredentials(wrong) });
    const all = [...cluster.servers, refused];
    await waitUntil(
      () => all.every((s) => logged(s, "cannot reach NATS; retrying") >= 1),
      10_000,
      "every server to fail to reach NATS",
    );

    await nats.start();
    await onTheBus(cluster.servers, 1, 10_000, "both servers on the bus");
    await waitUntil(
      async () => (await nats.subjects()).filter((s) => s === "chat.lobby").length === 2,
      10_000,
      "both servers subscribed to the lobby",
    );
    const sender = await Peer.login(cluster.servers[0], uniqueName("send"), true);
    const receiver = await Peer.login(cluster.servers[1], uniqueName("recv"), true);
    await using _peers = closing([sender, receiver]);
    const delivered = async (text: string) => {
      const sent = await sender.request({ type: "send_message", message: text });
      assertEquals(sent.type, "new_message", JSON.stringify(sent));
      await receiver.until(() => receiver.lastId >= (sent.id as number), 10_000, text);
    };
    await delivered("over an authenticated bus");

    // Down for a moment, and back: the disconnection and reconnection are logged.
    await nats.stop();
    await waitUntil(
      () => cluster.servers.every((s) => logged(s, "NATS bus away; catching up from the database") === 1),
      10_000,
      "both servers to see the bus go",
    );
    const refusedBefore = logged(refused, "cannot reach NATS; retrying");
    await nats.start();
    await onTheBus(cluster.servers, 2, 15_000, "both servers back on the bus");
    await delivered("after NATS came back");
    // The wrong password is refused by NATS after the restart too (and never reaches the bus).
    await waitUntil(() => logged(refused, "cannot reach NATS; retrying") > refusedBefore + 1, 10_000, "a refusal");
    assertEquals(logged(refused, "NATS bus connected"), 0);
    assert(refused.logs.some((l) => /authorization/i.test(String(l.error))), "the wrong password was not refused");

    for (const server of all) {
      assert(server.logs.some((l) => l.level === "debug"), "the server did not log at debug level");
      const text = JSON.stringify(server.logs);
      for (const secret of [pass, encodeURIComponent(pass), wrong, `${user}:`]) {
        assert(!text.includes(secret), `a log line carries NATS credentials: ${text}`);
      }
    }
  },
});
