// A WebSocket (Deno's own client) behind the byte-stream interface the load client reads: each
// text message from the server becomes one line ("\n" appended); each line written is sent as one
// text message. Costs the load generator an encode per message; the server's side is what is measured.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class WsLineConn {
  readonly #socket: WebSocket;
  #chunks: Uint8Array[] = [];
  #waiter: (() => void) | undefined;
  #closed = false;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (event) => {
      this.#chunks.push(encoder.encode(`${event.data}\n`));
      this.#wake();
    };
    socket.onclose = () => {
      this.#closed = true;
      this.#wake();
    };
    socket.onerror = () => {};
  }

  static async open(port: number): Promise<WsLineConn> {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("close", () => reject(new Error("websocket closed before opening")), { once: true });
    });
    return new WsLineConn(socket);
  }

  /** Copies as many received bytes as fit into `buffer`; null once closed and drained. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((resolve) => this.#waiter = resolve);
    }
    let n = 0;
    while (this.#chunks.length > 0 && n < buffer.length) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length, buffer.length - n);
      buffer.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    return n;
  }

  /** Sends each complete line of `bytes` as one text message. */
  write(bytes: Uint8Array): Promise<number> {
    for (const line of decoder.decode(bytes).split("\n")) if (line !== "") this.#socket.send(line);
    return Promise.resolve(bytes.length);
  }

  close(): void {
    this.#closed = true;
    this.#wake();
    if (this.#socket.readyState === WebSocket.OPEN || this.#socket.readyState === WebSocket.CONNECTING) {
      this.#socket.close();
    }
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }
}
