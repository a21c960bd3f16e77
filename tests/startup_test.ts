// Start-up failures a user can fix are said in one plain line and exit 1, without a stack trace.

import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { sanitized } from "./support/client.ts";
import { runServerCommand, spawnServer } from "./support/process.ts";
import { freePort } from "./support/client_process.ts";

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

Deno.test({
  name: "startup: the web chat's URL is printed, and one per LAN address beside the TCP one",
  ...sanitized,
  async fn() {
    const httpPort = freePort();
    await using server = await spawnServer({ DATA_DIR: "memory://", HTTP_PORT: String(httpPort) });
    // The address lines follow the "listening" line that spawnServer waits for.
    const lan = Deno.networkInterfaces().filter((i) => i.family === "IPv4" && !i.address.startsWith("127."));
    const deadline = Date.now() + 5000;
    const browserLines = () => server.logs.filter((entry) => String(entry.msg).endsWith("in a browser")).length;
    while (browserLines() < lan.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const messages = server.logs.map((entry) => String(entry.msg));
    const web = server.logs.find((entry) => entry.msg === "web chat listening");
    assertEquals(web?.url, `http://localhost:${httpPort}`);
    for (const { address } of lan) {
      assert(
        messages.includes(`clients on your network can connect to ${address}:${server.port}`),
        messages.join("\n"),
      );
      assert(messages.includes(`open http://${address}:${httpPort} in a browser`), messages.join("\n"));
    }
    const page = await fetch(`http://127.0.0.1:${httpPort}/`);
    assertEquals(page.status, 200);
    await page.body?.cancel();
  },
});

Deno.test({
  name: "startup: HTTP_PORT already in use exits 1 and names HTTP_PORT",
  ...sanitized,
  async fn() {
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (taken.addr as Deno.NetAddr).port;
    const result = await runServerCommand({ DATA_DIR: "memory://", HTTP_PORT: String(port) });
    assertEquals(result.code, 1, result.stderr);
    assertMatch(result.stdout + result.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use.*HTTP_PORT`));
  },
});
