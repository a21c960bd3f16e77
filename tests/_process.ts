// A chat server in its own process (`deno run -P=server main.ts`), for tests that signal, kill
// or restart it. Its JSON log lines are collected; the port is read from the start-up line.

import { TestClient } from "./_helpers.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

export interface ServerProcess extends AsyncDisposable {
  readonly port: number;
  readonly pid: number;
  /** Every log line so far, parsed. */
  readonly logs: Record<string, unknown>[];
  connect(): Promise<TestClient>;
  /** Sends a signal (default SIGTERM) and waits for the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** The exit code, once it has exited. */
  readonly status: Promise<Deno.CommandStatus>;
}

/**
 * Starts the server with `env` (PORT defaults to 0, HOST to 127.0.0.1, BCRYPT_COST to 4) and
 * waits until it listens. Without DATABASE_URL or DATA_DIR it would use ./data: tests pass one.
 */
export async function spawnServer(env: Record<string, string>, args: string[] = []): Promise<ServerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-P=server", MAIN, ...args],
    cwd: ROOT,
    env: { HOST: "127.0.0.1", PORT: "0", BCRYPT_COST: "4", LOG_FORMAT: "json", LOG_LEVEL: "info", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: Record<string, unknown>[] = [];
  const listening = Promise.withResolvers<number>();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    let pending = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      pending += text;
      let newline;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line);
        } catch {
          entry = { msg: line };
        }
        logs.push(entry);
        if (entry.msg === "chat server listening" && typeof entry.address === "string") {
          listening.resolve(Number(entry.address.split(":").pop()));
        }
      }
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
    stop,
    async [Symbol.asyncDispose]() {
      await stop("SIGKILL");
    },
  };
}
