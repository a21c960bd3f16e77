// What every kind of connection (TCP, TLS, WebSocket) shares with the server that registers it:
// the host it reports to, and the registry's view of it.

import type { Logger } from "../core/log.ts";
import type { CloseReason, Session } from "../chat/session.ts";

export type Transport = "tcp" | "tls" | "ws";

export const TRANSPORTS: readonly Transport[] = ["tcp", "tls", "ws"];

/** A session as the server's registry sees it, whatever carries it. */
export interface Connection extends Session {
  readonly transport: Transport;
  /** The host's clock at the last complete frame, for the login idle timeout. */
  readonly lastActivity: number;
}

/** What a connection asks of the server it belongs to. */
export interface ConnectionHost {
  readonly log: Logger;
  readonly maxLineBytes: number;
  readonly maxOutboundBytes: number;
  /** A coarse clock (ms), cheaper to read per frame than performance.now(). */
  readonly clock: number;
  handleLine(session: Session, line: Uint8Array): Promise<void> | void;
  /** A connection's read loop started; readEnded() follows once it has ended (shutdown waits for it). */
  readStarted(): void;
  readEnded(): void;
  /** Settles once every request read from `session` is answered; undefined when none is pending. */
  settled(session: Session): Promise<void> | undefined;
  /** Called once per connection, when it has closed. */
  connectionClosed(connection: Connection, reason: CloseReason, detail?: string): void;
  /** Called for each write handed to a client's socket (deliveries per write show how well output is batched). */
  wrote(): void;
  /** Called once per slow consumer, as it is cut off. */
  slowConsumer(connection: Connection, backlogBytes: number): void;
}
