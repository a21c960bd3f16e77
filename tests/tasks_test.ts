// deno.json's tasks and the code that starts the server itself must run it the same way.

import { assert } from "./_assert.ts";
import { sanitized } from "./_client.ts";
import { SERVER_V8_FLAGS } from "../lib/v8_flags.ts";

Deno.test("deno.json: start, dev and compile run the server with SERVER_V8_FLAGS", sanitized, async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  for (const task of ["start", "dev", "compile"]) {
    const command: string = config.tasks[task];
    assert(command.includes(`--v8-flags=${SERVER_V8_FLAGS}`), `task ${task} lacks the server's V8 flags: ${command}`);
    assert(command.includes("-P=server"), `task ${task} does not use the server permission set: ${command}`);
  }
});
