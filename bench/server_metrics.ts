// The counters of servers under test, read from their private /metrics listeners (METRICS_ADDR):
// how many writes their client sockets took, against how many lines they delivered.

import { sample, scrapeMetrics } from "../tests/support/metrics.ts";

export interface WriteCounts {
  writes: number;
  deliveries: number;
}

/** The socket writes and deliveries of the servers whose metrics listen on `ports`, added up. */
export async function writeCounts(ports: readonly number[]): Promise<WriteCounts> {
  const each = await Promise.all(ports.map(async (port) => {
    const families = await scrapeMetrics(port);
    return {
      writes: sample(families, "chat_socket_writes_total"),
      deliveries: sample(families, "chat_deliveries_total"),
    };
  }));
  const sum = (key: keyof WriteCounts) => each.reduce((total, e) => total + e[key], 0);
  return { writes: sum("writes"), deliveries: sum("deliveries") };
}
