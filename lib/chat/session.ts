// What the dispatcher and services know of a client: its identity and a way to send it bytes.
// No sockets here, so the dispatcher can be driven without TCP.

export interface User {
  readonly id: number;
  /** As stored, which may differ in case from what the client typed. */
  readonly username: string;
}

/** Why a connection closed: exactly one is recorded per connection. */
export type CloseReason =
  | "peer_closed"
  | "connection_reset"
  | "broken_pipe"
  | "read_error"
  | "write_error"
  | "line_too_long"
  | "binary_frame"
  | "inbound_overflow"
  | "slow_consumer"
  | "too_many_connections"
  | "idle_timeout"
  | "server_shutdown";

export interface Session {
  readonly id: number;
  /** The peer's IP address. */
  readonly remoteAddress: string;
  /** The logged-in user, or null. */
  user: User | null;
  /** 1 until the connection says hello with protocol 2 (then it gets v2's pushes). */
  protocol: 1 | 2;
  readonly closed: boolean;
  /**
   * Queues complete lines for the client. MUST NOT block and MUST NOT reorder: bytes go out in
   * the order of the calls. A client whose backlog passes the outbound bound is disconnected.
   */
  send(bytes: Uint8Array): void;
  /** Sends `finalBytes` (if any), then closes, recording `reason` once. */
  close(reason: CloseReason, finalBytes?: Uint8Array): void;
}
