// deno-lint-ignore-file no-console -- a measuring program: its report is its output
// Where a message's CPU goes on compare.py's ingest rows, ours against the Node.js peer
// (../shared/peers): the server, the database's backends and the load generator, each measured
// from /proc. On this 2-core machine the three share the cores and keep them busy, so the rate
// each side reaches is about the cores divided by the three added up: the ingest ratio follows
// the CPU per message, and this program says whose CPU it is. Each round runs ours, ours with
// the search indexes dropped once built (what the peer does not have), and the peer, one after
// the other, each on a database of its own, started as compare.py starts them (PostgreSQL
// on DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres; the peer from compare.py's copy
// in the temporary directory, installed there first if it is missing).
//
//   deno run -A bench/floor/peer_cpu.ts [--rounds 2] [--scenario ingest,ingest1]

import { parseArgs } from "node:util";
import { type BenchDatabase, openBenchDatabase } from "../database.ts";
import { clockTicksPerSecond, CpuMeter, CSTIME, CUTIME, GroupCpuMeter, statFields } from "../proc.ts";
import { SERVER_V8_FLAGS } from "../../lib/core/v8_flags.ts";
import { SEARCH_INDEX_DEFINITIONS } from "../../lib/store/search.ts";
import { acceptsConnections, freePort } from "../../tests/support/client_process.ts";
import { sleep, waitUntil } from "../../tests/support/util.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
/** Every index the search adds: the ingest arm measures what storing costs without them. */
const SEARCH_INDEXES = SEARCH_INDEX_DEFINITIONS.map((index) => index.name);
const PEERS = new URL("../../../shared/peers/", import.meta.url).pathname;
const PEER_DIR = `${Deno.env.get("TMPDIR") ?? "/tmp"}/chat-peer-node`;

/** compare.py's load generator arguments for the two ingest rows (its full, not --quick, counts). */
const SCENARIOS: Record<string, string[]> = {
  ingest: ["--clients", "4", "--senders", "4", "--messages", "4000", "--window", "100"],
  ingest1: ["--clients", "1", "--senders", "1", "--messages", "30000", "--window", "400"],
};

/** compare.py's environment for both servers. */
const SERVER_ENV = {
  HOST: "127.0.0.1",
  BCRYPT_COST: "4",
  LOG_LEVEL: "warn",
  RATE_LIMIT_PER_SEC: "0",
  REGISTER_LIMIT_PER_MIN: "0",
  MAX_CONNECTIONS_PER_IP: "30000",
  MAX_CONNECTIONS: "30000",
  DB_POOL_SIZE: "10",
  DB_POOL_MIN: "10",
};

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string", default: "2" }, scenario: { type: "string", default: "ingest,ingest1" } },
});

const scenarios = values.scenario.split(",");
const unknown = scenarios.filter((name) => !(name in SCENARIOS));
if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(", ")}: ingest or ingest1`);

type Kind = "ours" | "unindexed" | "peer";

interface Share {
  rate: number;
  serverUs: number;
  databaseUs: number;
  loadgenUs: number;
}

async function installPeer(): Promise<void> {
  try {
    await Deno.stat(`${PEER_DIR}/node_modules`);
    return;
  } catch {
    await Deno.mkdir(PEER_DIR, { recursive: true });
    for (const file of ["server.mjs", "package.json", "package-lock.json"]) {
      await Deno.copyFile(`${PEERS}node/${file}`, `${PEER_DIR}/${file}`);
    }
    const npm = await new Deno.Command("npm", { args: ["ci", "--silent"], cwd: PEER_DIR }).output();
    if (!npm.success) throw new Error("npm ci of the peer failed");
  }
}

/**
 * Runs the load generator under `sh`, which then prints its own /proc stat: fields 16 and 17
 * (children's user and system time) are the load generator's CPU once it has been reaped.
 */
async function loadgen(port: number, pid: number, args: string[]): Promise<Record<string, number>> {
  const command = ["node", `${PEERS}loadgen.mjs`, "fanout", ...args, "--max-drain", "20", "--port", String(port)]
    .concat(["--pid", String(pid), "--quiet", "--timeout", "150"]);
  const out = await new Deno.Command("sh", {
    args: ["-c", `nice -n -10 "$@"; cat /proc/$$/stat >&2`, "sh", ...command],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const line = new TextDecoder().decode(out.stdout).split("\n").findLast((l) => l.startsWith("{"));
  const errors = new TextDecoder().decode(out.stderr).trim().split("\n");
  if (!line) throw new Error(`the load generator gave no report: ${errors.slice(-3).join(" ")}`);
  const fields = statFields(errors.at(-1)!);
  const ticks = await clockTicksPerSecond();
  return { ...JSON.parse(line), loadgen_cpu_total_s: (Number(fields[CUTIME]) + Number(fields[CSTIME])) / ticks };
}

async function measure(kind: Kind, scenario: string): Promise<Share> {
  const db = await openBenchDatabase(false, Deno.env.get("DATABASE_URL"), `_${kind}`);
  const port = freePort();
  const env = { ...SERVER_ENV, PORT: String(port), DATABASE_URL: db.serverEnv.DATABASE_URL };
  const [cmd, args, cwd] = kind !== "peer"
    ? [Deno.execPath(), ["run", "-P=server", `--v8-flags=${SERVER_V8_FLAGS}`, "main.ts"], ROOT]
    : ["node", ["server.mjs"], PEER_DIR];
  const server = new Deno.Command(cmd, { args, cwd, env, stdout: "null", stderr: "null" }).spawn();
  try {
    await listening(port);
    if (kind === "unindexed") await dropSearchIndexes(db);
    await sleep(500);
    const serverCpu = new CpuMeter(server.pid);
    const databaseCpu = new GroupCpuMeter(db.backendPattern!);
    await serverCpu.start();
    await databaseCpu.start();
    const report = await loadgen(port, server.pid, SCENARIOS[scenario]);
    const { cpuS } = await serverCpu.stop();
    const database = await databaseCpu.stop();
    const messages = report.committed;
    if (!messages || report.missed_messages) throw new Error(`${kind} ${scenario}: ${JSON.stringify(report)}`);
    return {
      rate: report.ingest_msgs_per_s,
      serverUs: (cpuS / messages) * 1e6,
      databaseUs: (database.cpuS / messages) * 1e6,
      loadgenUs: (report.loadgen_cpu_total_s / messages) * 1e6,
    };
  } finally {
    server.kill("SIGTERM");
    await server.status;
    await db.close();
  }
}

/** Waits for the server's background build of the search indexes, then drops them. */
async function dropSearchIndexes(db: BenchDatabase): Promise<void> {
  const built = async () => {
    const [{ valid }] = await db.query(
      `SELECT count(*)::int AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = ANY($1) AND i.indisvalid`,
      [SEARCH_INDEXES],
    );
    return valid === SEARCH_INDEXES.length;
  };
  await waitUntil(built, 60_000, "the search indexes' build");
  for (const name of SEARCH_INDEXES) await db.query(`DROP INDEX ${name}`);
}

async function listening(port: number): Promise<void> {
  await waitUntil(() => acceptsConnections(port), 60_000, `a listener on port ${port}`);
}

function totalUs(share: Share): number {
  return share.serverUs + share.databaseUs + share.loadgenUs;
}

function row(label: string, share: Share): string {
  const cells = [share.serverUs, share.databaseUs, share.loadgenUs, totalUs(share)].map((n) =>
    n.toFixed(1).padStart(9)
  );
  return `${label.padEnd(24)}${Math.round(share.rate).toString().padStart(8)}${cells.join("")}`;
}

await installPeer();
console.log(
  `${"".padEnd(24)}${"msg/s".padStart(8)}${
    ["server", "database", "loadgen", "total"].map((h) => h.padStart(9)).join("")
  }  (CPU µs per message)`,
);
for (let round = 1; round <= Number(values.rounds); round++) {
  for (const scenario of scenarios) {
    const ours = await measure("ours", scenario);
    const unindexed = await measure("unindexed", scenario);
    const peer = await measure("peer", scenario);
    console.log(row(`${scenario} ours`, ours));
    console.log(row(`${scenario} ours, no index`, unindexed));
    console.log(row(`${scenario} peer`, peer));
    for (const [label, share] of [["ours", ours], ["ours, no index", unindexed]] as const) {
      const rate = (share.rate / peer.rate).toFixed(2);
      console.log(
        `${scenario}, ${label}: rate / peer's ×${rate}; peer's total CPU / this ×${
          (totalUs(peer) / totalUs(share)).toFixed(2)
        }`,
      );
    }
  }
}
