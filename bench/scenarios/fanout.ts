// fan-out: 50 logged-in clients, 10 of them sending with up to 10 unacknowledged messages each.
// Deliveries per second, send-to-receive latency at every receiver, missed and out-of-order
// deliveries, and the server's CPU per 1,000 deliveries, next to the bare relay (bench/relay.ts)
// serving the same clients and load: closed loop as the server gets it, and paced at the server's
// message rate. Server and relay run in alternating rounds.

import { cpuRows, latencyRows, measureInterleaved, trafficProblems } from "../measure.ts";
import { fmt } from "../out.ts";
import { startRelay, stopAll } from "../servers.ts";
import { round } from "../stats.ts";
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

export async function fanout(ctx: BenchContext): Promise<ScenarioReport> {
  const params = {
    clients: 50,
    senders: 10,
    window: 10,
    message_chars: 100,
    rounds: ctx.quick ? 2 : 4,
    round_s: ctx.quick ? 1 : 2.5,
    warmup_s: ctx.quick ? 0.5 : 1,
    rewarm_s: 0.3,
  };
  const traffic = { senders: params.senders, window: params.window, messageChars: params.message_chars };
  const server = await startChatServer(ctx);
  // The paced relay run needs a relay of its own: a relay sends every line to every connection.
  const relays = await Promise.all([startRelay(), startRelay()]).catch(async (err) => {
    await Promise.all([server.stop(), stopAll()]);
    throw err;
  });
  const [relay, relay2] = relays;
  const clientSets = [];
  try {
    const names = usernames("fan", params.clients);
    await registerUsers(server.port, names);
    const serverClients = await connectLoggedIn(server.port, params.clients, { usernames: names });
    clientSets.push(serverClients);
    const relayClients = await connectPlain(relay.port, params.clients);
    clientSets.push(relayClients);
    const matchedClients = await connectPlain(relay2.port, params.clients);
    clientSets.push(matchedClients);
    const [measured, ceiling, matched] = await measureInterleaved([
      {
        ...traffic,
        mode: "server",
        clients: serverClients,
        pid: server.pid,
        backendPattern: ctx.db.backendPattern,
        label: "fan-out (server)",
      },
      { ...traffic, mode: "relay", clients: relayClients, pid: relay.pid, label: "fan-out (relay)" },
      {
        ...traffic,
        window: undefined,
        rateOf: 0,
        // Backlog room so that pacing, not the window, sets the rate.
        maxUnackedPerSender: 10 * params.window,
        mode: "relay",
        clients: matchedClients,
        pid: relay2.pid,
        label: "fan-out (relay at the server's rate)",
      },
    ], { rounds: params.rounds, warmupS: params.warmup_s, rewarmS: params.rewarm_s, roundS: params.round_s });
    for (const set of clientSets) closeAll(set);
    clientSets.length = 0;
    const problems = serverProblems(server);

    const cpuRatio = measured.cpu_ms_per_1000_deliveries !== null && ceiling.cpu_ms_per_1000_deliveries
      ? measured.cpu_ms_per_1000_deliveries / ceiling.cpu_ms_per_1000_deliveries
      : null;
    const matchedRatio = measured.cpu_ms_per_1000_deliveries !== null && matched.cpu_ms_per_1000_deliveries
      ? measured.cpu_ms_per_1000_deliveries / matched.cpu_ms_per_1000_deliveries
      : null;
    const c = measured.counts;
    return {
      scenario: "fanout",
      params,
      results: measured as unknown as Record<string, unknown>,
      ceiling: { kind: "bare relay (bench/relay.ts)", ...ceiling, at_server_rate: matched },
      loadgen: measured.loadgen,
      targets: [
        {
          name: "fan-out server CPU per delivery",
          target: "<= 1.2x the bare relay's",
          measured: `${fmt(measured.cpu_ms_per_1000_deliveries)} vs ${
            fmt(ceiling.cpu_ms_per_1000_deliveries)
          } ms/1000 (${ratioText(cpuRatio)})`,
          ratio: cpuRatio === null ? null : round(cpuRatio, 3),
          pass: cpuRatio !== null && cpuRatio <= 1.2,
        },
        {
          name: "fan-out server CPU per delivery, relay paced at the server's rate",
          target: "info",
          measured: `${fmt(measured.cpu_ms_per_1000_deliveries)} vs ${
            fmt(matched.cpu_ms_per_1000_deliveries)
          } ms/1000 (${ratioText(matchedRatio)})`,
          ratio: matchedRatio === null ? null : round(matchedRatio, 3),
          pass: null,
        },
        {
          name: "fan-out missed / out of order",
          target: "0 / 0",
          measured: `${c.missed} / ${c.out_of_order}`,
          ratio: null,
          pass: c.missed === 0 && c.out_of_order === 0 && measured.drained,
        },
      ],
      problems: [
        ...problems,
        ...trafficProblems("server", measured),
        ...trafficProblems("relay", ceiling),
        ...trafficProblems("relay at the server's rate", matched),
      ],
      rows: [
        [
          "messages/s (acknowledged)",
          fmt(measured.messages_per_s),
          fmt(ceiling.messages_per_s),
          ratioText(measured.messages_per_s / ceiling.messages_per_s),
        ],
        [
          "deliveries/s",
          fmt(measured.deliveries_per_s),
          fmt(ceiling.deliveries_per_s),
          ratioText(measured.deliveries_per_s / ceiling.deliveries_per_s),
        ],
        ...latencyRows("latency", measured.latency, ceiling.latency),
        ...cpuRows(measured, ceiling),
        ["relay at the server's rate: messages/s", "", fmt(matched.messages_per_s), ""],
        [
          "relay at the server's rate: CPU ms per 1,000 deliveries",
          "",
          fmt(matched.cpu_ms_per_1000_deliveries),
          ratioText(matchedRatio),
        ],
        ["relay at the server's rate: latency p99 (ms)", "", fmt(matched.latency.p99_ms), ""],
      ],
    };
  } finally {
    for (const set of clientSets) closeAll(set);
    await Promise.all([server.stop(), relay.stop(), relay2.stop()]);
  }
}
