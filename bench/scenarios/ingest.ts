// ingest: 4 senders, up to 100 unacknowledged messages each (acknowledged when the sender gets its
// own new_message, matched by request_id). Committed messages per second and acknowledgement
// latency, next to the database ceiling: the same number of rows, same text length and senders,
// inserted as fast as possible with multi-row INSERTs through postgres.js and a pool of the
// server's size, into a table of the `messages` shape. The same load with a client_msg_id on
// every message (exactly-once sends) runs between two plain runs against the same server.

import { markerText } from "../client.ts";
import type { CeilingRow, InsertCeiling } from "../database.ts";
import { fmt, progress } from "../out.ts";
import { round } from "../stats.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  ratioText,
  registerUsers,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  usernames,
} from "./common.ts";
import { measureTraffic, trafficProblems, type TrafficResult } from "../measure.ts";

/** Ceiling variants: rows per INSERT and INSERTs in flight. The first two keep ≤ 400 rows in flight, as ingest can. */
const CEILING_VARIANTS: [number, number][] = [[400, 1], [100, 4], [100, 10]];

export async function ingest(ctx: BenchContext): Promise<ScenarioReport> {
  const params = {
    senders: 4,
    window: 100,
    message_chars: 100,
    warmup_s: ctx.quick ? 1 : 2,
    measure_s: ctx.quick ? 3 : 6,
  };
  const names = usernames("ingest", params.senders);
  const idNames = usernames("ingestid", params.senders);
  const server = await startChatServer(ctx);
  let measured: TrafficResult;
  let withIds: TrafficResult;
  let plainMean = 0;
  let plainAcked = 0;
  /** Rows in the server's database; null when it is out of reach (embedded, in the server's memory). */
  let stored: number | null = null;
  let problems: string[];
  try {
    await registerUsers(server.port, [...names, ...idNames]);
    const common = {
      mode: "server" as const,
      senders: params.senders,
      window: params.window,
      messageChars: params.message_chars,
      pid: server.pid,
      backendPattern: ctx.db.backendPattern,
    };
    // One set of connections at a time: every connection receives every message, and two sets
    // measured at once would count each other's. Plain, with ids, plain again: the ratio compares
    // the middle run with the mean of the two around it, which cancels a drift of the machine.
    const run = async (usernames: string[], label: string, clientMsgIdPrefix?: string) => {
      const clients = await connectLoggedIn(server.port, params.senders, { usernames });
      try {
        return await measureTraffic(
          { ...common, clients, label, clientMsgIdPrefix },
          params.warmup_s,
          params.measure_s,
        );
      } finally {
        closeAll(clients);
      }
    };
    const first = await run(names, "ingest");
    withIds = await run(idNames, "ingest with client_msg_id", crypto.randomUUID());
    const second = await run(names, "ingest (again)");
    measured = second.messages_per_s > first.messages_per_s ? second : first;
    plainMean = (first.messages_per_s + second.messages_per_s) / 2;
    plainAcked = first.counts.acked + second.counts.acked;
    if (ctx.db.kind === "postgres") {
      const rows = await ctx.db.query(
        "SELECT count(*)::int AS n FROM messages m JOIN users u ON u.id = m.sender_id WHERE u.username = ANY($1::text[])",
        [[...names, ...idNames]],
      );
      stored = Number(rows[0].n);
    }
  } finally {
    await server.stop();
    problems = serverProblems(server);
  }

  // The database ceiling: as many rows as ingest committed while measuring (at least 4,000).
  // The senders' ids; with the embedded database the server's users are out of reach: stand-ins.
  const found = (await ctx.db.query("SELECT id FROM users WHERE username = ANY($1::text[]) ORDER BY id", [names]))
    .map((r) => Number(r.id));
  const ids = found.length > 0 ? found : names.map((_, i) => i + 1);
  const count = Math.min(200_000, Math.max(4000, Math.round(measured.messages_per_s * params.measure_s)));
  const rows: CeilingRow[] = Array.from({ length: count }, (_, i) => ({
    senderId: ids[i % ids.length],
    senderUsername: names[i % names.length],
    messageText: markerText(i % ids.length, i, params.message_chars),
  }));
  const variants: InsertCeiling[] = [];
  for (const [batch, concurrency] of CEILING_VARIANTS) {
    progress(`  database ceiling: ${count} rows, ${batch} per INSERT, ${concurrency} in flight`);
    const result = await ctx.db.insertCeiling(rows, batch, concurrency);
    variants.push({ ...result, seconds: round(result.seconds, 3), rows_per_s: round(result.rows_per_s, 1) });
  }
  const best = variants.reduce((a, b) => b.rows_per_s > a.rows_per_s ? b : a);
  const serial = variants[0];
  const ratio = measured.messages_per_s / best.rows_per_s;
  const serialRatio = measured.messages_per_s / serial.rows_per_s;
  const acked = plainAcked + withIds.counts.acked;
  if (stored !== null && stored !== acked) {
    problems.push(`rows stored (${stored}) differ from messages acknowledged (${acked})`);
  }
  const idRatio = withIds.messages_per_s / plainMean;
  return {
    scenario: "ingest",
    params,
    results: {
      committed_per_s: measured.messages_per_s,
      committed_per_s_with_client_msg_id: withIds.messages_per_s,
      rows_stored: stored,
      ...measured,
      with_client_msg_id: withIds,
    },
    ceiling: { kind: `database (${ctx.db.kind}): multi-row INSERT … RETURNING id`, best, variants },
    loadgen: measured.loadgen,
    targets: [{
      name: "ingest vs database ceiling",
      target: ">= 80% of the ceiling",
      measured: `${fmt(measured.messages_per_s)} vs ${fmt(best.rows_per_s)} rows/s (${(ratio * 100).toFixed(0)}%)`,
      ratio: round(ratio, 3),
      pass: ratio >= 0.8,
    }, {
      name: "ingest with client_msg_id vs without",
      target: ">= 0.9",
      measured: `${fmt(withIds.messages_per_s)} vs ${fmt(plainMean)} msg/s (mean of the runs before and after)`,
      ratio: round(idRatio, 3),
      pass: idRatio >= 0.9,
    }],
    problems: [
      ...problems,
      ...trafficProblems("ingest", measured),
      ...trafficProblems("ingest with client_msg_id", withIds),
    ],
    rows: [
      ["committed messages/s", fmt(measured.messages_per_s), fmt(best.rows_per_s), ratioText(ratio)],
      [
        `  vs serial ceiling (${serial.batch} rows/INSERT, 1 in flight)`,
        "",
        fmt(serial.rows_per_s),
        ratioText(serialRatio),
      ],
      ...variants.map((v): [string, string, string, string] => [
        `  ceiling ${v.batch} rows/INSERT x ${v.concurrency} in flight`,
        "",
        fmt(v.rows_per_s),
        "",
      ]),
      [
        "committed messages/s with client_msg_id (vs without, mean)",
        fmt(withIds.messages_per_s),
        fmt(plainMean),
        ratioText(idRatio),
      ],
      ["ack latency p50 (ms)", fmt(measured.ack_latency.p50_ms), "", ""],
      ["ack latency p99 (ms)", fmt(measured.ack_latency.p99_ms), "", ""],
      ["ack latency max (ms)", fmt(measured.ack_latency.max_ms), "", ""],
      ["server CPU s while measuring", fmt(measured.cpu_s), "", ""],
      [
        "server CPU ms per message",
        fmt(measured.cpu_s * 1000 / Math.max(1, measured.messages_per_s * measured.measured_s)),
        "",
        "",
      ],
      ["database backends' CPU ms per message", fmt(measured.database_cpu_ms_per_message), "", ""],
      ["machine busy cores (of 2) while measuring", fmt(measured.machine_busy_cores), "", ""],
      ["rows stored / acknowledged", `${stored ?? "-"} / ${acked}`, "", ""],
    ],
  };
}
