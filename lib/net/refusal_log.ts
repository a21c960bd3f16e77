// Log lines for refused connections, bounded whatever the number of addresses: per address at most
// one line per interval, in all at most LINES_PER_INTERVAL, and the rest summed up per reason.

import type { Logger } from "../core/log.ts";

/** An address gets at most one line per interval, carrying the refusals held back since its last. */
const INTERVAL_MS = 10_000;
/**
 * Per-address lines per interval, all addresses together: a flood from many addresses (IPv6 gives
 * an attacker endless ones) gets one summary line per reason instead of a line per address.
 */
export const LINES_PER_INTERVAL = 20;
/**
 * An address's held-back refusals wait this long for its next line, then go into the summary.
 * Entries exist only for addresses given a line, so at most 3 intervals' lines are ever tracked.
 */
const FORGET_AFTER_MS = 2 * INTERVAL_MS;

interface Logged {
  /** When the address's last line was written. */
  at: number;
  /** Refusals since then, not in any line yet. */
  heldBack: number;
  reason: string;
}

export class RefusalLog {
  readonly #log: Logger;
  /** Addresses given a line lately, oldest line first (Map keeps insertion order). */
  readonly #logged = new Map<string, Logged>();
  #intervalStart = -Infinity;
  #linesThisInterval = 0;
  /** Refusals in no address's line, by reason (a handful of fixed strings). */
  readonly #unreported = new Map<string, number>();

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Addresses whose refusals are tracked: bounded by the lines, not by the addresses seen. */
  get trackedAddresses(): number {
    return this.#logged.size;
  }

  /** One refused connection; `now` in milliseconds (performance.now()). */
  refused(address: string, reason: string, now: number): void {
    this.tick(now);
    const logged = this.#logged.get(address);
    if (logged && now - logged.at < INTERVAL_MS) {
      logged.heldBack++;
      logged.reason = reason;
      return;
    }
    if (logged) this.#logged.delete(address);
    if (this.#linesThisInterval >= LINES_PER_INTERVAL) {
      this.#unreport(reason, 1);
      if (logged) this.#unreport(logged.reason, logged.heldBack);
      return;
    }
    this.#linesThisInterval++;
    this.#logged.set(address, { at: now, heldBack: 0, reason });
    this.#log.warn("connection refused", { address, reason, refused: (logged?.heldBack ?? 0) + 1 });
  }

  /**
   * Closes the interval when it is over (a summary line per reason for what no address line
   * counted) and forgets addresses without a line for FORGET_AFTER_MS. Cheap: call it often.
   */
  tick(now: number): void {
    // Oldest first: the loop stops at the first address still remembered (amortised O(1)).
    for (const [address, logged] of this.#logged) {
      if (now - logged.at < FORGET_AFTER_MS) break;
      this.#logged.delete(address);
      this.#unreport(logged.reason, logged.heldBack);
    }
    if (now - this.#intervalStart < INTERVAL_MS) return;
    for (const [reason, refused] of this.#unreported) {
      this.#log.warn("connections refused", {
        reason,
        refused,
        seconds: Math.round((now - this.#intervalStart) / 1000),
      });
    }
    this.#unreported.clear();
    this.#intervalStart = now;
    this.#linesThisInterval = 0;
  }

  #unreport(reason: string, count: number): void {
    if (count > 0) this.#unreported.set(reason, (this.#unreported.get(reason) ?? 0) + count);
  }
}
