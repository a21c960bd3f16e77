// A line client on node:net, which (unlike Deno.connect) can choose its local address: tests bind
// 127.0.0.0/8 addresses to look like many different peers.

import net from "node:net";
import { fail } from "./assert.ts";
import type { Frame } from "../../lib/wire/protocol.ts";

/** A line client on node:net, which (unlike Deno.connect) can choose its local address. */
export class NodeLineClient implements AsyncDisposable {
  readonly #socket: net.Socket;
  readonly #lines: string[] = [];
  readonly #closed: Promise<void>;
  #pending = "";
  #wake: (() => void) | undefined;
  #ended = false;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      this.#pending += text;
      let newline;
      while ((newline = this.#pending.indexOf("\n")) >= 0) {
        this.#lines.push(this.#pending.slice(0, newline));
        this.#pending = this.#pending.slice(newline + 1);
      }
      this.#wake?.();
    });
    this.#closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.#ended = true;
        this.#wake?.();
        resolve();
      })
    );
    // Errors (a reset) end the socket and are followed by "close".
    socket.on("error", () => {});
  }

  static connect(port: number, localAddress: string): Promise<NodeLineClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port, localAddress });
      socket.once("connect", () => resolve(new NodeLineClient(socket)));
      socket.once("error", reject);
    });
  }

  async request(frame: Frame, ms = 5000): Promise<Frame> {
    this.#socket.write(JSON.stringify(frame) + "\n");
    return await this.next(ms);
  }

  async next(ms = 5000): Promise<Frame> {
    const deadline = Date.now() + ms;
    while (this.#lines.length === 0) {
      if (this.#ended || Date.now() >= deadline) fail(`no frame within ${ms} ms${this.#ended ? " (closed)" : ""}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.#wake = () => {
          clearTimeout(timer);
          this.#wake = undefined;
          resolve();
        };
      });
    }
    return JSON.parse(this.#lines.shift()!);
  }

  /** Waits until the server closes the connection. */
  async closed(ms = 5000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms);
    });
    try {
      await Promise.race([this.#closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#socket.destroy();
    await this.#closed;
  }
}
