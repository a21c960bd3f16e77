// One TCP connection to the chat server: JSON frames over lib/framing's bounded line splitter,
// request_id correlation, and exactly one recorded loss cause. Knows nothing of logins or
// reconnecting (session.ts does that).

import { forEachLine, LineTooLongError } from "../lib/wire/framing.ts";
import { ConnectFailed, ConnectionLost, type LossCause, ServerRefusal } from "./errors.ts";
import { type Frame, isFrame } from "../lib/wire/protocol.ts";

/** Longest reply line accepted: a 500-message history page of 4000 escaped characters each fits. */
export const MAX_REPLY_BYTES = 64 * 1024 * 1024;
export const CONNECT_TIMEOUT_MS = 10_000;
/** A request without a reply for this long means a dead peer: the connection is closed. */
export const REQUEST_TIMEOUT_MS = 30_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Pending {
  resolve(frame: Frame): void;
  reject(err: ConnectionLost): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * `onFrame` sees every frame the server sends, replies included, in arrival order, before the
 * request they answer settles. It MUST NOT throw.
 */
export type FrameHandler = (frame: Frame) => void;

export class Connection {
  readonly #conn: Deno.TcpConn;
  readonly #onFrame: FrameHandler;
  readonly #pending = new Map<number, Pending>();
  #nextRequestId = 1;
  /** Writes go out one after another, each as one whole line. */
  #writing: Promise<void> = Promise.resolve();
  #loss: LossCause | undefined;
  /** The last error the server sent unasked: usually the reason it is about to close. */
  #unsolicitedError: ServerRefusal | undefined;
  readonly #closed = Promise.withResolvers<LossCause>();

  private constructor(conn: Deno.TcpConn, onFrame: FrameHandler) {
    this.#conn = conn;
    this.#onFrame = onFrame;
    void this.#read();
  }

  static async open(hostname: string, port: number, onFrame: FrameHandler): Promise<Connection> {
    const abort = new AbortController();
    // Only for the connect itself: the signal would close the connection if aborted later.
    const timer = setTimeout(() => abort.abort(), CONNECT_TIMEOUT_MS);
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname, port, signal: abort.signal });
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      const reason = abort.signal.aborted
        ? "timeout"
        : err instanceof Deno.errors.ConnectionRefused
        ? "refused"
        : "other";
      throw new ConnectFailed(hostname, port, reason, detail);
    } finally {
      clearTimeout(timer);
    }
    try {
      conn.setNoDelay(true);
      conn.setKeepAlive(true);
    } catch {
      // The peer may already be gone; the read loop will notice.
    }
    return new Connection(conn, onFrame);
  }

  /** Settles once, with the cause, when the connection has ended and every request has been rejected. */
  get closed(): Promise<LossCause> {
    return this.#closed.promise;
  }

  /**
   * Sends `frame` with a fresh request_id and resolves with the frame that echoes it (a reply, an
   * error, or for send_message the sender's own `new_message`). Rejects with ConnectionLost if the
   * connection ends first or nothing comes back within `timeoutMs` (which closes the connection).
   */
  request(frame: Frame, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Frame> {
    if (this.#loss) return Promise.reject(new ConnectionLost(this.#loss));
    const id = this.#nextRequestId++;
    const { promise, resolve, reject } = Promise.withResolvers<Frame>();
    const timer = setTimeout(() => this.#end({ kind: "timeout", afterMs: timeoutMs }), timeoutMs);
    this.#pending.set(id, { resolve, reject, timer });
    this.#write({ ...frame, request_id: id });
    return promise;
  }

  close(): void {
    this.#end({ kind: "by_client" });
  }

  #write(frame: Frame): void {
    const bytes = encoder.encode(JSON.stringify(frame) + "\n");
    this.#writing = this.#writing.then(async () => {
      if (this.#loss) return;
      try {
        let offset = 0;
        while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
      } catch (err) {
        this.#end({ kind: "network", detail: err instanceof Error ? err.message : String(err) });
      }
    });
  }

  async #read(): Promise<void> {
    let cause: LossCause = { kind: "closed" };
    try {
      await forEachLine(this.#conn, MAX_REPLY_BYTES, (line) => {
        let value: unknown;
        try {
          value = JSON.parse(decoder.decode(line));
        } catch {
          return; // Not JSON: a server bug we can live with; the next line may be fine.
        }
        if (isFrame(value)) this.#deliver(value);
      });
    } catch (err) {
      if (err instanceof LineTooLongError) cause = { kind: "reply_too_long" };
      else cause = { kind: "network", detail: err instanceof Error ? err.message : String(err) };
    }
    this.#end(cause);
  }

  #deliver(frame: Frame): void {
    const id = frame.request_id;
    const pending = typeof id === "number" ? this.#pending.get(id) : undefined;
    if (frame.type === "error" && id === undefined) this.#unsolicitedError = ServerRefusal.fromFrame(frame);
    this.#onFrame(frame);
    if (pending && typeof id === "number") {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.resolve(frame);
    }
  }

  /** Records the first cause only, closes the socket and rejects what is still waiting. */
  #end(cause: LossCause): void {
    if (this.#loss) return;
    // A server that sends an error and closes may reset rather than close: its error is the reason.
    this.#loss = (cause.kind === "closed" || cause.kind === "network") && this.#unsolicitedError
      ? { kind: "closed", serverError: this.#unsolicitedError }
      : cause;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the read loop's end.
    }
    const lost = new ConnectionLost(this.#loss);
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(lost);
    }
    this.#pending.clear();
    this.#closed.resolve(this.#loss);
  }
}
