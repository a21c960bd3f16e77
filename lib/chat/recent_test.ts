import { assertEquals } from "../../tests/support/assert.ts";
import type { HistoryQuery } from "../wire/protocol.ts";
import type { StoredMessage } from "../store/message_stream.ts";
import { RecentMessages } from "./recent.ts";

function message(id: number): StoredMessage {
  return { id, sender: "u", message: `m${id}`, timestamp: "2026-01-15T10:30:00" };
}

/** What the database would answer: the reference the window must match whenever it answers. */
function reference(all: StoredMessage[], query: HistoryQuery): StoredMessage[] {
  const inRange = all.filter((m) => m.id > (query.after ?? -1) && m.id < (query.before ?? Infinity));
  return query.after !== undefined ? inRange.slice(0, query.limit) : inRange.slice(-query.limit);
}

/** A seeded generator, so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
}

Deno.test("RecentMessages answers exactly like the database, or not at all", () => {
  const next = random(42);
  let answered = 0;
  for (let round = 0; round < 200; round++) {
    // Ids with gaps, as failed inserts leave them.
    const all: StoredMessage[] = [];
    let id = 0;
    const total = Math.floor(next() * 40);
    for (let i = 0; i < total; i++) all.push(message(id += 1 + Math.floor(next() * 3)));
    const capacity = 1 + Math.floor(next() * 20);
    const recent = new RecentMessages(capacity);
    // Start-up loads capacity + 1 rows, as MessageService.loadRecent does; later commits append.
    const loaded = Math.floor(next() * total);
    const initial = all.slice(0, loaded).slice(-(capacity + 1));
    recent.reset(initial.slice(-capacity), initial.length <= capacity);
    for (let i = loaded; i < total; i += 3) recent.append(all.slice(i, i + 3));
    for (let q = 0; q < 30; q++) {
      const query: HistoryQuery = {
        limit: 1 + Math.floor(next() * 15),
        before: next() < 0.5 ? undefined : Math.floor(next() * (id + 3)),
        after: next() < 0.5 ? undefined : Math.floor(next() * (id + 3)),
      };
      const got = recent.query(query);
      if (got === undefined) continue;
      answered++;
      assertEquals(got, reference(all, query), `round ${round}, query ${JSON.stringify(query)}`);
    }
  }
  // The window must actually serve most queries, or it is useless.
  assertEquals(answered > 2000, true, `answered only ${answered} of 6000`);
});

Deno.test("RecentMessages serves the newest page from memory once it is full", () => {
  const recent = new RecentMessages(3);
  recent.reset([], true);
  recent.append([message(1), message(2), message(3), message(4)]);
  assertEquals(recent.query({ limit: 2, before: undefined, after: undefined })?.map((m) => m.id), [3, 4]);
  assertEquals(recent.query({ limit: 3, before: undefined, after: undefined })?.map((m) => m.id), [2, 3, 4]);
  // Message 1 fell out of the window, so a page that needs it must go to the database.
  assertEquals(recent.query({ limit: 4, before: undefined, after: undefined }), undefined);
  assertEquals(recent.query({ limit: 5, before: undefined, after: 0 }), undefined);
  assertEquals(recent.query({ limit: 5, before: undefined, after: 1 })?.map((m) => m.id), [2, 3, 4]);
});

Deno.test("RecentMessages keeps answering exactly across many appends that wrap past its capacity", () => {
  const capacity = 5;
  const recent = new RecentMessages(capacity);
  recent.reset([], true);
  const all: StoredMessage[] = [];
  let id = 0;
  // Batch sizes below, at and above the capacity, so the dropped prefix is compacted many times.
  for (const size of [1, 2, 3, 4, 5, 6, 1, 1, 1, 11, 2, 3, 1, 7, 5, 5, 1]) {
    const batch = Array.from({ length: size }, () => message(++id));
    all.push(...batch);
    recent.append(batch);
    const newest = all.slice(-capacity);
    assertEquals(recent.query({ limit: capacity, before: undefined, after: undefined }), newest, `after id ${id}`);
    assertEquals(recent.query({ limit: capacity, before: undefined, after: newest[0].id - 1 }), newest);
    assertEquals(recent.query({ limit: 2, before: id, after: undefined }), all.slice(-3, -1));
    if (all.length > capacity) {
      assertEquals(recent.query({ limit: capacity + 1, before: undefined, after: undefined }), undefined);
      assertEquals(recent.query({ limit: 1, before: undefined, after: newest[0].id - 2 }), undefined);
    }
  }
});

Deno.test("RecentMessages takes a batch far larger than its capacity", () => {
  const recent = new RecentMessages(3);
  recent.reset([message(1)], true);
  recent.append(Array.from({ length: 200_000 }, (_, i) => message(i + 2)));
  assertEquals(recent.query({ limit: 10, before: undefined, after: undefined })?.map((m) => m.id), undefined);
  assertEquals(recent.query({ limit: 3, before: undefined, after: undefined })?.map((m) => m.id), [
    199_999,
    200_000,
    200_001,
  ]);
});
