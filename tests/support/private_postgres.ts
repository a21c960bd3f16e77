// A PostgreSQL server of one test's own: initdb in a temporary directory, its own port. For the
// faults that would disturb every other test on the shared server: a restart, a crash.
//
//   await using pg = await startPrivatePostgres();   // needs postgresBinDir (else skip the test)
//   ... DATABASE_URL: pg.url ...
//   await pg.restart("fast");                         // what `systemctl restart postgresql` does
//
// As root (CI), the server runs as the `postgres` user, since PostgreSQL refuses to run as root.

import { freePort } from "./client_process.ts";

/** Where initdb and pg_ctl are (Debian: the newest of /usr/lib/postgresql/<version>/bin), if anywhere. */
export const postgresBinDir: string | undefined = findBinDir();

const START_ATTEMPTS = 3;

export interface PrivatePostgres extends AsyncDisposable {
  /** postgres://postgres@127.0.0.1:<port>/postgres (trust authentication). */
  readonly url: string;
  /**
   * Stops the server and starts it again on the same port and data. "fast" ends every session
   * with FATAL 57P01 (a service restart); "immediate" kills them without a word (a crash), and
   * the server recovers from its WAL on the way up. Connections are refused until it is back.
   */
  restart(mode: "fast" | "immediate"): Promise<void>;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  if (!postgresBinDir) throw new Error("no PostgreSQL server binaries (initdb, pg_ctl) on this machine");
  const asRoot = Deno.uid() === 0;
  const dir = await Deno.makeTempDir({ prefix: "chat-pg-" });
  const data = `${dir}/data`;
  if (asRoot) await chownTo("postgres", dir);
  const run = (tool: string, args: string[]) => runTool(asRoot, `${postgresBinDir}/${tool}`, args);
  let port = 0;
  try {
    await run("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
    let failure = "";
    for (let attempt = 1; attempt <= START_ATTEMPTS && port === 0; attempt++) {
      const candidate = freePort();
      const options = [
        `-p ${candidate}`,
        "-c listen_addresses=127.0.0.1",
        `-c unix_socket_directories=${dir}`,
        "-c fsync=off",
        "-c max_connections=60",
      ].join(" ");
      try {
        await run("pg_ctl", ["-D", data, "-l", `${dir}/log`, "-w", "-t", "30", "-o", options, "start"]);
        port = candidate;
      } catch (err) {
        // A port found free and taken meanwhile: try another.
        failure = String(err);
      }
    }
    if (port === 0) throw new Error(`private PostgreSQL did not start: ${failure}`);
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
  const stop = async () => {
    await run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  };
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async restart(mode) {
      // -l again: without it the new server would write to our pipes, and keep them open.
      await run("pg_ctl", ["-D", data, "-l", `${dir}/log`, "-m", mode, "-w", "-t", "30", "restart"]);
    },
    [Symbol.asyncDispose]: stop,
  };
}

async function runTool(asRoot: boolean, tool: string, args: string[]): Promise<void> {
  const [command, commandArgs] = asRoot ? ["runuser", ["-u", "postgres", "--", tool, ...args]] : [tool, args];
  const { code, stdout, stderr } = await new Deno.Command(command, { args: commandArgs, stdin: "null" }).output();
  if (code !== 0) {
    const text = new TextDecoder().decode(stderr) || new TextDecoder().decode(stdout);
    throw new Error(`${tool.split("/").at(-1)} ${args.at(-1)} exited ${code}: ${text.slice(-2000)}`);
  }
}

async function chownTo(user: string, path: string): Promise<void> {
  const { code, stdout } = await new Deno.Command("id", { args: ["-u", user], stdin: "null", stderr: "null" })
    .output();
  if (code !== 0) throw new Error(`no user ${user} to run PostgreSQL as`);
  const uid = Number(new TextDecoder().decode(stdout).trim());
  await Deno.chown(path, uid, null);
}

function findBinDir(): string | undefined {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")]
      .map((entry) => entry.name)
      .filter((name) => /^\d+$/.test(name))
      .sort((a, b) => Number(b) - Number(a));
    return versions.map((v) => `/usr/lib/postgresql/${v}/bin`).find((bin) => isFile(`${bin}/initdb`));
  } catch {
    return undefined;
  }
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
