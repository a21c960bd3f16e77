// logins under load: a paced fan-out runs (50 logged-in clients, 5 senders, 200 messages/s in
// total) on a server with BCRYPT_COST=10; its latency is measured before, then during a burst of 50
// register+login pairs, each on its own new connection, all at once. Logins per second, and the
// fan-out p99 during the burst against before it. Ceiling for the logins: the same 50 bcrypt
// hash+compare pairs at cost 10 run in this process (npm:bcrypt, as the server uses).

import bcryptModule from "bcrypt";
import { LoadClient } from "../client.ts";
import { fmt, progress } from "../out.ts";
import { CpuMeter } from "../proc.ts";
import { Histogram, round } from "../stats.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  type LoadgenCpu,
  loadgenCpu,
  loadgenProblem,
  PASSWORD,
  ratioText,
  registerUsers,
  round3,
  runFor,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  usernames,
} from "./common.ts";
import { Traffic, type TrafficCounts } from "../traffic.ts";

const bcrypt = bcryptModule as unknown as {
  hash(password: string, cost: number): Promise<string>;
  compare(password: string, hash: string): Promise<boolean>;
};

const BCRYPT_COST = 10;
const MAX_RATIO = 1.5;

export async function logins(ctx: BenchContext): Promise<ScenarioReport> {
  const params = {
    bcrypt_cost: BCRYPT_COST,
    pairs: ctx.quick ? 20 : 50,
    fanout_clients: 50,
    fanout_users: 5,
    fanout_senders: 5,
    fanout_messages_per_s: 200,
    message_chars: 100,
    before_s: ctx.quick ? 2 : 5,
  };
  const fanNames = usernames("loginfan", params.fanout_users);
  const pairNames = usernames("login", params.pairs);
  const server = await startChatServer(ctx, { BCRYPT_COST: String(BCRYPT_COST) });
  const pairLatency = new Histogram();
  let before: Histogram;
  let during: Histogram;
  let burstS: number;
  let serverCpuS: number;
  let failures = 0;
  const problems: string[] = [];
  let counts: TrafficCounts;
  let loadgen: LoadgenCpu;
  const self = new CpuMeter("self");
  try {
    await registerUsers(server.port, fanNames);
    const clients = await connectLoggedIn(server.port, params.fanout_clients, { usernames: fanNames });
    const traffic = new Traffic({
      mode: "server",
      clients,
      senders: params.fanout_senders,
      ratePerSec: params.fanout_messages_per_s,
      maxUnackedPerSender: 1000,
      messageChars: params.message_chars,
    });
    try {
      const status = () => `sent=${traffic.sent} delivered=${traffic.deliveries}`;
      traffic.start();
      await runFor(ctx.quick ? 0.5 : 1, "logins: fan-out warm-up", status);
      await self.start();
      traffic.measure(true);
      await runFor(params.before_s, "logins: fan-out before the burst", status);
      before = traffic.takeLatency();

      const cpu = new CpuMeter(server.pid);
      await cpu.start();
      const t0 = performance.now();
      let done = 0;
      await Promise.all(pairNames.map(async (username) => {
        const start = performance.now();
        const client = await LoadClient.connect(server.port, { readBufferBytes: 4096 });
        try {
          const reg = await client.request({ type: "register", username, password: PASSWORD }, 120_000);
          const login = await client.request({ type: "login", username, password: PASSWORD }, 120_000);
          if (reg.status !== "success" || login.status !== "success") failures++;
        } catch {
          failures++;
        } finally {
          client.close();
        }
        pairLatency.record((performance.now() - start) * 1000);
        progress(`  logins: ${++done}/${params.pairs} register+login pairs`);
      }));
      burstS = (performance.now() - t0) / 1000;
      during = traffic.takeLatency();
      traffic.measure(false);
      serverCpuS = (await cpu.stop()).cpuS;
      loadgen = await loadgenCpu(self);
      traffic.stopSending();
      const drained = await traffic.drain(10_000);
      counts = traffic.counts();
      problems.push(...countProblems(counts, drained));
    } finally {
      closeAll(clients);
    }
  } finally {
    await server.stop();
    problems.push(...serverProblems(server));
  }

  // Ceiling: the same bcrypt work alone, in this process.
  progress("  logins ceiling: bcrypt alone");
  const c0 = performance.now();
  await Promise.all(pairNames.map(async () => {
    const hash = await bcrypt.hash(PASSWORD, BCRYPT_COST);
    await bcrypt.compare(PASSWORD, hash);
  }));
  const ceilingS = (performance.now() - c0) / 1000;

  const loginsPerS = (params.pairs - failures) / burstS;
  const ceilingPerS = params.pairs / ceilingS;
  const b = before.summary();
  const d = during.summary();
  const ratio = b.p99_ms && d.p99_ms !== null ? d.p99_ms / b.p99_ms : null;
  if (failures > 0) problems.push(`${failures} of ${params.pairs} register+login pairs failed`);
  return {
    scenario: "logins",
    params,
    results: {
      logins_per_s: round(loginsPerS, 2),
      burst_s: round3(burstS),
      pair_latency: pairLatency.summary(),
      failures,
      fanout_before: b,
      fanout_during: d,
      server_cpu_s_during_burst: round3(serverCpuS),
      fanout_counts: counts,
    },
    ceiling: {
      kind: "bcrypt hash+compare at the same cost, alone, in the bench process",
      pairs_per_s: round(ceilingPerS, 2),
      seconds: round3(ceilingS),
      fanout_p99_before_ms: b.p99_ms,
    },
    loadgen,
    targets: [{
      name: "fan-out p99 during logins",
      target: `<= ${MAX_RATIO}x p99 before`,
      measured: `${fmt(d.p99_ms)} vs ${fmt(b.p99_ms)} ms (${ratioText(ratio)})`,
      ratio: ratio === null ? null : round(ratio, 3),
      pass: ratio !== null && ratio <= MAX_RATIO,
    }, {
      name: "logins/s (no target; vs bcrypt alone)",
      target: "report",
      measured: `${fmt(loginsPerS)}/s vs ${fmt(ceilingPerS)}/s (${ratioText(loginsPerS / ceilingPerS)})`,
      ratio: round(loginsPerS / ceilingPerS, 3),
      pass: null,
    }],
    problems: [...problems, ...loadgenProblem(loadgen, "logins")],
    rows: [
      ["register+login pairs/s", fmt(loginsPerS), fmt(ceilingPerS), ratioText(loginsPerS / ceilingPerS)],
      ["pair latency p50 (ms)", fmt(pairLatency.summary().p50_ms), "", ""],
      ["pair latency max (ms)", fmt(pairLatency.summary().max_ms), "", ""],
      [
        "fan-out p50 during / before (ms)",
        fmt(d.p50_ms),
        fmt(b.p50_ms),
        ratioText(d.p50_ms && b.p50_ms ? d.p50_ms / b.p50_ms : null),
      ],
      ["fan-out p99 during / before (ms)", fmt(d.p99_ms), fmt(b.p99_ms), ratioText(ratio)],
      ["fan-out max during / before (ms)", fmt(d.max_ms), fmt(b.max_ms), ""],
      ["fan-out samples during / before", String(d.count), String(b.count), ""],
      ["server CPU s during the burst", fmt(serverCpuS), "", ""],
    ],
  };
}

function countProblems(c: TrafficCounts, drained: boolean): string[] {
  const out: string[] = [];
  if (!drained) out.push("fan-out: not every message was delivered within 10 s after sending stopped");
  if (c.missed > 0 || c.out_of_order > 0) out.push(`fan-out: ${c.missed} missed, ${c.out_of_order} out of order`);
  if (c.closed_connections > 0) out.push(`fan-out: ${c.closed_connections} connections closed during the run`);
  if (Object.keys(c.errors).length > 0) out.push(`fan-out: error frames ${JSON.stringify(c.errors)}`);
  return out;
}
