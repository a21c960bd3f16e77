import { assertEquals } from "./support/assert.ts";
import { backends, sanitized, startTestServer } from "./support/helpers.ts";

for (const backend of backends) {
  Deno.test({
    name: `smoke: register, login, send and receive [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend);
      await using alice = await server.connect();
      await using bob = await server.connect();
      await alice.registerAndLogin();
      await bob.registerAndLogin();
      await alice.send({ type: "send_message", message: "hi" });
      const mine = await alice.expect("new_message");
      const theirs = await bob.expect("new_message");
      assertEquals(mine, theirs);
    },
  });
}
