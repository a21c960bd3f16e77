import { assert, assertEquals } from "../../tests/support/assert.ts";
import { natsMissing, startNats } from "../../tests/support/nats.ts";
import { sanitized } from "../../tests/support/util.ts";
import { connectNatsOverDenoTcp, plainNatsUrl } from "./nats_socket.ts";

Deno.test("plainNatsUrl takes nats:// URLs (one or several) and leaves tls:// to the client's own transport", () => {
  assert(plainNatsUrl("nats://127.0.0.1:4222"));
  assert(plainNatsUrl("nats://user:secret@a:4222,nats://b:4222"));
  assert(!plainNatsUrl("tls://nats.example:4222"));
  assert(!plainNatsUrl("nats://a:4222, tls://b:4222"));
});

Deno.test({
  name: "DenoNatsTransport: publishes and subscriptions round-trip in order, big and small; close() settles",
  ignore: natsMissing !== undefined,
  ...sanitized,
  async fn() {
    await using nats = await startNats();
    const nc = await connectNatsOverDenoTcp({ servers: nats.url });
    const received: string[] = [];
    const all = Promise.withResolvers<void>();
    const texts = Array.from({ length: 200 }, (_, i) => i % 50 === 0 ? "x".repeat(100_000) + i : `m${i}`);
    nc.subscribe("t", {
      callback: (_err, msg) => {
        received.push(new TextDecoder().decode(msg.data));
        if (received.length === texts.length) all.resolve();
      },
    });
    await nc.flush();
    for (const text of texts) nc.publish("t", new TextEncoder().encode(text));
    await all.promise;
    assertEquals(received, texts);
    await nc.close();
    assertEquals(await nc.closed(), undefined);
  },
});

Deno.test({
  name: "DenoNatsTransport: no server at the address is a refused connect, not a hang",
  ignore: natsMissing !== undefined,
  ...sanitized,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    const outcome = await connectNatsOverDenoTcp({ servers: `nats://127.0.0.1:${port}`, reconnect: false })
      .then(async (nc) => {
        await nc.close();
        return "connected";
      }, (err) => String(err));
    assert(outcome !== "connected", "connected to a closed port");
  },
});
