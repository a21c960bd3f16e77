// A chat server in its own process (`deno run -P=server main.ts`), for tests that signal, kill
// or restart it. Its JSON log lines are collected; the port is read from the start-up line.

import { TestClient } from "./client.ts";
import { SERVER_V8_FLAGS } from "../../lib/core/v8_flags.ts";
import { listeningPortOf, logEntries } from "./log_lines.ts";
import { waitUntil } from "./util.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

export interface ServerProcess extends AsyncDisposable {
  readonly port: number;
  readonly pid: number;
  /** Every log line so far, parsed. */
  readonly logs: Record<string, unknown>[];
  connect(): Promise<TestClient>;
  /**
   * The port of METRICS_ADDR's listener, from the server's start-up line: with METRICS_ADDR on
   * port 0 the system picks a free one, where a port the test found free could be taken meanwhile.
   */
  metricsPort(): Promise<number>;
  /** Sends a signal (default SIGTERM) and waits for the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** The exit code, once it has exited. */
  readonly status: Promise<Deno.CommandStatus>;
}

export interface SpawnOptions {
  /** Working directory (default: the project root), e.g. a temp dir holding a `.env`. */
  cwd?: string;
  /** Run this executable (a compiled server) with `args`, instead of `deno run -P=server main.ts`. */
  executable?: string;
}

/** The command line that runs the server with `args` (see SpawnOptions). */
export function serverCommand(args: string[], options: SpawnOptions = {}): [string, string[]] {
  if (options.executable) return [options.executable, args];
  // The project's deno.json is named explicitly, so that a different cwd does not change it.
  return [Deno.execPath(), ["run", "-P=server", `--v8-flags=${SERVER_V8_FLAGS}`, "--config", CONFIG, MAIN, ...args]];
}

/**
 * Starts the server with `env` (PORT defaults to 0, HOST to 127.0.0.1, BCRYPT_COST to 4) and
 * waits until it listens. Without DATABASE_URL or DATA_DIR it would use ./data: tests pass one.
 */
export async function spawnServer(
  env: Record<string, string>,
  args: string[] = [],
  options: SpawnOptions = {},
): Promise<ServerProcess> {
  const [command, commandArgs] = serverCommand(args, options);
  const child = new Deno.Command(command, {
    args: commandArgs,
    cwd: options.cwd ?? ROOT,
    env: {
      HOST: "127.0.0.1",
      PORT: "0",
      HTTP_PORT: "0",
      BCRYPT_COST: "4",
      // Tests register many users from 127.0.0.1; the registration throttle has tests of its own.
      REGISTER_LIMIT_PER_MIN: "0",
      METRICS_ADDR: "off",
      LOG_FORMAT: "json",
      LOG_LEVEL: "info",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: Record<string, unknown>[] = [];
  const listening = Promise.withResolvers<number>();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const entry of logEntries(stream)) {
      logs.push(entry);
      const port = listeningPortOf(entry);
      if (port !== undefined) listening.resolve(port);
    }
  };
  const readers = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const status = readers.then(() => child.status);
  status.then((s) =>
    listening.reject(new Error(`server exited (${s.code}) before listening: ${JSON.stringify(logs)}`))
  );
  const timeout = setTimeout(() => listening.reject(new Error("server did not listen within 30 s")), 30_000);
  let port: number;
  try {
    port = await listening.promise;
  } catch (err) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await status;
    throw err;
  } finally {
    clearTimeout(timeout);
  }
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    try {
      child.kill(signal);
    } catch {
      // Already exited.
    }
    return (await status).code;
  };
  return {
    port,
    pid: child.pid,
    logs,
    status,
    connect: () => TestClient.connect(port),
    async metricsPort() {
      // Logged right after "chat server listening", which spawnServer waited for.
      const portIn = () =>
        logs.map((entry) => listeningPortOf(entry, "metrics listening")).find((p) => p !== undefined);
      await waitUntil(() => portIn() !== undefined, 5000, "the server's metrics listening line");
      return portIn()!;
    },
    stop,
    async [Symbol.asyncDispose]() {
      await stop("SIGKILL");
    },
  };
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the server command to completion (`db:setup`, or a start-up that must fail) with `env`
 * over this process's environment; killed after `timeoutMs`.
 */
export async function runServerCommand(
  env: Record<string, string>,
  args: string[] = [],
  options: SpawnOptions & { timeoutMs?: number } = {},
): Promise<CommandResult> {
  const [command, commandArgs] = serverCommand(args, options);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), options.timeoutMs ?? 30_000);
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(command, {
      args: commandArgs,
      cwd: options.cwd ?? ROOT,
      env: {
        HOST: "127.0.0.1",
        PORT: "0",
        HTTP_PORT: "0",
        BCRYPT_COST: "4",
        REGISTER_LIMIT_PER_MIN: "0",
        METRICS_ADDR: "off",
        ...env,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: abort.signal,
    }).output();
  } finally {
    clearTimeout(timer);
  }
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** `deno task <name>` in the project (JSON logs), with `env` over this process's environment. */
export async function runDenoTask(
  name: string,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--config", CONFIG, name],
    cwd: ROOT,
    env: { LOG_FORMAT: "json", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}
