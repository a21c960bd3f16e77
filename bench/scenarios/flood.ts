// flood of refused connections: the server is full (MAX_CONNECTIONS=1, held by a logged-in
// bystander), and a flood process opens 30,000 connections from as many loopback addresses
// (127.1.x.y), 100 at a time; each is refused with too_many_connections. The bystander pings all
// along: its worst round trip during the flood against before it (quiet). Control: the same flood
// aimed at a bare refuser process (bench/refuser.ts) while the bystander keeps pinging the chat
// server, which tells the machine's shared cores (the flood process, the kernel) apart from the
// server's own handling. Three rounds (one in --quick), each: quiet, flood at the server, control.

import { LoadClient } from "../client.ts";
import { type FloodResult, runFlood } from "../flood.ts";
import { fmt, progress } from "../out.ts";
import { CpuMeter } from "../proc.ts";
import { type Process, startRefuser } from "../servers.ts";
import { Histogram, type LatencySummary, round } from "../stats.ts";
import { sleep } from "../../tests/support/util.ts";
import {
  type BenchContext,
  loadgenCpu,
  PASSWORD,
  ratioText,
  round3,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  usernames,
} from "./common.ts";

/** The target: the worst ping during the flood under 25 ms, and within 10x of before it. */
const TARGET_WORST_MS = 25;
const TARGET_RATIO = 10;
/** Pause between a ping's reply and the next ping: a sample every few milliseconds. */
const PING_GAP_MS = 2;
/** A flood process busier than this was probably setting the pace. */
const SATURATED_CORES = 0.9;
/** 127.1.0.0/16 holds 65,536 addresses; each flood starts where the last one ended. */
const ADDRESSES = 65_536;

/** Pings one after another and records their round trips into the current histogram. */
class Pinger {
  #histogram = new Histogram();
  #running = true;
  failure: string | undefined;
  readonly done: Promise<void>;

  constructor(readonly client: LoadClient) {
    this.done = this.#loop();
  }

  /** The round trips since the last take. */
  take(): Histogram {
    const taken = this.#histogram;
    this.#histogram = new Histogram();
    return taken;
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.done;
  }

  async #loop(): Promise<void> {
    while (this.#running) {
      const start = performance.now();
      try {
        await this.client.request({ type: "ping" }, 10_000);
      } catch (err) {
        this.failure ??= err instanceof Error ? err.message : String(err);
        return;
      }
      this.#histogram.record((performance.now() - start) * 1000);
      await sleep(PING_GAP_MS);
    }
  }
}

interface FloodPhase extends FloodResult {
  /** CPU seconds of the flooded process. */
  targetCpuS: number;
}

export async function flood(ctx: BenchContext): Promise<ScenarioReport> {
  const params = {
    refused_connections: ctx.quick ? 5_000 : 30_000,
    concurrency: 100,
    rounds: ctx.quick ? 1 : 3,
    quiet_s: ctx.quick ? 1 : 2,
    flood_timeout_s: 60,
    ping_gap_ms: PING_GAP_MS,
  };
  const self = new CpuMeter("self");
  await self.start();
  const server = await startChatServer(ctx, { MAX_CONNECTIONS: "1" });
  let refuser: Process | undefined;
  const quiet = new Histogram();
  const during = new Histogram();
  const control = new Histogram();
  const rounds: { quiet_max_ms: number | null; during_max_ms: number | null; control_max_ms: number | null }[] = [];
  const atServer: FloodPhase[] = [];
  const atRefuser: FloodPhase[] = [];
  const problems: string[] = [];
  let nextAddress = 0;
  const floodAt = async (pid: number, port: number, label: string): Promise<FloodPhase> => {
    progress(`  flood: ${label}`);
    const cpu = new CpuMeter(pid);
    await cpu.start();
    const result = await runFlood({
      port,
      count: params.refused_connections,
      concurrency: params.concurrency,
      first: nextAddress,
      timeoutS: params.flood_timeout_s,
    });
    nextAddress = (nextAddress + params.refused_connections) % ADDRESSES;
    return { ...result, targetCpuS: (await cpu.stop()).cpuS };
  };
  try {
    const target = refuser = await startRefuser();
    // The bystander holds the server's one connection (MAX_CONNECTIONS=1), and registers on it.
    const [name] = usernames("flood", 1);
    const client = await LoadClient.connect(server.port, { readBufferBytes: 4096 });
    const pinger = new Pinger(client);
    try {
      await client.request({ type: "register", username: name, password: PASSWORD });
      const login = await client.request({ type: "login", username: name, password: PASSWORD });
      if (login.status !== "success") throw new Error(`login failed: ${JSON.stringify(login)}`);
      await sleep(1000);
      for (let r = 0; r < params.rounds; r++) {
        const tag = `round ${r + 1}/${params.rounds}`;
        pinger.take();
        progress(`  flood ${tag}: quiet`);
        await sleep(params.quiet_s * 1000);
        const roundQuiet = pinger.take();
        atServer.push(await floodAt(server.pid, server.port, `${tag}: refused connections at the server`));
        const roundDuring = pinger.take();
        await sleep(1000);
        pinger.take();
        atRefuser.push(await floodAt(target.pid, target.port, `${tag}: control, the same flood at a bare refuser`));
        const roundControl = pinger.take();
        await sleep(1000);
        const max = (h: Histogram) => h.summary().max_ms;
        rounds.push({
          quiet_max_ms: max(roundQuiet),
          during_max_ms: max(roundDuring),
          control_max_ms: max(roundControl),
        });
        quiet.merge(roundQuiet);
        during.merge(roundDuring);
        control.merge(roundControl);
      }
    } finally {
      await pinger.stop();
      client.close();
      if (pinger.failure) problems.push(`bystander ping failed: ${pinger.failure}`);
    }
  } finally {
    await server.stop();
    await refuser?.stop();
  }
  const loadgen = await loadgenCpu(self);
  // The refusals' own log lines are expected here: count them, and report anything else.
  const refusalLines = server.problems.filter((entry) => /^connections? refused/.test(String(entry.msg))).length;
  problems.push(
    ...serverProblems({
      ...server,
      problems: server.problems.filter((e) => !/^connections? refused/.test(String(e.msg))),
    }),
  );
  const total = (phases: FloodPhase[]) => ({
    refused: phases.reduce((n, p) => n + p.refused, 0),
    other: phases.reduce((n, p) => n + p.other, 0),
    errors: phases.reduce((n, p) => n + p.errors, 0),
    seconds: round3(phases.reduce((n, p) => n + p.seconds, 0)),
    cpu_s: round3(phases.reduce((n, p) => n + p.targetCpuS, 0)),
    flood_process_cpu_s: round3(phases.reduce((n, p) => n + p.cpu_s, 0)),
  });
  const serverTotal = total(atServer);
  const refuserTotal = total(atRefuser);
  const expected = params.refused_connections * params.rounds;
  if (serverTotal.refused !== expected) {
    problems.push(`server: ${serverTotal.refused} of ${expected} connections refused`);
  }
  if (refuserTotal.refused !== expected) {
    problems.push(`refuser: ${refuserTotal.refused} of ${expected} connections refused`);
  }
  const floodCores = (phase: ReturnType<typeof total>) =>
    phase.seconds > 0 ? phase.flood_process_cpu_s / phase.seconds : 0;
  if (floodCores(serverTotal) >= SATURATED_CORES) {
    problems.push(`the flood process used ${fmt(floodCores(serverTotal), 2)} cores: it set the pace, not the server`);
  }
  const q = quiet.summary();
  const d = during.summary();
  const k = control.summary();
  const ratio = q.max_ms && d.max_ms !== null ? d.max_ms / q.max_ms : null;
  const perRefusalUs = (phase: ReturnType<typeof total>) =>
    phase.refused > 0 ? round((phase.cpu_s * 1e6) / phase.refused, 1) : null;
  const rate = (phase: ReturnType<typeof total>) => phase.seconds > 0 ? round(phase.refused / phase.seconds, 0) : null;
  const ms = (s: LatencySummary, key: "p50_ms" | "p99_ms" | "max_ms") => fmt(s[key] ?? NaN);
  return {
    scenario: "flood",
    params,
    results: {
      ping_quiet: q,
      ping_during_flood: d,
      rounds,
      server: { ...serverTotal, refused_per_s: rate(serverTotal), cpu_us_per_refusal: perRefusalUs(serverTotal) },
      refusal_log_lines: refusalLines,
    },
    ceiling: {
      kind: "the same flood at a bare refuser (bench/refuser.ts) while the bystander pings the chat server",
      ping_during_control: k,
      refuser: { ...refuserTotal, refused_per_s: rate(refuserTotal), cpu_us_per_refusal: perRefusalUs(refuserTotal) },
    },
    loadgen,
    targets: [{
      name: `bystander's worst ping during ${params.refused_connections.toLocaleString("en-US")} refused connections`,
      target: `<= ${TARGET_WORST_MS} ms and <= ${TARGET_RATIO}x quiet`,
      measured: `${fmt(d.max_ms ?? NaN)} ms (quiet ${fmt(q.max_ms ?? NaN)} ms, ${ratioText(ratio)}; control ${
        fmt(k.max_ms ?? NaN)
      } ms)`,
      ratio: ratio === null ? null : round3(ratio),
      pass: d.max_ms !== null && ratio !== null && d.max_ms <= TARGET_WORST_MS && ratio <= TARGET_RATIO,
    }],
    problems,
    rows: [
      ["ping p50 (ms)", ms(d, "p50_ms"), ms(k, "p50_ms"), ratioText((d.p50_ms ?? NaN) / (k.p50_ms ?? NaN))],
      ["ping p99 (ms)", ms(d, "p99_ms"), ms(k, "p99_ms"), ratioText((d.p99_ms ?? NaN) / (k.p99_ms ?? NaN))],
      ["ping max (ms)", ms(d, "max_ms"), ms(k, "max_ms"), ratioText((d.max_ms ?? NaN) / (k.max_ms ?? NaN))],
      ["ping max, quiet (ms)", ms(q, "max_ms"), "", ""],
      ["refused connections", String(serverTotal.refused), String(refuserTotal.refused), ""],
      ["refused per s", fmt(rate(serverTotal) ?? NaN), fmt(rate(refuserTotal) ?? NaN), ""],
      [
        "CPU µs per refusal (flooded process)",
        fmt(perRefusalUs(serverTotal) ?? NaN),
        fmt(perRefusalUs(refuserTotal) ?? NaN),
        ratioText((perRefusalUs(serverTotal) ?? NaN) / (perRefusalUs(refuserTotal) ?? NaN)),
      ],
      ["flood process cores", fmt(floodCores(serverTotal), 2), fmt(floodCores(refuserTotal), 2), ""],
      ["server log lines about refusals", String(refusalLines), "", ""],
    ],
  };
}
