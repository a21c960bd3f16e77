// Contract v1.2, "half-close": a client that sends its requests and then shuts down its sending
// side (`printf '…' | nc -N`, shutdown(SHUT_WR)) still gets a reply to every request, the
// acknowledgement of each send included; the server closes after the last one.

import { assertEquals } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, uniqueName } from "./support/helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes `lines`, shuts down the sending side, and reads every frame until the server closes. */
async function sendThenHalfClose(port: number, lines: Frame[]): Promise<Frame[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = encoder.encode(lines.map((l) => JSON.stringify(l) + "\n").join(""));
    for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
    await conn.closeWrite();
    let text = "";
    const buffer = new Uint8Array(64 * 1024);
    const deadline = setTimeout(() => conn.close(), 10_000);
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) break;
        text += decoder.decode(buffer.subarray(0, n), { stream: true });
      }
    } finally {
      clearTimeout(deadline);
    }
    return text.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
  } finally {
    try {
      conn.close();
    } catch {
      // Closed by the deadline.
    }
  }
}

for (const backend of backends) {
  Deno.test(
    `half-close: login and sends, then EOF: every send is acknowledged before the server closes [${backend.name}]`,
    sanitized,
    async () => {
      await using server = await startTestServer(backend);
      const username = uniqueName("half");
      await using setup = await server.connect();
      await setup.request({ type: "register", username, password: "secret123" });
      const sends = Array.from({ length: 20 }, (_, i) => ({ type: "send_message", message: `m${i}`, request_id: i }));
      // Nothing after the sends: the server has no later request to wait for before the EOF.
      const frames = await sendThenHalfClose(server.port, [
        { type: "login", username, password: "secret123" },
        ...sends,
      ]);
      assertEquals(frames[0].type, "login_response");
      assertEquals(frames[0].status, "success");
      const acks = frames.filter((f) => f.type === "new_message" && f.request_id !== undefined);
      assertEquals(acks.map((f) => f.request_id), sends.map((s) => s.request_id));
      assertEquals(acks.map((f) => f.message), sends.map((s) => s.message));
    },
  );

  Deno.test(`half-close: a last send without a newline is acknowledged too [${backend.name}]`, sanitized, async () => {
    await using server = await startTestServer(backend);
    const username = uniqueName("half");
    await using setup = await server.connect();
    await setup.request({ type: "register", username, password: "secret123" });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await conn.write(encoder.encode(
      `{"type":"login","username":"${username}","password":"secret123"}\n` +
        '{"type":"ping","request_id":1}\n{"type":"send_message","message":"last","request_id":2}',
    ));
    await conn.closeWrite();
    let text = "";
    const buffer = new Uint8Array(1024);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n));
    }
    conn.close();
    const frames: Frame[] = text.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
    assertEquals(frames.map((f) => f.type), ["login_response", "pong", "new_message"]);
    assertEquals(frames[2].request_id, 2);
    assertEquals(frames[2].message, "last");
  });
}
