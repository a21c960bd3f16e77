// The terminal client in its own process (`deno run -P=client client/main.ts`), with piped
// stdin, stdout and stderr, for the client's end-to-end tests. Every wait has a timeout.

import { fail } from "./assert.ts";

export const CLIENT_MAIN = new URL("../../client/main.ts", import.meta.url).pathname;
/** The project's deno.json, named explicitly so that the working directory does not matter. */
export const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;
export const CLIENT_PASSWORD = "secret123";

export interface ClientRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Environment for a client: the password and no colour (an empty CHAT_PASSWORD counts as unset). */
function clientEnv(env: Record<string, string>): Record<string, string> {
  return { CHAT_PASSWORD: CLIENT_PASSWORD, NO_COLOR: "1", ...env };
}

function command(args: string[], env: Record<string, string>): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-P=client", "--config", CONFIG, CLIENT_MAIN, ...args],
    cwd: ROOT,
    env: clientEnv(env),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs the client with `input` on stdin to its end; killed after `ms`. */
export async function runClient(
  args: string[],
  input = "",
  env: Record<string, string> = {},
  ms = 30_000,
): Promise<ClientRun> {
  const child = command(args, env).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
    const output = await child.output();
    const decoder = new TextDecoder();
    return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** A long-running client (e.g. --listen) whose output lines are collected as they come. */
export class ClientProcess implements AsyncDisposable {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<Deno.CommandStatus>;
  #notify: (() => void) | undefined;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;

  /** With `keepStdin`, stdin stays open for write(); otherwise it is closed at once. */
  constructor(args: string[], env: Record<string, string> = {}, options: { keepStdin?: boolean } = {}) {
    this.#child = command(args, env).spawn();
    if (options.keepStdin) this.#stdin = this.#child.stdin.getWriter();
    else void this.#child.stdin.close();
    const readers = Promise.all([
      this.#collect(this.#child.stdout, this.stdout),
      this.#collect(this.#child.stderr, this.stderr),
    ]);
    this.#done = readers.then(() => this.#child.status);
  }

  async #collect(stream: ReadableStream<Uint8Array>, lines: string[]): Promise<void> {
    let pending = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      pending += text;
      let newline;
      while ((newline = pending.indexOf("\n")) >= 0) {
        lines.push(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
      }
      this.#notify?.();
    }
    if (pending) lines.push(pending);
    this.#notify?.();
  }

  /** Writes to the client's stdin (requires `keepStdin`). */
  async write(text: string): Promise<void> {
    if (!this.#stdin) fail("stdin is closed");
    await this.#stdin.write(new TextEncoder().encode(text));
  }

  async closeStdin(): Promise<void> {
    const stdin = this.#stdin;
    this.#stdin = undefined;
    try {
      await stdin?.close();
    } catch {
      // The client exited already: its stdin is closed either way.
    }
  }

  /** Waits for the client to exit by itself and returns its exit code; kills it after `ms`. */
  async exited(ms = 30_000): Promise<number> {
    const timer = setTimeout(() => this.#kill("SIGKILL"), ms);
    try {
      return (await this.#done).code;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stdout lines parsed as JSON (the --listen output). */
  messages(): Record<string, unknown>[] {
    return this.stdout.map((line) => JSON.parse(line));
  }

  /** Waits until `predicate` holds, re-checked after each new output; fails with the output after `ms`. */
  async waitFor(what: string, predicate: () => boolean, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        fail(`timed out waiting for ${what}\nstdout:\n${this.stdout.join("\n")}\nstderr:\n${this.stderr.join("\n")}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 200));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#notify = done;
      });
      this.#notify = undefined;
    }
  }

  waitForStderr(pattern: RegExp, ms?: number): Promise<void> {
    return this.waitFor(`stderr matching ${pattern}`, () => this.stderr.some((line) => pattern.test(line)), ms);
  }

  /** Sends `signal` and returns the exit code. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<number> {
    this.#kill(signal);
    return (await this.#done).code;
  }

  #kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // Already exited.
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.closeStdin();
    await this.stop("SIGKILL");
  }
}

/** Whether something on 127.0.0.1:`port` accepts a connection now. */
export async function acceptsConnections(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

/** A port that was free a moment ago, for a server to bind (or come back on) a moment later. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
