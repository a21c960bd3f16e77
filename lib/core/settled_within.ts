// Waiting for work, but not for ever: shutdown steps and closes that must not hang on a peer.

/** Waits for `work` to settle, but not longer than `ms`; a rejection of `work` is thrown. */
export async function settledWithin(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([work, new Promise<void>((resolve) => timer = setTimeout(resolve, Math.max(0, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
