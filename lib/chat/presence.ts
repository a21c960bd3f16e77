// Who is online across every server on the database. Each server keeps its logged-in usernames
// in chat_servers, written when they change and every few seconds; a server not seen for
// PRESENCE_EXPIRY_SEC (a killed one) stops counting. The embedded database serves one server,
// which then needs none of this.

import { type Database, databaseErrorFields } from "../store/db.ts";
import type { Hub } from "./hub.ts";
import type { Logger } from "../core/log.ts";

const HEARTBEAT_MS = 5000;
/** Under the contract's 30 s, with room for a few missed heartbeats. */
const PRESENCE_EXPIRY_SEC = 20;
/** Changes within this window are written together (a login burst is one write). */
const PUBLISH_DELAY_MS = 50;
/** list_users waits at most this long for the database before answering from the last reading. */
const READ_TIMEOUT_MS = 2000;

const PUBLISH_SQL = `INSERT INTO chat_servers (server_id, usernames, seen_at) VALUES ($1::text, $2::text[], now())
  ON CONFLICT (server_id) DO UPDATE SET usernames = EXCLUDED.usernames, seen_at = now()`;
const OTHERS_SQL = `SELECT DISTINCT unnest(usernames) AS username FROM chat_servers
  WHERE server_id <> $1::text AND seen_at > now() - make_interval(secs => $2::int)`;
const FORGET_DEAD_SQL = `DELETE FROM chat_servers WHERE seen_at < now() - interval '1 hour'`;
const REMOVE_SQL = `DELETE FROM chat_servers WHERE server_id = $1::text`;

export class Presence {
  readonly #db: Database;
  readonly #hub: Hub;
  readonly #log: Logger;
  readonly serverId: string;
  readonly #shared: boolean;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #publishTimer: ReturnType<typeof setTimeout> | undefined;
  #publishing: Promise<void> | undefined;
  #dirty = false;
  #stopped = false;
  /** Other servers' users as last read, for when the database does not answer. */
  #lastOthers: string[] = [];

  constructor(db: Database, hub: Hub, log: Logger) {
    this.#db = db;
    this.#hub = hub;
    this.#log = log;
    this.serverId = crypto.randomUUID();
    this.#shared = db.kind === "postgres";
  }

  async start(): Promise<void> {
    if (!this.#shared) return;
    this.#hub.onUsersChanged = () => this.#schedulePublish();
    await this.#db.query(FORGET_DEAD_SQL, [], { lane: "control" }).catch(() => {});
    await this.#publish();
    this.#heartbeat = setInterval(() => void this.#publish(), HEARTBEAT_MS);
  }

  /** The users logged in on any live server, sorted. */
  async usernames(): Promise<string[]> {
    const local = this.#hub.usernames();
    if (!this.#shared) return local;
    try {
      const rows = await this.#db.query<{ username: string }>(OTHERS_SQL, [this.serverId, PRESENCE_EXPIRY_SEC], {
        timeoutMs: READ_TIMEOUT_MS,
        lane: "control",
      });
      this.#lastOthers = rows.map((r) => r.username);
    } catch (err) {
      this.#log.warn("cannot read other servers' users; listing the last known", databaseErrorFields(err));
    }
    return [...new Set([...local, ...this.#lastOthers])].sort();
  }

  /** Stops publishing and removes this server's row, so its users stop counting at once. */
  async stop(): Promise<void> {
    if (!this.#shared || this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#publishTimer);
    await this.#publishing;
    await this.#db.query(REMOVE_SQL, [this.serverId], { timeoutMs: READ_TIMEOUT_MS, lane: "control" }).catch(() => {});
  }

  #schedulePublish(): void {
    if (this.#publishTimer !== undefined || this.#stopped) return;
    this.#publishTimer = setTimeout(() => {
      this.#publishTimer = undefined;
      void this.#publish();
    }, PUBLISH_DELAY_MS);
  }

  /** Writes this server's users; one write at a time, and one more if they changed meanwhile. */
  #publish(): Promise<void> {
    if (this.#publishing) {
      this.#dirty = true;
      return this.#publishing;
    }
    this.#publishing = (async () => {
      do {
        this.#dirty = false;
        if (this.#stopped) break;
        try {
          await this.#db.query(PUBLISH_SQL, [this.serverId, this.#hub.usernames()], {
            timeoutMs: HEARTBEAT_MS,
            lane: "control",
          });
        } catch (err) {
          this.#log.warn("cannot publish this server's users", databaseErrorFields(err));
          break;
        }
      } while (this.#dirty);
      this.#publishing = undefined;
    })();
    return this.#publishing;
  }
}
