// The private listener on METRICS_ADDR (default 127.0.0.1:9464): Prometheus's /metrics and
// /healthz, for the machine's monitoring, off the public port (contract v1.2).

import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import { type HealthCheck, text } from "./health.ts";

export interface ListenAddress {
  host: string;
  /** 0 = an ephemeral port. */
  port: number;
}

export class MetricsListener {
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  constructor(address: ListenAddress, metrics: Metrics, health: HealthCheck, log: Logger) {
    this.#server = Deno.serve({
      hostname: address.host,
      port: address.port,
      onListen: () => {},
      onError: (err) => {
        log.error("unexpected error serving metrics", { error: err });
        return text(500, "Internal server error\n");
      },
    }, (request) => {
      if (request.method !== "GET" && request.method !== "HEAD") {
        return text(405, "Method not allowed\n", { allow: "GET, HEAD" });
      }
      const path = new URL(request.url).pathname;
      if (path === "/metrics") {
        return text(200, metrics.expose(), { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
      }
      if (path === "/healthz") return health.respond();
      return text(404, "Not found\n");
    });
  }

  get port(): number {
    return this.#server.addr.port;
  }

  async close(): Promise<void> {
    await this.#server.shutdown();
  }
}
