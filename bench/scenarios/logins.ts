// logins under load: a paced fan-out runs (50 logged-in clients, 5 senders, 200 messages/s in
// total) on a server with BCRYPT_COST=10; its latency is measured before, then during a burst of 50
// register+login pairs, each on its own new connection, all at once (twice, in alternating rounds,
// the histograms of each phase merged). Logins per second, and the
// fan-out p99 during the burst against before it. Ceiling for the logins: the same 50 bcrypt
// hash+compare pairs at cost 10 run in this process (npm:bcrypt, as the server uses). Control: the
// same bcrypt work run in this process while the fan-out goes on, to tell the machine's shared
// cores from the server's own handling.

import bcryptModule from "bcrypt";
import { LoadClient } from "../client.ts";
import { fmt, progress } from "../out.ts";
import { CpuMeter, threadCount } from "../proc.ts";
import { Histogram, round } from "../stats.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  type LoadgenCpu,
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
    before_s: ctx.quick ? 2 : 4,
    rounds: ctx.quick ? 1 : 2,
  };
  const fanNames = usernames("loginfan", params.fanout_users);
  const server = await startChatServer(ctx, { BCRYPT_COST: String(BCRYPT_COST) });
  const pairLatency = new Histogram();
  const before = new Histogram();
  const during = new Histogram();
  const control = new Histogram();
  const rounds: { before_p99_ms: number; during_p99_ms: number; control_p99_ms: number }[] = [];
  let burstS = 0;
  let serverCpuS = 0;
  let controlS = 0;
  let selfCpuS = 0;
  let selfWallS = 0;
  let failures = 0;
  let threadsBefore = 0;
  let maxThreads = 0;
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
      threadsBefore = await threadCount(server.pid);
      await runFor(ctx.quick ? 0.5 : 1, "logins: fan-out warm-up", status);
      // Rounds of (before, burst, control): a burst of someone else's load on this shared machine
      // then weighs on every phase alike instead of deciding the verdict alone.
      for (let round = 0; round < params.rounds; round++) {
        const tag = `round ${round + 1}/${params.rounds}`;
        traffic.takeLatency();
        await self.start();
        traffic.measure(true);
        await runFor(params.before_s, `logins ${tag}: fan-out before the burst`, status);
        const roundBefore = traffic.takeLatency();

        const cpu = new CpuMeter(server.pid);
        await cpu.start();
        const t0 = performance.now();
        let done = 0;
        // The server's thread count while bcrypt runs: how many hashes run at once.
        let sampling = true;
        const sampler = (async () => {
          while (sampling) {
            maxThreads = Math.max(maxThreads, await threadCount(server.pid).catch(() => 0));
            await new Promise((r) => setTimeout(r, 200));
          }
        })();
        await Promise.all(
          usernames(`login${round}`, params.pairs).map(async (username) => {
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
            progress(`  logins ${tag}: ${++done}/${params.pairs} register+login pairs`);
          }),
        );
        burstS += (performance.now() - t0) / 1000;
        sampling = false;
        await sampler;
        const roundDuring = traffic.takeLatency();
        traffic.measure(false);
        serverCpuS += (await cpu.stop()).cpuS;
        // The load generator's own CPU: before and burst only (the control's bcrypt runs here too).
        const own = await self.stop();
        selfCpuS += own.cpuS;
        selfWallS += own.wallS;

        // Control: the same bcrypt work in this process, outside the server, while the fan-out runs.
        // If the fan-out suffers as much, the cause is the machine's cores being shared, not the
        // server's handling of logins.
        await runFor(1, `logins ${tag}: fan-out settles after the burst`, status);
        traffic.measure(true);
        progress(`  logins ${tag} control: the same bcrypt work in the load generator`);
        const k0 = performance.now();
        await bcryptPairs(params.pairs);
        controlS += (performance.now() - k0) / 1000;
        const roundControl = traffic.takeLatency();
        traffic.measure(false);
        await runFor(1, `logins ${tag}: fan-out settles after the control`, status);

        const p99 = (h: Histogram) => h.quantile(0.99) ?? NaN;
        rounds.push({
          before_p99_ms: round3(p99(roundBefore) / 1000),
          during_p99_ms: round3(p99(roundDuring) / 1000),
          control_p99_ms: round3(p99(roundControl) / 1000),
        });
        before.merge(roundBefore);
        during.merge(roundDuring);
        control.merge(roundControl);
      }
      const cores = selfCpuS / selfWallS;
      loadgen = { cpu_s: round3(selfCpuS), wall_s: round3(selfWallS), cores: round3(cores), saturated: cores >= 0.9 };
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
  await bcryptPairs(params.pairs);
  const ceilingS = (performance.now() - c0) / 1000;
  const totalPairs = params.pairs * params.rounds;
  const b = before.summary();
  const d = during.summary();
  const k = control.summary();
  const controlRatio = b.p99_ms && k.p99_ms !== null ? k.p99_ms / b.p99_ms : null;

  const loginsPerS = (totalPairs - failures) / burstS;
  const ceilingPerS = params.pairs / ceilingS;
  const ratio = b.p99_ms && d.p99_ms !== null ? d.p99_ms / b.p99_ms : null;
  if (failures > 0) problems.push(`${failures} of ${totalPairs} register+login pairs failed`);
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
      fanout_during_control: k,
      rounds,
      control_s: round3(controlS),
      server_cpu_s_during_burst: round3(serverCpuS),
      server_cores_during_burst: round(serverCpuS / burstS, 2),
      server_threads_before: threadsBefore,
      server_threads_max_during_burst: maxThreads,
      fanout_counts: counts,
    },
    ceiling: {
      kind: "bcrypt hash+compare at the same cost, alone, in the bench process",
      pairs_per_s: round(ceilingPerS, 2),
      seconds: round3(ceilingS),
      fanout_p99_before_ms: b.p99_ms,
      control: "the same bcrypt pairs run in the load generator while the fan-out runs: p99 " +
        `${fmt(k.p99_ms)} ms (${ratioText(controlRatio)} of before)`,
    },
    loadgen,
    targets: [{
      name: "fan-out p99 during logins",
      target: `<= ${MAX_RATIO}x p99 before`,
      measured: `${fmt(d.p99_ms)} vs ${fmt(b.p99_ms)} ms (${ratioText(ratio)})`,
      ratio: ratio === null ? null : round(ratio, 3),
      pass: ratio !== null && ratio <= MAX_RATIO,
    }, {
      name: "fan-out p99 while the same bcrypt runs outside the server (control)",
      target: "info",
      measured: `${fmt(k.p99_ms)} vs ${fmt(b.p99_ms)} ms (${ratioText(controlRatio)})`,
      ratio: controlRatio === null ? null : round(controlRatio, 3),
      pass: null,
    }, {
      name: "logins/s (no target; vs bcrypt alone)",
      target: "info",
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
      [
        "control: fan-out p99 while the bench runs the bcrypt (ms)",
        fmt(k.p99_ms),
        fmt(b.p99_ms),
        ratioText(controlRatio),
      ],
      [
        "p99 per round: before / during / control (ms)",
        rounds.map((r) => `${fmt(r.before_p99_ms)}/${fmt(r.during_p99_ms)}/${fmt(r.control_p99_ms)}`).join("  "),
        "",
        "",
      ],
      ["server CPU cores during the burst", fmt(serverCpuS / burstS), "", ""],
      ["server threads before / most during the burst", `${threadsBefore} / ${maxThreads}`, "", ""],
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

/** `pairs` bcrypt hash+compare pairs at the bench's cost, all started at once, as the burst does. */
async function bcryptPairs(pairs: number): Promise<void> {
  await Promise.all(Array.from({ length: pairs }, async () => {
    const hash = await bcrypt.hash(PASSWORD, BCRYPT_COST);
    await bcrypt.compare(PASSWORD, hash);
  }));
}
