// What every scenario shares: the run's context, the shape of a scenario's report, and setting up
// users and logged-in connections.

import { LoadClient } from "../client.ts";
import type { BenchDatabase } from "../database.ts";
import { fmt, print, progress, table } from "../out.ts";
import { CpuMeter, rssKiB } from "../proc.ts";
import { type Process, startServer } from "../servers.ts";

export interface BenchContext {
  readonly db: BenchDatabase;
  readonly quick: boolean;
  /** Set with --profile: servers write V8 CPU profiles here. */
  readonly cpuProfDir: string | undefined;
  /** The scenario running, for names of files. */
  readonly scenario: string;
}

/** One target of the issue, checked against this run's figures. */
export interface Target {
  name: string;
  target: string;
  measured: string;
  /** The figure the target is about, as a ratio (or the absolute value for absolute targets). */
  ratio: number | null;
  /** null: reported only, no target set. */
  pass: boolean | null;
}

/** One row of a scenario's readable table: what, under test, ceiling, ratio. */
export type Row = [string, string, string, string];

export interface ScenarioReport {
  scenario: string;
  params: Record<string, unknown>;
  results: Record<string, unknown>;
  ceiling: Record<string, unknown>;
  /** The bench process's own CPU while it measured. */
  loadgen: LoadgenCpu;
  targets: Target[];
  /** Anything a reader must know: server warnings and errors, client errors, saturation. */
  problems: string[];
  rows: Row[];
}

export interface LoadgenCpu {
  cpu_s: number;
  wall_s: number;
  /** Average cores busy: 1.0 is one core saturated. */
  cores: number;
  saturated: boolean;
}

/** A load process busier than this fraction of one core is probably limiting the result. */
const SATURATED_CORES = 0.9;

export async function loadgenCpu(meter: CpuMeter): Promise<LoadgenCpu> {
  const { cpuS, wallS, cores } = await meter.stop();
  return { cpu_s: round3(cpuS), wall_s: round3(wallS), cores: round3(cores), saturated: cores >= SATURATED_CORES };
}

export function loadgenProblem(cpu: LoadgenCpu, what: string): string[] {
  return cpu.saturated
    ? [
      `the load generator used ${
        fmt(cpu.cores, 2)
      } cores during ${what}: its single JS thread is saturated, so figures there are a floor, not the server's limit`,
    ]
    : [];
}

export function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** a / b, or null when either is missing or b is 0. */
export function ratioOf(a: number | null | undefined, b: number | null | undefined): number | null {
  return a !== null && a !== undefined && b ? a / b : null;
}

export function ratioText(value: number | null | undefined): string {
  return value === null || value === undefined || !Number.isFinite(value) ? "-" : `${value.toFixed(2)}x`;
}

/** Prints a scenario's JSON line and its table. */
export function printReport(report: ScenarioReport): void {
  const { rows, ...json } = report;
  print(JSON.stringify(json));
  print("");
  print(`== ${report.scenario}`);
  print(table([["metric", "server", "ceiling", "ratio"], ...rows]));
  print(
    `load generator: ${fmt(report.loadgen.cpu_s, 2)} CPU s over ${fmt(report.loadgen.wall_s, 2)} s (${
      fmt(report.loadgen.cores, 2)
    } cores)${report.loadgen.saturated ? "  SATURATED" : ""}`,
  );
  for (const target of report.targets) {
    print(`target: ${target.name} ${target.target}: ${target.measured} -> ${verdict(target.pass)}`);
  }
  for (const problem of report.problems) print(`problem: ${problem}`);
  print("");
}

export function verdict(pass: boolean | null): string {
  return pass === null ? "info" : pass ? "PASS" : "MISS";
}

/** Starts a chat server on the bench database with `env` over the bench's defaults. */
export async function startChatServer(ctx: BenchContext, env: Record<string, string> = {}): Promise<Process> {
  return await startServer({
    env: { ...ctx.db.serverEnv, ...env },
    cpuProfDir: ctx.cpuProfDir,
    profileName: ctx.scenario,
  });
}

/** The server's warnings and errors, summarised (counts per message, first of each). */
export function serverProblems(server: Process): string[] {
  const byMsg = new Map<string, { count: number; first: Record<string, unknown> }>();
  for (const entry of server.problems) {
    const msg = String(entry.msg);
    const seen = byMsg.get(msg);
    if (seen) seen.count++;
    else byMsg.set(msg, { count: 1, first: entry });
  }
  return [...byMsg.entries()].map(([msg, { count, first }]) =>
    `server ${String(first.level)} x${count}: ${msg} ${JSON.stringify(first)}`
  );
}

export const PASSWORD = "bench-password-1";

/** Registers users (`concurrency` connections, each registering its share in turn). */
export async function registerUsers(port: number, names: string[], concurrency = 8): Promise<void> {
  let next = 0;
  let done = 0;
  const worker = async () => {
    const client = await LoadClient.connect(port, { readBufferBytes: 4096 });
    try {
      while (next < names.length) {
        const username = names[next++];
        const reply = await client.request({ type: "register", username, password: PASSWORD }, 60_000);
        if (reply.status !== "success" && reply.code !== "username_taken") {
          throw new Error(`register ${username} failed: ${JSON.stringify(reply)}`);
        }
        done++;
        progress(`  registering users ${done}/${names.length}`);
      }
    } finally {
      client.close();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, names.length) }, worker));
}

export interface LoginOptions {
  /** Connection i logs in as usernames[i % usernames.length]. */
  usernames: string[];
  readBufferBytes?: number;
  countOnly?: boolean;
  /** Connections opened and logins in flight at once. */
  concurrency?: number;
  /** "ws": WebSockets to /ws, with `port` the server's HTTP port. */
  transport?: "tcp" | "ws";
}

/** Opens `count` connections and logs each in. */
export async function connectLoggedIn(port: number, count: number, options: LoginOptions): Promise<LoadClient[]> {
  const clients: LoadClient[] = new Array(count);
  const concurrency = options.concurrency ?? 200;
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const client = await LoadClient.connect(port, {
        readBufferBytes: options.readBufferBytes,
        countOnly: options.countOnly,
        transport: options.transport,
      });
      clients[i] = client;
      const username = options.usernames[i % options.usernames.length];
      const reply = await client.request({ type: "login", username, password: PASSWORD }, 120_000);
      if (reply.status !== "success") throw new Error(`login ${username} failed: ${JSON.stringify(reply)}`);
      done++;
      if (done % 100 === 0 || done === count) progress(`  logged in ${done}/${count} connections`);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  } catch (err) {
    closeAll(clients);
    throw err;
  }
  return clients;
}

/** Opens `count` plain connections (for the bare relay). */
export async function connectPlain(port: number, count: number, readBufferBytes?: number): Promise<LoadClient[]> {
  const clients: LoadClient[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      clients[i] = await LoadClient.connect(port, { readBufferBytes });
    }
  };
  await Promise.all(Array.from({ length: Math.min(200, count) }, worker));
  return clients;
}

export function closeAll(clients: (LoadClient | undefined)[]): void {
  for (const client of clients) client?.close();
}

export function usernames(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}_${Deno.pid}_${i}`);
}

/** Runs `fn` with a progress line every 250 ms showing `status()`, for `seconds`. */
export async function runFor(seconds: number, label: string, status: () => string): Promise<void> {
  const t0 = performance.now();
  while (true) {
    const elapsed = (performance.now() - t0) / 1000;
    if (elapsed >= seconds) break;
    progress(`  ${label} ${elapsed.toFixed(1)}/${seconds}s ${status()}`);
    await new Promise((resolve) => setTimeout(resolve, Math.min(250, (seconds - elapsed) * 1000)));
  }
}

export { CpuMeter, rssKiB };
