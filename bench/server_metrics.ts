// The counters of servers under test, read from their private /metrics listeners (METRICS_ADDR):
// how many writes their client sockets took, against how many lines they delivered.

/** A port free at the time of asking, for a server's HTTP_PORT or METRICS_ADDR. */
export function freePort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return port;
}

export interface WriteCounts {
  writes: number;
  deliveries: number;
}

/** The socket writes and deliveries of the servers whose metrics listen on `ports`, added up. */
export async function writeCounts(ports: readonly number[]): Promise<WriteCounts> {
  const each = await Promise.all(ports.map(async (port) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return { writes: counter(text, "chat_socket_writes_total"), deliveries: counter(text, "chat_deliveries_total") };
  }));
  const sum = (key: keyof WriteCounts) => each.reduce((total, e) => total + e[key], 0);
  return { writes: sum("writes"), deliveries: sum("deliveries") };
}

function counter(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics`);
  return Number(line.slice(name.length + 1));
}
