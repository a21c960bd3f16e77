// deno-lint-ignore-file no-console -- a measuring program: its report is its output
// What three servers cost per delivery against one, by how many clients each message reaches.
// Every server does work per message: the storing one commits smaller batches than one server
// alone would, and the others learn its rows and encode its line. So at a small fan-out the three
// cost more per delivery than one, and at a large one they cost what one does. Runs three servers
// on one database (NOTIFY, or NATS with --nats) in a closed loop, then one server on a database of
// its own paced at the rate the three reached, with the same clients and senders, and prints both
// sides' CPU per 1,000 deliveries (PostgreSQL on DATABASE_URL or 127.0.0.1:5432; NATS on NATS_URL
// or nats://127.0.0.1:4222).
//
//   deno run -A bench/floor/cluster_fanout.ts --clients 60 [--nats] [--seconds 8]

import { parseArgs } from "node:util";
import type { LoadClient } from "../client.ts";
import { openBenchDatabase } from "../database.ts";
import { measureTraffic, type TrafficResult } from "../measure.ts";
import { closeAll, connectLoggedIn, registerUsers, usernames } from "../scenarios/common.ts";
import { startServer } from "../servers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    clients: { type: "string", default: "60" },
    seconds: { type: "string", default: "8" },
    nats: { type: "boolean", default: false },
  },
});
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const natsUrl = values.nats ? Deno.env.get("NATS_URL") ?? "nats://127.0.0.1:4222" : undefined;

/** `servers` servers on a database of their own, `clients` clients spread over them; one run. */
async function run(servers: number, rate: number | undefined, suffix: string): Promise<TrafficResult> {
  const db = await openBenchDatabase(false, Deno.env.get("DATABASE_URL"), suffix);
  const env = { ...db.serverEnv, DB_POOL_SIZE: "6", ...(natsUrl && servers > 1 ? { NATS_URL: natsUrl } : {}) };
  const processes = [];
  const sets: LoadClient[][] = [];
  try {
    for (let i = 0; i < servers; i++) processes.push(await startServer({ env }));
    const names = usernames("fan", clients);
    await registerUsers(processes[0].port, names);
    for (const [k, server] of processes.entries()) {
      const mine = names.filter((_, i) => i % servers === k);
      sets.push(await connectLoggedIn(server.port, mine.length, { usernames: mine, concurrency: 8 }));
    }
    return await measureTraffic(
      {
        senders: 6,
        messageChars: 100,
        ...(rate === undefined ? { window: 10 } : { ratePerSec: rate, maxUnackedPerSender: 100 }),
        mode: "server",
        clients: Array.from({ length: clients }, (_, i) => sets[i % servers][Math.floor(i / servers)]),
        pid: processes[0].pid,
        pids: processes.map((p) => p.pid),
        serverOf: (i) => i % servers,
        label: `${servers} server(s)`,
      },
      1,
      seconds,
    );
  } finally {
    for (const set of sets) closeAll(set);
    await Promise.all(processes.map((p) => p.stop()));
    await db.close();
  }
}

const three = await run(3, undefined, "_three");
const one = await run(1, three.messages_per_s, "_one");
const perDelivery = (r: TrafficResult) => r.cpu_ms_per_1000_deliveries ?? NaN;
console.log(JSON.stringify({
  clients,
  bus: natsUrl ? "nats" : "notify",
  messages_per_s: { three: three.messages_per_s, one: one.messages_per_s },
  cpu_ms_per_1000_deliveries: { three: perDelivery(three), one: perDelivery(one) },
  ratio: Math.round((perDelivery(three) / perDelivery(one)) * 100) / 100,
}));
