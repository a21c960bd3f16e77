// The load generator: starts the chat server (and the bare relay) itself, drives each scenario,
// measures the ceilings in the same run, prints one JSON line and a table per scenario, then a
// summary of the targets, and saves the output under bench/results/.
//
//   deno task bench [--scenario ingest,fanout,paced,burst,logins,idle,history,cluster,ws,flood,search,rooms] [--embedded] [--quick]
//                   [--profile] [--no-save]

import { type BenchDatabase, openBenchDatabase } from "./database.ts";
import { note, print, table, transcript } from "./out.ts";
import { clockTicksPerSecond } from "./proc.ts";
import { printProfile, summarise } from "./profile.ts";
import { profilesWritten, removeSnapshot, snapshotServerCode, spawned, stopAll } from "./servers.ts";
import { type BenchContext, printReport, type ScenarioReport, serverProblems, verdict } from "./scenarios/common.ts";
import { burst } from "./scenarios/burst.ts";
import { cluster } from "./scenarios/cluster.ts";
import { fanout } from "./scenarios/fanout.ts";
import { flood } from "./scenarios/flood.ts";
import { history } from "./scenarios/history.ts";
import { idle } from "./scenarios/idle.ts";
import { ingest } from "./scenarios/ingest.ts";
import { logins } from "./scenarios/logins.ts";
import { paced } from "./scenarios/paced.ts";
import { rooms } from "./scenarios/rooms.ts";
import { search } from "./scenarios/search.ts";
import { ws } from "./scenarios/ws.ts";

type Scenario = (ctx: BenchContext) => Promise<ScenarioReport>;

const SCENARIOS: Record<string, Scenario> = {
  ingest,
  fanout,
  paced,
  burst,
  logins,
  idle,
  history,
  cluster,
  ws,
  flood,
  search,
  rooms,
};

const USAGE = `deno task bench [options]
  --scenario a,b   run only these (${Object.keys(SCENARIOS).join(", ")}); default all
  --embedded       the server on embedded PGlite (in memory) instead of PostgreSQL
  --quick          short phases (about a minute in all), for development
  --profile        servers write V8 CPU profiles to bench/results/profiles/
  --head           bench the server as committed (git HEAD), not the working tree
  --no-save        do not write bench/results/
PostgreSQL: DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres; a throw-away
database chat_bench_<pid> is created there and dropped at the end.`;

interface Args {
  scenarios: string[];
  embedded: boolean;
  quick: boolean;
  profile: boolean;
  save: boolean;
  head: boolean;
}

function parseArgs(argv: string[]): Args | string {
  const args: Args = {
    scenarios: Object.keys(SCENARIOS),
    embedded: false,
    quick: false,
    profile: false,
    save: true,
    head: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--embedded") args.embedded = true;
    else if (arg === "--quick") args.quick = true;
    else if (arg === "--profile") args.profile = true;
    else if (arg === "--no-save") args.save = false;
    else if (arg === "--head") args.head = true;
    else if (arg === "--scenario" || arg.startsWith("--scenario=")) {
      const value = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : argv[++i] ?? "";
      args.scenarios = value.split(",").map((s) => s.trim()).filter(Boolean);
      const unknown = args.scenarios.filter((s) => !Object.hasOwn(SCENARIOS, s));
      if (unknown.length > 0 || args.scenarios.length === 0) return `Unknown scenario: ${unknown.join(", ")}\n${USAGE}`;
    } else if (arg === "--help" || arg === "-h") return USAGE;
    else return `Unknown option: ${arg}\n${USAGE}`;
  }
  return args;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (typeof args === "string") {
    note(args);
    return args === USAGE ? 0 : 2;
  }
  await clockTicksPerSecond();
  const started = new Date();
  const cpuProfDir = args.profile ? new URL("./results/profiles/", import.meta.url).pathname : undefined;
  if (cpuProfDir) await Deno.mkdir(cpuProfDir, { recursive: true });

  let db: BenchDatabase;
  try {
    db = await openBenchDatabase(args.embedded, Deno.env.get("DATABASE_URL"));
  } catch (err) {
    note(`bench: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  const interrupted = () => {
    note("bench: interrupted; stopping the servers and dropping the database");
    void stopAll().finally(() => db.close()).finally(() => removeSnapshot()).finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", interrupted);

  // One version of the server for the whole run, whatever happens to lib/ meanwhile.
  const revision = args.head ? `${await gitHead()} (HEAD)` : await gitRevision();
  let codeHash: string;
  try {
    codeHash = await snapshotServerCode(args.head);
  } catch (err) {
    await db.close();
    note(`bench: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  print(
    `# chat server bench ${started.toISOString()} on ${db.description}${args.quick ? " (quick)" : ""}; ` +
      `server code ${revision}, copied at start (hash ${codeHash})`,
  );
  const reports: ScenarioReport[] = [];
  const failures: string[] = [];
  try {
    for (const name of args.scenarios) {
      note(`bench: ${name}`);
      const ctx: BenchContext = { db, quick: args.quick, cpuProfDir, scenario: name };
      const firstProcess = spawned.length;
      try {
        const report = await SCENARIOS[name](ctx);
        reports.push(report);
        printReport(report);
      } catch (err) {
        const message = `${name} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`;
        failures.push(message);
        print(JSON.stringify({ scenario: name, error: message }));
        // The servers' own words on it (a database error behind an "unavailable", say).
        for (const server of spawned.slice(firstProcess)) {
          for (const problem of serverProblems(server)) print(`problem: ${server.name}: ${problem}`);
        }
      }
    }
  } finally {
    await stopAll();
    await db.close();
    await removeSnapshot();
    Deno.removeSignalListener("SIGINT", interrupted);
  }
  printSummary(reports, failures);
  for (const path of profilesWritten) {
    try {
      printProfile(path, summarise(JSON.parse(await Deno.readTextFile(path))), 15);
    } catch (err) {
      note(`bench: cannot read profile ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (args.save) await save(started, args, reports, failures);
  return failures.length > 0 ? 1 : 0;
}

function git(args: string[]): Promise<string> {
  return new Deno.Command("git", { args, stdout: "piped", stderr: "null" }).output().then((o) =>
    new TextDecoder().decode(o.stdout).trimEnd()
  );
}

async function gitHead(): Promise<string> {
  return await git(["rev-parse", "--short", "HEAD"]).catch(() => "unknown");
}

/** HEAD, and the server files with uncommitted changes (others edit lib/ while benches run). */
async function gitRevision(): Promise<string> {
  try {
    const head = await gitHead();
    const dirty = (await git(["status", "--porcelain", "--", "lib", "main.ts", "schema.sql"])).split("\n")
      .filter(Boolean).map((l) => l.slice(3));
    return dirty.length > 0 ? `${head} + uncommitted ${dirty.join(", ")}` : head;
  } catch {
    return "unknown";
  }
}

function printSummary(reports: ScenarioReport[], failures: string[]): void {
  const rows = [["target", "wanted", "measured", "ratio", "verdict"]];
  for (const report of reports) {
    for (const t of report.targets) {
      rows.push([t.name, t.target, t.measured, t.ratio === null ? "-" : String(t.ratio), verdict(t.pass)]);
    }
  }
  print("== summary");
  print(table(rows));
  const saturated = reports.filter((r) => r.loadgen.saturated).map((r) => r.scenario);
  if (saturated.length > 0) print(`load generator saturated a core in: ${saturated.join(", ")}`);
  for (const failure of failures) print(`FAILED: ${failure}`);
}

async function save(started: Date, args: Args, reports: ScenarioReport[], failures: string[]): Promise<void> {
  const stamp = started.toISOString().slice(0, 16).replace(":", "");
  const name = `${stamp}-${args.embedded ? "embedded" : "postgres"}${args.quick ? "-quick" : ""}`;
  const dir = new URL("./results/", import.meta.url);
  await Deno.mkdir(dir, { recursive: true });
  const json = {
    started: started.toISOString(),
    server_code: transcript[0]?.replace(/^.*; server code /, ""),
    args,
    machine: { cores: navigator.hardwareConcurrency, loadavg: Deno.loadavg(), deno: Deno.version.deno },
    reports: reports.map(({ rows: _rows, ...r }) => r),
    failures,
  };
  await Deno.writeTextFile(new URL(`${name}.json`, dir), JSON.stringify(json, null, 2) + "\n");
  await Deno.writeTextFile(new URL(`${name}.txt`, dir), transcript.join("\n") + "\n");
  note(`bench: saved bench/results/${name}.json and .txt`);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
