// history: 1,000 get_history of 50, 10 at a time (10 logged-in connections, one request in flight
// each: the server answers a connection's requests in order). Requests per second and latency,
// next to the database ceiling: the server's own history query run through postgres.js (same pool
// size), 10 at a time.

import { LoadClient } from "../client.ts";
import { fmt, progress } from "../out.ts";
import { CpuMeter } from "../proc.ts";
import { Histogram, round } from "../stats.ts";
import { Traffic } from "../traffic.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  type LoadgenCpu,
  loadgenCpu,
  loadgenProblem,
  PASSWORD,
  ratioOf,
  ratioText,
  registerUsers,
  round3,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  usernames,
} from "./common.ts";

const TARGET_PER_S = 5000;
const WARMUP_REQUESTS = 200;

export async function history(ctx: BenchContext): Promise<ScenarioReport> {
  const params = { requests: 1000, concurrency: 10, limit: 50, seed_messages: 200, rounds: ctx.quick ? 1 : 3 };
  const names = usernames("history", params.concurrency);
  const server = await startChatServer(ctx);
  const latency = new Histogram();
  const roundSeconds: number[] = [];
  let serverCpuS: number;
  let replyBytes = 0;
  let checkedMessages = -1;
  let problems: string[];
  let loadgen: LoadgenCpu;
  try {
    await registerUsers(server.port, names);
    const clients = await connectLoggedIn(server.port, params.concurrency, { usernames: names });
    try {
      // Enough messages that every reply is full.
      // (The embedded server's database is in its own memory: seed it every time.)
      const have = ctx.db.kind === "postgres"
        ? Number((await ctx.db.query("SELECT count(*)::int AS n FROM messages"))[0].n)
        : 0;
      if (have < params.seed_messages) {
        const seed = new Traffic({
          mode: "server",
          clients: clients.slice(0, 1),
          senders: 1,
          window: 50,
          messageChars: 100,
        });
        seed.start();
        while (seed.sent < params.seed_messages - have) await new Promise((r) => setTimeout(r, 20));
        seed.stopSending();
        await seed.drain(10_000);
      }
      // One reply parsed in full, to check that it holds `limit` messages.
      const checker = await LoadClient.connect(server.port, { parseHistory: true });
      try {
        await checker.request({ type: "login", username: names[0], password: PASSWORD });
        const reply = await checker.request({ type: "get_history", limit: params.limit });
        checkedMessages = Array.isArray(reply.messages) ? reply.messages.length : -1;
      } finally {
        checker.close();
      }
      // A warm-up round opens and prepares the server's pool connections; it is not counted.
      await historyRound(clients, WARMUP_REQUESTS, params.limit, new Histogram());
      const target = new CpuMeter(server.pid);
      const self = new CpuMeter("self");
      await Promise.all([target.start(), self.start()]);
      for (let r = 0; r < params.rounds; r++) {
        progress(`  history round ${r + 1}/${params.rounds}`);
        const round = await historyRound(clients, params.requests, params.limit, latency);
        roundSeconds.push(round.seconds);
        replyBytes += round.bytes;
      }
      const [cpu, lg] = await Promise.all([target.stop(), loadgenCpu(self)]);
      serverCpuS = cpu.cpuS;
      loadgen = lg;
    } finally {
      closeAll(clients);
    }
  } finally {
    await server.stop();
    problems = serverProblems(server);
  }
  progress("  history ceiling");
  const ceilingRounds = [];
  for (let r = 0; r < params.rounds; r++) {
    ceilingRounds.push(await ctx.db.historyCeiling(params.requests, params.concurrency, params.limit));
  }
  // The median round of each, so that one hiccup of this shared machine does not decide the result.
  const ceiling = ceilingRounds.sort((a, b) => a.seconds - b.seconds)[Math.floor(params.rounds / 2)];
  const seconds = roundSeconds.slice().sort((a, b) => a - b)[Math.floor(params.rounds / 2)];
  const perS = params.requests / seconds;
  const summary = latency.summary();
  if (checkedMessages !== params.limit) {
    problems.push(`a checked history reply held ${checkedMessages} messages, not ${params.limit}`);
  }
  return {
    scenario: "history",
    params,
    results: {
      requests_per_s: round(perS, 1),
      seconds: round3(seconds),
      latency: summary,
      server_cpu_s: round3(serverCpuS),
      round_requests_per_s: roundSeconds.map((x) => round(params.requests / x, 1)),
      server_cpu_ms_per_request: round((serverCpuS * 1000) / (params.requests * params.rounds), 3),
      mean_reply_bytes: Math.round(replyBytes / (params.requests * params.rounds)),
      checked_reply_messages: checkedMessages,
    },
    ceiling: {
      kind: `database (${ctx.db.kind}): the server's history query through the driver`,
      ...ceiling,
      round_requests_per_s: ceilingRounds.map((c) => round(c.requests_per_s, 1)),
    },
    loadgen,
    targets: [{
      name: "history requests/s",
      target: `>= ${TARGET_PER_S.toLocaleString("en-US")}/s`,
      measured: `${fmt(perS)}/s (database ceiling ${fmt(ceiling.requests_per_s)}/s, ${
        ratioText(perS / ceiling.requests_per_s)
      })`,
      ratio: round(perS / TARGET_PER_S, 3),
      pass: perS >= TARGET_PER_S,
    }],
    problems: [...problems, ...loadgenProblem(loadgen, "history")],
    rows: [
      ["requests/s", fmt(perS), fmt(ceiling.requests_per_s), ratioText(perS / ceiling.requests_per_s)],
      [
        "latency p50 (ms)",
        fmt(summary.p50_ms),
        fmt(ceiling.latency.p50_ms),
        ratioText(ratioOf(summary.p50_ms, ceiling.latency.p50_ms)),
      ],
      [
        "latency p99 (ms)",
        fmt(summary.p99_ms),
        fmt(ceiling.latency.p99_ms),
        ratioText(ratioOf(summary.p99_ms, ceiling.latency.p99_ms)),
      ],
      ["latency max (ms)", fmt(summary.max_ms), fmt(ceiling.latency.max_ms), ""],
      ["server CPU ms per request", fmt((serverCpuS * 1000) / (params.requests * params.rounds)), "", ""],
      ["mean reply bytes", fmt(replyBytes / (params.requests * params.rounds)), "", ""],
    ],
  };
}

/** `requests` get_history spread over the clients, one in flight on each; latencies into `latency`. */
async function historyRound(
  clients: LoadClient[],
  requests: number,
  limit: number,
  latency: Histogram,
): Promise<{ seconds: number; bytes: number }> {
  let issued = 0;
  let bytes = 0;
  const t0 = performance.now();
  await Promise.all(clients.map(async (client) => {
    while (issued < requests) {
      issued++;
      const start = performance.now();
      const reply = await client.request({ type: "get_history", limit }, 30_000);
      latency.record((performance.now() - start) * 1000);
      bytes += Number(reply.bytes ?? 0);
    }
  }));
  return { seconds: (performance.now() - t0) / 1000, bytes };
}
