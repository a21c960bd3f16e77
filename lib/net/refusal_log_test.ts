import { assert, assertEquals } from "../../tests/support/assert.ts";
import { sanitized } from "../../tests/support/util.ts";
import { LINES_PER_INTERVAL, RefusalLog } from "./refusal_log.ts";
import { RecordingLogger } from "../../tests/support/recording_logger.ts";

/** Every refusal counted in the lines, by address lines and summaries. */
function reported(log: RecordingLogger): number {
  return log.lines.reduce((n, line) => n + Number(line.fields.refused), 0);
}

const FULL = "Server is at its connection limit";

Deno.test("RefusalLog gives an address one line per interval, carrying the refusals held back", sanitized, () => {
  const log = new RecordingLogger(["warn"]);
  const refusals = new RefusalLog(log);
  for (const at of [0, 1000, 2000]) refusals.refused("10.0.0.1", FULL, at);
  assertEquals(log.lines.map((l) => [l.msg, l.fields.address, l.fields.refused]), [[
    "connection refused",
    "10.0.0.1",
    1,
  ]]);
  refusals.refused("10.0.0.1", FULL, 10_500);
  assertEquals(log.lines.at(-1)?.fields, { address: "10.0.0.1", reason: FULL, refused: 3 });
  assertEquals(log.lines.length, 2);
});

Deno.test("RefusalLog sums up the refusals past its line budget per reason when the interval ends", sanitized, () => {
  const log = new RecordingLogger(["warn"]);
  const refusals = new RefusalLog(log);
  for (let i = 0; i < 100; i++) refusals.refused(`10.0.${i >> 8}.${i & 255}`, FULL, i);
  refusals.refused("10.9.9.9", "Server is shutting down", 200);
  assertEquals(log.lines.length, LINES_PER_INTERVAL);
  refusals.tick(5000);
  assertEquals(log.lines.length, LINES_PER_INTERVAL, "no summary before the interval ends");
  refusals.tick(10_000);
  const summaries = log.lines.slice(LINES_PER_INTERVAL).map((l) => [l.msg, l.fields.reason, l.fields.refused]);
  assertEquals(summaries, [
    ["connections refused", FULL, 100 - LINES_PER_INTERVAL],
    ["connections refused", "Server is shutting down", 1],
  ]);
  assertEquals(reported(log), 101);
});

Deno.test("RefusalLog forgets an address that stops, its held-back refusals going into the summary", sanitized, () => {
  const log = new RecordingLogger(["warn"]);
  const refusals = new RefusalLog(log);
  for (let i = 0; i < 5; i++) refusals.refused("10.0.0.1", FULL, i);
  assertEquals(refusals.trackedAddresses, 1);
  refusals.tick(25_000);
  assertEquals(refusals.trackedAddresses, 0);
  assertEquals(log.lines.at(-1)?.fields, { reason: FULL, refused: 4, seconds: 25 });
  assertEquals(reported(log), 5);
});

Deno.test("RefusalLog stays bounded under a flood of new addresses and reports every refusal once", sanitized, () => {
  const log = new RecordingLogger(["warn"]);
  const refusals = new RefusalLog(log);
  let maxTracked = 0;
  // 1,000 refusals a second for 100 s, each address twice in a row, ticking every second.
  let count = 0;
  for (let second = 0; second < 100; second++) {
    const now = second * 1000;
    refusals.tick(now);
    for (let i = 0; i < 500; i++) {
      const address = `2001:db8::${second.toString(16)}:${i.toString(16)}`;
      refusals.refused(address, FULL, now + i);
      refusals.refused(address, FULL, now + i);
      count += 2;
    }
    maxTracked = Math.max(maxTracked, refusals.trackedAddresses);
  }
  assert(maxTracked <= 3 * LINES_PER_INTERVAL, `${maxTracked} addresses tracked`);
  const addressLines = log.lines.filter((l) => l.msg === "connection refused").length;
  assert(addressLines <= 11 * LINES_PER_INTERVAL, `${addressLines} address lines in 100 s`);
  refusals.tick(200_000);
  assertEquals(refusals.trackedAddresses, 0);
  assertEquals(reported(log), count);
});
