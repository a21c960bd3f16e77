// Hostile clients, attack-shaped: slowloris, a reader that never reads during a broadcast storm,
// connection floods, login brute force, message floods, resets in the middle of a frame. In each,
// a bystander keeps doing send_message → new_message round trips (sender and a second receiver),
// the server's memory stays bounded, and the offender gets the contract's error code.
// (The basic limit tests are elsewhere; these measure service for everyone else during an attack.)
// The server runs in its own process, so that its memory is measured alone: in this process the
// count would include the attackers' sockets and whatever earlier test files left to the collector
// (CI once read +212 MB there for a login flood that raised the server's own peak by about 30 MB).

import { assert, assertEquals, fail } from "./support/assert.ts";
import { type Frame, sanitized, type TestClient } from "./support/helpers.ts";
import {
  closeSharedPglite,
  collectUntil,
  readAllHistory,
  runTraffic,
  type StoredMessage,
  stores,
  uniqueText,
} from "./support/reliability.ts";
import { sleep, waitUntil } from "./support/util.ts";
import { NodeLineClient } from "./support/node_line_client.ts";
import { type ServerProcess, spawnServer } from "./support/process.ts";
import { sample, scrapeMetrics } from "./support/metrics.ts";

// Each test's server has a database of its own; the shared in-process PGlite would only trip the sanitizer.
await closeSharedPglite();

/** Attacks do not depend on the storage: PostgreSQL when available (fast to start), else PGlite. */
const store = stores.at(-1)!;
const encoder = new TextEncoder();
/** The server's resident memory may rise this far above where it was when an attack began. */
const MEMORY_BOUND = 100 * 1024 * 1024;
/** How often the server's memory is read during an attack: its peak is what is bounded. */
const MEMORY_SAMPLE_MS = 100;

/** A server under attack, in its own process, on a database of its own. */
interface AttackedServer extends AsyncDisposable {
  readonly port: number;
  connect(): Promise<TestClient>;
  /** Connections the server holds now, over every transport (its /metrics). */
  connections(): Promise<number>;
  /** The server's resident memory now, in bytes (its /metrics). */
  residentBytes(): Promise<number>;
}

async function start(env: Record<string, string> = {}): Promise<AttackedServer> {
  const database = await store.open();
  let server: ServerProcess | undefined;
  let metricsPort: number;
  try {
    server = await spawnServer({ ...database.env, METRICS_ADDR: "127.0.0.1:0", ...env });
    metricsPort = await server.metricsPort();
  } catch (err) {
    await server?.[Symbol.asyncDispose]();
    await database[Symbol.asyncDispose]();
    throw err;
  }
  return {
    port: server.port,
    connect: () => server.connect(),
    async connections() {
      const family = (await scrapeMetrics(metricsPort)).get("chat_connections");
      return (family?.metrics ?? []).reduce((sum, series) => sum + Number(series.value), 0);
    },
    residentBytes: async () => sample(await scrapeMetrics(metricsPort), "process_resident_memory_bytes"),
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      await database[Symbol.asyncDispose]();
    },
  };
}

interface Service {
  roundTrips: number;
  rssGrowth: number;
}

/**
 * Runs `attack` while a bystander (one sender, one receiver, users of their own) does a
 * send_message → new_message round trip every 150 ms. Fails if any round trip fails or takes more
 * than 5 s, or if the server's peak resident memory rises MEMORY_BOUND above where it began.
 */
async function underAttack(server: AttackedServer, attack: () => Promise<void>): Promise<Service> {
  await using sender = await server.connect();
  await using receiver = await server.connect();
  await sender.registerAndLogin();
  await receiver.registerAndLogin();
  const rssBefore = await server.residentBytes();
  let rssPeak = rssBefore;
  // One read at a time, awaited before the end, so that no request outlives the test.
  let sampling = Promise.resolve();
  const sampler = setInterval(() => {
    sampling = sampling.then(async () => {
      rssPeak = Math.max(rssPeak, await server.residentBytes());
    });
  }, MEMORY_SAMPLE_MS);
  let stopped = false;
  let roundTrips = 0;
  let failure: unknown;
  const bystander = (async () => {
    for (let i = 0; !stopped && i < 10_000; i++) {
      const id = `bystander-${i}`;
      const text = uniqueText("bystander");
      try {
        await sender.send({ type: "send_message", message: text, request_id: id });
        await sender.waitFor((f) => f.type === "new_message" && f.request_id === id, 5000);
        await receiver.waitFor((f) => f.type === "new_message" && f.message === text, 5000);
      } catch (err) {
        failure = err;
        return;
      }
      roundTrips++;
      await sleep(150);
    }
  })();
  try {
    await attack();
    // Fast attacks: the bystander also completes two round trips after it (service is back).
    const roundTripsAtEnd = roundTrips;
    await waitUntil(
      () => failure !== undefined || roundTrips >= roundTripsAtEnd + 2,
      10_000,
      "round trips after the attack",
    );
  } finally {
    stopped = true;
    clearInterval(sampler);
    await bystander;
    await sampling;
  }
  if (failure) fail(`the bystander's round trip failed during the attack: ${failure}`);
  assert(roundTrips >= 2, `only ${roundTrips} bystander round trips`);
  // The peak, not the memory now: a backlog freed by the end of the attack still counts.
  const rssGrowth = Math.max(rssPeak, await server.residentBytes()) - rssBefore;
  assert(rssGrowth < MEMORY_BOUND, `the server's resident memory rose by ${rssGrowth} bytes`);
  return { roundTrips, rssGrowth };
}

/** Every stored message, read by a new user on a connection of its own (no broadcasts in the way). */
async function storedMessages(server: AttackedServer): Promise<StoredMessage[]> {
  await using reader = await server.connect();
  await reader.registerAndLogin();
  return await readAllHistory(reader);
}

/** Reads a raw socket until the server closes it; returns the bytes, or fails after `ms`. */
async function readToEnd(conn: Deno.Conn, ms: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  const timer = setTimeout(() => conn.close(), ms);
  let timedOut = true;
  try {
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) {
        timedOut = false;
        break;
      }
      chunks.push(buffer.slice(0, n));
    }
  } catch (err) {
    // Reset by the server: also an end, unless it was our timer closing the socket.
    timedOut = err instanceof Deno.errors.BadResource;
  } finally {
    clearTimeout(timer);
  }
  if (timedOut) fail(`the server did not close the connection within ${ms} ms`);
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  try {
    conn.close();
  } catch {
    // Closed.
  }
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

Deno.test({
  name: "hostile: slowloris clients sending a byte a second are closed with idle_timeout; others unaffected",
  ...sanitized,
  async fn() {
    await using server = await start({ LOGIN_IDLE_TIMEOUT_SEC: "1" });
    const service = await underAttack(server, async () => {
      const lorises = await Promise.all(Array.from({ length: 20 }, () => server.connect()));
      try {
        const frame = encoder.encode(`{"type":"register","username":"slow_loris","password":"secret123"}\n`);
        // One byte a second, for at most 4 s: the frame never completes in time.
        for (let second = 0; second < 4 && lorises.some((c) => !c.ended); second++) {
          await Promise.all(lorises.map((c) => c.ended ? undefined : c.send(frame.subarray(second, second + 1))));
          await sleep(1000);
        }
        for (const loris of lorises) {
          const frames = await loris.expectClosed(5000);
          assertEquals(frames.map((f) => f.code), ["idle_timeout"]);
        }
      } finally {
        await Promise.all(lorises.map((c) => c.close()));
      }
    });
    await waitUntil(async () => await server.connections() === 0, 5000, "every connection to close");
    assert(service.roundTrips >= 2);
  },
});

Deno.test({
  name: "hostile: a client that never reads during a broadcast storm is cut off; everyone else gets every message",
  ...sanitized,
  async fn() {
    await using server = await start({ RATE_LIMIT_PER_SEC: "0", MAX_OUTBOUND_BYTES: "65536" });
    const stormName = `storm_${crypto.randomUUID().slice(0, 8)}`;
    await using stormer = await server.connect();
    await stormer.registerAndLogin(stormName);
    await using watcher = await server.connect();
    await watcher.registerAndLogin();
    const offender = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const name = `nr_${crypto.randomUUID().slice(0, 8)}`;
    await writeAll(
      offender,
      encoder.encode(
        JSON.stringify({ type: "register", username: name, password: "secret123" }) + "\n" +
          JSON.stringify({ type: "login", username: name, password: "secret123" }) + "\n",
      ),
    );
    await waitUntil(
      async () => ((await watcher.request({ type: "list_users" })).users as string[]).includes(name),
      5000,
      "the offender to log in",
    );
    const prefix = `storm-${name}`;
    const count = 4000;
    let acked = 0;
    await underAttack(server, async () => {
      // 12 MB of broadcasts: more than the kernel's socket buffers and the 64 KiB bound together.
      const log = await runTraffic(stormer, {
        prefix,
        window: 64,
        maxMessages: count,
        stop: () => false,
        drainMs: 30_000,
        pad: ` ${"s".repeat(3000)}`,
      });
      acked = log.acked.size;
    });
    assertEquals(acked, count, "every storm message was acknowledged");
    // The offender was disconnected (a slow consumer gets no error frame: its queue is dropped).
    const rest = await readToEnd(offender, 10_000);
    assert(rest.length > 0, "the offender got its replies before it was cut off");
    // The watcher, reading normally, got every message, in order.
    const frames = await collectUntil(
      watcher,
      (f) => f.type === "new_message" && (f.message as string).startsWith(`${prefix}-${count - 1} `),
      30_000,
    );
    const storm = frames.filter((f) => f.type === "new_message" && f.sender === stormName);
    assertEquals(
      storm.map((f) => (f.message as string).split(" ")[0]),
      Array.from({ length: count }, (_, i) => `${prefix}-${i}`),
    );
    await waitUntil(async () => await server.connections() === 2, 5000, "only stormer and watcher left");
  },
});

/** Opens `count` connections at once; returns those the server kept and the refusals' frames. */
async function flood(server: AttackedServer, count: number): Promise<{ kept: TestClient[]; refused: Frame[][] }> {
  const clients = await Promise.all(Array.from({ length: count }, () => server.connect()));
  // Each asks for a pong: a kept connection answers, a refused one was closed with an error.
  await Promise.all(clients.map((c) => c.send({ type: "ping" }).catch(() => {})));
  const kept: TestClient[] = [];
  const refused: Frame[][] = [];
  await Promise.all(clients.map(async (c) => {
    const first = await c.next(10_000).catch(() => undefined);
    if (first?.type === "pong") kept.push(c);
    else {
      refused.push([...(first ? [first] : []), ...await c.expectClosed(10_000)]);
      await c.close();
    }
  }));
  return { kept, refused };
}

for (const limit of ["MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_IP"]) {
  Deno.test({
    name: `hostile: a connection flood past ${limit} is refused with too_many_connections; others unaffected`,
    ...sanitized,
    async fn() {
      await using server = await start({ [limit]: "40" });
      await underAttack(server, async () => {
        for (let wave = 0; wave < 3; wave++) {
          const { kept, refused } = await flood(server, 150);
          try {
            // The bystander holds 2 of the 40.
            assertEquals(kept.length, 38, `wave ${wave}: connections kept`);
            assertEquals(refused.length, 112);
            for (const frames of refused) assertEquals(frames.map((f) => f.code), ["too_many_connections"]);
          } finally {
            await Promise.all(kept.map((c) => c.close()));
          }
          // Refused and closed connections are forgotten: the next wave gets the same 38.
          await waitUntil(async () => await server.connections() === 2, 5000, "the flood to drain");
        }
      });
    },
  });
}

Deno.test({
  name: "hostile: a login brute force gets too_many_attempts, even for the right password; others unaffected",
  ...sanitized,
  async fn() {
    await using server = await start();
    await using victimSetup = await server.connect();
    const victim = `victim_${crypto.randomUUID().slice(0, 8)}`;
    assertEquals(
      (await victimSetup.request({ type: "register", username: victim, password: "right-pass" })).status,
      "success",
    );
    await underAttack(server, async () => {
      await using attacker = await server.connect();
      const codes: string[] = [];
      for (let i = 0; i < 60; i++) {
        const reply = await attacker.request({ type: "login", username: victim, password: `guess-${i}` });
        assertEquals(reply.type, "login_response");
        assertEquals(reply.status, "error");
        codes.push(reply.code as string);
        if (reply.code === "too_many_attempts") assert((reply.retry_after_ms as number) > 0);
      }
      const firstThrottled = codes.indexOf("too_many_attempts");
      assert(firstThrottled > 0 && firstThrottled <= 5, `throttled after ${firstThrottled} failures`);
      assert(codes.slice(firstThrottled).every((c) => c === "too_many_attempts"), codes.join(","));
      // While locked out, even the right password is refused: guessing it is useless.
      const right = await attacker.request({ type: "login", username: victim, password: "right-pass" });
      assertEquals(right.code, "too_many_attempts");
      // Spraying other names from the same address is throttled per address too.
      const spray: string[] = [];
      for (let i = 0; i < 30; i++) {
        const reply = await attacker.request({ type: "login", username: `spray_${i}_${victim}`, password: "guess" });
        spray.push(reply.code as string);
      }
      assert(spray.includes("too_many_attempts"), spray.join(","));
      assert(spray.filter((c) => c === "invalid_credentials").length <= 20, spray.join(","));
    });
  },
});

/** Distinct peers for the login flood: 127.1.0.0/16 addresses, each its own rate-limit key. */
const FLOOD_ADDRESSES = 2_000;
const FLOOD_NAMES_PER_ADDRESS = 2;
const FLOOD_CONCURRENCY = 50;

Deno.test({
  name: "hostile: failed logins from thousands of addresses and names each get an answer; others unaffected",
  ...sanitized,
  async fn() {
    await using server = await start();
    const suffix = crypto.randomUUID().slice(0, 8);
    const codes = new Map<string, number>();
    await underAttack(server, async () => {
      let nextAddress = 0;
      const worker = async () => {
        while (nextAddress < FLOOD_ADDRESSES) {
          const i = nextAddress++;
          await using peer = await NodeLineClient.connect(server.port, `127.1.${i >> 8}.${i & 255}`);
          for (let j = 0; j < FLOOD_NAMES_PER_ADDRESS; j++) {
            const reply = await peer.request({
              type: "login",
              username: `flood_${i}_${j}_${suffix}`,
              password: "guess1",
            });
            assertEquals(reply.type, "login_response");
            const code = String(reply.code);
            codes.set(code, (codes.get(code) ?? 0) + 1);
          }
        }
      };
      await Promise.all(Array.from({ length: FLOOD_CONCURRENCY }, worker));
    });
    // Every name and every address is new, so no throttle applies: each attempt is a plain failure.
    assertEquals(Object.fromEntries(codes), { invalid_credentials: FLOOD_ADDRESSES * FLOOD_NAMES_PER_ADDRESS });
  },
});

Deno.test({
  name: "hostile: a message flood past the rate limit gets rate_limited and nothing past the limit is stored",
  ...sanitized,
  async fn() {
    await using server = await start({ RATE_LIMIT_PER_SEC: "10", RATE_LIMIT_BURST: "20" });
    const flooder = `flood_${crypto.randomUUID().slice(0, 8)}`;
    const conns = await Promise.all(Array.from({ length: 3 }, () => server.connect()));
    try {
      await conns[0].registerAndLogin(flooder);
      for (const c of conns.slice(1)) {
        assertEquals((await c.request({ type: "login", username: flooder, password: "secret123" })).status, "success");
      }
      let accepted = 0;
      let limited = 0;
      let elapsedMs = 0;
      await underAttack(server, async () => {
        const started = performance.now();
        // The same user on three connections, 200 sends each, pipelined.
        const logs = await Promise.all(
          conns.map((c, i) =>
            runTraffic(c, { prefix: `${flooder}-c${i}`, window: 200, maxMessages: 200, stop: () => false })
          ),
        );
        elapsedMs = performance.now() - started;
        for (const log of logs) {
          assertEquals(log.acked.size + log.failed.size, 200, "every send got exactly one answer");
          for (const code of log.failed.values()) assertEquals(code, "rate_limited");
          accepted += log.acked.size;
          limited += log.failed.size;
        }
      });
      // Burst 20, then 10/s: the bound holds across the user's connections.
      const bound = 20 + Math.ceil((elapsedMs / 1000) * 10) + 1;
      assert(accepted >= 20 && accepted <= bound, `${accepted} accepted in ${elapsedMs} ms (bound ${bound})`);
      assert(limited > 0);
      const stored = (await storedMessages(server)).filter((m) => m.sender === flooder);
      assertEquals(stored.length, accepted, "stored exactly the accepted messages");
    } finally {
      await Promise.all(conns.map((c) => c.close()));
    }
  },
});

Deno.test({
  name: "hostile: clients resetting the connection mid-frame leave nothing half-done; others unaffected",
  ...sanitized,
  async fn() {
    await using server = await start({ RATE_LIMIT_PER_SEC: "0" });
    const name = `rst_${crypto.randomUUID().slice(0, 8)}`;
    await using setup = await server.connect();
    assertEquals((await setup.request({ type: "register", username: name, password: "secret123" })).status, "success");
    const halfTexts: string[] = [];
    await underAttack(server, async () => {
      for (let i = 0; i < 60; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        const text = uniqueText(`half-${i}`);
        halfTexts.push(text);
        const login = i % 2 === 0
          ? JSON.stringify({ type: "login", username: name, password: "secret123" }) + "\n"
          : "";
        // Replies to these stay unread, so close() below resets the connection (RST).
        await writeAll(conn, encoder.encode(login + `{"type":"ping"}\n`.repeat(5)));
        await sleep(20);
        const frame = JSON.stringify({ type: "send_message", message: text });
        await writeAll(conn, encoder.encode(frame.slice(0, 10 + (i % (frame.length - 10)))));
        conn.close();
      }
    });
    await waitUntil(async () => await server.connections() === 1, 5000, "the reset connections to be gone");
    const half = new Set(halfTexts);
    const stored = (await storedMessages(server)).filter((m) => half.has(m.message));
    assertEquals(stored.map((m) => m.message), [], "a half frame was executed");
    await setup.send({ type: "ping" });
    await setup.expect("pong");
  },
});

Deno.test({
  name: "hostile: a reading client's one legal history reply larger than MAX_OUTBOUND_BYTES is delivered",
  // 300 messages of ~3950 "é" (≈ 2.4 MB in one reply, all within the contract's limits): only a
  // backlog behind a blocked write counts as a slow consumer, not one big reply (d8ec7e6).
  ...sanitized,
  async fn() {
    await using server = await start({ RATE_LIMIT_PER_SEC: "0" });
    await using client = await server.connect();
    await client.registerAndLogin();
    const log = await runTraffic(client, {
      prefix: `big-${crypto.randomUUID().slice(0, 8)}`,
      window: 50,
      maxMessages: 300,
      stop: () => false,
      pad: " " + "é".repeat(3950),
    });
    assertEquals(log.acked.size, 300);
    const reply = await client.request({ type: "get_history", limit: 500 }, 15_000);
    assertEquals(reply.type, "history_response");
    assert((reply.messages as unknown[]).length >= 300);
  },
});
