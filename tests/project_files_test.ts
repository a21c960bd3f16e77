// Project files that must stay true to the code: deno.json's tasks run the server the way the
// code that starts it itself does; .env.example and the README list every setting and its default.

import { assert, assertEquals } from "./support/assert.ts";
import { DEFAULTS, parseDotEnv } from "../lib/core/config.ts";
import { sanitized } from "./support/client.ts";
import { SERVER_V8_FLAGS } from "../lib/core/v8_flags.ts";

Deno.test("deno.json: start, dev and compile run the server with SERVER_V8_FLAGS", sanitized, async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  for (const task of ["start", "dev", "compile"]) {
    const command: string = config.tasks[task];
    assert(command.includes(`--v8-flags=${SERVER_V8_FLAGS}`), `task ${task} lacks the server's V8 flags: ${command}`);
    assert(command.includes("-P=server"), `task ${task} does not use the server permission set: ${command}`);
  }
});

Deno.test(".env.example and the README list every setting with its real default", sanitized, async () => {
  const example = parseDotEnv(await Deno.readTextFile(new URL("../.env.example", import.meta.url)));
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const readmeDefaults = new Map(
    [...readme.matchAll(/^\| `([A-Z_]+)` +\| (?:`([^`]*)`|\(unset\)) +\|/gm)].map((m) => [m[1], m[2] ?? ""]),
  );
  assertEquals(Object.keys(example).sort(), Object.keys(DEFAULTS).sort(), ".env.example variables");
  assertEquals([...readmeDefaults.keys()].sort(), Object.keys(DEFAULTS).sort(), "README configuration table");
  for (const [name, value] of Object.entries(DEFAULTS)) {
    assertEquals(example[name], value, `.env.example ${name}`);
    assertEquals(readmeDefaults.get(name), value, `README ${name}`);
  }
});
