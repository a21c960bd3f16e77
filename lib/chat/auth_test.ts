import { assertEquals, assertRejects } from "../../tests/support/assert.ts";
import { cachedUnlessRejected } from "./auth.ts";
import { sanitized } from "../../tests/support/util.ts";

Deno.test("cachedUnlessRejected computes once while the value is pending or made", sanitized, async () => {
  let calls = 0;
  const get = cachedUnlessRejected(() => Promise.resolve(++calls));
  const [a, b] = await Promise.all([get(), get()]);
  assertEquals([a, b, await get()], [1, 1, 1]);
  assertEquals(calls, 1);
});

Deno.test("cachedUnlessRejected tries again after a failure instead of failing forever", sanitized, async () => {
  let calls = 0;
  const get = cachedUnlessRejected(() =>
    ++calls === 1 ? Promise.reject(new Error("hash failed")) : Promise.resolve(calls)
  );
  await assertRejects(get, "the first call fails");
  assertEquals(await get(), 2, "the second call computes again");
  assertEquals(await get(), 2, "and that success is kept");
  assertEquals(calls, 2);
});
