// Registration and login: bcrypt hashing off the event loop, constant-shape failures, throttling.

import bcryptModule from "bcrypt";
import { ChatError, unavailable } from "../core/errors.ts";
import type { Database } from "../store/db.ts";
import { DatabaseError, databaseErrorFields } from "../store/db.ts";
import type { Logger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import { checkPassword, checkUsername, isValidPassword, isValidUsername } from "../wire/protocol.ts";
import type { LoginThrottle } from "../store/login_throttle.ts";
import { TokenBuckets } from "../core/rate_limit.ts";
import { FairHashQueue } from "./hash_queue.ts";
import type { User } from "./session.ts";

/** npm:bcrypt's promise API runs the hash on a worker thread, so delivery never waits for it. */
const bcrypt = bcryptModule as unknown as {
  hash(password: string, cost: number): Promise<string>;
  compare(password: string, hash: string): Promise<boolean>;
};

/**
 * bcrypt runs on worker threads; more of them than cores would take CPU from the event loop that
 * delivers messages, so hashes beyond this wait their turn (a login burst then queues, while
 * delivery keeps a core).
 */
const HASH_SLOTS = Math.max(1, (navigator.hardwareConcurrency ?? 2) - 1);
/** How long a login attempt may wait for the attempts ahead of it on its buckets. */
const MAX_THROTTLE_WAIT_MS = 30_000;

const FIND_USER_SQL = `SELECT id, username, password_hash FROM users
  WHERE lower(username) = lower($1::text) ORDER BY (username = $1::text) DESC, id LIMIT 1`;
const NAME_TAKEN_SQL = `SELECT 1 AS taken FROM users WHERE lower(username) = lower($1::text) LIMIT 1`;
const INSERT_USER_SQL = `INSERT INTO users (username, password_hash)
  SELECT $1::text, $2::text WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower($1::text))
  RETURNING id`;

export interface AuthOptions {
  bcryptCost: number;
  metrics?: Metrics;
}

export class AuthService {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #cost: number;
  readonly #metrics: Metrics;
  readonly #throttle: LoginThrottle;
  readonly #dummyHash = cachedUnlessRejected(() => this.#native(bcrypt.hash("not-a-real-password", this.#cost)));
  /** bcrypt work running on the native thread pool; it must not outlive the service (see drain()). */
  readonly #running = new Set<Promise<unknown>>();
  readonly #hashes = new FairHashQueue(HASH_SLOTS);
  readonly #throttleLogs = new TokenBuckets(0.1, 1);
  /** Login attempts running on this server, by throttle bucket. */
  readonly #attempts = new Map<string, Set<Promise<void>>>();

  constructor(db: Database, throttle: LoginThrottle, log: Logger, options: AuthOptions) {
    this.#db = db;
    this.#throttle = throttle;
    this.#log = log;
    this.#cost = options.bcryptCost;
    this.#metrics = options.metrics ?? new Metrics();
  }

  /** Creates a user; does not log anyone in. Throttled per address (counted when the attempt starts). */
  async register(usernameValue: unknown, passwordValue: unknown, address: string): Promise<void> {
    const username = checkUsername(usernameValue);
    const password = checkPassword(passwordValue);
    let waitMs: number;
    try {
      waitMs = await this.#throttle.takeRegistration(address);
    } catch (err) {
      throw this.#unavailable(err);
    }
    if (waitMs > 0) {
      if (this.#throttleLogs.take(`register:${address}`) === 0) {
        this.#log.warn("registration throttled", { address, retry_after_ms: waitMs });
      }
      throw new ChatError("too_many_attempts", "Too many registrations from your address, try again later", {
        retryAfterMs: waitMs,
      });
    }
    // Checked before hashing, so that taken names cost no bcrypt work; the insert checks again.
    if ((await this.#query(NAME_TAKEN_SQL, [username])).length > 0) throw usernameTaken();
    const hash = await this.#hashes.run(address, () => this.#native(bcrypt.hash(password, this.#cost)));
    let inserted: unknown[];
    try {
      inserted = await this.#db.query(INSERT_USER_SQL, [username, hash]);
    } catch (err) {
      if (err instanceof DatabaseError && err.isUniqueViolation) throw usernameTaken();
      throw this.#unavailable(err);
    }
    if (inserted.length === 0) throw usernameTaken();
    this.#log.info("user registered", { username });
  }

  /** Verifies credentials. Unknown user and wrong password fail alike, after the same bcrypt work. */
  async login(usernameValue: unknown, passwordValue: unknown, address: string): Promise<User> {
    const usernameKey = isValidUsername(usernameValue) ? usernameValue.toLowerCase() : undefined;
    const buckets = usernameKey === undefined ? [`addr:${address}`] : [`user:${usernameKey}`, `addr:${address}`];
    // Only what can be a username has a bucket of its own (and is logged: people type passwords
    // into the wrong field); guesses at anything else count against the address alone.
    const loggedName = usernameKey ?? "(invalid username)";
    const waitMs = await this.#take(usernameKey, address, buckets);
    if (waitMs > 0) {
      // Throttled attempts are what a brute force is made of: log one per address every 10 s.
      if (this.#throttleLogs.take(address) === 0) {
        this.#log.warn("login throttled", { username: loggedName, address, retry_after_ms: waitMs });
      }
      this.#metrics.failedLogins.inc();
      throw new ChatError("too_many_attempts", "Too many failed logins, try again later", { retryAfterMs: waitMs });
    }
    // While it runs, attempts on the same buckets that find them empty wait for it (see #take).
    const running = Promise.withResolvers<void>();
    for (const key of buckets) {
      let attempts = this.#attempts.get(key);
      if (!attempts) this.#attempts.set(key, attempts = new Set());
      attempts.add(running.promise);
    }
    try {
      return await this.#verify(usernameValue, passwordValue, address, loggedName);
    } finally {
      for (const key of buckets) {
        const attempts = this.#attempts.get(key);
        attempts?.delete(running.promise);
        if (attempts?.size === 0) this.#attempts.delete(key);
      }
      running.resolve();
    }
  }

  /** Checks the password (after the attempt was counted); clears the username's count on success. */
  async #verify(
    usernameValue: unknown,
    passwordValue: unknown,
    address: string,
    loggedName: string,
  ): Promise<User> {
    const row = isValidUsername(usernameValue)
      ? (await this.#query<{ id: number; username: string; password_hash: string }>(FIND_USER_SQL, [usernameValue]))[0]
      : undefined;
    const password = isValidPassword(passwordValue) ? passwordValue : "";
    const hash = row?.password_hash ?? await this.#dummy();
    let matches = false;
    try {
      matches = (await this.#hashes.run(address, () => this.#native(bcrypt.compare(password, hash)))) &&
        row !== undefined && password !== "";
    } catch (err) {
      // A stored hash bcrypt cannot read is a failed login, not a crash.
      this.#log.warn("unreadable password hash", { user_id: row?.id, error: String(err) });
    }
    if (!matches || !row) {
      this.#log.info("login failed", { username: loggedName, address });
      this.#metrics.failedLogins.inc();
      throw new ChatError("invalid_credentials", "Invalid username or password");
    }
    await this.#throttle.loginSucceeded(row.username.toLowerCase(), address).catch((err) =>
      void this.#unavailable(err)
    );
    this.#log.info("user logged in", { username: row.username, user_id: row.id, address });
    return { id: row.id, username: row.username };
  }

  /**
   * Counts a login attempt when it starts, so that guesses made at once count as many as in turn.
   * An attempt that finds its buckets empty while others on them are still running here waits for
   * them, as it would have in turn: one that succeeds gives its attempt back (forty tabs of one
   * user logging in at once all get in), one that fails does not (guesses stay throttled).
   */
  async #take(usernameKey: string | undefined, address: string, buckets: string[]): Promise<number> {
    const deadline = performance.now() + MAX_THROTTLE_WAIT_MS;
    while (true) {
      let waitMs: number;
      try {
        waitMs = await this.#throttle.takeLogin(usernameKey, address);
      } catch (err) {
        throw this.#unavailable(err);
      }
      const running = buckets.flatMap((key) => [...this.#attempts.get(key) ?? []]);
      if (waitMs === 0 || running.length === 0 || performance.now() > deadline) return waitMs;
      await Promise.race(running);
    }
  }

  /** Starts computing the hash that unknown users are checked against, so the first miss is not faster. */
  warmUp(): void {
    // A failure here is retried by the first login that needs the hash.
    this.#dummy().catch((err) => this.#log.warn("dummy hash failed", { error: String(err) }));
  }

  /**
   * Settles once no bcrypt work is running. A hash finishing on the native thread pool after its
   * runtime is gone crashes the process (it happened between two test files), so closing waits.
   */
  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }

  #native<T>(work: Promise<T>): Promise<T> {
    this.#running.add(work);
    const forget = () => void this.#running.delete(work);
    work.then(forget, forget);
    return work;
  }

  #dummy(): Promise<string> {
    return this.#dummyHash();
  }

  async #query<T extends Record<string, unknown>>(text: string, params: unknown[]): Promise<T[]> {
    try {
      return await this.#db.query<T>(text, params);
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  #unavailable(err: unknown): ChatError {
    this.#log.error("database error during authentication", databaseErrorFields(err));
    return unavailable(err);
  }
}

/**
 * `compute`'s promise, made once and shared while it is pending or fulfilled; a rejection is
 * forgotten, so that the next call tries again instead of failing forever.
 */
export function cachedUnlessRejected<T>(compute: () => Promise<T>): () => Promise<T> {
  let cached: Promise<T> | undefined;
  return () => {
    if (cached) return cached;
    const attempt = compute();
    cached = attempt;
    attempt.catch(() => {
      if (cached === attempt) cached = undefined;
    });
    return attempt;
  };
}

function usernameTaken(): ChatError {
  return new ChatError("username_taken", "Username already exists");
}
