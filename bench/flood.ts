// A connection flood from many loopback addresses, in a process of its own so that its work does
// not stall the bench's bystander client: connection i comes from 127.1.x.y (x.y = first + i, mod
// 65,536), reads whatever the server says, and ends when the server closes it. A bounded number
// are in flight at once, and the whole flood is bounded in time.
//
//   deno run --allow-net=127.0.0.1,127.1.0.0/16 bench/flood.ts <port> <count> <concurrency> <first> <timeout s>
//   → prints {"msg":"flood done","refused":…,"other":…,"errors":…,"seconds":…,"cpu_s":…}

import net from "node:net";
import process from "node:process";

/** 127.1.0.0/16: 65,536 distinct source addresses, all on loopback. */
const ADDRESSES = 65_536;

export interface FloodResult {
  /** Connections the server closed after a too_many_connections error. */
  refused: number;
  /** Connections closed without that error (or cut at the deadline). */
  other: number;
  /** Connections that failed to connect or were reset. */
  errors: number;
  seconds: number;
  /** The flood process's own CPU seconds: near `seconds`, it was saturated and set the pace. */
  cpu_s: number;
}

export interface FloodOptions {
  port: number;
  count: number;
  /** Connections in flight at once. */
  concurrency: number;
  /** The first source address's index in 127.1.0.0/16. */
  first: number;
  timeoutS: number;
}

/** Runs a flood in a process of its own and resolves with its counts. */
export async function runFlood(options: FloodOptions): Promise<FloodResult> {
  const { port, count, concurrency, first, timeoutS } = options;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1,127.1.0.0/16",
      new URL(import.meta.url).pathname,
      ...[port, count, concurrency, first, timeoutS].map(String),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success || !text) {
    throw new Error(`flood failed (${out.code}): ${new TextDecoder().decode(out.stderr).trim().slice(0, 500)}`);
  }
  const { msg: _msg, ...result } = JSON.parse(text);
  return result as FloodResult;
}

function flood(options: FloodOptions): Promise<FloodResult> {
  const { port, count, concurrency, first } = options;
  const started = performance.now();
  const deadline = started + options.timeoutS * 1000;
  const result: FloodResult = { refused: 0, other: 0, errors: 0, seconds: 0, cpu_s: 0 };
  let next = 0;
  let inFlight = 0;
  const { promise, resolve } = Promise.withResolvers<FloodResult>();
  const launch = () => {
    while (inFlight < concurrency && next < count && performance.now() < deadline) {
      const index = (first + next++) % ADDRESSES;
      inFlight++;
      let said = "";
      let failed = false;
      const socket = net.connect({ host: "127.0.0.1", port, localAddress: `127.1.${index >> 8}.${index & 255}` });
      socket.setEncoding("utf8");
      socket.on("data", (text: string) => said += text);
      socket.on("error", () => failed = true);
      socket.once("close", () => {
        if (failed) result.errors++;
        else if (said.includes('"too_many_connections"')) result.refused++;
        else result.other++;
        inFlight--;
        launch();
      });
      // A connection the server keeps open is cut at the deadline.
      socket.setTimeout(Math.max(1, deadline - performance.now()), () => socket.destroy());
    }
    if (inFlight === 0) {
      result.seconds = (performance.now() - started) / 1000;
      const cpu = process.cpuUsage();
      result.cpu_s = (cpu.user + cpu.system) / 1e6;
      resolve(result);
    }
  };
  launch();
  return promise;
}

if (import.meta.main) {
  const [port, count, concurrency, first, timeoutS] = Deno.args.map(Number);
  if (![port, count, concurrency, first, timeoutS].every(Number.isFinite)) {
    throw new Error("usage: flood.ts <port> <count> <concurrency> <first address index> <timeout s>");
  }
  const result = await flood({ port, count, concurrency, first, timeoutS });
  await Deno.stdout.write(new TextEncoder().encode(JSON.stringify({ msg: "flood done", ...result }) + "\n"));
}
