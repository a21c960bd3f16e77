// The replies one connection is owed, in request order (contract v1.2, "reply order"). A request
// that is answered later (a send, answered once committed) holds a place in line; a reply that is
// ready early waits in its place until every earlier one is out.
//
// Contract: each place MUST be answered (answer or answeredInBand); a second answer is ignored.
// answeredInBand() says the reply already went out inside a broadcast (the sender's own copy):
// the caller MUST write it only while the place is `first`.

import type { Session } from "./session.ts";

/** One request's place in its connection's line of replies. */
export interface ReplyPlace {
  /** True when every earlier place is answered and written: bytes written now keep the order. */
  readonly first: boolean;
  /** Writes `bytes` as this request's reply once every earlier reply is out. */
  answer(bytes: Uint8Array): void;
  /** The reply went out as part of a broadcast, written while this place was first. */
  answeredInBand(): void;
}

class Place implements ReplyPlace {
  bytes: Uint8Array | undefined;
  answered = false;
  constructor(readonly queue: ReplyQueue) {}

  get first(): boolean {
    return this.queue.isFirst(this);
  }

  answer(bytes: Uint8Array): void {
    if (this.answered) return;
    this.answered = true;
    this.bytes = bytes;
    this.queue.flush();
  }

  answeredInBand(): void {
    if (this.answered) return;
    this.answered = true;
    this.queue.flush();
  }
}

export class ReplyQueue {
  readonly #session: Session;
  readonly #onEmpty: () => void;
  /** Places not yet written, oldest first; `#head` indexes the oldest. */
  #places: Place[] = [];
  #head = 0;
  #drained: PromiseWithResolvers<void> | undefined;

  /** `onEmpty` runs each time the last reserved reply has been written. */
  constructor(session: Session, onEmpty: () => void) {
    this.#session = session;
    this.#onEmpty = onEmpty;
  }

  /** Places reserved and not yet written. */
  get size(): number {
    return this.#places.length - this.#head;
  }

  /** A place in line for the reply to the request accepted now. */
  reserve(): ReplyPlace {
    const place = new Place(this);
    this.#places.push(place);
    return place;
  }

  /** Settles once every place reserved so far has been answered and written. */
  drained(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    this.#drained ??= Promise.withResolvers<void>();
    return this.#drained.promise;
  }

  isFirst(place: Place): boolean {
    return this.#places[this.#head] === place;
  }

  /** Writes the answered replies at the head of the line, in order. */
  flush(): void {
    const places = this.#places;
    while (this.#head < places.length && places[this.#head].answered) {
      const place = places[this.#head];
      places[this.#head++] = undefined as unknown as Place;
      if (place.bytes) this.#session.send(place.bytes);
    }
    if (this.#head === places.length) {
      this.#places = [];
      this.#head = 0;
      const drained = this.#drained;
      this.#drained = undefined;
      drained?.resolve();
      this.#onEmpty();
    } else if (this.#head > 1024 && this.#head * 2 > places.length) {
      this.#places = places.slice(this.#head);
      this.#head = 0;
    }
  }
}
