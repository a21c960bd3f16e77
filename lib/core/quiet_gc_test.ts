import { assertEquals } from "../../tests/support/assert.ts";
import { QuietCollector } from "./quiet_gc.ts";

const MB = 1024 * 1024;

function collector(heap: { used: number }) {
  const runs: number[] = [];
  const quiet = new QuietCollector({
    gc: () => {
      runs.push(heap.used);
      heap.used = 30 * MB; // what the collection left
    },
    minGrowthBytes: 16 * MB,
    size: () => heap.used,
  });
  return { quiet, runs };
}

Deno.test("quiet gc: collects once the heap grew by the threshold and a tick passed with no request", () => {
  const heap = { used: 20 * MB };
  const { quiet, runs } = collector(heap);
  quiet.tick(false, 0);
  heap.used = 50 * MB;
  quiet.tick(true, 1000); // busy: never
  assertEquals(runs, []);
  quiet.tick(false, 2000);
  assertEquals(runs, [50 * MB]);
  assertEquals(quiet.collections, 1);
});

Deno.test("quiet gc: not for growth under the threshold, and not twice within its interval", () => {
  const heap = { used: 20 * MB };
  const { quiet, runs } = collector(heap);
  quiet.tick(false, 0);
  heap.used = 35 * MB; // grew by 15 MB
  quiet.tick(false, 1000);
  assertEquals(runs, []);
  heap.used = 60 * MB;
  quiet.tick(false, 2000);
  heap.used = 60 * MB; // grew by 30 MB again right after
  quiet.tick(false, 3000);
  assertEquals(runs.length, 1, "collected again within the minimum interval");
  quiet.tick(false, 13_000);
  assertEquals(runs.length, 2);
});

Deno.test("quiet gc: without an exposed gc() it does nothing", () => {
  const quiet = new QuietCollector({ gc: undefined, size: () => 1e12 });
  if ((globalThis as { gc?: unknown }).gc === undefined) {
    quiet.tick(false, 0);
    quiet.tick(false, 60_000);
    assertEquals(quiet.collections, 0);
  }
});
