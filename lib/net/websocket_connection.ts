// One browser's WebSocket as a session like any TCP one: each text message in carries one frame,
// or several, one a line (contract v1.2). Out, what one turn of the event loop queues goes as one
// text message, its frames separated by "\n" (contract v1.2, as Centrifugo does): Deno writes
// every send() as a frame and a write of its own. Same dispatcher, limits and codes; the outbound
// bound is the socket's own backlog (bufferedAmount) and what waits for the turn's end.
//
// Write contract: send() MUST NOT block and MUST NOT reorder. A broadcast buffer is decoded once
// for every WebSocket (BroadcastText).

import { ChatError } from "../core/errors.ts";
import { encodeLine, errorReply } from "../wire/protocol.ts";
import type { CloseReason, User } from "../chat/session.ts";
import type { Connection, ConnectionHost } from "./transport.ts";

/** WebSocket close codes (RFC 6455 §7.4.1). */
const CLOSE_CODES: Record<CloseReason, number> = {
  peer_closed: 1000,
  connection_reset: 1000,
  broken_pipe: 1000,
  read_error: 1011,
  write_error: 1011,
  line_too_long: 1009,
  binary_frame: 1003,
  inbound_overflow: 1008,
  slow_consumer: 1008,
  too_many_connections: 1013,
  idle_timeout: 1000,
  server_shutdown: 1001,
};

/** How long a closing WebSocket may take to finish its closing handshake before it is let go. */
const FINAL_WRITE_TIMEOUT_MS = 2000;
/**
 * Frames received while an earlier one is still being answered, at most: so many bytes (in lines of
 * MAX_LINE_BYTES), and so many frames (a flood of tiny frames costs memory per frame, not per byte).
 */
const MAX_INBOX_LINES = 16;
const MAX_INBOX_FRAMES = 256;
/**
 * A turn's output is joined into messages of about this size at most (a larger buffer, a batch's
 * broadcast, goes as one): a browser parses a message whole before it shows any of it.
 */
const MESSAGE_BYTES = 64 * 1024;
const NEWLINE = 0x0a;

/** Decodes outgoing buffers into text, each shared broadcast buffer once for all sockets. */
export class BroadcastText {
  readonly #decoder = new TextDecoder();
  #bytes: Uint8Array | undefined;
  #text = "";

  /** The lines of `bytes` (complete lines, each ended by "\n"): "\n" between them, none after the last. */
  text(bytes: Uint8Array): string {
    if (bytes === this.#bytes) return this.#text;
    const end = bytes.length > 0 && bytes[bytes.length - 1] === NEWLINE ? bytes.length - 1 : bytes.length;
    this.#text = this.#decoder.decode(bytes.subarray(0, end));
    this.#bytes = bytes;
    return this.#text;
  }
}

const encoder = new TextEncoder();
/** Stands in line for a frame over MAX_LINE_BYTES: the frames before it are answered first, then the close. */
const TOO_LONG = new Uint8Array(0);

export class WebSocketConnection implements Connection {
  readonly id: number;
  readonly transport = "ws";
  readonly remoteAddress: string;
  user: User | null = null;
  protocol: 1 | 2 = 1;
  lastActivity: number;

  readonly #socket: WebSocket;
  readonly #host: ConnectionHost;
  readonly #texts: BroadcastText;
  /** What this turn queued, sent as one message at its end. */
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  /** Frames waiting while the dispatcher answers an earlier one (replies go out in request order). */
  #inbox: Uint8Array[] = [];
  #inboxBytes = 0;
  #waiting = false;
  #closeReason: CloseReason | undefined;
  #released = false;
  #finalTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(id: number, socket: WebSocket, remoteAddress: string, host: ConnectionHost, texts: BroadcastText) {
    this.id = id;
    this.#socket = socket;
    this.remoteAddress = remoteAddress;
    this.#host = host;
    this.#texts = texts;
    this.lastActivity = host.clock;
    socket.onclose = () => {
      this.#closeReason ??= "peer_closed";
      this.#release();
    };
    socket.onerror = () => {
      this.#closeReason ??= "read_error";
    };
  }

  get closed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Starts reading; call once the socket is open and the connection admitted. */
  start(): void {
    this.#socket.onmessage = (event) => this.#receive(event.data);
  }

  send(bytes: Uint8Array): void {
    if (this.closed) return;
    this.#write(bytes);
  }

  close(reason: CloseReason, finalBytes?: Uint8Array): void {
    if (this.closed) return;
    this.#closeReason = reason;
    if (finalBytes) this.#write(finalBytes);
    this.#flush();
    this.#closeSocket(reason);
  }

  #write(bytes: Uint8Array): void {
    const backlog = this.#socket.bufferedAmount + this.#queuedBytes;
    // As for TCP, only a backlog the peer has not taken counts: one large broadcast is not a slow consumer.
    if (backlog > 0 && backlog + bytes.length > this.#host.maxOutboundBytes) {
      this.#host.slowConsumer(this, backlog + bytes.length);
      this.#closeReason ??= "slow_consumer";
      this.#queue = [];
      this.#queuedBytes = 0;
      this.#closeSocket("slow_consumer");
      return;
    }
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    // Later in this turn more lines may be queued: they go in the same message.
    if (this.#queue.length === 1) queueMicrotask(() => this.#flush());
  }

  /** Sends what is queued: as one message, or a few of about MESSAGE_BYTES when it is large. */
  #flush(): void {
    const chunks = this.#queue;
    if (chunks.length === 0) return;
    this.#queue = [];
    this.#queuedBytes = 0;
    try {
      let message = "";
      let bytes = 0;
      for (const chunk of chunks) {
        const text = this.#texts.text(chunk);
        if (text === "") continue;
        if (message !== "" && bytes + chunk.length > MESSAGE_BYTES) {
          this.#socket.send(message);
          this.#host.wrote();
          message = "";
          bytes = 0;
        }
        message = message === "" ? text : `${message}\n${text}`;
        bytes += chunk.length;
      }
      if (message !== "") {
        this.#socket.send(message);
        this.#host.wrote();
      }
    } catch (err) {
      // The socket closed under us (the peer left): the close event records it.
      this.#host.log.debug("websocket send failed", { session: this.id, error: String(err) });
    }
  }

  #receive(data: unknown): void {
    if (this.closed) return;
    if (typeof data !== "string") {
      const error = new ChatError("bad_request", "Binary messages are not accepted; send each frame as text");
      this.close("binary_frame", encodeLine(errorReply(error)));
      return;
    }
    const maxLineBytes = this.#host.maxLineBytes;
    // A message may carry several frames, one a line (contract v1.2); each is held to
    // MAX_LINE_BYTES. A string's UTF-8 size is at least its length: one that long is refused
    // before anything is encoded.
    if (data.length > MAX_INBOX_LINES * maxLineBytes) return this.#tooLong();
    let start = 0;
    while (start < data.length) {
      let end = data.indexOf("\n", start);
      if (end === -1) end = data.length;
      const next = end + 1;
      if (end > start && data.charCodeAt(end - 1) === 0x0d) end--;
      if (end - start > maxLineBytes) {
        this.#frame(TOO_LONG);
        return;
      }
      if (end > start && !this.#frame(encoder.encode(data.slice(start, end)))) return;
      start = next;
    }
  }

  /** Takes one frame (a line, without its line end); false once no more frames are taken. */
  #frame(frame: Uint8Array): boolean {
    const line = frame.length > this.#host.maxLineBytes ? TOO_LONG : frame;
    if (line !== TOO_LONG) this.lastActivity = this.#host.clock;
    if (!this.#waiting) {
      this.#dispatch(line);
      return !this.closed && line !== TOO_LONG;
    }
    this.#inboxBytes += line.length;
    if (this.#inboxBytes > MAX_INBOX_LINES * this.#host.maxLineBytes || this.#inbox.length >= MAX_INBOX_FRAMES) {
      const error = new ChatError("rate_limited", "Too many requests waiting for an answer; closing connection");
      this.close("inbound_overflow", encodeLine(errorReply(error)));
      return false;
    }
    this.#inbox.push(line);
    return line !== TOO_LONG;
  }

  #tooLong(): void {
    const error = new ChatError(
      "line_too_long",
      `Line longer than ${this.#host.maxLineBytes} bytes; closing connection`,
    );
    this.close("line_too_long", encodeLine(errorReply(error)));
  }

  /** Hands frames to the dispatcher in order, pausing while it asks this connection to wait. */
  #dispatch(line: Uint8Array | undefined): void {
    while (line && !this.closed) {
      if (line === TOO_LONG) return this.#tooLong();
      const wait = this.#host.handleLine(this, line);
      if (wait) {
        this.#waiting = true;
        wait.then(() => this.#resume(), (err) => {
          this.#host.log.error("unexpected error handling a websocket frame", { session: this.id, error: err });
          this.close("read_error");
        });
        return;
      }
      line = this.#takeInbox();
    }
  }

  #resume(): void {
    this.#waiting = false;
    this.#dispatch(this.#takeInbox());
  }

  #takeInbox(): Uint8Array | undefined {
    const line = this.#inbox.shift();
    if (line) this.#inboxBytes -= line.length;
    return line;
  }

  #closeSocket(reason: CloseReason): void {
    this.#inbox = [];
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#inboxBytes = 0;
    try {
      this.#socket.close(CLOSE_CODES[reason], reason);
    } catch (err) {
      this.#host.log.debug("websocket close failed", { session: this.id, error: String(err) });
    }
    // A peer that does not answer the closing handshake (or read at all) is not waited for.
    this.#finalTimer ??= setTimeout(() => this.#release(), FINAL_WRITE_TIMEOUT_MS);
  }

  /** Tells the host (once) that this connection is gone. */
  #release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#finalTimer !== undefined) clearTimeout(this.#finalTimer);
    this.#host.connectionClosed(this, this.#closeReason ?? "peer_closed");
  }
}
