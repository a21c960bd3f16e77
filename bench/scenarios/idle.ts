// idle connections: 10,000 logged-in connections held open (100 users, each logged in on 100
// connections; BCRYPT_COST=4 so that the logins take seconds, not minutes). Server memory per
// connection (VmRSS before the connections and after, divided), and whether every connection gets
// a broadcast. Ceiling: the bare relay holding as many connections. The load generator's own
// memory per connection is reported too.

import type { Delivery, LoadClient } from "../client.ts";
import { fmt, progress } from "../out.ts";
import { CpuMeter, rssKiB } from "../proc.ts";
import { relayMessageLine, sendMessageLine } from "../client.ts";
import { type Process, startRelay } from "../servers.ts";
import { sleep } from "../../tests/support/util.ts";
import { Histogram, round } from "../stats.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  connectPlain,
  loadgenCpu,
  loadgenProblem,
  ratioText,
  registerUsers,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  usernames,
} from "./common.ts";

/** Issue 12: a well-built Node.js server holds 5.6 KB per idle connection. */
const TARGET_KB = 6;
/** Idle connections read into small buffers, as the server's do. */
const READ_BUFFER_BYTES = 1024;
/** Time for the processes to settle before their memory is read. */
const SETTLE_MS = 2000;
const QUICK_SETTLE_MS = 1000;

interface HoldResult {
  connections: number;
  rss_before_kib: number;
  rss_after_kib: number;
  kb_per_connection: number;
  /** The load generator's RSS while it holds them, and its growth per connection (garbage collection of
   * earlier scenarios' leftovers can hide that growth: read it with care). */
  loadgen_rss_kib: number;
  loadgen_kb_per_connection: number;
  /** Connections that got the broadcast, and how long the last one took. */
  reached: number;
  broadcast_latency: ReturnType<Histogram["summary"]>;
  setup_s: number;
}

/** Holds `count` connections on `target`, measures memory, then broadcasts one message to all. */
async function hold(
  target: Process,
  count: number,
  connect: (count: number) => Promise<LoadClient[]>,
  broadcastLine: () => string,
  settleMs: number,
): Promise<HoldResult> {
  await sleep(settleMs);
  const [before, selfBefore] = await Promise.all([rssKiB(target.pid), rssKiB("self")]);
  const t0 = performance.now();
  const clients = await connect(count + 1);
  const setupS = (performance.now() - t0) / 1000;
  try {
    await sleep(settleMs);
    const [after, selfAfter] = await Promise.all([rssKiB(target.pid), rssKiB("self")]);
    const latency = new Histogram();
    const receivers = clients.slice(1);
    let reached = 0;
    const seen = new Uint8Array(receivers.length);
    receivers.forEach((client, i) => {
      client.onDelivery = (d: Delivery, now: number) => {
        if (seen[i]) return;
        seen[i] = 1;
        reached++;
        latency.record(now - d.sentAtUs);
      };
    });
    clients[0].sendLine(broadcastLine());
    const deadline = performance.now() + 15_000;
    while (reached < receivers.length && performance.now() < deadline) {
      progress(`  idle: broadcast reached ${reached}/${receivers.length}`);
      await sleep(20);
    }
    return {
      connections: count,
      rss_before_kib: before,
      rss_after_kib: after,
      kb_per_connection: round(((after - before) * 1.024) / count, 2),
      loadgen_rss_kib: selfAfter,
      loadgen_kb_per_connection: round(((selfAfter - selfBefore) * 1.024) / count, 2),
      reached,
      broadcast_latency: latency.summary(),
      setup_s: round(setupS, 2),
    };
  } finally {
    closeAll(clients);
  }
}

export async function idle(ctx: BenchContext): Promise<ScenarioReport> {
  const params = { connections: ctx.quick ? 2000 : 10_000, users: 100, bcrypt_cost: 4 };
  const names = usernames("idle", params.users);
  const self = new CpuMeter("self");
  await self.start();
  const server = await startChatServer(ctx, { BCRYPT_COST: "4" });
  let measured: HoldResult;
  let problems: string[];
  try {
    await registerUsers(server.port, names);
    measured = await hold(
      server,
      params.connections,
      (n) =>
        connectLoggedIn(server.port, n, { usernames: names, readBufferBytes: READ_BUFFER_BYTES, concurrency: 256 }),
      () => sendMessageLine(0, 0, 100),
      ctx.quick ? QUICK_SETTLE_MS : SETTLE_MS,
    );
  } finally {
    await server.stop();
    problems = serverProblems(server);
  }
  const relay = await startRelay();
  let ceiling: HoldResult;
  try {
    ceiling = await hold(
      relay,
      params.connections,
      (n) => connectPlain(relay.port, n, READ_BUFFER_BYTES),
      () => relayMessageLine(0, 0, 100),
      ctx.quick ? QUICK_SETTLE_MS : SETTLE_MS,
    );
  } finally {
    await relay.stop();
  }
  const loadgen = await loadgenCpu(self);
  if (measured.reached < params.connections) {
    problems.push(`server: only ${measured.reached} of ${params.connections} connections got the broadcast in 15 s`);
  }
  if (ceiling.reached < params.connections) {
    problems.push(`relay: only ${ceiling.reached} of ${params.connections} connections got the broadcast in 15 s`);
  }
  const perConn = measured.kb_per_connection;
  return {
    scenario: "idle",
    params,
    results: measured as unknown as Record<string, unknown>,
    ceiling: { kind: "bare relay (bench/relay.ts) holding as many connections", ...ceiling },
    loadgen,
    targets: [{
      name: `idle server memory per connection at ${params.connections.toLocaleString("en-US")}`,
      target: `<= ${TARGET_KB} KB`,
      measured: `${fmt(perConn)} KB (relay ${fmt(ceiling.kb_per_connection)} KB, ${
        ratioText(perConn / ceiling.kb_per_connection)
      }); broadcast reached ${measured.reached}/${params.connections}`,
      ratio: round(perConn / TARGET_KB, 3),
      pass: perConn <= TARGET_KB && measured.reached === params.connections,
    }],
    // The whole scenario is mostly waiting; the load generator's CPU here is setup work.
    problems: [...problems, ...loadgenProblem({ ...loadgen, saturated: false }, "idle")],
    rows: [
      ["connections (logged in / plain)", String(params.connections), String(params.connections), ""],
      ["RSS before (MiB)", fmt(measured.rss_before_kib / 1024), fmt(ceiling.rss_before_kib / 1024), ""],
      ["RSS after (MiB)", fmt(measured.rss_after_kib / 1024), fmt(ceiling.rss_after_kib / 1024), ""],
      [
        "KB per connection",
        fmt(perConn),
        fmt(ceiling.kb_per_connection),
        ratioText(perConn / ceiling.kb_per_connection),
      ],
      ["broadcast reached", String(measured.reached), String(ceiling.reached), ""],
      ["broadcast latency p50 (ms)", fmt(measured.broadcast_latency.p50_ms), fmt(ceiling.broadcast_latency.p50_ms), ""],
      ["broadcast latency max (ms)", fmt(measured.broadcast_latency.max_ms), fmt(ceiling.broadcast_latency.max_ms), ""],
      ["connect+login time (s)", fmt(measured.setup_s), fmt(ceiling.setup_s), ""],
      [
        "load generator RSS holding them (MiB)",
        fmt(measured.loadgen_rss_kib / 1024),
        fmt(ceiling.loadgen_rss_kib / 1024),
        "",
      ],
      [
        "load generator KB per connection (GC blurs it)",
        fmt(measured.loadgen_kb_per_connection),
        fmt(ceiling.loadgen_kb_per_connection),
        "",
      ],
    ],
  };
}
