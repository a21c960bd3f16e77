import { assertEquals } from "./support/assert.ts";
import { sanitized } from "./support/helpers.ts";
import { spawnServer } from "./support/process.ts";

Deno.test({
  name: "process: the server answers ping and exits 0 on SIGTERM",
  ...sanitized,
  async fn() {
    const dataDir = await Deno.makeTempDir();
    try {
      await using server = await spawnServer({ DATA_DIR: dataDir });
      await using client = await server.connect();
      await client.send({ type: "ping" });
      await client.expect("pong");
      assertEquals(await server.stop("SIGTERM"), 0);
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
