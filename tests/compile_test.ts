// The single binary: built as deno.json's `compile` task builds it, it starts, answers ping and
// exits 0 on SIGTERM.
//
// `deno compile` needs the runtime it embeds (denort): DENORT_BIN, a copy cached in DENO_DIR, or a
// download from dl.deno.land. Where none of them is available the build cannot run: the test is
// then skipped and says why (set DENORT_BIN=/path/to/denort to run it offline), and a second test
// checks that the build fails for that reason only. Any other build error fails.

import { assert, assertEquals, fail } from "./support/assert.ts";
import { sanitized } from "./support/client.ts";
import { spawnServer } from "./support/process.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const DOWNLOAD_HOST = "dl.deno.land";

/** What `deno compile` reports when it cannot fetch denort. */
const RUNTIME_DOWNLOAD_FAILURE =
  /(denort|base binary)[\s\S]*(error sending request|dns error|Connect|timed out|network)/i;

const runtime = await findRuntime();
if (!runtime.available) {
  // deno-lint-ignore no-console
  console.log(`compile test skipped: ${runtime.reason} (set DENORT_BIN=/path/to/denort)`);
}

Deno.test({
  name: "compile: the compiled server answers ping, serves the web page from inside the binary, and exits 0 on SIGTERM",
  ignore: !runtime.available,
  ...sanitized,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "chat-compile-" });
    try {
      const binary = `${dir}/chat-server`;
      const build = await compile(binary);
      if (build.code !== 0) {
        if (!Deno.env.get("DENORT_BIN") && RUNTIME_DOWNLOAD_FAILURE.test(build.output)) {
          // deno-lint-ignore no-console
          console.log(`compile test skipped: denort runtime download unavailable (set DENORT_BIN=/path/to/denort)`);
          return;
        }
        fail(`deno compile failed (${build.code}):\n${build.output}`);
      }
      assert((await Deno.stat(binary)).isFile, "no binary written");

      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const httpPort = (probe.addr as Deno.NetAddr).port;
      probe.close();
      await using server = await spawnServer({ DATA_DIR: `${dir}/data`, HTTP_PORT: String(httpPort) }, [], {
        executable: binary,
        cwd: dir,
      });
      await using client = await server.connect();
      assertEquals(await client.request({ type: "ping" }), { type: "pong" });
      // web/ comes from inside the binary (--include web): the temp dir holds no copy of it.
      const page = await fetch(`http://127.0.0.1:${httpPort}/`);
      assertEquals(page.status, 200);
      assert((await page.text()).includes('src="/main.js"'), "not the web page");
      const script = await fetch(`http://127.0.0.1:${httpPort}/main.js`);
      assertEquals(script.status, 200);
      await script.body?.cancel();
      assertEquals(await server.stop("SIGTERM"), 0);
      assertEquals(await client.expectClosed(), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "compile: without a runtime to embed, the build fails at the runtime download and nowhere else",
  ignore: runtime.available,
  ...sanitized,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "chat-compile-" });
    try {
      const build = await compile(`${dir}/chat-server`);
      assert(build.code !== 0, "the build succeeded although no runtime seemed available");
      assert(RUNTIME_DOWNLOAD_FAILURE.test(build.output), `the build failed for another reason:\n${build.output}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Runs deno.json's compile task with its output redirected to `binary`. */
async function compile(binary: string): Promise<{ code: number; output: string }> {
  const config = JSON.parse(await Deno.readTextFile(CONFIG));
  const task: unknown = config.tasks?.compile;
  const command = typeof task === "string" ? task : (task as { command?: string } | undefined)?.command;
  if (!command || /[|&;<>$`"']/.test(command)) fail(`deno.json's compile task is not a plain command: ${command}`);
  const words = command.trim().split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "compile") fail(`unexpected compile task: ${command}`);
  const args: string[] = [];
  let sawOutput = false;
  for (let i = 1; i < words.length; i++) {
    if (words[i] === "-o" || words[i] === "--output") {
      args.push(words[i], binary);
      i++;
      sawOutput = true;
    } else if (words[i].startsWith("--output=")) {
      args.push(`--output=${binary}`);
      sawOutput = true;
    } else {
      args.push(words[i]);
    }
  }
  if (!sawOutput) fail(`the compile task names no output: ${command}`);
  const result = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: result.code, output: decoder.decode(result.stdout) + decoder.decode(result.stderr) };
}

type Runtime = { available: true; how: string } | { available: false; reason: string };

/** Whether `deno compile` can get a runtime: DENORT_BIN, a cached download, or the download host. */
async function findRuntime(): Promise<Runtime> {
  const denortBin = Deno.env.get("DENORT_BIN");
  if (denortBin) return { available: true, how: `DENORT_BIN=${denortBin}` };
  const cached = await findCachedDenort();
  if (cached) return { available: true, how: `cached ${cached}` };
  if (Deno.env.get("HTTPS_PROXY") || Deno.env.get("https_proxy")) {
    return { available: true, how: "through HTTPS_PROXY" };
  }
  const reachable = await canReach(DOWNLOAD_HOST, 443, 3000);
  if (reachable) return { available: true, how: `download from ${DOWNLOAD_HOST}` };
  return {
    available: false,
    reason: `denort runtime download unavailable (${DOWNLOAD_HOST} unreachable, none cached)`,
  };
}

/** A denort archive for this Deno version and target under DENO_DIR/dl, if there is one. */
async function findCachedDenort(): Promise<string | undefined> {
  let denoDir: string | undefined;
  try {
    const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped", stderr: "null" })
      .output();
    denoDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir;
  } catch {
    return undefined;
  }
  if (!denoDir) return undefined;
  const wanted = `denort-${Deno.build.target}.zip`;
  const version = `v${Deno.version.deno}`;
  const walk = async (dir: string, depth: number): Promise<string | undefined> => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch {
      return undefined;
    }
    for (const entry of entries) {
      const path = `${dir}/${entry.name}`;
      if (entry.isFile && entry.name === wanted && path.includes(version)) return path;
      if (entry.isDirectory && depth < 4) {
        const found = await walk(path, depth + 1);
        if (found) return found;
      }
    }
    return undefined;
  };
  return await walk(`${denoDir}/dl`, 0);
}

async function canReach(hostname: string, port: number, ms: number): Promise<boolean> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  try {
    const conn = await Deno.connect({ hostname, port, signal: abort.signal });
    conn.close();
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
