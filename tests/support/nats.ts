// A NATS server of the test's own (`nats-server` on a free loopback port, no JetStream), for the
// tests of the NATS bus: it can be stopped and started again on the same port mid-traffic. Tests
// that need it are skipped, with the reason, where no `nats-server` is installed (.ci/run installs
// Debian's package).

import { acceptsConnections, freePort } from "./client_process.ts";
import { sleep } from "./util.ts";

const CANDIDATES = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];

/** The nats-server executable, if one is installed. */
export const natsServerPath: string | undefined = await findNatsServer();

/** Why NATS tests are skipped here, or undefined when they run. */
export const natsMissing: string | undefined = natsServerPath
  ? undefined
  : "no nats-server installed (apt-get install nats-server)";

/** A delivery bus a cluster test runs on: PostgreSQL's NOTIFY, or NATS. */
export interface TestBus {
  /** Appended to the test's name. */
  label: string;
  nats: boolean;
  ignore: boolean;
}

/** Both buses for tests that need a PostgreSQL server (`ignore` when there is none); NATS also needs nats-server. */
export function testBuses(ignore: boolean): [TestBus, TestBus] {
  return [
    { label: "", nats: false, ignore },
    { label: " (NATS bus)", nats: true, ignore: ignore || natsMissing !== undefined },
  ];
}

export interface NatsOptions {
  /**
   * Bytes the server holds for a client that does not read fast enough before it cuts the
   * client off as a slow consumer (nats-server's max_pending; default 64 MiB).
   */
  maxPendingBytes?: number;
  /** Clients must log in with this user and password (nats-server's --user/--pass); `url` carries neither. */
  auth?: { user: string; pass: string };
}

export interface NatsServer extends AsyncDisposable {
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  /** Stops the server (SIGKILL: connections drop as in a crash). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Freezes it (SIGSTOP): connections stay open, nothing moves. */
  pause(): void;
  /** Lets it run again (SIGCONT). */
  resume(): void;
  /** The subjects its clients subscribe to now (one entry per subscription; NATS's own left out). */
  subjects(): Promise<string[]>;
}

/** Attempts at a first start: a port found free may be taken by another process before nats-server binds it. */
const START_ATTEMPTS = 3;

/** Starts a NATS server on a free port and waits until it accepts connections. */
export async function startNats(options: NatsOptions = {}): Promise<NatsServer> {
  for (let attempt = 1;; attempt++) {
    try {
      return await startNatsOnce(options);
    } catch (err) {
      if (!(err instanceof NatsExited) || attempt === START_ATTEMPTS) throw err;
    }
  }
}

/** nats-server exited before it accepted connections (a port taken, say): its own words. */
class NatsExited extends Error {}

async function startNatsOnce(options: NatsOptions): Promise<NatsServer> {
  if (!natsServerPath) throw new Error(natsMissing);
  const port = freePort();
  let monitorPort = freePort();
  // Each port was free when found, but the second search may find the first again.
  while (monitorPort === port) monitorPort = freePort();
  const args = ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort)];
  let configDir: string | undefined;
  if (options.maxPendingBytes !== undefined) {
    configDir = await Deno.makeTempDir({ prefix: "nats-test-" });
    // A message may not be bigger than what a client may have pending.
    const payload = Math.min(options.maxPendingBytes, 1024 * 1024);
    await Deno.writeTextFile(
      `${configDir}/nats.conf`,
      `max_pending: ${options.maxPendingBytes}\nmax_payload: ${payload}\n`,
    );
    args.push("-c", `${configDir}/nats.conf`);
  }
  if (options.auth) args.push("--user", options.auth.user, "--pass", options.auth.pass);
  let child: Deno.ChildProcess | undefined;
  /** The end of the running server's log (nats-server logs to stderr), for errors. */
  let log = "";
  let reading = Promise.resolve();
  const start = async () => {
    const running = new Deno.Command(natsServerPath, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    child = running;
    log = "";
    reading = (async () => {
      for await (const text of running.stderr.pipeThrough(new TextDecoderStream())) log = (log + text).slice(-4096);
    })();
    let exitCode: number | undefined;
    running.status.then((status) => exitCode = status.code);
    const accepting = await untilAccepting(port, () => exitCode !== undefined);
    if (exitCode !== undefined) {
      child = undefined;
      await reading;
      throw new NatsExited(`nats-server exited (${exitCode}) before accepting connections: ${log.trim()}`);
    }
    if (!accepting) throw new Error(`nats-server did not accept connections on ${port} within 10 s: ${log.trim()}`);
  };
  const stop = async () => {
    if (!child) return;
    const running = child;
    child = undefined;
    try {
      running.kill("SIGKILL");
    } catch {
      // Exited already.
    }
    await running.status;
    await reading;
  };
  const signal = (name: Deno.Signal) => {
    if (child) Deno.kill(child.pid, name);
  };
  const dispose = async () => {
    signal("SIGCONT");
    await stop();
    if (configDir) await Deno.remove(configDir, { recursive: true });
  };
  try {
    await start();
  } catch (err) {
    await dispose();
    throw err;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    start,
    stop,
    pause: () => signal("SIGSTOP"),
    resume: () => signal("SIGCONT"),
    async subjects() {
      const response = await fetch(`http://127.0.0.1:${monitorPort}/subsz?subs=1&limit=10000`);
      const body = await response.json() as { subscriptions_list?: { subject: string }[] };
      return (body.subscriptions_list ?? []).map((s) => s.subject).filter((subject) => !subject.startsWith("$SYS"));
    },
    [Symbol.asyncDispose]: dispose,
  };
}

/** Waits until `port` accepts a connection (true), or for 10 s or until `exited()` (false). */
async function untilAccepting(port: number, exited: () => boolean): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && !exited()) {
    if (await acceptsConnections(port)) return true;
    await sleep(20);
  }
  return false;
}

async function findNatsServer(): Promise<string | undefined> {
  const onPath = (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((dir) => `${dir}/nats-server`);
  for (const path of [...onPath, ...CANDIDATES]) {
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch {
      // Not there.
    }
  }
  return undefined;
}
