// Readers of /proc (Linux): a process's CPU time, its resident memory and its listening port.
// Deno refuses every /proc read without --allow-all, even with --allow-read, so the files are read
// through `cat` (the bench may run subprocesses anyway); a read costs a few milliseconds, and the
// bench reads only at the edges of its measuring windows.

let clockTicks = 100;

/** Clock ticks per second for /proc/<pid>/stat times (`getconf CLK_TCK`, almost always 100). */
export async function clockTicksPerSecond(): Promise<number> {
  const value = Number((await run("getconf", ["CLK_TCK"])).trim());
  if (Number.isFinite(value) && value > 0) clockTicks = value;
  return clockTicks;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null", stdin: "null" }).output();
  return new TextDecoder().decode(out.stdout);
}

function procPid(pid: number | "self"): number {
  return pid === "self" ? Deno.pid : pid;
}

/** User plus system CPU seconds used so far by a process ("self" for this one), all its threads included. */
export async function cpuSeconds(pid: number | "self"): Promise<number> {
  const { userS, systemS } = await cpuTimes(pid);
  return userS + systemS;
}

/** User and system CPU seconds used so far by a process, apart. */
export async function cpuTimes(pid: number | "self"): Promise<{ userS: number; systemS: number }> {
  const fields = statFields(await run("cat", [`/proc/${procPid(pid)}/stat`]));
  return { userS: Number(fields[UTIME]) / clockTicks, systemS: Number(fields[STIME]) / clockTicks };
}

/**
 * The fields of a /proc/<pid>/stat line after the command name, which may hold spaces and
 * parentheses (so the line is split after its last ")"): field n of proc(5) is at index n - 3.
 */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** Indexes in statFields() of utime and stime (fields 14, 15), and of cutime and cstime (16, 17). */
export const UTIME = 11;
export const STIME = 12;
export const CUTIME = 13;
export const CSTIME = 14;

/** VmRSS of a process, in KiB. */
export async function rssKiB(pid: number | "self"): Promise<number> {
  const status = await run("cat", [`/proc/${procPid(pid)}/status`]);
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) : NaN;
}

/**
 * The TCP port a process listens on, found through its socket inodes, or undefined while it has
 * none; `otherPorts` (the chat server's HTTP port) are passed over.
 */
export async function listeningPort(pid: number, otherPorts: number[] = []): Promise<number | undefined> {
  const text = await run("sh", [
    "-c",
    `readlink /proc/${pid}/fd/* 2>/dev/null; echo ---; cat /proc/${pid}/net/tcp /proc/${pid}/net/tcp6 2>/dev/null`,
  ]);
  const [links, tables] = text.split("---\n");
  if (tables === undefined) return undefined;
  const inodes = new Set<string>();
  for (const match of links.matchAll(/socket:\[(\d+)\]/g)) inodes.add(match[1]);
  for (const line of tables.split("\n")) {
    const cols = line.trim().split(/\s+/);
    // cols: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if (cols.length < 10 || cols[3] !== "0A" || !inodes.has(cols[9])) continue;
    const port = parseInt(cols[1].split(":")[1], 16);
    if (!otherPorts.includes(port)) return port;
  }
  return undefined;
}

/** CPU used by a process over a window: `await start()`, then `await stop()` for the seconds in between. */
export class CpuMeter {
  readonly #pid: number | "self";
  #cpu0 = 0;
  #system0 = 0;
  #wall0 = 0;
  constructor(pid: number | "self") {
    this.#pid = pid;
  }
  async start(): Promise<void> {
    const { userS, systemS } = await cpuTimes(this.#pid);
    this.#cpu0 = userS + systemS;
    this.#system0 = systemS;
    this.#wall0 = performance.now();
  }
  /** CPU seconds (all, and in the kernel) and wall seconds since start(), and the average number of cores busy. */
  async stop(): Promise<{ cpuS: number; systemS: number; wallS: number; cores: number }> {
    const wallS = (performance.now() - this.#wall0) / 1000;
    const { userS, systemS } = await cpuTimes(this.#pid);
    const cpuS = userS + systemS - this.#cpu0;
    return { cpuS, systemS: systemS - this.#system0, wallS, cores: wallS > 0 ? cpuS / wallS : 0 };
  }
}

/** Busy and total CPU seconds of the whole machine so far (/proc/stat), all cores added up. */
export async function machineCpuSeconds(): Promise<{ busyS: number; totalS: number }> {
  const line = (await run("cat", ["/proc/stat"])).split("\n")[0];
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  const idle = ticks[3] + ticks[4];
  return { busyS: (total - idle) / clockTicks, totalS: total / clockTicks };
}

/** CPU seconds so far of every process whose command line matches `pattern` (pgrep -f), by pid. */
export async function cpuSecondsMatching(pattern: string): Promise<Map<number, number>> {
  const text = await run("sh", [
    "-c",
    `for p in $(pgrep -f -- "$1"); do cat /proc/$p/stat 2>/dev/null; done`,
    "sh",
    pattern,
  ]);
  const out = new Map<number, number>();
  for (const stat of text.split("\n")) {
    if (!stat) continue;
    const pid = Number(stat.slice(0, stat.indexOf(" ")));
    const fields = statFields(stat);
    out.set(pid, (Number(fields[UTIME]) + Number(fields[STIME])) / clockTicks);
  }
  return out;
}

/**
 * CPU used over a window by a changing set of processes (PostgreSQL's backends for one database).
 * A process that starts inside the window counts from 0; one that ends inside it is lost.
 */
export class GroupCpuMeter {
  readonly #pattern: string;
  #start = new Map<number, number>();
  constructor(pattern: string) {
    this.#pattern = pattern;
  }
  async start(): Promise<void> {
    this.#start = await cpuSecondsMatching(this.#pattern);
  }
  /** CPU seconds since start(), and how many processes matched (0: none visible, the figure means nothing). */
  async stop(): Promise<{ cpuS: number; processes: number }> {
    let total = 0;
    const now = await cpuSecondsMatching(this.#pattern);
    for (const [pid, cpu] of now) total += cpu - (this.#start.get(pid) ?? 0);
    return { cpuS: total, processes: now.size };
  }
}

/** The number of threads of a process. */
export async function threadCount(pid: number): Promise<number> {
  const match = /^Threads:\s+(\d+)/m.exec(await run("cat", [`/proc/${pid}/status`]));
  return match ? Number(match[1]) : NaN;
}
