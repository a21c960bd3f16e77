// Measuring fan-out traffic on one or more targets (the chat server, the bare relay), in
// alternating rounds: on this shared, noisy machine a burst of someone else's load then lands on
// every target alike instead of on whichever ran at that moment. Each round restarts sending,
// warms up briefly, measures, stops sending and waits (bounded) for every delivery.

import type { LoadClient } from "./client.ts";
import { fmt } from "./out.ts";
import { CpuMeter, GroupCpuMeter, machineCpuSeconds } from "./proc.ts";
import { type WriteCounts, writeCounts } from "./server_metrics.ts";
import { type LatencySummary, round } from "./stats.ts";
import { Traffic, type TrafficCounts, type TrafficOptions } from "./traffic.ts";
import { type LoadgenCpu, loadgenProblem, ratioText, round3, type Row, runFor } from "./scenarios/common.ts";

export interface TrafficResult {
  rounds: number;
  measured_s: number;
  messages_per_s: number;
  deliveries_per_s: number;
  latency: LatencySummary;
  /** With `serverOf`: at receivers on another server than the sender's, and on its own. */
  cross_server_latency?: LatencySummary;
  same_server_latency?: LatencySummary;
  ack_latency: LatencySummary;
  /** CPU seconds of the process under test while measuring. */
  cpu_s: number;
  /** Of which in the kernel (system time: socket reads and writes, mostly). */
  system_cpu_s: number;
  cpu_ms_per_1000_deliveries: number | null;
  /** CPU seconds of the PostgreSQL backends serving the server's database while measuring (null: not visible). */
  database_cpu_s: number | null;
  database_cpu_ms_per_message: number | null;
  /** Average busy cores of the whole machine while measuring (all processes, PostgreSQL included). */
  machine_busy_cores: number;
  counts: TrafficCounts;
  drained: boolean;
  loadgen: LoadgenCpu;
  /** With `metricsPorts`: the servers' socket writes while measuring, by their own counters. */
  socket_writes?: SocketWrites;
}

export interface SocketWrites {
  writes: number;
  /** Per 1,000 lines delivered (the servers' `chat_deliveries_total`): how well output was batched. */
  per_1000_deliveries: number | null;
}

export interface RunSpec extends Omit<TrafficOptions, "clients"> {
  clients: LoadClient[];
  /** The process under test, for its CPU. */
  pid: number;
  /** Several processes under test (servers on one database): their CPU is added up. Default: [pid]. */
  pids?: number[];
  label: string;
  /** Pace this run at the message rate measured so far on the run at this index (open loop). */
  rateOf?: number;
  /** `pgrep -f` pattern of the database backends serving this target, for their CPU. */
  backendPattern?: string;
  /** The servers' METRICS_ADDR ports, for their socket writes. */
  metricsPorts?: number[];
}

export interface Schedule {
  rounds: number;
  /** Warm-up before the first round of each run. */
  warmupS: number;
  /** Warm-up before later rounds (the pipeline refills). */
  rewarmS: number;
  roundS: number;
}

/** A single run: one warm-up, one measured window. */
export function measureTraffic(spec: RunSpec, warmupS: number, measureS: number): Promise<TrafficResult> {
  return measureInterleaved([spec], { rounds: 1, warmupS, rewarmS: 0, roundS: measureS }).then((r) => r[0]);
}

interface Accumulated {
  traffic: Traffic;
  cpuS: number;
  systemS: number;
  wallS: number;
  selfCpuS: number;
  machineBusyS: number;
  dbCpuS: number;
  dbSeen: boolean;
  drained: boolean;
  writes: WriteCounts;
}

export async function measureInterleaved(specs: RunSpec[], schedule: Schedule): Promise<TrafficResult[]> {
  const runs: Accumulated[] = specs.map((spec) => ({
    traffic: new Traffic(spec),
    cpuS: 0,
    systemS: 0,
    wallS: 0,
    selfCpuS: 0,
    machineBusyS: 0,
    dbCpuS: 0,
    dbSeen: false,
    drained: true,
    writes: { writes: 0, deliveries: 0 },
  }));
  for (let r = 0; r < schedule.rounds; r++) {
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i];
      const run = runs[i];
      const { traffic } = run;
      const label = `${spec.label} round ${r + 1}/${schedule.rounds}`;
      const status = () => `sent=${traffic.sent} delivered=${traffic.deliveries} unacked=${traffic.unacked}`;
      let rate = spec.ratePerSec;
      if (spec.rateOf !== undefined) {
        const model = runs[spec.rateOf];
        rate = model.wallS > 0 ? Math.max(1, model.traffic.windowAcks / model.wallS) : 1;
      }
      traffic.start(rate);
      await runFor(r === 0 ? schedule.warmupS : schedule.rewarmS, `${label} warm-up`, status);
      const target = new CpuMeters(spec.pids ?? [spec.pid]);
      const self = new CpuMeter("self");
      const db = spec.backendPattern ? new GroupCpuMeter(spec.backendPattern) : undefined;
      const ports = spec.metricsPorts ?? [];
      const [machine0, , , , writes0] = await Promise.all([
        machineCpuSeconds(),
        target.start(),
        self.start(),
        db?.start(),
        writeCounts(ports),
      ]);
      traffic.measure(true);
      await runFor(schedule.roundS, label, status);
      traffic.measure(false);
      const [t, s, machine1, d, writes1] = await Promise.all([
        target.stop(),
        self.stop(),
        machineCpuSeconds(),
        db?.stop(),
        writeCounts(ports),
      ]);
      run.writes.writes += writes1.writes - writes0.writes;
      run.writes.deliveries += writes1.deliveries - writes0.deliveries;
      if (d && d.processes > 0) {
        run.dbCpuS += d.cpuS;
        run.dbSeen = true;
      }
      run.cpuS += t.cpuS;
      run.systemS += t.systemS;
      run.wallS += t.wallS;
      run.selfCpuS += s.cpuS;
      run.machineBusyS += machine1.busyS - machine0.busyS;
      traffic.stopSending();
      run.drained = (await traffic.drain(10_000)) && run.drained;
    }
  }
  return runs.map((run, i) => {
    const { traffic, cpuS, wallS } = run;
    const deliveries = traffic.windowDeliveries;
    const cores = run.selfCpuS / wallS;
    return {
      rounds: schedule.rounds,
      measured_s: round3(wallS),
      messages_per_s: round(traffic.windowAcks / wallS, 1),
      deliveries_per_s: round(deliveries / wallS, 1),
      latency: traffic.latency.summary(),
      ...(specs[i].serverOf
        ? {
          cross_server_latency: traffic.crossServerLatency.summary(),
          same_server_latency: traffic.sameServerLatency.summary(),
        }
        : {}),
      ack_latency: traffic.ackLatency.summary(),
      cpu_s: round3(cpuS),
      system_cpu_s: round3(run.systemS),
      cpu_ms_per_1000_deliveries: deliveries > 0 ? round((cpuS * 1000 * 1000) / deliveries, 3) : null,
      database_cpu_s: run.dbSeen ? round3(run.dbCpuS) : null,
      database_cpu_ms_per_message: run.dbSeen && traffic.windowAcks > 0
        ? round((run.dbCpuS * 1000) / traffic.windowAcks, 4)
        : null,
      machine_busy_cores: round(run.machineBusyS / wallS, 2),
      counts: traffic.counts(),
      drained: run.drained,
      loadgen: { cpu_s: round3(run.selfCpuS), wall_s: round3(wallS), cores: round3(cores), saturated: cores >= 0.9 },
      ...(specs[i].metricsPorts ? { socket_writes: socketWrites(run.writes) } : {}),
    };
  });
}

function socketWrites({ writes, deliveries }: WriteCounts): SocketWrites {
  return { writes, per_1000_deliveries: deliveries > 0 ? round((writes * 1000) / deliveries, 1) : null };
}

/** The CPU of several processes over one window, added up. */
class CpuMeters {
  readonly #meters: CpuMeter[];
  constructor(pids: number[]) {
    this.#meters = pids.map((pid) => new CpuMeter(pid));
  }
  async start(): Promise<void> {
    await Promise.all(this.#meters.map((m) => m.start()));
  }
  async stop(): Promise<{ cpuS: number; systemS: number; wallS: number }> {
    const each = await Promise.all(this.#meters.map((m) => m.stop()));
    const sum = (key: "cpuS" | "systemS") => each.reduce((total, e) => total + e[key], 0);
    return { cpuS: sum("cpuS"), systemS: sum("systemS"), wallS: each[0].wallS };
  }
}

/** Problems a reader must see in a traffic result. */
export function trafficProblems(name: string, r: TrafficResult): string[] {
  const out: string[] = [];
  const c = r.counts;
  if (!r.drained) {
    out.push(`${name}: not every message was acknowledged and delivered within 10 s after sending stopped`);
  }
  if (c.missed > 0) out.push(`${name}: ${c.missed} missed deliveries`);
  if (c.out_of_order > 0) out.push(`${name}: ${c.out_of_order} out-of-order deliveries`);
  if (c.rejected > 0) out.push(`${name}: ${c.rejected} sends rejected`);
  if (c.skipped > 0) out.push(`${name}: ${c.skipped} paced sends skipped (sender backlog full)`);
  if (c.slow_parses > 0) out.push(`${name}: ${c.slow_parses} broadcasts not in the expected byte layout`);
  if (c.ack_mismatches > 0) out.push(`${name}: ${c.ack_mismatches} acknowledgements with a wrong request_id`);
  if (c.closed_connections > 0) out.push(`${name}: ${c.closed_connections} connections closed during the run`);
  if (Object.keys(c.errors).length > 0) out.push(`${name}: error frames ${JSON.stringify(c.errors)}`);
  return [...out, ...loadgenProblem(r.loadgen, name)];
}

export function latencyRows(label: string, server: LatencySummary, ceiling: LatencySummary): Row[] {
  const row = (q: "p50_ms" | "p90_ms" | "p99_ms" | "max_ms"): Row => {
    const a = server[q];
    const b = ceiling[q];
    return [`${label} ${q.replace("_ms", "")} (ms)`, fmt(a), fmt(b), ratioText(a !== null && b ? a / b : null)];
  };
  return [row("p50_ms"), row("p90_ms"), row("p99_ms"), row("max_ms")];
}

/** Busy cores of the machine that were neither the process under test nor the load generator. */
export function otherCores(r: TrafficResult): number {
  const db = (r.database_cpu_s ?? 0) / r.measured_s;
  return Math.max(0, r.machine_busy_cores - r.cpu_s / r.measured_s - r.loadgen.cores - db);
}

/** Rows every traffic table ends with: CPU, machine load, the load generator. */
export function cpuRows(server: TrafficResult, ceiling: TrafficResult): Row[] {
  return [
    [
      "CPU ms per 1,000 deliveries",
      fmt(server.cpu_ms_per_1000_deliveries),
      fmt(ceiling.cpu_ms_per_1000_deliveries),
      ratioText(
        server.cpu_ms_per_1000_deliveries !== null && ceiling.cpu_ms_per_1000_deliveries
          ? server.cpu_ms_per_1000_deliveries / ceiling.cpu_ms_per_1000_deliveries
          : null,
      ),
    ],
    ["process CPU s while measuring", fmt(server.cpu_s), fmt(ceiling.cpu_s), ""],
    ["database backends' CPU s while measuring", fmt(server.database_cpu_s), fmt(ceiling.database_cpu_s), ""],
    ["machine busy cores (of 2) while measuring", fmt(server.machine_busy_cores), fmt(ceiling.machine_busy_cores), ""],
    [
      "  of which other processes (other users' work)",
      fmt(otherCores(server)),
      fmt(otherCores(ceiling)),
      "",
    ],
    ["load generator cores", fmt(server.loadgen.cores), fmt(ceiling.loadgen.cores), ""],
    [
      "missed / out of order",
      `${server.counts.missed} / ${server.counts.out_of_order}`,
      `${ceiling.counts.missed} / ${ceiling.counts.out_of_order}`,
      "",
    ],
  ];
}
