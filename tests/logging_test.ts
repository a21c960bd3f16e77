// What the server logs at info level: never passwords, never message texts, and not what was
// typed as a username when it is not one (people type passwords into the wrong field).

import { assert } from "./support/assert.ts";
import { sanitized, uniqueName } from "./support/client.ts";
import { spawnServer } from "./support/process.ts";

Deno.test({
  name: "logging at info level shows no password, no message text and no mistyped secret",
  ...sanitized,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "chat-logging-" });
    try {
      await using server = await spawnServer({ DATA_DIR: dataDir, LOG_LEVEL: "info" });
      await using client = await server.connect();
      const username = uniqueName("logme");
      const password = "pw-Zq81-secret";
      await client.send({ type: "login", username: "my password is Xy77-typed", password: "whatever1" });
      await client.expect("login_response");
      await client.send({ type: "register", username, password });
      await client.expect("register_response");
      await client.send({ type: "login", username, password: "wrong-Kk42-pass" });
      await client.expect("login_response");
      await client.send({ type: "login", username, password });
      assert((await client.expect("login_response")).status === "success");
      await client.send({ type: "send_message", message: "private words 9f3e" });
      await client.expect("new_message");
      assert((await server.stop("SIGTERM")) === 0);
      const log = server.logs.map((entry) => JSON.stringify(entry)).join("\n").toLowerCase();
      assert(log.includes(username.toLowerCase()), "the log should name the user (or this test checks nothing)");
      for (const secret of ["Zq81", "Kk42", "Xy77-typed", "whatever1", "private words"]) {
        assert(!log.includes(secret.toLowerCase()), `the log contains ${JSON.stringify(secret)}:\n${log}`);
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
