// Fan-out traffic over connected clients: the first `senders` clients send bench messages, either
// keeping a window of unacknowledged messages each or at a paced total rate; every client is a
// receiver. Counts deliveries, latency (send to receive, at every receiver), acknowledgements (the
// sender's own copy, matched by request_id), missed and out-of-order deliveries.

import { type Delivery, type LoadClient, relayMessageLine, sendMessageLine } from "./client.ts";
import { Histogram } from "./stats.ts";

export interface TrafficOptions {
  /** "server": send_message, ids checked for strict global order. "relay": pre-shaped lines, per-sender order. */
  mode: "server" | "relay";
  clients: LoadClient[];
  senders: number;
  /** Message text length in characters. */
  messageChars: number;
  /** "server" mode: send each message with a client_msg_id (exactly-once), starting with this prefix. */
  clientMsgIdPrefix?: string;
  /** Closed loop: at most this many unacknowledged messages per sender. */
  window?: number;
  /** Open loop: this many messages per second in total, spread over the senders. */
  ratePerSec?: number;
  /** Open loop: a sender with this many unacknowledged messages skips its turn (counted). */
  maxUnackedPerSender?: number;
  /**
   * Only the first `observers` clients (senders included) parse broadcasts for latency and order;
   * the others only count lines, which proves delivery at a fraction of the cost. Default: all.
   */
  observers?: number;
  /**
   * Which server each client is on (several servers on one database): latency is then also kept
   * apart for deliveries on the sender's own server and on another one.
   */
  serverOf?: (client: number) => number;
}

export interface TrafficCounts {
  sent: number;
  acked: number;
  rejected: number;
  /** Paced sends skipped because the sender had too many unacknowledged messages. */
  skipped: number;
  deliveries: number;
  /** Receivers that parsed every broadcast (latency, order); the rest counted lines only. */
  observers: number;
  missed: number;
  out_of_order: number;
  /** Deliveries that the client's fast parser did not recognise (0 expected). */
  slow_parses: number;
  ack_mismatches: number;
  errors: Record<string, number>;
  closed_connections: number;
}

export class Traffic {
  /** Send-to-receive latency of deliveries received while measuring, at every receiver. */
  latency = new Histogram();
  /** With `serverOf`: latency of deliveries on another server than the sender's, and on its own. */
  readonly crossServerLatency = new Histogram();
  readonly sameServerLatency = new Histogram();
  /** Send-to-own-copy latency of the senders' acknowledgements received while measuring. */
  readonly ackLatency = new Histogram();
  windowDeliveries = 0;
  windowAcks = 0;

  readonly #o: TrafficOptions;
  readonly #n: number;
  readonly #s: number;
  readonly #got: Int32Array;
  readonly #lastSeq: Float64Array;
  readonly #lastId: Float64Array;
  readonly #sent: Float64Array;
  readonly #unacked: Float64Array;
  readonly #rejectedBy: Float64Array;
  readonly #observers: number;
  #countedAtWindowStart = 0;
  #acked = 0;
  #rejected = 0;
  #skipped = 0;
  #deliveries = 0;
  #outOfOrder = 0;
  #ackMismatches = 0;
  #measuring = false;
  #sending = false;
  #pacer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: TrafficOptions) {
    this.#o = options;
    this.#n = options.clients.length;
    this.#s = options.senders;
    this.#got = new Int32Array(this.#n * this.#s);
    this.#lastSeq = new Float64Array(this.#n * this.#s).fill(-1);
    this.#lastId = new Float64Array(this.#n).fill(-1);
    this.#sent = new Float64Array(this.#s);
    this.#unacked = new Float64Array(this.#s);
    this.#rejectedBy = new Float64Array(this.#s);
    this.#observers = Math.max(this.#s, Math.min(this.#n, options.observers ?? this.#n));
    options.clients.forEach((client, r) => {
      client.countOnly = r >= this.#observers;
      client.onDelivery = (d, now) => this.#onDelivery(r, d, now);
      if (r < this.#s) client.onError = (_code, requestId) => this.#onRejected(r, requestId);
    });
  }

  get unacked(): number {
    let total = 0;
    for (const u of this.#unacked) total += u;
    return total;
  }

  get sent(): number {
    let total = 0;
    for (const s of this.#sent) total += s;
    return total;
  }

  /** Deliveries so far: parsed at observers plus lines counted at the other receivers. */
  get deliveries(): number {
    return this.#deliveries + this.#counted();
  }

  #counted(): number {
    let total = 0;
    for (let r = this.#observers; r < this.#n; r++) total += this.#o.clients[r].broadcasts;
    return total;
  }

  /** Starts (or restarts) sending: windows filled, or the pacer started at `rate` (default: the option). */
  start(rate = this.#o.ratePerSec): void {
    this.#sending = true;
    if (this.#o.window !== undefined) {
      for (let s = 0; s < this.#s; s++) this.#refill(s);
    } else if (rate !== undefined) {
      this.#pace(rate);
    }
  }

  /** Latency and window counters count from now on. */
  measure(on: boolean): void {
    if (on && !this.#measuring) this.#countedAtWindowStart = this.#counted();
    if (!on && this.#measuring) this.windowDeliveries += this.#counted() - this.#countedAtWindowStart;
    this.#measuring = on;
  }

  /** The latency histogram so far, replaced by an empty one (for phases of one run). */
  takeLatency(): Histogram {
    const taken = this.latency;
    this.latency = new Histogram();
    return taken;
  }

  stopSending(): void {
    this.#sending = false;
    if (this.#pacer !== undefined) clearTimeout(this.#pacer);
  }

  /** Waits (bounded) until every sent message is acknowledged and every receiver has every message. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (this.unacked === 0 && this.deliveries >= this.#expectedDeliveries()) return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return false;
  }

  counts(): TrafficCounts {
    let missed = 0;
    let accepted = 0;
    for (let s = 0; s < this.#s; s++) accepted += this.#sent[s] - this.#rejectedBy[s];
    // A receiver whose connection closed misses everything it did not get: counted too.
    for (let r = 0; r < this.#observers; r++) {
      for (let s = 0; s < this.#s; s++) {
        const expected = this.#sent[s] - this.#rejectedBy[s];
        missed += Math.max(0, expected - this.#got[r * this.#s + s]);
      }
    }
    for (let r = this.#observers; r < this.#n; r++) missed += Math.max(0, accepted - this.#o.clients[r].broadcasts);
    const errors: Record<string, number> = {};
    let slowParses = 0;
    let closed = 0;
    for (const client of this.#o.clients) {
      for (const [code, count] of client.errors) errors[code] = (errors[code] ?? 0) + count;
      slowParses += client.slowParses;
      if (client.closedReason !== undefined) closed++;
    }
    return {
      sent: this.sent,
      acked: this.#acked,
      rejected: this.#rejected,
      skipped: this.#skipped,
      deliveries: this.deliveries,
      observers: this.#observers,
      missed,
      out_of_order: this.#outOfOrder,
      slow_parses: slowParses,
      ack_mismatches: this.#ackMismatches,
      errors,
      closed_connections: closed,
    };
  }

  #expectedDeliveries(): number {
    let total = 0;
    for (let s = 0; s < this.#s; s++) total += this.#sent[s] - this.#rejectedBy[s];
    let open = 0;
    for (const client of this.#o.clients) if (client.closedReason === undefined) open++;
    return total * open;
  }

  #line(s: number): string {
    const seq = this.#sent[s]++;
    this.#unacked[s]++;
    return this.#o.mode === "server"
      ? sendMessageLine(s, seq, this.#o.messageChars, this.#o.clientMsgIdPrefix)
      : relayMessageLine(s, seq, this.#o.messageChars);
  }

  #refill(s: number): void {
    const client = this.#o.clients[s];
    const window = this.#o.window ?? 0;
    while (this.#sending && this.#unacked[s] < window) client.sendLine(this.#line(s));
  }

  #pace(rate: number): void {
    const t0 = performance.now();
    const maxUnacked = this.#o.maxUnackedPerSender ?? 1000;
    let scheduled = 0;
    let next = 0;
    const tick = () => {
      if (!this.#sending) return;
      const due = Math.floor(((performance.now() - t0) / 1000) * rate) - scheduled;
      for (let i = 0; i < due; i++) {
        const s = next;
        next = (next + 1) % this.#s;
        scheduled++;
        if (this.#unacked[s] >= maxUnacked) {
          this.#skipped++;
          continue;
        }
        this.#o.clients[s].sendLine(this.#line(s));
      }
      this.#pacer = setTimeout(tick, 2);
    };
    tick();
  }

  #onDelivery(r: number, d: Delivery, now: number): void {
    const s = d.sender;
    if (s >= this.#s) return;
    this.#deliveries++;
    if (this.#measuring) {
      this.latency.record(now - d.sentAtUs);
      this.windowDeliveries++;
      const serverOf = this.#o.serverOf;
      if (serverOf) {
        (serverOf(r) === serverOf(s) ? this.sameServerLatency : this.crossServerLatency).record(now - d.sentAtUs);
      }
    }
    const k = r * this.#s + s;
    this.#got[k]++;
    let inOrder = d.seq > this.#lastSeq[k];
    if (inOrder) this.#lastSeq[k] = d.seq;
    if (this.#o.mode === "server") {
      if (d.id <= this.#lastId[r]) inOrder = false;
      else this.#lastId[r] = d.id;
    }
    if (!inOrder) this.#outOfOrder++;
    if (r === s) {
      if (d.requestId !== d.seq) this.#ackMismatches++;
      this.#acked++;
      this.#unacked[s]--;
      if (this.#measuring) {
        this.ackLatency.record(now - d.sentAtUs);
        this.windowAcks++;
      }
      if (this.#o.window !== undefined && this.#sending) this.#refill(s);
    }
  }

  #onRejected(s: number, requestId: number): void {
    if (requestId < 0) return;
    this.#rejected++;
    this.#rejectedBy[s]++;
    this.#unacked[s]--;
    if (this.#o.window !== undefined && this.#sending) this.#refill(s);
  }
}
