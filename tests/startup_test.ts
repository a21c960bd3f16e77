// Start-up failures a user can fix are said in one plain line and exit 1, without a stack trace.

import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { sanitized } from "./_client.ts";
import { runServerCommand, spawnServer } from "./_process.ts";

Deno.test({
  name: "startup: an unreachable DATABASE_URL exits 1 with one line naming it, password hidden",
  ...sanitized,
  async fn() {
    const result = await runServerCommand({
      DATABASE_URL: "postgres://chat:Sekr1t-pw@127.0.0.1:1/chat",
      LOG_FORMAT: "json",
    });
    assertEquals(result.code, 1, result.stderr);
    const output = result.stdout + result.stderr;
    assertMatch(output, /cannot open the database: .*check DATABASE_URL/);
    assert(output.includes("postgres://chat:***@127.0.0.1:1/chat"), output);
    assert(!output.includes("Sekr1t-pw"), "the password is in the output");
    assert(!/\n\s+at /.test(output), `a stack trace was printed:\n${output}`);
  },
});

Deno.test({
  name: "startup: a port already in use exits 1 and says so",
  ...sanitized,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "chat-startup-" });
    try {
      await using first = await spawnServer({ DATA_DIR: dataDir });
      const result = await runServerCommand({ DATA_DIR: `${dataDir}/second`, PORT: String(first.port) });
      assertEquals(result.code, 1, result.stderr);
      assertMatch(result.stdout + result.stderr, new RegExp(`127\\.0\\.0\\.1:${first.port} is already in use`));
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
