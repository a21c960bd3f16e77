// One client's socket: its line reader and its writer with a bounded outbound queue.
//
// Write contract: send() MUST NOT block and MUST NOT reorder. Queued chunks are coalesced into
// one write per turn of the event loop; one write is in flight at a time; partial writes are
// looped; every write error is caught. A client whose backlog behind a write still in flight
// passes the bound is cut off.

import { ChatError } from "./errors.ts";
import { forEachLine, LineTooLongError } from "./framing.ts";
import type { Logger } from "./log.ts";
import { encodeLine, errorReply } from "./protocol.ts";
import type { Session, User } from "./session.ts";

/** What the connection asks of the server it belongs to. */
export interface ConnectionHost {
  readonly log: Logger;
  readonly maxLineBytes: number;
  readonly maxOutboundBytes: number;
  /** A coarse clock (ms), cheaper to read per frame than performance.now(). */
  readonly clock: number;
  handleLine(session: Session, line: Uint8Array): Promise<void> | void;
  /** Called once, when the connection has closed. */
  closed(connection: ClientConnection, reason: string): void;
}

/** How long a closing connection may take to write its last frame before it is cut. */
const FINAL_WRITE_TIMEOUT_MS = 2000;

export class ClientConnection implements Session {
  readonly id: number;
  readonly remoteAddress: string;
  user: User | null = null;
  /** The host's clock at the last complete frame, for the login idle timeout. */
  lastActivity: number;

  readonly #conn: Deno.Conn;
  readonly #host: ConnectionHost;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #writing = false;
  /** A write is waiting for the peer (the kernel's send buffer is full). */
  #blocked = false;
  #closeReason: string | undefined;
  #closedFully = false;
  #finalTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(id: number, conn: Deno.Conn, host: ConnectionHost) {
    this.id = id;
    this.#conn = conn;
    this.#host = host;
    this.lastActivity = host.clock;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.remoteAddress = addr.hostname ?? "unknown";
  }

  get closed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Reads and dispatches frames until the peer leaves or the connection is closed. */
  async run(): Promise<void> {
    try {
      await forEachLine(this.#conn, this.#host.maxLineBytes, (line) => {
        this.lastActivity = this.#host.clock;
        return this.#host.handleLine(this, line);
      }, () => this.closed);
      this.close("peer_closed");
    } catch (err) {
      if (err instanceof LineTooLongError) {
        const error = new ChatError("line_too_long", `Line longer than ${err.maxLineBytes} bytes; closing connection`);
        this.close("line_too_long", encodeLine(errorReply(error)));
      } else if (this.closed) {
        // The socket was closed under the pending read (shutdown, slow consumer): expected.
      } else {
        this.close(describeReadError(err));
      }
    }
  }

  send(bytes: Uint8Array): void {
    if (this.closed) return;
    this.#enqueue(bytes);
  }

  close(reason: string, finalBytes?: Uint8Array): void {
    if (this.closed) return;
    this.#closeReason = reason;
    if (finalBytes) this.#enqueue(finalBytes);
    // Let queued output go out, but never wait on a peer that does not read.
    if (this.#writing) this.#finalTimer ??= setTimeout(() => this.#shutdown(), FINAL_WRITE_TIMEOUT_MS);
    else this.#shutdown();
  }

  #enqueue(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    // Only a backlog behind a write the peer has not taken yet counts: one large broadcast to a
    // client that keeps up is not a slow consumer.
    if (this.#blocked && this.#queuedBytes > this.#host.maxOutboundBytes) {
      this.#host.log.warn("slow consumer disconnected", {
        session: this.id,
        address: this.remoteAddress,
        username: this.user?.username,
        backlog_bytes: this.#queuedBytes,
      });
      this.#closeReason ??= "slow_consumer";
      this.#queue = [];
      this.#queuedBytes = 0;
      this.#shutdown();
      return;
    }
    if (!this.#writing) {
      this.#writing = true;
      // Later in this turn more lines may be queued: they go out in the same write.
      queueMicrotask(() => void this.#drain());
    }
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closedFully) {
        const chunk = this.#queue.length === 1 ? this.#queue[0] : concat(this.#queue, this.#queuedBytes);
        this.#queue = [];
        this.#queuedBytes = 0;
        let offset = 0;
        while (offset < chunk.length) {
          const written = this.#conn.write(offset === 0 ? chunk : chunk.subarray(offset));
          this.#blocked = true;
          offset += await written;
          this.#blocked = false;
        }
      }
    } catch (err) {
      if (!this.closed) this.#closeReason = describeWriteError(err);
      this.#queue = [];
      this.#queuedBytes = 0;
    } finally {
      this.#writing = false;
    }
    if (this.closed) this.#shutdown();
  }

  /** Closes the socket (once) and tells the host. */
  #shutdown(): void {
    if (this.#closedFully) return;
    this.#closedFully = true;
    if (this.#finalTimer !== undefined) clearTimeout(this.#finalTimer);
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer or the runtime: nothing left to release.
    }
    this.#host.closed(this, this.#closeReason ?? "closed");
  }
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function describeReadError(err: unknown): string {
  if (err instanceof Deno.errors.ConnectionReset) return "connection_reset";
  if (err instanceof Deno.errors.BrokenPipe) return "broken_pipe";
  return `read_error: ${err instanceof Error ? err.name : String(err)}`;
}

function describeWriteError(err: unknown): string {
  if (err instanceof Deno.errors.ConnectionReset) return "connection_reset";
  if (err instanceof Deno.errors.BrokenPipe) return "broken_pipe";
  return `write_error: ${err instanceof Error ? err.name : String(err)}`;
}
