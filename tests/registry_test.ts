// The registry every transport shares (lib/net/registry.ts): its coarse clock, and refused connections
// counted and logged per address, with bounded state and lines whatever the number of addresses.

import { assert, assertEquals } from "./support/assert.ts";
import { backends, sanitized, sharedPgliteDatabase, startTestServer } from "./support/helpers.ts";
import { startChatService } from "../lib/app.ts";
import { parseConfig } from "../lib/core/config.ts";
import type { ConnectionRegistry } from "../lib/net/registry.ts";
import { LINES_PER_INTERVAL } from "../lib/net/refusal_log.ts";
import { RecordingLogger } from "./support/recording_logger.ts";
import type { CloseReason } from "../lib/chat/session.ts";
import type { Connection } from "../lib/net/transport.ts";
import { sleep } from "./support/util.ts";

Deno.test({
  name: "registry: the coarse clock keeps ticking with LOGIN_IDLE_TIMEOUT_SEC=0",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { LOGIN_IDLE_TIMEOUT_SEC: "0" });
    const start = server.service.registry.clock;
    await sleep(1200);
    assert(server.service.registry.clock > start, "the clock did not move");
  },
});

/** A connection without a socket, from any address: enough for the registry's limits. */
class FakeConnection implements Connection {
  protocol: 1 | 2 = 1;
  readonly transport = "tcp";
  user = null;
  lastActivity = 0;
  closed = false;
  closeReason: CloseReason | undefined;
  constructor(readonly id: number, readonly remoteAddress: string, readonly server: ConnectionRegistry) {}
  send(): void {}
  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.server.connectionClosed(this, reason);
  }
}

Deno.test({
  name: "registry: refused connections are counted and logged per address, not under one global count",
  ...sanitized,
  async fn() {
    const log = new RecordingLogger(["warn"]);
    const config = parseConfig({
      HOST: "127.0.0.1",
      PORT: "0",
      HTTP_PORT: "0",
      BCRYPT_COST: "4",
      // Tests register many users from 127.0.0.1; the registration throttle has tests of its own.
      REGISTER_LIMIT_PER_MIN: "0",
      METRICS_ADDR: "off",
      MAX_CONNECTIONS_PER_IP: "1",
    });
    await using service = await startChatService(config, log, { database: sharedPgliteDatabase() });
    const server = service.registry;
    const connect = (address: string) => new FakeConnection(server.nextConnectionId(), address, server);
    const admitted = [connect("10.0.0.1"), connect("10.0.0.2")];
    for (const connection of admitted) assert(server.admit(connection));
    const refusedA = [connect("10.0.0.1"), connect("10.0.0.1"), connect("10.0.0.1")];
    for (const connection of refusedA) assertEquals(server.admit(connection), false);
    assert(refusedA.every((c) => c.closeReason === "too_many_connections"));
    const refusedB = connect("10.0.0.2");
    assertEquals(server.admit(refusedB), false);
    const refusals = log.lines.filter((w) => w.msg === "connection refused").map((w) => w.fields);
    // One line per address (the rest of A's are held back), each with that address's own count.
    assertEquals(refusals.map((f) => [f?.address, f?.refused]), [["10.0.0.1", 1], ["10.0.0.2", 1]]);
    assertEquals(service.metrics.connectionsRefused.value, 4);
    for (const connection of admitted) connection.close("peer_closed");
    assertEquals(server.connectionCount, 0);
  },
});

Deno.test({
  name: "registry: refusals from endless distinct addresses keep bounded state and a bounded number of log lines",
  ...sanitized,
  async fn() {
    const log = new RecordingLogger(["warn"]);
    const config = parseConfig({
      HOST: "127.0.0.1",
      PORT: "0",
      HTTP_PORT: "0",
      BCRYPT_COST: "4",
      MAX_CONNECTIONS: "1",
    });
    await using service = await startChatService(config, log, { database: sharedPgliteDatabase() });
    const server = service.registry;
    const connect = (address: string) => new FakeConnection(server.nextConnectionId(), address, server);
    const held = connect("10.0.0.1");
    assert(server.admit(held));
    // IPv6 gives an attacker endless addresses: each comes twice (the second refusal is held back).
    const addresses = 30_000;
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < addresses; i++) assertEquals(server.admit(connect(`2001:db8::${i.toString(16)}`)), false);
    }
    assertEquals(service.metrics.connectionsRefused.value, 2 * addresses);
    const tracked = server.trackedRefusalAddresses;
    assert(tracked <= 3 * LINES_PER_INTERVAL, `${tracked} addresses tracked`);
    const lines = log.lines.filter((w) => w.msg === "connection refused").length;
    assert(lines <= LINES_PER_INTERVAL, `${lines} log lines for ${addresses} addresses`);
    held.close("peer_closed");
    assertEquals(server.connectionCount, 0);
  },
});
