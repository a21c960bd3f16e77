// ChatSession's exactly-once sends against a scripted server on a real TCP socket: the script
// decides, per send_message, to acknowledge, to drop the connection after "storing", or to answer
// `unavailable`, so each path of the resend logic runs on purpose.

import { assertEquals } from "../tests/support/assert.ts";
import { sanitized } from "../tests/support/util.ts";
import { forEachLine } from "../lib/wire/framing.ts";
import type { Frame } from "../lib/wire/protocol.ts";
import { ChatSession } from "./session.ts";
import type { ChatMessage } from "./wire.ts";

interface Stored extends ChatMessage {
  readonly clientMsgId: string;
}

/** What the script does with one send_message. */
type SendAction = "acknowledge" | "store_and_drop" | "unavailable";

interface ServerRules {
  /** Deduplicates by client_msg_id and echoes it on the sender's copy (protocol v1.1), or not (v1). */
  readonly deduplicates: boolean;
  /** `attempt` counts the sends of this client_msg_id so far, from 0. */
  action(text: string, attempt: number): SendAction;
}

const encoder = new TextEncoder();

class ScriptedServer implements AsyncDisposable {
  readonly sends: Frame[] = [];
  readonly stored: Stored[] = [];
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #conns = new Set<Deno.TcpConn>();
  readonly #handlers: Promise<void>[] = [];
  readonly #accepting: Promise<void>;
  readonly #rules: ServerRules;

  constructor(rules: ServerRules) {
    this.#rules = rules;
    this.#accepting = this.#accept();
  }

  get port(): number {
    return this.#listener.addr.port;
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#conns.add(conn);
        this.#handlers.push(this.#handle(conn));
      }
    } catch {
      // The listener was closed.
    }
  }

  async #handle(conn: Deno.TcpConn): Promise<void> {
    try {
      let dropped = false;
      await forEachLine(conn, 1 << 20, async (line) => {
        const frame = JSON.parse(new TextDecoder().decode(line)) as Frame;
        const reply = this.#answer(frame);
        if (reply === "drop") {
          dropped = true;
          return;
        }
        await conn.write(encoder.encode(JSON.stringify({ ...reply, request_id: frame.request_id }) + "\n"));
      }, () => dropped);
    } catch {
      // Closed by the client or by close().
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  }

  #answer(frame: Frame): Frame | "drop" {
    switch (frame.type) {
      case "login":
        return { type: "login_response", status: "success", user_id: 1, username: "alice" };
      case "get_history":
        return { type: "history_response", messages: this.#history(frame) };
      case "ping":
        return { type: "pong" };
      case "send_message":
        return this.#send(frame);
      default:
        return { type: "error", code: "unknown_type", message: "unexpected" };
    }
  }

  #send(frame: Frame): Frame | "drop" {
    const clientMsgId = frame.client_msg_id as string;
    const text = frame.message as string;
    const attempt = this.sends.filter((f) => f.client_msg_id === clientMsgId).length;
    this.sends.push(frame);
    const action = this.#rules.action(text, attempt);
    if (action === "unavailable") {
      return { type: "error", code: "unavailable", message: "try again", retry_after_ms: 10 };
    }
    const original = this.#rules.deduplicates ? this.stored.find((m) => m.clientMsgId === clientMsgId) : undefined;
    if (original) return { ...newMessage(original), client_msg_id: clientMsgId, duplicate: true };
    const stored = { id: this.stored.length + 1, sender: "alice", message: text, timestamp: "t", clientMsgId };
    this.stored.push(stored);
    if (action === "store_and_drop") return "drop";
    return this.#rules.deduplicates ? { ...newMessage(stored), client_msg_id: clientMsgId } : newMessage(stored);
  }

  #history(frame: Frame): Frame[] {
    const limit = frame.limit as number;
    const messages = this.stored.map(newMessage);
    if (typeof frame.after === "number") {
      return messages.filter((m) => (m.id as number) > (frame.after as number)).slice(0, limit);
    }
    return messages.slice(-limit);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) conn.close();
    await this.#accepting;
    await Promise.all(this.#handlers);
  }
}

function newMessage(m: Stored): Frame {
  return { type: "new_message", id: m.id, sender: m.sender, message: m.message, timestamp: m.timestamp };
}

/** Runs `fn` with a server following `rules` and a session on it that collects delivered ids. */
async function withSession(
  rules: ServerRules,
  fn: (session: ChatSession, server: ScriptedServer, delivered: number[]) => Promise<void>,
): Promise<void> {
  await using server = new ScriptedServer(rules);
  const delivered: number[] = [];
  const session = await ChatSession.open({
    hostname: "127.0.0.1",
    port: server.port,
    username: "alice",
    password: "secret123",
    register: "no",
    initialHistory: 0,
    maxReconnectAttempts: 5,
    backoff: { initialMs: 10, maxMs: 50 },
  }, (event) => {
    if (event.kind === "message") delivered.push(event.message.id);
  });
  try {
    await fn(session, server, delivered);
  } finally {
    session.close();
  }
}

Deno.test("ChatSession resends with the same client_msg_id after a drop, and shows it once", sanitized, async () => {
  // The second message is stored, then the connection drops before its acknowledgement.
  const rules: ServerRules = {
    deduplicates: true,
    action: (text, attempt) => text === "second" && attempt === 0 ? "store_and_drop" : "acknowledge",
  };
  await withSession(rules, async (session, server, delivered) => {
    assertEquals((await session.send("first")).id, 1);
    const second = await session.send("second");
    assertEquals([second.id, second.message], [2, "second"], "the original, from the duplicate reply");
    const ids = server.sends.map((f) => f.client_msg_id);
    assertEquals(ids.length, 3);
    assertEquals(ids[1], ids[2], "the resend carried the same client_msg_id");
    assertEquals(server.stored.length, 2, "nothing stored twice");
    assertEquals(delivered, [1, 2], "each message shown once");
    assertEquals(session.unacknowledged, [], "nothing left to resend");
  });
});

Deno.test("ChatSession resends with the same client_msg_id after unavailable", sanitized, async () => {
  const rules: ServerRules = {
    deduplicates: true,
    action: (_text, attempt) => attempt < 2 ? "unavailable" : "acknowledge",
  };
  await withSession(rules, async (session, server, delivered) => {
    assertEquals((await session.send("hello")).message, "hello");
    const ids = server.sends.map((f) => f.client_msg_id);
    assertEquals(ids.length, 3);
    assertEquals(new Set(ids).size, 1, "every attempt carried the same client_msg_id");
    assertEquals(server.stored.length, 1);
    assertEquals(delivered, [1]);
  });
});

Deno.test("ChatSession against a server that does not deduplicate looks in history first", sanitized, async () => {
  const rules: ServerRules = {
    deduplicates: false,
    action: (_text, attempt) => attempt === 0 ? "store_and_drop" : "acknowledge",
  };
  await withSession(rules, async (session, server, delivered) => {
    const sent = await session.send("hello");
    assertEquals([sent.id, sent.message], [1, "hello"]);
    assertEquals(server.sends.length, 1, "found in history: not sent again, so not stored twice");
    assertEquals(server.stored.length, 1);
    assertEquals(delivered, [1]);
  });
});

Deno.test("ChatSession sends the messages queued behind a dropped one once each, in order", sanitized, async () => {
  const rules: ServerRules = {
    deduplicates: true,
    action: (text, attempt) => text === "a" && attempt === 0 ? "store_and_drop" : "acknowledge",
  };
  await withSession(rules, async (session, server, delivered) => {
    const sends = ["a", "b", "c"].map((text) => session.send(text));
    assertEquals(session.unacknowledged.map((m) => m.text), ["a", "b", "c"]);
    const sent = await Promise.all(sends);
    assertEquals(sent.map((m) => [m.id, m.message]), [[1, "a"], [2, "b"], [3, "c"]]);
    assertEquals(server.stored.map((m) => m.message), ["a", "b", "c"]);
    assertEquals(delivered, [1, 2, 3]);
    assertEquals(session.unacknowledged, []);
  });
});
