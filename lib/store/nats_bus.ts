// The NATS bus (NATS_URL): after COMMIT each server publishes its rows on NATS core, and the
// others deliver them without reading back. Subjects: chat.lobby, chat.room.<id> (a server
// subscribes to the rooms its users are in) and chat.signals. Membership events, which a server
// that does not follow the room needs in commit order, and the commits of writers not on NATS (the
// seed's server) still come by the database's NOTIFY. A message carries the feed's previous committed id
// (`prev`) and the rows, so a receiver sees a gap, or a late message, by id; the stream repairs
// gaps from PostgreSQL. While NATS is away nothing is published (nothing is buffered in the
// client): the other servers catch up from the database, and the server reports the bus degraded.

import { connect, type NatsConnection, type Subscription } from "nats";
import type { Logger } from "../core/log.ts";
import type { Bus, BusListener, BusState } from "./bus.ts";
import type { Database } from "./db.ts";
import type { FeedRow } from "./feed.ts";
import { listenForCommits, NoticeBarriers } from "./notify_bus.ts";
import { connectNatsOverDenoTcp, plainNatsUrl } from "./nats_socket.ts";

const LOBBY_SUBJECT = "chat.lobby";
const SIGNALS_SUBJECT = "chat.signals";
const roomSubject = (room: string) => `chat.room.${room}`;
/** A message bigger than this is not published (receivers then read the rows back): NATS's default max_payload is 1 MiB. */
const MAX_PAYLOAD_BYTES = 900 * 1024;
/** Reconnect attempts, forever, this far apart at most. */
const RECONNECT_WAIT_MS = 1000;

interface RowsMessage {
  /** The publishing server (NATS does not echo a server's own messages; one that came back would be dropped). */
  s: string;
  f: string;
  p: number;
  r: FeedRow[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class NatsBus implements Bus {
  readonly #url: string;
  readonly #serverId: string;
  readonly #db: Database;
  readonly #log: Logger;
  readonly #barriers: NoticeBarriers;
  #nc: NatsConnection | undefined;
  #listener: BusListener | undefined;
  /** The rooms followed, with their subscription (none until NATS is first reached). */
  readonly #rooms = new Map<string, Subscription | undefined>();
  readonly state: BusState = { kind: "nats", up: false, reconnects: 0 };
  #closed = false;
  #connecting: Promise<void> | undefined;

  constructor(url: string, serverId: string, db: Database, log: Logger) {
    this.#url = url;
    this.#serverId = serverId;
    this.#db = db;
    this.#log = log;
    this.#barriers = new NoticeBarriers(db);
  }

  /** LISTENs on the database, and connects to NATS in the background: a server starts (and serves) while NATS is away. */
  async start(listener: BusListener): Promise<void> {
    this.#listener = listener;
    await listenForCommits(this.#db, listener, this.#barriers);
    this.#connecting = this.#connect();
  }

  publish(feed: string, prev: number, rows: FeedRow[]): void {
    if (rows.length === 0) return;
    this.#publish(feed === "lobby" ? LOBBY_SUBJECT : roomSubject(feed), {
      s: this.#serverId,
      f: feed,
      p: prev,
      r: rows,
    });
  }

  membership(): void {
    // The database announces membership events (listenForCommits), in commit order.
  }

  noticeBarrier(): Promise<void> {
    return this.#barriers.wait();
  }

  signal(payload: string): void {
    // NATS does not echo our own messages back (noEcho): this server's clients get it from here,
    // a turn later, as the other servers' do from NATS.
    queueMicrotask(() => this.#listener?.signal(payload));
    if (!this.#nc || !this.state.up) return;
    this.#nc.publish(SIGNALS_SUBJECT, encoder.encode(payload));
  }

  /** A room followed before NATS was first reached is subscribed when it is. */
  follow(room: string): void {
    if (this.#rooms.has(room)) return;
    this.#rooms.set(room, this.#nc ? this.#subscribeRoom(room) : undefined);
  }

  unfollow(room: string): void {
    this.#rooms.get(room)?.unsubscribe();
    this.#rooms.delete(room);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#barriers.close();
    await this.#connecting;
    await this.#nc?.close().catch(() => {});
  }

  async #connect(): Promise<void> {
    while (!this.#closed) {
      try {
        // Deno's own TCP for plain connections (far cheaper per write); the client's transport for TLS.
        const open = plainNatsUrl(this.#url) ? connectNatsOverDenoTcp : connect;
        this.#nc = await open({
          ...natsServersAndCredentials(this.#url),
          name: `chat-server ${this.#serverId}`,
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: RECONNECT_WAIT_MS,
          waitOnFirstConnect: false,
          // Our own publications are not sent back to us: a server has its rows and signals already,
          // and with three servers a third of every server's NATS reads were its own.
          noEcho: true,
        });
        break;
      } catch (err) {
        this.#log.warn("cannot reach NATS; retrying", { error: redact(err) });
        await new Promise((resolve) => setTimeout(resolve, RECONNECT_WAIT_MS));
      }
    }
    const nc = this.#nc;
    if (!nc || this.#closed) {
      await nc?.close();
      return;
    }
    this.#subscribe(LOBBY_SUBJECT, (data) => this.#rows(data));
    this.#subscribe(SIGNALS_SUBJECT, (data) => this.#listener?.signal(decoder.decode(data)));
    for (const room of this.#rooms.keys()) this.#rooms.set(room, this.#subscribeRoom(room));
    this.#up(true);
    void this.#watch(nc);
  }

  /** Follows the connection's status: while it is away the bus is degraded; every return is a catch-up. */
  async #watch(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      if (status.type === "disconnect" || status.type === "staleConnection") this.#up(false);
      else if (status.type === "reconnect") {
        this.state.reconnects++;
        this.#up(true);
      } else if (status.type === "error" && String(status.data).includes("Slow Consumer")) {
        // Cut off as a slow consumer: what was dropped is found by id, and repaired.
        this.#listener?.suspect();
      }
    }
  }

  #up(up: boolean): void {
    if (this.state.up === up) return;
    this.state.up = up;
    this.#log[up ? "info" : "warn"](up ? "NATS bus connected" : "NATS bus away; catching up from the database");
    // Whatever was published while this server was away, it reads from the database.
    if (up) this.#listener?.suspect();
  }

  #subscribeRoom(room: string): Subscription {
    return this.#subscribe(roomSubject(room), (data) => this.#rows(data));
  }

  #subscribe(subject: string, onData: (data: Uint8Array) => void): Subscription {
    return this.#nc!.subscribe(subject, {
      callback: (err, msg) => {
        if (err) {
          this.#listener?.suspect();
          return;
        }
        try {
          onData(msg.data);
        } catch (error) {
          this.#log.warn("unreadable NATS message dropped", { subject, error: String(error) });
        }
      },
    });
  }

  #rows(data: Uint8Array): void {
    const message = JSON.parse(decoder.decode(data)) as RowsMessage;
    if (message.s === this.#serverId) return;
    this.#listener?.rows(message.f, message.p, message.r);
  }

  #publish(subject: string, message: unknown): void {
    // Never queued while NATS is away (the client would buffer and send it late): the others
    // catch up from the database instead.
    if (!this.#nc || !this.state.up || this.#closed) return;
    const bytes = encoder.encode(JSON.stringify(message));
    if (bytes.length > MAX_PAYLOAD_BYTES) return;
    try {
      this.#nc.publish(subject, bytes);
    } catch (err) {
      this.#log.debug("NATS publish failed", { subject, error: String(err) });
    }
  }
}

/**
 * NATS_URL's servers without credentials, and the credentials (`user:password@` or `token@`,
 * percent-decoded) as the client's options: npm:nats ignores credentials in a server URL, so a
 * server could never log in to a NATS that asks for them.
 */
function natsServersAndCredentials(
  url: string,
): { servers: string[]; user?: string; pass?: string; token?: string } {
  let userinfo: string | undefined;
  const servers = url.split(",").map((server) =>
    server.trim().replace(/^([a-z]+:\/\/)([^@/]*)@/i, (_, scheme: string, credentials: string) => {
      userinfo ??= credentials;
      return scheme;
    })
  );
  if (userinfo === undefined) return { servers };
  const colon = userinfo.indexOf(":");
  if (colon < 0) return { servers, token: percentDecoded(userinfo) };
  return { servers, user: percentDecoded(userinfo.slice(0, colon)), pass: percentDecoded(userinfo.slice(colon + 1)) };
}

/** `%40` as `@`; a stray `%` is taken as it is. */
function percentDecoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** An error's text without credentials a NATS URL may carry. */
function redact(err: unknown): string {
  return String(err instanceof Error ? err.message : err).replace(/\/\/[^@/]+@/g, "//***@");
}
