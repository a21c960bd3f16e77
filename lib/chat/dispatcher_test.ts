import { assertEquals } from "../../tests/support/assert.ts";
import { sanitized, sharedPgliteDatabase, testLog } from "../../tests/support/helpers.ts";
import { AuthService } from "./auth.ts";
import { Dispatcher } from "./dispatcher.ts";
import { Hub } from "./hub.ts";
import { LoginThrottle } from "../store/login_throttle.ts";
import { Presence } from "./presence.ts";
import { MessageService } from "./messages.ts";
import { Lobby } from "./lobby.ts";
import { RoomDelivery } from "./room_delivery.ts";
import { RoomStore } from "../store/rooms.ts";
import { Metrics } from "../core/metrics.ts";
import { NotifyBus } from "../store/notify_bus.ts";
import type { Session, User } from "./session.ts";

/** A session without a socket: the dispatcher's whole view of a client. */
class RecordingSession implements Session {
  readonly id = 1;
  readonly remoteAddress = "127.0.0.1";
  user: User | null = null;
  protocol: 1 | 2 = 1;
  closed = false;
  readonly frames: Record<string, unknown>[] = [];
  send(bytes: Uint8Array): void {
    for (const line of new TextDecoder().decode(bytes).split("\n")) if (line) this.frames.push(JSON.parse(line));
  }
  close(): void {
    this.closed = true;
  }
}

function dispatcher(): { dispatcher: Dispatcher; hub: Hub } {
  const db = sharedPgliteDatabase();
  const hub = new Hub();
  const auth = new AuthService(db, new LoginThrottle(db), testLog, { bcryptCost: 4 });
  const lobby = new Lobby(db, hub, testLog, new Metrics(), 50);
  const delivery = new RoomDelivery(hub, new RoomStore(db), testLog);
  const messages = new MessageService(db, lobby, delivery, testLog, new NotifyBus(db, testLog));
  const options = { maxMessageLength: 4000, maxHistoryLimit: 50, rateLimitPerSec: 0, rateLimitBurst: 1 };
  return { dispatcher: new Dispatcher(auth, messages, hub, new Presence(db, hub, testLog), testLog, options), hub };
}

const encode = (frame: Record<string, unknown>) => new TextEncoder().encode(JSON.stringify(frame));

Deno.test(
  "Dispatcher after stopAccepting answers every request unavailable, in its usual reply shape",
  sanitized,
  async () => {
    const { dispatcher: d, hub } = dispatcher();
    const session = new RecordingSession();
    hub.join(session, { id: 1, username: "alice" });
    d.stopAccepting();
    for (
      const frame of [
        { type: "register", username: "bob_1", password: "secret123", request_id: "r1" },
        { type: "login", username: "bob_1", password: "secret123", request_id: 2 },
        { type: "send_message", message: "hi", request_id: "r3" },
        { type: "ping" },
      ]
    ) {
      await d.handleLine(session, encode(frame));
    }
    const message = "Server is shutting down";
    assertEquals(session.frames, [
      { type: "register_response", status: "error", code: "unavailable", message, request_id: "r1" },
      { type: "login_response", status: "error", code: "unavailable", message, request_id: 2 },
      { type: "error", code: "unavailable", message, request_id: "r3" },
      { type: "error", code: "unavailable", message },
    ]);
  },
);
