// Assertions with @std/assert's names, over node:assert (JSR is out of reach here).

import nodeAssert from "node:assert/strict";

export function assert(value: unknown, message?: string): asserts value {
  nodeAssert.ok(value, message);
}

export function assertEquals<T>(actual: unknown, expected: T, message?: string): asserts actual is T {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

export function assertNotEquals(actual: unknown, expected: unknown, message?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, message);
}

export function assertMatch(actual: string, pattern: RegExp, message?: string): void {
  nodeAssert.match(actual, pattern, message);
}

export async function assertRejects(fn: () => Promise<unknown>, message?: string): Promise<void> {
  await nodeAssert.rejects(fn, message);
}

export function assertThrows(fn: () => unknown, message?: string): void {
  nodeAssert.throws(fn, message);
}

export function fail(message: string): never {
  nodeAssert.fail(message);
}
