// HTTP_PORT's other routes: /healthz (200, and 503 while the database is cut), the page's files
// with their security headers; and METRICS_ADDR's private listener: /metrics (parsed by a real
// Prometheus text-format parser; its counters move with traffic) and /healthz (contract v1.2).

import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { type Backend, backends, postgresUrl, sanitized, startTestServer, type TestServer } from "./support/helpers.ts";
import { proxiedUrl, startProxy, targetOf } from "./support/proxy.ts";
import { parseConfig } from "../lib/core/config.ts";
import { WsTestClient } from "./support/ws_client.ts";
import { parseMetrics, sample } from "./support/metrics.ts";
import { sleep } from "./support/util.ts";

function httpUrl(server: TestServer, path: string): string {
  return `http://127.0.0.1:${server.service.httpPort}${path}`;
}

async function get(server: TestServer, path: string): Promise<{ status: number; headers: Headers; body: string }> {
  return await fetchText(httpUrl(server, path));
}

/** A GET of METRICS_ADDR's listener (the test server's, on an ephemeral port). */
async function getPrivate(
  server: TestServer,
  path: string,
): Promise<{ status: number; headers: Headers; body: string }> {
  return await fetchText(`http://127.0.0.1:${server.service.metricsPort}${path}`);
}

async function fetchText(url: string): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(url);
  return { status: response.status, headers: response.headers, body: await response.text() };
}

/** Servers that serve METRICS_ADDR on an ephemeral loopback port. */
const WITH_METRICS = { METRICS_ADDR: "127.0.0.1:0" };

Deno.test({
  name: "http: /healthz answers 200 ok while the server accepts and its database answers",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], {}, { httpPort: 0 });
    const health = await get(server, "/healthz");
    assertEquals(health.status, 200);
    assertEquals(JSON.parse(health.body), { status: "ok" });
  },
});

Deno.test({
  name: "http: /healthz turns 503 while the database is unreachable and 200 again after",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    await using proxy = startProxy(targetOf(postgresUrl!));
    const backend: Backend = { name: "postgres", env: { DATABASE_URL: proxiedUrl(postgresUrl!, proxy) } };
    await using server = await startTestServer(backend, { DB_POOL_SIZE: "2", ...WITH_METRICS }, { httpPort: 0 });
    assertEquals((await get(server, "/healthz")).status, 200);
    await proxy.cut();
    const down = await get(server, "/healthz");
    assertEquals(down.status, 503);
    assertEquals(JSON.parse(down.body), { status: "unavailable", reason: "database unreachable" });
    proxy.restore();
    let status = 0;
    const deadline = Date.now() + 15_000;
    while (status !== 200 && Date.now() < deadline) {
      status = (await get(server, "/healthz")).status;
      if (status !== 200) await sleep(200);
    }
    assertEquals(status, 200);
    const metrics = parseMetrics((await getPrivate(server, "/metrics")).body);
    assert(sample(metrics, "chat_database_errors_total") >= 1, "the failed health query was not counted");
  },
});

Deno.test({
  name: "http: /metrics parses as Prometheus text and its series move with traffic",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(
      backends[0],
      { RATE_LIMIT_PER_SEC: "1", RATE_LIMIT_BURST: "2", ...WITH_METRICS },
      { httpPort: 0 },
    );
    const first = await getPrivate(server, "/metrics");
    assertEquals(first.status, 200);
    assertMatch(first.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const before = parseMetrics(first.body);
    for (
      const name of [
        "chat_connections",
        "chat_logged_in_connections",
        "chat_messages_committed_total",
        "chat_deliveries_total",
        "chat_socket_writes_total",
        "chat_batch_messages",
        "chat_commit_seconds",
        "chat_slow_consumers_total",
        "chat_rate_limited_total",
        "chat_failed_logins_total",
        "chat_database_errors_total",
        "chat_event_loop_lag_seconds",
        "process_resident_memory_bytes",
      ]
    ) {
      assert(before.has(name), `no ${name} in /metrics`);
    }
    // This process's resident memory, which holds at least the server's heap.
    const resident = sample(before, "process_resident_memory_bytes");
    assert(resident >= Deno.memoryUsage().heapUsed / 2 && resident < 64 * 2 ** 30, `${resident} bytes resident`);
    assertEquals(before.get("chat_commit_seconds")?.type, "HISTOGRAM");

    await using tcp = await server.connect();
    await using ws = await WsTestClient.connect(`ws://127.0.0.1:${server.service.httpPort}/ws`);
    await tcp.registerAndLogin();
    const name = String((await ws.registerAndLogin()).username);
    assertEquals((await tcp.request({ type: "login", username: name, password: "wrong-password" })).status, "error");
    await tcp.registerAndLogin();
    for (let i = 0; i < 3; i++) ws.send({ type: "send_message", message: `m${i}` });
    await ws.expect("new_message");
    await ws.expect("new_message");
    assertEquals((await ws.next()).code, "rate_limited");

    const after = parseMetrics((await getPrivate(server, "/metrics")).body);
    assertEquals(sample(after, "chat_connections", { transport: "tcp" }), 1);
    assertEquals(sample(after, "chat_connections", { transport: "ws" }), 1);
    assertEquals(sample(after, "chat_connections", { transport: "tls" }), 0);
    assertEquals(sample(after, "chat_logged_in_connections"), 2);
    const delta = (series: string) => sample(after, series) - sample(before, series);
    assertEquals(delta("chat_messages_committed_total"), 2);
    assertEquals(delta("chat_deliveries_total"), 4);
    // 12 frames were sent: TCP 2 + 1 + 2 replies and 2 broadcasts, WebSocket 2 replies, 2 own
    // copies and an error. Each of the 7 awaited replies took a write of its own, the pipelined
    // sends' output at least one on each side; output is batched, so never more than a write a frame.
    const writes = delta("chat_socket_writes_total");
    assert(writes >= 9 && writes <= 12, `${writes} socket writes`);
    assertEquals(delta("chat_rate_limited_total"), 1);
    assertEquals(delta("chat_failed_logins_total"), 1);
    assert(delta("chat_batch_messages") >= 1, "no batch counted");
    assert(delta("chat_commit_seconds") >= 1, "no commit latency observed");
  },
});

Deno.test({
  name: "http: the page is served with a CSP that forbids inline script; unknown paths 404, other methods 405",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], {}, { httpPort: 0 });
    const page = await get(server, "/");
    assertEquals(page.status, 200);
    assertMatch(page.headers.get("content-type") ?? "", /^text\/html/);
    const csp = page.headers.get("content-security-policy") ?? "";
    assertMatch(csp, /script-src 'self'(;|$)/);
    assert(!csp.includes("unsafe-inline"), csp);
    assertEquals(page.headers.get("x-content-type-options"), "nosniff");
    assert(!/<script>|<script [^>]*>[^<]/.test(page.body), "the page has an inline script");
    for (const match of page.body.matchAll(/(?:src|href)="\/?([^"]+)"/g)) {
      const file = await get(server, `/${match[1]}`);
      assertEquals(file.status, 200, match[1]);
    }
    assertEquals((await get(server, "/../deno.json")).status, 404);
    assertEquals((await get(server, "/lib/net/registry.ts")).status, 404);
    assertEquals((await get(server, "/nope")).status, 404);
    const post = await fetch(httpUrl(server, "/"), { method: "POST", body: "x" });
    await post.body?.cancel();
    assertEquals(post.status, 405);
    const plain = await get(server, "/ws");
    assertEquals(plain.status, 426);
    // An upgrade without Sec-WebSocket-Key is a bad request, not a server error.
    const keyless = await fetch(httpUrl(server, "/ws"), { headers: { upgrade: "websocket", connection: "Upgrade" } });
    await keyless.body?.cancel();
    assertEquals(keyless.status, 400);
  },
});

Deno.test({
  name:
    "http: the graceful stop marks the server not accepting (what /healthz reports) and closes WebSockets with 1001",
  ...sanitized,
  async fn() {
    const server = await startTestServer(backends[0], {}, { httpPort: 0 });
    // A connection kept open holds the stop in its drain phase long enough to ask.
    await using ws = await WsTestClient.connect(`ws://127.0.0.1:${server.service.httpPort}/ws`);
    await ws.registerAndLogin();
    assertEquals(server.service.registry.accepting, true);
    const closing = server.close();
    assertEquals(server.service.registry.accepting, false);
    await closing;
    assertEquals((await ws.expectClosed()).code, 1001);
  },
});

Deno.test({
  name: "http: /metrics is not on HTTP_PORT; METRICS_ADDR serves /metrics and /healthz, and off opens no listener",
  ...sanitized,
  async fn() {
    {
      await using server = await startTestServer(backends[0], WITH_METRICS, { httpPort: 0 });
      const publicMetrics = await get(server, "/metrics");
      assertEquals(publicMetrics.status, 404);
      const privateMetrics = await getPrivate(server, "/metrics");
      assertEquals(privateMetrics.status, 200);
      assert(parseMetrics(privateMetrics.body).has("chat_connections"));
      const health = await getPrivate(server, "/healthz");
      assertEquals([health.status, JSON.parse(health.body)], [200, { status: "ok" }]);
      assertEquals((await getPrivate(server, "/")).status, 404);
    }
    await using off = await startTestServer(backends[0], { METRICS_ADDR: "off" }, { httpPort: 0 });
    assertEquals(off.service.metricsPort, undefined);
  },
});

Deno.test("http: METRICS_ADDR defaults to 127.0.0.1:9464, loopback only", sanitized, () => {
  assertEquals(parseConfig({}).metricsAddr, { host: "127.0.0.1", port: 9464 });
});
