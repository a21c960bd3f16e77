import { assertEquals } from "../../tests/support/assert.ts";
import { sanitized } from "../../tests/support/util.ts";
import { setImmediate } from "node:timers";
import { DenoPgSocket, plainTcpTarget } from "./pg_socket.ts";

Deno.test("plainTcpTarget takes plain TCP URLs and leaves TLS, sockets and multi-host URLs to node:net", () => {
  assertEquals(plainTcpTarget("postgres://u:p@db.example:6543/chat"), { hostname: "db.example", port: 6543 });
  assertEquals(plainTcpTarget("postgresql://localhost/chat"), { hostname: "localhost", port: 5432 });
  assertEquals(plainTcpTarget("postgres://[::1]:5433/chat"), { hostname: "::1", port: 5433 });
  assertEquals(plainTcpTarget("postgres://h/chat?sslmode=disable"), { hostname: "h", port: 5432 });
  for (
    const url of [
      "postgres://h/chat?sslmode=require",
      "postgres://h/chat?sslmode=prefer",
      "postgres://h/chat?ssl=true",
      "postgres://u@/chat?host=/var/run/postgresql",
      "postgres:///chat",
      "not a url",
    ]
  ) {
    assertEquals(plainTcpTarget(url), undefined, url);
  }
});

Deno.test(
  "DenoPgSocket that cannot connect, with no 'error' listener left, closes without an unhandled rejection",
  sanitized,
  async () => {
    // A port nothing listens on: bind one, note it, and close it again.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const socket = new DenoPgSocket("127.0.0.1", port);
    const closed = new Promise<boolean>((resolve) => socket.once("close", resolve));
    assertEquals(await closed, true);
    assertEquals(socket.readyState, "closed");
  },
);

Deno.test(
  "DenoPgSocket: 'close' comes after a write its user had queued from an immediate before the socket closed",
  sanitized,
  async () => {
    // postgres.js (3.4.9) sends small writes from a setImmediate and, on 'close', clears that
    // immediate without forgetting it: were 'close' to come first, that connection would never
    // write again. Here a write is queued that way, then the socket closes under it.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = listener.accept();
    const socket = new DenoPgSocket("127.0.0.1", (listener.addr as Deno.NetAddr).port);
    const events: string[] = [];
    socket.on("close", () => events.push("close"));
    const peer = await accepted;
    await new Promise((resolve) => setTimeout(resolve, 10));
    setImmediate(() => {
      events.push("write");
      socket.write(new Uint8Array([1]));
    });
    socket.destroy();
    await new Promise((resolve) => socket.once("close", resolve));
    assertEquals(events, ["write", "close"]);
    assertEquals(socket.readyState, "closed");
    peer.close();
    listener.close();
  },
);
