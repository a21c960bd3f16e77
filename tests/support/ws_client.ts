// WebSocket test clients: WsTestClient (Deno's own WebSocket, with the TestClient's API) and
// RawWsClient (a hand-made handshake over TCP, for a client that stops reading).

import { assert, fail } from "./assert.ts";
import type { Frame } from "./client.ts";
import { FrameInbox } from "./inbox.ts";

/** A WebSocket client that reads frames in the background; every wait has a timeout. */
export class WsTestClient extends FrameInbox implements AsyncDisposable {
  readonly socket: WebSocket;
  /** Every text message received, as sent (a message may carry several frames, separated by "\n"). */
  readonly raw: string[] = [];
  #closed = Promise.withResolvers<CloseEvent>();

  private constructor(socket: WebSocket) {
    super();
    this.socket = socket;
    socket.onmessage = (event) => {
      assert(typeof event.data === "string", "the server sent a binary message");
      this.raw.push(event.data);
      for (const line of event.data.split("\n")) this.push(JSON.parse(line));
    };
    socket.onclose = (event) => {
      this.#closed.resolve(event);
      this.end();
    };
    socket.onerror = () => {};
  }

  static async connect(url: string): Promise<WsTestClient> {
    const socket = new WebSocket(url);
    const client = new WsTestClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("close", () => reject(new Error("websocket closed before opening")), { once: true });
    });
    return client;
  }

  /** Sends an object as JSON text, or a string / bytes exactly as given (bytes: a binary message). */
  send(frame: Frame | string | Uint8Array<ArrayBuffer>): void {
    this.socket.send(typeof frame === "string" || frame instanceof Uint8Array ? frame : JSON.stringify(frame));
  }

  /** Waits for the server to close the socket; returns the close code and the frames still unread. */
  async expectClosed(ms = 5000): Promise<{ code: number; frames: Frame[] }> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`websocket still open after ${ms} ms`)), ms);
    });
    try {
      const event = await Promise.race([this.#closed.promise, timeout]);
      return { code: event.code, frames: this.takeAll() };
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    if (this.socket.readyState !== WebSocket.CLOSING) this.socket.close();
    await this.#closed.promise;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

const encoder = new TextEncoder();

/**
 * A WebSocket spoken by hand over TCP: it can send frames and then stop reading altogether,
 * which no WebSocket API allows.
 */
export class RawWsClient implements AsyncDisposable {
  readonly conn: Deno.Conn;
  #buffered = new Uint8Array(0);

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Over TCP, or over TLS (as localhost) when `caCerts` are given. */
  static async connect(port: number, caCerts?: string[]): Promise<RawWsClient> {
    const conn = caCerts
      ? await Deno.connectTls({ hostname: "localhost", port, caCerts })
      : await Deno.connect({ hostname: "127.0.0.1", port });
    const client = new RawWsClient(conn);
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    await client.#write(encoder.encode(
      `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    ));
    const head = await client.readUntil("\r\n\r\n");
    assert(head.startsWith("HTTP/1.1 101"), `no upgrade: ${head}`);
    return client;
  }

  /** Sends one masked text frame. */
  async sendText(text: string): Promise<void> {
    const payload = encoder.encode(text);
    const length = payload.length;
    const header = length < 126
      ? [0x81, 0x80 | length]
      : length < 65536
      ? [0x81, 0x80 | 126, length >> 8, length & 0xff]
      : [
        0x81,
        0x80 | 127,
        0,
        0,
        0,
        0,
        (length >>> 24) & 0xff,
        (length >> 16) & 0xff,
        (length >> 8) & 0xff,
        length & 0xff,
      ];
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const frame = new Uint8Array(header.length + 4 + length);
    frame.set(header);
    frame.set(mask, header.length);
    for (let i = 0; i < length; i++) frame[header.length + 4 + i] = payload[i] ^ mask[i & 3];
    await this.#write(frame);
  }

  /** Reads (raw bytes, frames and all) until `marker` has been seen; returns what was read as text. */
  async readUntil(marker: string, ms = 5000): Promise<string> {
    const decoder = new TextDecoder("utf-8", { fatal: false });
    // A read that would outlast the deadline is ended by closing the socket.
    const timer = setTimeout(() => this.close(), ms);
    try {
      while (!decoder.decode(this.#buffered).includes(marker)) {
        const chunk = new Uint8Array(1 << 20);
        const n = await this.conn.read(chunk).catch(() => null);
        if (n === null) fail(`connection closed (or ${ms} ms passed) before ${marker}`);
        const joined = new Uint8Array(this.#buffered.length + n);
        joined.set(this.#buffered);
        joined.set(chunk.subarray(0, n), this.#buffered.length);
        this.#buffered = joined;
      }
    } finally {
      clearTimeout(timer);
    }
    const text = decoder.decode(this.#buffered);
    this.#buffered = new Uint8Array(0);
    return text;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
