// A cheap load client: one TCP connection on loopback; writes queued in one turn go out as one
// write; lines are split on "\n" and parsed only as far as needed. Broadcasts (new_message) are
// read by byte offsets, never JSON-parsed; history replies only have their request_id read;
// other replies are JSON-parsed.
//
// Bench messages carry a marker as their text: "B<sent µs>.<sender>.<seq>." plus padding, so a
// receiver knows who sent what and when without a lookup.

import type { Frame } from "../lib/wire/protocol.ts";
import { nowUs } from "./stats.ts";
import { WsLineConn } from "./ws_conn.ts";

/** One parsed broadcast. The client reuses the object: read it in the callback, do not keep it. */
export interface Delivery {
  /** The message id (the server's), or the sender's seq for the bare relay. */
  id: number;
  sentAtUs: number;
  sender: number;
  seq: number;
  /** The echoed request_id, or -1. */
  requestId: number;
  /** A v2 frame's "room" (read on the slow path); "" for a v1 frame. */
  room: string;
}

export interface ClientOptions {
  /** Bytes per read; small for idle connections, large for busy ones. */
  readBufferBytes?: number;
  /** Count broadcast lines without parsing them (for connections that only prove delivery). */
  countOnly?: boolean;
  /** JSON-parse history replies too (to check one), instead of reading only their request_id. */
  parseHistory?: boolean;
  /** "ws": a WebSocket to /ws on `port` (the HTTP port) instead of the line protocol over TCP. */
  transport?: "tcp" | "ws";
}

/** What the client needs of its connection: a TCP socket, or a WebSocket behind WsLineConn. */
interface LineConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

interface Pending {
  resolve(frame: Frame): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

const NEWLINE = 0x0a;
const QUOTE = 0x22;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** `{"type":"new_message","id":` */
const ID_OFFSET = 27;
/** Control request ids start here so that they never collide with message seqs. */
const FIRST_CONTROL_ID = 1_000_000_000;

export class LoadClient {
  /** Broadcast lines received (bench or not). */
  broadcasts = 0;
  /** Broadcast lines that needed the slow path (JSON.parse): should stay 0. */
  slowParses = 0;
  /** Error frames received, by code. */
  readonly errors = new Map<string, number>();
  /** Set when the connection ended; the reason. */
  closedReason: string | undefined;
  /** Count broadcast lines without parsing them (may be switched at any time). */
  countOnly: boolean;
  /** Called for each bench broadcast, with the time the read that carried it returned. */
  onDelivery: ((delivery: Delivery, nowUs: number) => void) | undefined;
  /** Called for an error frame that answered no pending request (a rejected send_message). */
  onError: ((code: string, requestId: number) => void) | undefined;

  readonly #conn: LineConn;
  readonly #options: ClientOptions;
  readonly #pending = new Map<number, Pending>();
  readonly #delivery: Delivery = { id: 0, sentAtUs: 0, sender: 0, seq: 0, requestId: -1, room: "" };
  #nextControlId = FIRST_CONTROL_ID;
  #out: string[] = [];
  #flushQueued = false;
  #writing = false;
  readonly done: Promise<void>;

  private constructor(conn: LineConn, options: ClientOptions) {
    this.#conn = conn;
    this.#options = options;
    this.countOnly = options.countOnly ?? false;
    this.done = this.#readLoop();
  }

  static async connect(port: number, options: ClientOptions = {}): Promise<LoadClient> {
    if (options.transport === "ws") return new LoadClient(await WsLineConn.open(port), options);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port, transport: "tcp" });
    conn.setNoDelay(true);
    return new LoadClient(conn, options);
  }

  /** Queues one line (with its "\n"); everything queued in this turn is written at once. */
  sendLine(line: string): void {
    if (this.closedReason !== undefined) return;
    this.#out.push(line);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => {
        this.#flushQueued = false;
        void this.#flush();
      });
    }
  }

  /** Sends a control frame with a fresh request_id and resolves with the reply that echoes it. */
  request(frame: Frame, timeoutMs = 30_000): Promise<Frame> {
    const id = this.#nextControlId++;
    const { promise, resolve, reject } = Promise.withResolvers<Frame>();
    const timer = setTimeout(() => {
      this.#pending.delete(id);
      reject(new Error(`no reply to ${String(frame.type)} within ${timeoutMs} ms`));
    }, timeoutMs);
    this.#pending.set(id, { resolve, reject, timer });
    this.sendLine(JSON.stringify({ ...frame, request_id: id }) + "\n");
    return promise;
  }

  close(): void {
    this.closedReason ??= "closed by bench";
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  async #flush(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#out.length > 0) {
        const bytes = encoder.encode(this.#out.length === 1 ? this.#out[0] : this.#out.join(""));
        this.#out = [];
        let offset = 0;
        while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
      }
    } catch (err) {
      this.#end(`write failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.#writing = false;
    }
  }

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(this.#options.readBufferBytes ?? 64 * 1024);
    let carry: Uint8Array | undefined;
    try {
      while (true) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        const now = nowUs();
        let data = buffer.subarray(0, n);
        if (carry) {
          const joined = new Uint8Array(carry.length + n);
          joined.set(carry);
          joined.set(data, carry.length);
          data = joined;
          carry = undefined;
        }
        let start = 0;
        while (start < data.length) {
          const end = data.indexOf(NEWLINE, start);
          if (end === -1) {
            carry = data.slice(start);
            break;
          }
          if (end > start) this.#line(data, start, end, now);
          start = end + 1;
        }
      }
      this.#end("server closed the connection");
    } catch (err) {
      this.#end(this.closedReason ?? `read failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  #end(reason: string): void {
    this.closedReason ??= reason;
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error(`connection ended: ${this.closedReason}`));
      this.#pending.delete(id);
    }
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  #line(b: Uint8Array, s: number, e: number, now: number): void {
    // `{"type":"` is 9 bytes: the type's first letters tell the frame apart.
    const t0 = b[s + 9];
    const t1 = b[s + 10];
    if (t0 === 0x6e && t1 === 0x65 && b[s + 11] === 0x77) { // new_message
      this.broadcasts++;
      if (this.countOnly) return;
      if (!this.#parseDelivery(b, s, e)) {
        this.slowParses++;
        if (!this.#slowDelivery(b, s, e)) return;
      }
      this.onDelivery?.(this.#delivery, now);
      return;
    }
    if (t0 === 0x68 && t1 === 0x69 && !this.#options.parseHistory) { // history_response: only its request_id
      const id = tailRequestId(b, s, e);
      this.#settle(id, { type: "history_response", bytes: e - s });
      return;
    }
    let frame: Frame;
    try {
      frame = JSON.parse(decoder.decode(b.subarray(s, e)));
    } catch {
      this.errors.set("unparsable_line", (this.errors.get("unparsable_line") ?? 0) + 1);
      return;
    }
    const id = typeof frame.request_id === "number" ? frame.request_id : -1;
    if (frame.type === "error") {
      const code = String(frame.code);
      this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
      if (!this.#pending.has(id)) {
        this.onError?.(code, id);
        return;
      }
    }
    this.#settle(id, frame);
  }

  #settle(id: number, frame: Frame): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(frame);
  }

  /** The fast path: `{"type":"new_message","id":N,"sender":"S","message":"B…",…[,"request_id":R]}`. */
  #parseDelivery(b: Uint8Array, s: number, e: number): boolean {
    const d = this.#delivery;
    let i = s + ID_OFFSET;
    let c = b[i];
    let id = 0;
    while (c >= 0x30 && c <= 0x39) {
      id = id * 10 + c - 0x30;
      c = b[++i];
    }
    // `,"sender":"` then the name (no quotes in usernames) then `","message":"`.
    if (c !== 0x2c || b[i + 2] !== 0x73) return false;
    // A plain loop: names are short, and indexOf costs a builtin call per line.
    i += 11;
    while (i < e && b[i] !== QUOTE) i++;
    if (i >= e) return false;
    i += 13;
    if (b[i - 2] !== 0x3a || b[i] !== 0x42) return false; // ':' before the opening quote, then 'B'
    let v = 0;
    c = b[++i];
    while (c >= 0x30 && c <= 0x39) {
      v = v * 10 + c - 0x30;
      c = b[++i];
    }
    d.sentAtUs = v;
    v = 0;
    c = b[++i];
    while (c >= 0x30 && c <= 0x39) {
      v = v * 10 + c - 0x30;
      c = b[++i];
    }
    d.sender = v;
    v = 0;
    c = b[++i];
    while (c >= 0x30 && c <= 0x39) {
      v = v * 10 + c - 0x30;
      c = b[++i];
    }
    if (c !== 0x2e) return false;
    d.seq = v;
    d.id = id;
    d.requestId = tailRequestId(b, s, e);
    d.room = "";
    return true;
  }

  /** The slow path, for a line the fast path did not recognise (counted): false if it is no bench message. */
  #slowDelivery(b: Uint8Array, s: number, e: number): boolean {
    let frame: Frame;
    try {
      frame = JSON.parse(decoder.decode(b.subarray(s, e)));
    } catch {
      return false;
    }
    const match = typeof frame.message === "string" ? /^B(\d+)\.(\d+)\.(\d+)\./.exec(frame.message) : null;
    if (!match || typeof frame.id !== "number") return false;
    const d = this.#delivery;
    d.id = frame.id;
    d.sentAtUs = Number(match[1]);
    d.sender = Number(match[2]);
    d.seq = Number(match[3]);
    d.requestId = typeof frame.request_id === "number" ? frame.request_id : -1;
    d.room = typeof frame.room === "string" ? frame.room : "";
    return true;
  }
}

/** A trailing `"request_id":N}` read backwards from the end of the line, or -1. */
function tailRequestId(b: Uint8Array, s: number, e: number): number {
  let i = e - 1;
  if (b[i] !== 0x7d) return -1; // '}'
  let v = 0;
  let scale = 1;
  let c = b[--i];
  while (c >= 0x30 && c <= 0x39 && i > s) {
    v += (c - 0x30) * scale;
    scale *= 10;
    c = b[--i];
  }
  // `"request_id":` : check ':' , '"', 'd', 'i', '_'
  if (scale === 1 || c !== 0x3a || b[i - 1] !== QUOTE || b[i - 2] !== 0x64 || b[i - 3] !== 0x69 || b[i - 4] !== 0x5f) {
    return -1;
  }
  return v;
}

/** The text of a bench message: its marker, padded with "x" to `size` characters. */
export function markerText(sender: number, seq: number, size: number): string {
  const marker = `B${nowUs()}.${sender}.${seq}.`;
  return marker.length >= size ? marker : marker + "x".repeat(size - marker.length);
}

/** A send_message line for the chat server; with `clientMsgId`, one unique to the run, sender and seq. */
export function sendMessageLine(sender: number, seq: number, size: number, clientMsgId?: string): string {
  const id = clientMsgId === undefined ? "" : `"client_msg_id":"${clientMsgId}.${sender}.${seq}",`;
  return `{"type":"send_message","message":"${markerText(sender, seq, size)}",${id}"request_id":${seq}}\n`;
}

/** The same message as the bare relay gets it: already shaped like the server's broadcast of it. */
export function relayMessageLine(sender: number, seq: number, size: number): string {
  return `{"type":"new_message","id":${seq},"sender":"bench_${sender}","message":"${
    markerText(sender, seq, size)
  }","timestamp":"2026-01-01T00:00:00","request_id":${seq}}\n`;
}
