// paced fan-out: 1,000 logged-in clients, 10 of them sending 500 messages a second in total (open
// loop, paced every 2 ms). Send-to-receive latency at 100 receivers (the other 900 count their
// lines, which proves delivery for a fraction of the load generator's CPU), next to the bare relay
// serving as many clients at the same rate. Server and relay run in alternating rounds.

import { cpuRows, latencyRows, measureInterleaved, trafficProblems } from "../measure.ts";
import { fmt } from "../out.ts";
import { startRelay } from "../servers.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  connectPlain,
  ratioText,
  registerUsers,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  usernames,
} from "./common.ts";

export async function paced(ctx: BenchContext): Promise<ScenarioReport> {
  const params = {
    clients: 1000,
    users: 100,
    senders: 10,
    observers: 100,
    messages_per_s: 500,
    message_chars: 100,
    rounds: ctx.quick ? 2 : 3,
    round_s: ctx.quick ? 1 : 3,
    warmup_s: ctx.quick ? 0.5 : 1,
    rewarm_s: 0.3,
  };
  const traffic = {
    senders: params.senders,
    ratePerSec: params.messages_per_s,
    maxUnackedPerSender: 1000,
    observers: params.observers,
    messageChars: params.message_chars,
  };
  const names = usernames("paced", params.users);
  const server = await startChatServer(ctx);
  const relay = await startRelay().catch(async (err) => {
    await server.stop();
    throw err;
  });
  const clientSets = [];
  try {
    await registerUsers(server.port, names);
    const serverClients = await connectLoggedIn(server.port, params.clients, {
      usernames: names,
      readBufferBytes: 16384,
    });
    clientSets.push(serverClients);
    const relayClients = await connectPlain(relay.port, params.clients, 16384);
    clientSets.push(relayClients);
    const [measured, ceiling] = await measureInterleaved([
      {
        ...traffic,
        mode: "server",
        clients: serverClients,
        pid: server.pid,
        backendPattern: ctx.db.backendPattern,
        label: "paced (server)",
      },
      { ...traffic, mode: "relay", clients: relayClients, pid: relay.pid, label: "paced (relay)" },
    ], { rounds: params.rounds, warmupS: params.warmup_s, rewarmS: params.rewarm_s, roundS: params.round_s });
    for (const set of clientSets) closeAll(set);
    clientSets.length = 0;
    const p99 = measured.latency.p99_ms;
    const p99Ratio = p99 !== null && ceiling.latency.p99_ms ? p99 / ceiling.latency.p99_ms : null;
    return {
      scenario: "paced",
      params,
      results: measured as unknown as Record<string, unknown>,
      ceiling: { kind: "bare relay (bench/relay.ts)", ...ceiling },
      loadgen: measured.loadgen,
      targets: [{
        name: "paced fan-out p99 (no target; vs relay)",
        target: "info",
        measured: `${fmt(p99)} vs ${fmt(ceiling.latency.p99_ms)} ms (${ratioText(p99Ratio)})`,
        ratio: p99Ratio === null ? null : Math.round(p99Ratio * 1000) / 1000,
        pass: null,
      }],
      problems: [
        ...serverProblems(server),
        ...trafficProblems("server", measured),
        ...trafficProblems("relay", ceiling),
      ],
      rows: [
        ["messages/s (acknowledged)", fmt(measured.messages_per_s), fmt(ceiling.messages_per_s), ""],
        [
          "deliveries/s",
          fmt(measured.deliveries_per_s),
          fmt(ceiling.deliveries_per_s),
          ratioText(measured.deliveries_per_s / ceiling.deliveries_per_s),
        ],
        ...latencyRows("latency", measured.latency, ceiling.latency),
        ...cpuRows(measured, ceiling),
      ],
    };
  } finally {
    for (const set of clientSets) closeAll(set);
    await Promise.all([server.stop(), relay.stop()]);
  }
}
