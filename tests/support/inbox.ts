// What the TCP and the WebSocket test clients share: the frames received and not yet read, the
// waits (next, expect, waitFor, expectNothing, each with a timeout), and request / login.

import { assertEquals, fail } from "./assert.ts";
import type { Frame } from "../../lib/wire/protocol.ts";
import { Wakeup } from "./util.ts";

let nameCounter = 0;
/** A username no other test uses: prefix + random + counter, within 50 characters. */
export function uniqueName(prefix = "u"): string {
  return `${prefix.slice(0, 20)}_${crypto.randomUUID().slice(0, 8)}${nameCounter++}`;
}

export abstract class FrameInbox {
  readonly #frames: Frame[] = [];
  #ended = false;
  readonly #wakeup = new Wakeup();

  /** Sends an object as one frame, or a string exactly as given. */
  abstract send(frame: Frame | string): Promise<void> | void;

  /** Sends a request and returns the next frame. */
  async request(frame: Frame | string, ms = 5000): Promise<Frame> {
    await this.send(frame);
    return await this.next(ms);
  }

  /** Registers and logs in a new user (or the given one); returns the login reply. */
  async registerAndLogin(username = uniqueName(), password = "secret123"): Promise<Frame> {
    const registered = await this.request({ type: "register", username, password });
    assertEquals(registered.status, "success", JSON.stringify(registered));
    const login = await this.request({ type: "login", username, password });
    assertEquals(login.status, "success", JSON.stringify(login));
    return login;
  }

  /** A frame arrived. */
  protected push(frame: Frame): void {
    this.#frames.push(frame);
    this.#wakeup.wake();
  }

  /** The connection ended: no more frames will come. */
  protected end(): void {
    this.#ended = true;
    this.#wakeup.wake();
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The next frame, whatever it is. */
  async next(ms = 5000): Promise<Frame> {
    const frame = await this.#take(() => this.#frames.length > 0 ? 0 : -1, ms);
    if (frame === undefined) fail(`no frame within ${ms} ms${this.#ended ? " (connection closed)" : ""}`);
    return frame;
  }

  /** The next frame, which must be of `type`. */
  async expect(type: string, ms = 5000): Promise<Frame> {
    const frame = await this.next(ms);
    assertEquals(frame.type, type, `expected a ${type} frame, got ${JSON.stringify(frame)}`);
    return frame;
  }

  /** The first frame matching `predicate`, skipping (and dropping) the others before it. */
  async waitFor(predicate: (frame: Frame) => boolean, ms = 5000): Promise<Frame> {
    const frame = await this.#take(() => {
      const index = this.#frames.findIndex(predicate);
      if (index === -1) this.#frames.length = 0;
      return index;
    }, ms);
    if (frame === undefined) fail(`no matching frame within ${ms} ms`);
    return frame;
  }

  /** Asserts that nothing arrives for `ms`. */
  async expectNothing(ms = 300): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.#frames.length > 0) fail(`unexpected frame: ${JSON.stringify(this.#frames[0])}`);
  }

  /** Waits until the connection has ended, or fails after `ms`; returns the frames still unread. */
  protected async untilEnded(ms: number, what: string): Promise<Frame[]> {
    const deadline = Date.now() + ms;
    while (!this.#ended) {
      if (Date.now() > deadline) fail(`${what} still open after ${ms} ms`);
      await this.#wakeup.wait(deadline - Date.now());
    }
    return this.takeAll();
  }

  /** Every frame not yet read, removed from the inbox. */
  protected takeAll(): Frame[] {
    return this.#frames.splice(0);
  }

  async #take(find: () => number, ms: number): Promise<Frame | undefined> {
    const deadline = Date.now() + ms;
    while (true) {
      const index = find();
      if (index >= 0) return this.#frames.splice(index, 1)[0];
      if (this.#ended || Date.now() >= deadline) return undefined;
      await this.#wakeup.wait(deadline - Date.now());
    }
  }
}
