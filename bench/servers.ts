// Starting the processes under test: the chat server (`deno run -P=server main.ts`), the bare
// relay (bench/relay.ts) and the bare refuser (bench/refuser.ts), each on 127.0.0.1 and port 0.
// Their JSON log lines are kept; warnings and errors are what a reader needs to see.

import { listeningPort } from "./proc.ts";
import { SERVER_V8_FLAGS } from "../lib/core/v8_flags.ts";
import { logEntries } from "../tests/support/log_lines.ts";
import { sleep } from "../tests/support/util.ts";

const ROOT = new URL("..", import.meta.url).pathname;
/** The server's entry point: a snapshot of the code (see snapshotServerCode), else the working tree's. */
let serverMain = new URL("../main.ts", import.meta.url).pathname;
const RELAY = new URL("./relay.ts", import.meta.url).pathname;
const REFUSER = new URL("./refuser.ts", import.meta.url).pathname;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

export interface Process {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** Log lines at warn or error level (and anything that was not JSON), parsed. */
  readonly problems: Record<string, unknown>[];
  /** Ends with SIGTERM (then SIGKILL after a deadline) and resolves with the exit code. */
  stop(): Promise<number>;
  readonly exited: Promise<number>;
}

export interface ServerOptions {
  /** Environment for the server, over the bench's defaults. */
  env: Record<string, string>;
  /** Write a V8 CPU profile of the server into this directory (on a clean exit)… */
  cpuProfDir?: string;
  /** …named `<profileName>-<pid>.cpuprofile`. */
  profileName?: string;
}

/** The bench's defaults for the server: loopback, port 0, quiet logs, no send rate limit, high connection limits. */
export const SERVER_DEFAULTS: Record<string, string> = {
  HOST: "127.0.0.1",
  PORT: "0",
  // HTTP off unless a scenario asks for it (the ws scenario passes a free port).
  HTTP_PORT: "0",
  LOG_LEVEL: "warn",
  LOG_FORMAT: "json",
  RATE_LIMIT_PER_SEC: "0",
  BCRYPT_COST: "4",
  REGISTER_LIMIT_PER_MIN: "0",
  METRICS_ADDR: "off",
  DB_POOL_SIZE: "10",
  MAX_CONNECTIONS: "20000",
  MAX_CONNECTIONS_PER_IP: "20000",
  LOGIN_IDLE_TIMEOUT_SEC: "0",
};

export async function startServer(options: ServerOptions): Promise<Process> {
  const prof = options.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`] : [];
  const server = await spawn("server", [
    "run",
    `--config=${ROOT}deno.json`,
    "-P=server",
    `--v8-flags=${SERVER_V8_FLAGS}`,
    ...prof,
    serverMain,
  ], {
    ...SERVER_DEFAULTS,
    ...options.env,
  });
  const { cpuProfDir, profileName } = options;
  if (!cpuProfDir || !profileName) return server;
  return {
    ...server,
    async stop() {
      const code = await server.stop();
      // Deno names the file CPU.<time>.<pid>.cpuprofile: give it the scenario's name.
      for (const entry of Deno.readDirSync(cpuProfDir)) {
        if (entry.name.startsWith("CPU.") && entry.name.endsWith(`.${server.pid}.cpuprofile`)) {
          await Deno.rename(`${cpuProfDir}/${entry.name}`, `${cpuProfDir}/${profileName}-${server.pid}.cpuprofile`);
          profilesWritten.push(`${cpuProfDir}/${profileName}-${server.pid}.cpuprofile`);
        }
      }
      return code;
    },
  };
}

/** Where the snapshot of the server's code is, while there is one. */
let snapshotDir: string | undefined;

/**
 * Copies the server's code (main.ts, lib/, client/, schema.sql; from the working tree, or from git's
 * HEAD with `fromHead`) to a temporary directory and runs
 * every server of this bench from there: others edit lib/ while benches run, and one run must
 * measure one version. Returns a short hash of the copied server files. The servers still run with
 * the project's deno.json (imports, permissions) and node_modules: the working directory is the
 * project's.
 */
export async function snapshotServerCode(fromHead: boolean): Promise<string> {
  const copy = fromHead
    ? 'git archive HEAD main.ts lib client web schema.sql | tar -x -C "$dir"'
    : 'cp -r main.ts lib client web schema.sql "$dir"/';
  const out = await new Deno.Command("sh", {
    args: ["-c", `dir=$(mktemp -d /tmp/chat-bench-code.XXXXXX) && ${copy} && echo "$dir"`],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dir = new TextDecoder().decode(out.stdout).trim();
  if (!out.success || !dir) throw new Error(`cannot copy the server's code: ${new TextDecoder().decode(out.stderr)}`);
  snapshotDir = dir;
  serverMain = `${dir}/main.ts`;
  const files = [serverMain, `${dir}/schema.sql`];
  const addLib = (sub: string) => {
    for (const entry of Deno.readDirSync(`${dir}/${sub}`)) {
      if (entry.isDirectory) addLib(`${sub}/${entry.name}`);
      else if (entry.isFile && entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
        files.push(`${dir}/${sub}/${entry.name}`);
      }
    }
  };
  addLib("lib");
  files.sort();
  const hash = new Uint8Array(32);
  for (const file of files) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(file)));
    const name = new TextEncoder().encode(file.slice(dir.length));
    for (let i = 0; i < 32; i++) hash[i] ^= digest[i] ^ (name[i % name.length] ?? 0) ^ i;
  }
  return [...hash.slice(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Removes the snapshot of the server's code. */
export async function removeSnapshot(): Promise<void> {
  if (!snapshotDir) return;
  const dir = snapshotDir;
  snapshotDir = undefined;
  await new Deno.Command("rm", { args: ["-rf", "--", dir], stdout: "null", stderr: "null" }).output();
}

/** Profiles renamed so far in this run. */
export const profilesWritten: string[] = [];

export function startRelay(): Promise<Process> {
  return spawn("relay", ["run", "--allow-net=127.0.0.1", RELAY], {});
}

/** The bare server that refuses every connection but 127.0.0.1's (bench/refuser.ts). */
export function startRefuser(): Promise<Process> {
  return spawn("refuser", ["run", "--allow-net=127.0.0.1", REFUSER], {});
}

async function spawn(name: string, args: string[], env: Record<string, string>): Promise<Process> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    clearEnv: false,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const problems: Record<string, unknown>[] = [];
  let announcedPort: number | undefined;
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const entry of logEntries(stream)) {
      if (typeof entry.port === "number") announcedPort = entry.port;
      if (entry.level !== "info" && entry.level !== "debug" && !isExpectedNoise(entry)) problems.push(entry);
    }
  };
  const readers = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const exited = readers.then(() => child.status).then((s) => s.code);
  let exitedCode: number | undefined;
  exited.then((code) => exitedCode = code);

  // The server logs its port at info level, which LOG_LEVEL=warn hides: find its listening socket instead.
  const deadline = performance.now() + START_TIMEOUT_MS;
  let port: number | undefined;
  while (port === undefined) {
    if (exitedCode !== undefined) {
      throw new Error(`${name} exited (${exitedCode}) before listening: ${JSON.stringify(problems)}`);
    }
    if (performance.now() > deadline) {
      kill(child, "SIGKILL");
      throw new Error(`${name} did not listen within ${START_TIMEOUT_MS / 1000} s`);
    }
    port = announcedPort ?? await listeningPort(child.pid, otherListeners(env));
    if (port === undefined) await sleep(100);
  }

  let stopping: Promise<number> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      live.delete(stop);
      if (exitedCode !== undefined) return exitedCode;
      kill(child, "SIGTERM");
      const timer = setTimeout(() => kill(child, "SIGKILL"), STOP_TIMEOUT_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    })();
  live.add(stop);
  const started = { name, pid: child.pid, port, problems, stop, exited };
  spawned.push(started);
  return started;
}

/** Every process this bench started, in order: a scenario that fails is reported with its servers' warnings. */
export const spawned: Process[] = [];

/** Stops of the processes still running, so an interrupted bench leaves none behind. */
const live = new Set<() => Promise<number>>();

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((stop) => stop()));
}

/** Deno's "experimental permissions in config" notice and the embedded-database notice are expected. */
function isExpectedNoise(entry: Record<string, unknown>): boolean {
  const msg = typeof entry.msg === "string" ? entry.msg : "";
  return (entry.level === "text" && /Permissions in the config file/.test(msg)) ||
    /^using the embedded development database/.test(msg);
}

function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

/** The ports a server listens on besides the line protocol's: HTTP_PORT's and METRICS_ADDR's. */
function otherListeners(env: Record<string, string>): number[] {
  const ports: number[] = [];
  if (env.HTTP_PORT) ports.push(Number(env.HTTP_PORT));
  const metrics = /:(\d+)$/.exec(env.METRICS_ADDR ?? "");
  if (metrics) ports.push(Number(metrics[1]));
  return ports;
}
