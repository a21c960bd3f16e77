// One TCP or TLS client's socket: its line reader and its writer with a bounded outbound queue.
//
// Write contract: send() MUST NOT block and MUST NOT reorder. Queued chunks are coalesced into
// one write per turn of the event loop; one write is in flight at a time; partial writes are
// looped; every write error is caught. A client whose backlog behind a write still in flight
// passes the bound is cut off.

import { concatBytes } from "../core/bytes.ts";
import { ChatError } from "../core/errors.ts";
import { type LineSink, LineTooLongError, readLines } from "../wire/framing.ts";
import { encodeLine, errorReply } from "../wire/protocol.ts";
import type { CloseReason, User } from "../chat/session.ts";
import type { Connection, ConnectionHost, Transport } from "./transport.ts";

/** How long a closing connection may take to write its last frame before it is cut. */
const FINAL_WRITE_TIMEOUT_MS = 2000;
/**
 * Linux's smallest TCP send buffer (tcp_wmem's minimum): a write of this much or less into an
 * empty one completes at once, whether the peer reads or not.
 */
const EMPTY_SEND_BUFFER_BYTES = 4096;
/**
 * A turn's output up to this size is joined into one write; past it, large chunks (a batch's
 * shared bytes, which the sender's own copy is made of views of) are written as they are, not
 * copied: a syscall costs less than copying them again for every sender.
 */
const COALESCE_BYTES = 64 * 1024;
const DIRECT_WRITE_BYTES = 16 * 1024;

export class LineConnection implements Connection, LineSink {
  readonly id: number;
  readonly transport: Transport;
  readonly remoteAddress: string;
  user: User | null = null;
  protocol: 1 | 2 = 1;
  /** The host's clock at the last complete frame, for the login idle timeout. */
  lastActivity: number;

  readonly #conn: Deno.Conn;
  readonly #host: ConnectionHost;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  /** Bytes taken from the queue by the writer and not written yet, after the piece being written. */
  #unsent = 0;
  #writing = false;
  /** Nothing was ever queued: the socket's send buffer is still empty. */
  #fresh = true;
  /** A write has been handed to the socket and has not completed yet. */
  #writeInFlight = false;
  #closeReason: CloseReason | undefined;
  #closeDetail: string | undefined;
  #released = false;
  #finalTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(id: number, conn: Deno.Conn, host: ConnectionHost, transport: Transport = "tcp") {
    this.id = id;
    this.transport = transport;
    this.#conn = conn;
    this.#host = host;
    this.lastActivity = host.clock;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.remoteAddress = addr.hostname ?? "unknown";
  }

  get closed(): boolean {
    return this.#closeReason !== undefined;
  }

  /**
   * Reads and dispatches frames until the peer leaves or the connection is closed. The reading is
   * the one suspended function an idle connection holds; it tells the host when it has ended.
   */
  run(): void {
    this.#host.readStarted();
    void readLines(this.#conn, this.#host.maxLineBytes, this);
  }

  /** A frame (LineSink). */
  onLine(line: Uint8Array): Promise<void> | void {
    this.lastActivity = this.#host.clock;
    return this.#host.handleLine(this, line);
  }

  /** Reading is over (LineSink). */
  onEnd(error?: unknown): void {
    this.#host.readEnded();
    if (error === undefined) {
      // The peer has sent all it will (it may have only shut down its sending side): answer every
      // request read, then close.
      const settled = this.#host.settled(this);
      if (settled) void settled.then(() => this.close("peer_closed"));
      else this.close("peer_closed");
    } else if (error instanceof LineTooLongError) {
      const chatError = new ChatError(
        "line_too_long",
        `Line longer than ${error.maxLineBytes} bytes; closing connection`,
      );
      this.close("line_too_long", encodeLine(errorReply(chatError)));
    } else if (this.closed) {
      // The socket was closed under the pending read (shutdown, slow consumer): expected.
    } else {
      this.#closeDetail = errorName(error);
      this.close(describeSocketError(error, "read_error"));
    }
  }

  send(bytes: Uint8Array): void {
    if (this.closed) return;
    this.#enqueue(bytes);
  }

  close(reason: CloseReason, finalBytes?: Uint8Array): void {
    if (this.closed) return;
    this.#closeReason = reason;
    // One small frame on a plain TCP socket that has sent nothing cannot block (a TLS write may
    // wait on the handshake): refusing a flood of connections then sets no timer for each.
    const cannotBlock = this.#fresh && this.transport === "tcp" && (finalBytes?.length ?? 0) <= EMPTY_SEND_BUFFER_BYTES;
    if (finalBytes) this.#enqueue(finalBytes);
    // Let queued output go out, but never wait on a peer that does not read.
    if (!this.#writing) this.#release();
    else if (!cannotBlock) this.#finalTimer ??= setTimeout(() => this.#release(), FINAL_WRITE_TIMEOUT_MS);
  }

  #enqueue(bytes: Uint8Array): void {
    this.#fresh = false;
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    // Only a backlog behind a write the peer has not taken yet counts: one large broadcast to a
    // client that keeps up is not a slow consumer.
    if (this.#writeInFlight && this.#queuedBytes + this.#unsent > this.#host.maxOutboundBytes) {
      this.#host.slowConsumer(this, this.#queuedBytes);
      this.#closeReason ??= "slow_consumer";
      this.#queue = [];
      this.#queuedBytes = 0;
      this.#release();
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
      while (this.#queue.length > 0 && !this.#released) {
        const chunks = this.#queue;
        this.#unsent = this.#queuedBytes;
        this.#queue = [];
        this.#queuedBytes = 0;
        // One chunk (a broadcast's shared bytes, most often) is written as it is.
        const pieces = chunks.length === 1 ? chunks : writePieces(chunks, this.#unsent);
        for (const piece of pieces) {
          // What follows this piece is backlog behind a write in flight, as the queue is.
          this.#unsent -= piece.length;
          let offset = 0;
          while (offset < piece.length && !this.#released) {
            const written = this.#conn.write(offset === 0 ? piece : piece.subarray(offset));
            this.#writeInFlight = true;
            this.#host.wrote();
            offset += await written;
            this.#writeInFlight = false;
          }
          if (this.#released) break;
        }
        this.#unsent = 0;
      }
    } catch (err) {
      this.#writeInFlight = false;
      if (!this.closed) {
        this.#closeReason = describeSocketError(err, "write_error");
        this.#closeDetail = errorName(err);
      }
      this.#queue = [];
      this.#queuedBytes = 0;
      this.#unsent = 0;
    } finally {
      this.#writing = false;
    }
    if (this.closed) this.#release();
  }

  /** Closes the socket (once) and tells the host. */
  #release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#finalTimer !== undefined) clearTimeout(this.#finalTimer);
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer or the runtime: nothing left to release.
    }
    this.#host.connectionClosed(this, this.#closeReason ?? "peer_closed", this.#closeDetail);
  }
}

/** The writes for one turn's chunks, in order: joined when small, large chunks as they are. */
function writePieces(chunks: Uint8Array[], total: number): Uint8Array[] {
  if (total <= COALESCE_BYTES) return [concatBytes(chunks, total)];
  const pieces: Uint8Array[] = [];
  let run: Uint8Array[] = [];
  let runBytes = 0;
  for (const chunk of chunks) {
    if (chunk.length >= DIRECT_WRITE_BYTES) {
      if (run.length > 0) pieces.push(concatBytes(run, runBytes));
      run = [];
      runBytes = 0;
      pieces.push(chunk);
      continue;
    }
    run.push(chunk);
    runBytes += chunk.length;
    if (runBytes >= COALESCE_BYTES) {
      pieces.push(concatBytes(run, runBytes));
      run = [];
      runBytes = 0;
    }
  }
  if (run.length > 0) pieces.push(concatBytes(run, runBytes));
  return pieces;
}

function describeSocketError(err: unknown, otherwise: CloseReason): CloseReason {
  if (err instanceof Deno.errors.ConnectionReset) return "connection_reset";
  if (err instanceof Deno.errors.BrokenPipe) return "broken_pipe";
  return otherwise;
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : String(err);
}
