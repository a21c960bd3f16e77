// /healthz, as HTTP_PORT and METRICS_ADDR answer it: 200 while the server accepts connections and
// its database answers, 503 with the reason otherwise. One database probe at a time, shared by
// every probe that arrives meanwhile, on the database's control connection (never behind users').

import type { Logger } from "../core/log.ts";
import type { BusState } from "../store/bus.ts";
import type { Database } from "../store/db.ts";
import type { ConnectionRegistry } from "./registry.ts";

/** How long /healthz waits for the database's answer to `SELECT 1`. */
const HEALTH_QUERY_TIMEOUT_MS = 2000;

export class HealthCheck {
  readonly #registry: ConnectionRegistry;
  readonly #db: Database;
  readonly #log: Logger;
  readonly #bus: BusState;
  #probe: Promise<string | undefined> | undefined;

  constructor(registry: ConnectionRegistry, db: Database, log: Logger, bus: BusState) {
    this.#bus = bus;
    this.#registry = registry;
    this.#db = db;
    this.#log = log;
  }

  async respond(): Promise<Response> {
    if (!this.#registry.accepting) return json(503, { status: "unavailable", reason: "server is shutting down" });
    this.#probe ??= this.#queryDatabase().finally(() => this.#probe = undefined);
    const problem = await this.#probe;
    if (problem) return json(503, { status: "unavailable", reason: problem });
    // A NATS bus that is away degrades delivery between servers (they catch up from the database)
    // but this server serves: still 200.
    if (this.#bus.kind === "nats") return json(200, { status: "ok", bus: this.#bus.up ? "nats" : "degraded" });
    return json(200, { status: "ok" });
  }

  /** undefined when the database answers, else why not. */
  async #queryDatabase(): Promise<string | undefined> {
    try {
      await this.#db.query("SELECT 1", [], { timeoutMs: HEALTH_QUERY_TIMEOUT_MS, lane: "control" });
      return undefined;
    } catch (err) {
      this.#log.warn("health check: database unreachable", { error: err instanceof Error ? err.message : String(err) });
      return "database unreachable";
    }
  }
}

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

export function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers } });
}
