// cluster: three servers on one database (contract v1.1, "several servers on one database"), 60
// logged-in clients spread over them round-robin, 6 senders (2 per server) with up to 10
// unacknowledged messages each. Deliveries/s, latency at receivers on another server than the
// sender's (commit, NOTIFY, every server's catch-up read) apart from those on its own server,
// missed and out-of-order deliveries, the three servers' CPU per 1,000 deliveries added up; next to
// ONE server (on a throw-away database of its own) with the same clients and load, in alternating
// rounds. Then the database's ceiling for this path, measured with the servers stopped:
// chat_store_batch() called serially on one connection (every writer holds one lock to COMMIT,
// so batches are sequenced one at a time whatever the number of servers), with batches of the
// size the servers formed and of one message. The targets compare the three servers' CPU per
// delivery with ONE server's paced at the rate the three reached (the same load: a closed loop
// runs one server faster, and its batches grow with the rate).
//
// Where a NATS server answers (NATS_URL, else nats://127.0.0.1:4222), a third arm runs in the
// same rounds: three more servers on a database of their own with NATS_URL set (the NATS bus),
// with the same clients and load, reported against the three on NOTIFY.

import { type BenchDatabase, openBenchDatabase } from "../database.ts";
import {
  cpuRows,
  latencyRows,
  measureInterleaved,
  measureTraffic,
  trafficProblems,
  type TrafficResult,
} from "../measure.ts";
import { fmt } from "../out.ts";
import type { Process } from "../servers.ts";
import { freePort } from "../../tests/support/client_process.ts";
import { Histogram, round } from "../stats.ts";
import type { LoadClient } from "../client.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  ratioOf,
  ratioText,
  registerUsers,
  type Row,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  usernames,
} from "./common.ts";

const SERVERS = 3;
/** Each cluster server's pool (DB_POOL_SIZE): seven servers and the bench fit in max_connections 100. */
const CLUSTER_POOL_SIZE = 6;
/**
 * Logins in flight at once on one database: under the per-address login throttle's burst (20),
 * since every load client comes from 127.0.0.1 and an attempt holds its token until it succeeds.
 */
const LOGIN_CONCURRENCY = 10;
/** The servers' call: the gap asked for starts at the batch before (as a lone server's does). */
const STORE_SQL = `SELECT lobby_through FROM chat_store_batch($1::text[], $2::int[], $3::text[], $4::text[],
  $5::text[], $6::bigint, '{}'::text[], '{}'::bigint[])`;
const NEWEST_ID_SQL = `SELECT COALESCE(max(id), 0)::int AS id FROM messages`;
/** One transaction per batch: rows that share xmin were committed together. */
const BATCHES_SQL = `SELECT count(*)::int AS messages, count(DISTINCT xmin::text)::int AS batches
  FROM messages WHERE id > $1::int`;

export interface LockedBatchCeiling {
  batch: number;
  batches: number;
  seconds: number;
  batches_per_s: number;
  messages_per_s: number;
  latency: ReturnType<Histogram["summary"]>;
}

export async function cluster(ctx: BenchContext): Promise<ScenarioReport> {
  if (ctx.db.kind !== "postgres") {
    throw new Error("the cluster scenario needs PostgreSQL: the embedded database serves one server only");
  }
  const params = {
    servers: SERVERS,
    clients: 60,
    senders: 6,
    window: 10,
    message_chars: 100,
    rounds: ctx.quick ? 2 : 3,
    round_s: ctx.quick ? 1 : 2.5,
    warmup_s: ctx.quick ? 0.5 : 1,
    rewarm_s: 0.3,
    ceiling_s: ctx.quick ? 1 : 3,
  };
  const traffic = { senders: params.senders, window: params.window, messageChars: params.message_chars };
  // The single server gets a database of its own: on the cluster's it would follow the cluster's traffic.
  const alone = await openBenchDatabase(false, Deno.env.get("DATABASE_URL"), "_single");
  const natsUrl = await reachableNats();
  const natsDb = natsUrl ? await openBenchDatabase(false, Deno.env.get("DATABASE_URL"), "_nats") : undefined;
  const processes: Process[] = [];
  const clientSets: LoadClient[][] = [];
  // Up to seven servers at once, each with its pool and three connections of its own (writer,
  // control, listener): with pools of 10 they and the bench's own pool overran PostgreSQL's default
  // max_connections (100), and a set-up login was answered unavailable ("too many clients").
  // Sends go through each server's writer connection, so the smaller pool does not move the figures.
  const pool = { DB_POOL_SIZE: String(CLUSTER_POOL_SIZE) };
  try {
    // Each server's /metrics on a port of its own, for its socket writes.
    const metricsPort = new Map<Process, number>();
    const start = async (env: Record<string, string>): Promise<Process> => {
      const port = freePort();
      const server = await startChatServer(ctx, { ...env, ...pool, METRICS_ADDR: `127.0.0.1:${port}` });
      metricsPort.set(server, port);
      processes.push(server);
      return server;
    };
    const portsOf = (servers: Process[]) => servers.map((s) => metricsPort.get(s)!);
    const servers: Process[] = [];
    for (let i = 0; i < SERVERS; i++) servers.push(await start({}));
    const one = await start(alone.serverEnv);
    const natsServers: Process[] = [];
    if (natsDb && natsUrl) {
      for (let i = 0; i < SERVERS; i++) natsServers.push(await start({ ...natsDb.serverEnv, NATS_URL: natsUrl }));
    }

    const names = usernames("clu", params.clients);
    await registerUsers(servers[0].port, names);
    await registerUsers(one.port, names);
    // Client i is on server i % 3: senders 0..5 are two per server, and so are the receivers.
    const perServer = await connectSpread(servers, params.clients, names);
    clientSets.push(...perServer);
    const clusterClients = Array.from(
      { length: params.clients },
      (_, i) => perServer[i % SERVERS][Math.floor(i / SERVERS)],
    );
    const singleClients = await connectLoggedIn(one.port, params.clients, {
      usernames: names,
      concurrency: LOGIN_CONCURRENCY,
    });
    clientSets.push(singleClients);
    let natsClients: LoadClient[] = [];
    if (natsServers.length > 0) {
      await registerUsers(natsServers[0].port, names);
      const natsPerServer = await connectSpread(natsServers, params.clients, names);
      clientSets.push(...natsPerServer);
      natsClients = Array.from(
        { length: params.clients },
        (_, i) => natsPerServer[i % SERVERS][Math.floor(i / SERVERS)],
      );
    }
    const firstId = await newestId(ctx.db);
    const firstIdAlone = await newestId(alone);

    const [clustered, single, onNats] = await measureInterleaved([
      {
        ...traffic,
        mode: "server",
        clients: clusterClients,
        pid: servers[0].pid,
        pids: servers.map((s) => s.pid),
        metricsPorts: portsOf(servers),
        serverOf: (i) => i % SERVERS,
        backendPattern: ctx.db.backendPattern,
        label: "cluster (3 servers)",
      },
      {
        ...traffic,
        mode: "server",
        clients: singleClients,
        pid: one.pid,
        metricsPorts: portsOf([one]),
        backendPattern: alone.backendPattern,
        label: "one server",
      },
      ...(natsServers.length > 0
        ? [{
          ...traffic,
          mode: "server" as const,
          clients: natsClients,
          pid: natsServers[0].pid,
          pids: natsServers.map((s) => s.pid),
          metricsPorts: portsOf(natsServers),
          serverOf: (i: number) => i % SERVERS,
          backendPattern: natsDb!.backendPattern,
          label: "cluster on NATS (3 servers)",
        }]
        : []),
    ], { rounds: params.rounds, warmupS: params.warmup_s, rewarmS: params.rewarm_s, roundS: params.round_s });
    // One server again, paced at each cluster's message rate: CPU per delivery at the same load.
    const pacedAt = async (rate: number, label: string): Promise<TrafficResult> =>
      await measureTraffic(
        {
          senders: params.senders,
          messageChars: params.message_chars,
          mode: "server",
          clients: singleClients,
          ratePerSec: rate,
          maxUnackedPerSender: 10 * params.window,
          pid: one.pid,
          metricsPorts: portsOf([one]),
          backendPattern: alone.backendPattern,
          label,
        },
        params.warmup_s,
        params.round_s * 2,
      );
    const pacedNotify = await pacedAt(clustered.messages_per_s, "one server at the cluster's rate");
    const pacedNats = onNats
      ? await pacedAt(onNats.messages_per_s, "one server at the NATS cluster's rate")
      : undefined;
    for (const set of clientSets) closeAll(set);
    clientSets.length = 0;
    const problems = processes.flatMap((p) => serverProblems(p));
    const batching = await batchesSince(ctx.db, firstId);
    const batchingAlone = await batchesSince(alone, firstIdAlone);
    await Promise.all(processes.map((p) => p.stop()));

    const batchSize = Math.max(1, Math.round(batching.messages / Math.max(1, batching.batches)));
    const sender = (await ctx.db.query("SELECT id, username FROM users ORDER BY id LIMIT 1"))[0];
    const ceilingSized = await lockedBatchCeiling(ctx.db, batchSize, params.ceiling_s, sender);
    const ceilingOne = await lockedBatchCeiling(ctx.db, 1, params.ceiling_s, sender);

    const cpuRatio = clustered.cpu_ms_per_1000_deliveries !== null && single.cpu_ms_per_1000_deliveries
      ? clustered.cpu_ms_per_1000_deliveries / single.cpu_ms_per_1000_deliveries
      : null;
    const pacedRatio = perDeliveryRatio(clustered, pacedNotify);
    const natsPacedRatio = onNats && pacedNats ? perDeliveryRatio(onNats, pacedNats) : null;
    const cross = clustered.cross_server_latency!;
    const same = clustered.same_server_latency!;
    const headroom = clustered.messages_per_s > 0 ? ceilingSized.messages_per_s / clustered.messages_per_s : null;
    const c = clustered.counts;
    const rows: Row[] = [
      [
        "messages/s (acknowledged)",
        fmt(clustered.messages_per_s),
        fmt(single.messages_per_s),
        ratioText(
          clustered.messages_per_s / single.messages_per_s,
        ),
      ],
      [
        "deliveries/s",
        fmt(clustered.deliveries_per_s),
        fmt(single.deliveries_per_s),
        ratioText(
          clustered.deliveries_per_s / single.deliveries_per_s,
        ),
      ],
      ...latencyRows("latency, every receiver", clustered.latency, single.latency),
      [
        "cross-server latency p50 (ms)",
        fmt(cross.p50_ms),
        `same server: ${fmt(same.p50_ms)}`,
        ratioText(
          cross.p50_ms !== null && same.p50_ms ? cross.p50_ms / same.p50_ms : null,
        ),
      ],
      [
        "cross-server latency p99 (ms)",
        fmt(cross.p99_ms),
        `same server: ${fmt(same.p99_ms)}`,
        ratioText(
          cross.p99_ms !== null && same.p99_ms ? cross.p99_ms / same.p99_ms : null,
        ),
      ],
      [
        "messages per batch (committed together)",
        fmt(batching.messages / Math.max(1, batching.batches)),
        fmt(
          batchingAlone.messages / Math.max(1, batchingAlone.batches),
        ),
        "",
      ],
      [
        "database CPU ms per message",
        fmt(clustered.database_cpu_ms_per_message),
        fmt(
          single.database_cpu_ms_per_message,
        ),
        "",
      ],
      ...cpuRows(clustered, single),
      [`ceiling: locked batches/s, ${batchSize} per batch, serial`, "", fmt(ceilingSized.batches_per_s), ""],
      [
        `ceiling: messages/s at ${batchSize} per batch`,
        fmt(clustered.messages_per_s),
        fmt(
          ceilingSized.messages_per_s,
        ),
        ratioText(headroom === null ? null : 1 / headroom),
      ],
      ["ceiling: locked batches/s, 1 per batch, serial", "", fmt(ceilingOne.batches_per_s), ""],
      [
        "CPU ms per 1,000 deliveries, one server paced at the cluster's rate",
        fmt(clustered.cpu_ms_per_1000_deliveries),
        fmt(pacedNotify.cpu_ms_per_1000_deliveries),
        ratioText(pacedRatio),
      ],
      ...(onNats && pacedNats
        ? [[
          "NATS: CPU ms per 1,000 deliveries, one server paced at its rate",
          fmt(onNats.cpu_ms_per_1000_deliveries),
          fmt(pacedNats.cpu_ms_per_1000_deliveries),
          ratioText(natsPacedRatio),
        ] as Row]
        : []),
      ...whereRows("", clustered, pacedNotify),
      ...(onNats && pacedNats ? whereRows("NATS: ", onNats, pacedNats) : []),
      ...(onNats
        ? natsRows(onNats, clustered)
        : [["NATS bus", "not measured: no NATS server answered", "", ""] as Row]),
      [
        "ceiling: batch round trip p50 / p99 (ms)",
        "",
        `${fmt(ceilingSized.latency.p50_ms)} / ${fmt(ceilingSized.latency.p99_ms)}`,
        "",
      ],
    ];
    return {
      scenario: "cluster",
      params,
      results: { ...clustered, batching } as unknown as Record<string, unknown>,
      ceiling: {
        kind: "one server (own database), same clients and load; chat_store_batch serially on one connection",
        one_server: { ...single, batching: batchingAlone },
        one_server_paced: pacedNotify,
        one_server_paced_at_nats_rate: pacedNats ?? null,
        locked_batches: ceilingSized,
        locked_single_messages: ceilingOne,
      },
      loadgen: clustered.loadgen,
      targets: [
        ...(onNats
          ? [{
            name: "cluster on NATS missed / out of order",
            target: "0 / 0",
            measured: `${onNats.counts.missed} / ${onNats.counts.out_of_order}`,
            ratio: null,
            pass: onNats.counts.missed === 0 && onNats.counts.out_of_order === 0 && onNats.drained,
          }]
          : []),
        {
          name: "cluster missed / out of order",
          target: "0 / 0",
          measured: `${c.missed} / ${c.out_of_order}`,
          ratio: null,
          pass: c.missed === 0 && c.out_of_order === 0 && clustered.drained,
        },
        {
          name: "cluster CPU per delivery (3 servers added up) vs one server",
          target: "info",
          measured: `${fmt(clustered.cpu_ms_per_1000_deliveries)} vs ${
            fmt(single.cpu_ms_per_1000_deliveries)
          } ms/1000 (${ratioText(cpuRatio)})`,
          ratio: cpuRatio === null ? null : round(cpuRatio, 3),
          pass: null,
        },
        {
          name: "cluster CPU per delivery (3 servers added up) vs one server at the same rate, NOTIFY",
          target: "<= 1.6x",
          measured: `${fmt(clustered.cpu_ms_per_1000_deliveries)} vs ${
            fmt(pacedNotify.cpu_ms_per_1000_deliveries)
          } ms/1000 (${ratioText(pacedRatio)})`,
          ratio: pacedRatio === null ? null : round(pacedRatio, 3),
          pass: pacedRatio !== null && pacedRatio <= 1.6,
        },
        ...(onNats && pacedNats
          ? [{
            name: "cluster CPU per delivery (3 servers added up) vs one server at the same rate, NATS",
            target: "<= 1.4x",
            measured: `${fmt(onNats.cpu_ms_per_1000_deliveries)} vs ${
              fmt(pacedNats.cpu_ms_per_1000_deliveries)
            } ms/1000 (${ratioText(natsPacedRatio)})`,
            ratio: natsPacedRatio === null ? null : round(natsPacedRatio, 3),
            pass: natsPacedRatio !== null && natsPacedRatio <= 1.4,
          }]
          : []),
        {
          name: "cluster cross-server latency p50 / p99",
          target: "info",
          measured: `${fmt(cross.p50_ms)} / ${fmt(cross.p99_ms)} ms (same server: ${fmt(same.p50_ms)} / ${
            fmt(same.p99_ms)
          } ms)`,
          ratio: null,
          pass: null,
        },
        {
          name: "database ceiling: locked batches committed per second",
          target: "info",
          measured: `${fmt(ceilingSized.batches_per_s)} of ${batchSize} (${
            fmt(ceilingSized.messages_per_s)
          } messages/s); ${fmt(ceilingOne.batches_per_s)} of 1`,
          ratio: headroom === null ? null : round(headroom, 2),
          pass: null,
        },
      ],
      problems: [
        ...problems,
        ...trafficProblems("cluster", clustered),
        ...trafficProblems("one server", single),
        ...(onNats ? trafficProblems("cluster on NATS", onNats) : []),
      ],
      rows,
    };
  } finally {
    for (const set of clientSets) closeAll(set);
    await Promise.all(processes.map((p) => p.stop()));
    await alone.close();
    await natsDb?.close();
  }
}

type Measured = Awaited<ReturnType<typeof measureInterleaved>>[number];

/**
 * Where the servers' extra CPU goes, against one server paced at the same rate: user and system
 * time per message, and the socket writes (kernel work, mostly) per 1,000 deliveries.
 */
function whereRows(prefix: string, cluster: TrafficResult, one: TrafficResult): Row[] {
  const perMessage = (r: TrafficResult, cpuS: number) => {
    const messages = r.messages_per_s * r.measured_s;
    return messages > 0 ? (cpuS * 1e6) / messages : null;
  };
  const row = (what: string, a: number | null, b: number | null): Row => [
    `${prefix}${what}, one server paced at the same rate`,
    fmt(a),
    fmt(b),
    ratioText(ratioOf(a, b)),
  ];
  const user = (r: TrafficResult) => perMessage(r, r.cpu_s - r.system_cpu_s);
  const system = (r: TrafficResult) => perMessage(r, r.system_cpu_s);
  const writes = (r: TrafficResult) => r.socket_writes?.per_1000_deliveries ?? null;
  return [
    row("servers' user CPU µs per message", user(cluster), user(one)),
    row("servers' system CPU µs per message", system(cluster), system(one)),
    row("socket writes per 1,000 deliveries", writes(cluster), writes(one)),
  ];
}

/** The NATS arm against the three servers on NOTIFY (value, baseline, ratio). */
function natsRows(nats: Measured, notify: Measured): Row[] {
  const ratio = (a: number | null | undefined, b: number | null | undefined) => ratioText(ratioOf(a, b));
  const cross = nats.cross_server_latency!;
  const notifyCross = notify.cross_server_latency!;
  return [
    [
      "NATS bus: messages/s (vs NOTIFY)",
      fmt(nats.messages_per_s),
      fmt(notify.messages_per_s),
      ratio(nats.messages_per_s, notify.messages_per_s),
    ],
    [
      "NATS bus: deliveries/s",
      fmt(nats.deliveries_per_s),
      fmt(notify.deliveries_per_s),
      ratio(nats.deliveries_per_s, notify.deliveries_per_s),
    ],
    [
      "NATS bus: cross-server latency p50 (ms)",
      fmt(cross.p50_ms),
      fmt(notifyCross.p50_ms),
      ratio(cross.p50_ms, notifyCross.p50_ms),
    ],
    [
      "NATS bus: cross-server latency p99 (ms)",
      fmt(cross.p99_ms),
      fmt(notifyCross.p99_ms),
      ratio(cross.p99_ms, notifyCross.p99_ms),
    ],
    [
      "NATS bus: database CPU ms per message",
      fmt(nats.database_cpu_ms_per_message),
      fmt(notify.database_cpu_ms_per_message),
      ratio(nats.database_cpu_ms_per_message, notify.database_cpu_ms_per_message),
    ],
    [
      "NATS bus: servers' CPU ms per 1000 deliveries",
      fmt(nats.cpu_ms_per_1000_deliveries),
      fmt(notify.cpu_ms_per_1000_deliveries),
      ratio(nats.cpu_ms_per_1000_deliveries, notify.cpu_ms_per_1000_deliveries),
    ],
  ];
}

/** NATS_URL, else the local default, if a NATS server accepts connections there. */
async function reachableNats(): Promise<string | undefined> {
  const url = Deno.env.get("NATS_URL") || "nats://127.0.0.1:4222";
  const { hostname, port } = new URL(url.replace(/^(nats|tls):/, "http:"));
  try {
    const conn = await Deno.connect({ hostname, port: Number(port || 4222) });
    conn.close();
    return url;
  } catch {
    return undefined;
  }
}

async function newestId(db: BenchDatabase): Promise<number> {
  return Number((await db.query(NEWEST_ID_SQL))[0].id);
}

async function batchesSince(db: BenchDatabase, id: number): Promise<{ messages: number; batches: number }> {
  const row = (await db.query(BATCHES_SQL, [id]))[0];
  return { messages: Number(row.messages), batches: Number(row.batches) };
}

/**
 * Calls chat_store_batch() with lobby batches of `size` messages, one after another, for `seconds`
 * (at most 100,000 batches): what one database sequences when every writer holds the lock in turn.
 */
async function lockedBatchCeiling(
  db: BenchDatabase,
  size: number,
  seconds: number,
  sender: Record<string, unknown>,
): Promise<LockedBatchCeiling> {
  const params = [
    Array(size).fill(null),
    Array(size).fill(Number(sender.id)),
    Array(size).fill(String(sender.username)),
    Array.from({ length: size }, (_, i) => `ceiling ${i} ${"x".repeat(90)}`),
    Array(size).fill(null),
    0,
  ];
  const store = async () => params[5] = Number((await db.query(STORE_SQL, params))[0].lobby_through);
  params[5] = await newestId(db);
  for (let i = 0; i < 20; i++) await store();
  const latency = new Histogram();
  let batches = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000 && batches < 100_000) {
    const start = performance.now();
    await store();
    latency.record((performance.now() - start) * 1000);
    batches++;
  }
  const elapsed = (performance.now() - t0) / 1000;
  return {
    batch: size,
    batches,
    seconds: round(elapsed, 3),
    batches_per_s: round(batches / elapsed, 1),
    messages_per_s: round((batches * size) / elapsed, 1),
    latency: latency.summary(),
  };
}

function perDeliveryRatio(cluster: TrafficResult, one: TrafficResult): number | null {
  return cluster.cpu_ms_per_1000_deliveries !== null && one.cpu_ms_per_1000_deliveries
    ? cluster.cpu_ms_per_1000_deliveries / one.cpu_ms_per_1000_deliveries
    : null;
}

/** Client i on server i % SERVERS, logged in one server after the other (see LOGIN_CONCURRENCY). */
async function connectSpread(servers: Process[], clients: number, names: string[]): Promise<LoadClient[][]> {
  const perServer: LoadClient[][] = [];
  for (const [k, server] of servers.entries()) {
    perServer.push(
      await connectLoggedIn(server.port, Math.ceil((clients - k) / SERVERS), {
        usernames: names.filter((_, i) => i % SERVERS === k),
        concurrency: LOGIN_CONCURRENCY,
      }),
    );
  }
  return perServer;
}
