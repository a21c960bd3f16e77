// Small pushes that are not stored but must reach other servers: typing notices and read-marker
// moves, as JSON over the delivery bus's signal channel (NOTIFY or NATS; every server, this one
// included, gets them from there).

import type { MessageStream } from "./message_stream.ts";

/** A user's read marker moved (from connection `session` of server `server`). */
export interface ReadSignal {
  kind: "read";
  server: string;
  session: number;
  userId: number;
  room: string;
  id: number;
  unread: number;
}

/** A user started or stopped typing in a room. */
export interface TypingSignal {
  kind: "typing";
  userId: number;
  username: string;
  room: string;
  state: "start" | "stop";
}

export type Signal = ReadSignal | TypingSignal;

export class Signals {
  readonly #stream: MessageStream;

  constructor(stream: MessageStream) {
    this.#stream = stream;
  }

  /** Hands every server's signals to `onSignal`. */
  start(onSignal: (signal: Signal) => void): Promise<void> {
    this.#stream.onSignal = (payload) => {
      let signal: Signal;
      try {
        signal = JSON.parse(payload);
      } catch {
        return;
      }
      onSignal(signal);
    };
    return Promise.resolve();
  }

  /** Sends `signal` to every server (this one included). Lost when the bus is away: a signal is not kept. */
  send(signal: Signal): void {
    this.#stream.signal(JSON.stringify(signal));
  }
}
