// Soak: mixed traffic against a server subprocess for a while, watching the server's resources.
//
//   deno task soak [--minutes 10] [--clients 40] [--database-url postgres://…]
//
// Starts `deno run -P=server main.ts` (PGlite in a temporary DATA_DIR unless --database-url is
// given) and runs virtual clients that log in, send, read history, list users, ping, send bad
// frames, and disconnect and reconnect, each at a bounded rate (about 1 request a second, under
// the default rate limit). Samples the server's RSS, open file descriptors (/proc/<pid>/fd) and
// open connections (from its log) at the start, every minute and at the end; prints a table and
// one JSON line. Exits 1 if the server died, did not exit 0 on SIGTERM, or a client saw an
// unexpected reply or a timeout. Not part of the test run.
// deno-lint-ignore-file no-console

import { forEachLine } from "../lib/wire/framing.ts";
import { SERVER_V8_FLAGS } from "../lib/core/v8_flags.ts";
import { listeningPortOf, logEntries } from "../tests/support/log_lines.ts";
import { sleep } from "../tests/support/util.ts";
import type { Frame } from "../lib/wire/protocol.ts";

interface Options {
  minutes: number;
  clients: number;
  databaseUrl: string | undefined;
}

function parseArgs(args: string[]): Options {
  const options: Options = { minutes: 10, clients: 40, databaseUrl: undefined };
  for (let i = 0; i < args.length; i++) {
    const value = args[i + 1];
    if (args[i] === "--minutes") options.minutes = Number(value);
    else if (args[i] === "--clients") options.clients = Number(value);
    else if (args[i] === "--database-url") options.databaseUrl = value;
    else throw new Error(`Unknown argument: ${args[i]} (expected --minutes, --clients, --database-url)`);
    i++;
  }
  if (!(options.minutes > 0 && options.minutes <= 24 * 60)) throw new Error("--minutes must be from 0 to 1440");
  if (!(Number.isInteger(options.clients) && options.clients >= 1 && options.clients <= 1000)) {
    throw new Error("--clients must be a whole number from 1 to 1000");
  }
  return options;
}

// ---- the server subprocess -----------------------------------------------------------------------

interface Server {
  pid: number;
  port: number;
  connections: () => number;
  logErrors: () => number;
  logWarnings: () => number;
  exited: () => boolean;
  stop(): Promise<number>;
}

async function startServer(env: Record<string, string>): Promise<Server> {
  const root = new URL("..", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-P=server", `--v8-flags=${SERVER_V8_FLAGS}`, "main.ts"],
    cwd: root,
    env: {
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_FORMAT: "json",
      LOG_LEVEL: "info",
      BCRYPT_COST: "4",
      REGISTER_LIMIT_PER_MIN: "0",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let connected = 0;
  let disconnected = 0;
  let errors = 0;
  let warnings = 0;
  let exited = false;
  const listening = Promise.withResolvers<number>();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const entry of logEntries(stream)) {
      if (entry.msg === "client connected") connected++;
      else if (entry.msg === "client disconnected") disconnected++;
      if (entry.level === "error") errors++;
      if (entry.level === "warn") warnings++;
      const port = listeningPortOf(entry);
      if (port !== undefined) listening.resolve(port);
    }
  };
  const status = Promise.all([collect(child.stdout), collect(child.stderr)]).then(() => child.status);
  status.then((s) => {
    exited = true;
    listening.reject(new Error(`server exited with ${s.code} before listening`));
  });
  const timer = setTimeout(() => listening.reject(new Error("server did not listen within 60 s")), 60_000);
  const port = await listening.promise.finally(() => clearTimeout(timer));
  return {
    pid: child.pid,
    port,
    connections: () => connected - disconnected,
    logErrors: () => errors,
    logWarnings: () => warnings,
    exited: () => exited,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      return (await status).code;
    },
  };
}

// ---- a small client ------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class Client {
  readonly #conn: Deno.TcpConn;
  readonly #waiting = new Map<string, (frame: Frame) => void>();
  readonly #reading: Promise<void>;
  broadcasts = 0;
  #nextId = 0;
  closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#reading = this.#read();
  }

  static async connect(port: number): Promise<Client> {
    return new Client(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async #read(): Promise<void> {
    try {
      await forEachLine(this.#conn, 64 * 1024 * 1024, (line) => {
        const frame = JSON.parse(decoder.decode(line)) as Frame;
        const id = typeof frame.request_id === "string" ? frame.request_id : undefined;
        const waiter = id === undefined ? undefined : this.#waiting.get(id);
        if (waiter) {
          this.#waiting.delete(id!);
          waiter(frame);
        } else if (frame.type === "new_message") {
          this.broadcasts++;
        }
      });
    } catch {
      // Closed or reset.
    } finally {
      this.closed = true;
      for (const waiter of this.#waiting.values()) waiter({ type: "closed" });
      this.#waiting.clear();
    }
  }

  /** Sends a request with a fresh request_id; resolves with its reply, or `timeout` after `ms`. */
  async request(frame: Frame, ms = 10_000): Promise<Frame> {
    const id = `s${this.#nextId++}`;
    const reply = new Promise<Frame>((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        resolve({ type: "timeout" });
      }, ms);
      this.#waiting.set(id, (f) => {
        clearTimeout(timer);
        resolve(f);
      });
    });
    try {
      await this.writeRaw(encoder.encode(JSON.stringify({ ...frame, request_id: id }) + "\n"));
    } catch {
      this.#waiting.get(id)?.({ type: "closed" });
    }
    return await reply;
  }

  async writeRaw(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }

  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // Closed.
    }
    await this.#reading;
  }
}

// ---- traffic -------------------------------------------------------------------------------------

interface Counts {
  sessions: number;
  logins: number;
  sent: number;
  acked: number;
  rateLimited: number;
  histories: number;
  pings: number;
  badFrames: number;
  churn: number;
  broadcastsReceived: number;
  unexpected: number;
  timeouts: number;
}

async function virtualClient(index: number, port: number, until: number, counts: Counts, problems: string[]) {
  const username = `soak_${index}_${crypto.randomUUID().slice(0, 6)}`;
  const password = "soak-password";
  const note = (what: string, reply: Frame) => {
    if (reply.type === "timeout") counts.timeouts++;
    else counts.unexpected++;
    if (problems.length < 50) problems.push(`${username}: ${what}: ${JSON.stringify(reply).slice(0, 200)}`);
  };
  let registered = false;
  while (Date.now() < until) {
    const client = await Client.connect(port);
    counts.sessions++;
    try {
      if (!registered) {
        const reply = await client.request({ type: "register", username, password });
        if (reply.status !== "success") note("register", reply);
        registered = true;
      }
      const login = await client.request({ type: "login", username, password });
      if (login.status !== "success") {
        note("login", login);
        await sleep(1000);
        continue;
      }
      counts.logins++;
      // A session of 10 to 60 s at about one request a second.
      const sessionEnd = Math.min(until, Date.now() + 10_000 + Math.random() * 50_000);
      while (Date.now() < sessionEnd && !client.closed) {
        const roll = Math.random();
        if (roll < 0.7) {
          counts.sent++;
          const reply = await client.request({ type: "send_message", message: `soak ${username} ${counts.sent}` });
          if (reply.type === "new_message") counts.acked++;
          else if (reply.code === "rate_limited") counts.rateLimited++;
          else note("send_message", reply);
        } else if (roll < 0.85) {
          const reply = await client.request({ type: "get_history", limit: 1 + Math.floor(Math.random() * 100) });
          if (reply.type === "history_response") counts.histories++;
          else note("get_history", reply);
        } else if (roll < 0.95) {
          const reply = await client.request({ type: roll < 0.9 ? "ping" : "list_users" });
          if (reply.type === "pong" || reply.type === "users_response") counts.pings++;
          else note("ping", reply);
        } else {
          const reply = await client.request({ type: "send_message", message: 42 });
          if (reply.code === "invalid_message") counts.badFrames++;
          else note("bad frame", reply);
        }
        await sleep(500 + Math.random() * 1000);
      }
    } finally {
      counts.broadcastsReceived += client.broadcasts;
      await client.close();
    }
    // Sometimes a connection that only connects and leaves, or sends garbage and leaves.
    if (Math.random() < 0.5 && Date.now() < until) {
      const churn = await Client.connect(port);
      counts.churn++;
      if (Math.random() < 0.5) await churn.writeRaw(encoder.encode('not json at all\n{"type":'));
      await churn.close();
    }
  }
}

// ---- sampling and report -------------------------------------------------------------------------

interface Sample {
  minute: number;
  rss_mb: number;
  heap: string;
  fds: number;
  connections: number;
  acked: number;
  errors_logged: number;
}

/** RSS (MB) and open descriptors of `pid`. Deno needs --allow-all to read /proc/<pid>, so a shell does. */
async function processStats(pid: number): Promise<{ rssMb: number; fds: number }> {
  try {
    const output = await new Deno.Command("sh", {
      args: ["-c", `grep '^VmRSS:' /proc/${pid}/status && ls /proc/${pid}/fd | wc -l`],
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = decoder.decode(output.stdout);
    const rssKb = Number(/VmRSS:\s+(\d+) kB/.exec(text)?.[1]);
    const fds = Number(text.trim().split("\n").pop());
    return { rssMb: Math.round(rssKb / 102.4) / 10, fds: output.success ? fds : NaN };
  } catch {
    return { rssMb: NaN, fds: NaN };
  }
}

async function sample(server: Server, startedAt: number, counts: Counts): Promise<Sample> {
  // NaN once the server has exited: the report says so.
  const { rssMb, fds } = await processStats(server.pid);
  return {
    minute: Math.round((Date.now() - startedAt) / 600) / 100,
    rss_mb: rssMb,
    // The V8 heap of another process is not visible from outside; RSS covers it.
    heap: "n/a",
    fds,
    connections: server.connections(),
    acked: counts.acked,
    errors_logged: server.logErrors(),
  };
}

function printTable(samples: Sample[]): void {
  const header = ["minute", "rss_mb", "heap", "fds", "connections", "acked", "errors_logged"] as const;
  console.log(header.map((h) => h.padStart(15)).join(""));
  for (const s of samples) console.log(header.map((h) => String(s[h]).padStart(15)).join(""));
}

async function main(): Promise<number> {
  const options = parseArgs(Deno.args);
  const dataDir = options.databaseUrl ? undefined : await Deno.makeTempDir({ prefix: "chat-soak-" });
  const env: Record<string, string> = options.databaseUrl
    ? { DATABASE_URL: options.databaseUrl }
    : { DATA_DIR: dataDir! };
  const server = await startServer(env);
  const startedAt = Date.now();
  const until = startedAt + options.minutes * 60_000;
  const counts: Counts = {
    sessions: 0,
    logins: 0,
    sent: 0,
    acked: 0,
    rateLimited: 0,
    histories: 0,
    pings: 0,
    badFrames: 0,
    churn: 0,
    broadcastsReceived: 0,
    unexpected: 0,
    timeouts: 0,
  };
  const problems: string[] = [];
  const samples: Sample[] = [await sample(server, startedAt, counts)];
  console.log(
    `soak: ${options.clients} clients for ${options.minutes} min against pid ${server.pid} on port ${server.port} ` +
      `(${options.databaseUrl ? "PostgreSQL" : `PGlite in ${dataDir}`})`,
  );
  const sampler = setInterval(async () => {
    const s = await sample(server, startedAt, counts);
    samples.push(s);
    console.log(`minute ${s.minute}: rss ${s.rss_mb} MB, fds ${s.fds}, connections ${s.connections}, acked ${s.acked}`);
  }, 60_000);
  let exitCode = -1;
  try {
    // Clients start spread over the first 10 s.
    await Promise.all(Array.from({ length: options.clients }, async (_, i) => {
      await sleep((i * 10_000) / options.clients);
      await virtualClient(i, server.port, until, counts, problems);
    }));
    await sleep(1000); // let the server log the last disconnects
    samples.push(await sample(server, startedAt, counts));
  } finally {
    clearInterval(sampler);
    const diedEarly = server.exited();
    exitCode = await server.stop();
    if (diedEarly) problems.push("the server exited during the soak");
    if (dataDir) await Deno.remove(dataDir, { recursive: true });
  }
  if (exitCode !== 0) problems.push(`the server exited with ${exitCode} on SIGTERM`);
  printTable(samples);
  const report = {
    soak: {
      minutes: options.minutes,
      clients: options.clients,
      storage: options.databaseUrl ? "postgres" : "pglite",
      samples,
      counts,
      server_log: { errors: server.logErrors(), warnings: server.logWarnings() },
      server_exit_code: exitCode,
      problems,
      ok: problems.length === 0 && counts.unexpected === 0 && counts.timeouts === 0,
    },
  };
  console.log(JSON.stringify(report));
  return report.soak.ok ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await main());
}
