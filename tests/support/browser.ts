// A real browser for the web page's tests: Debian's Chromium (/usr/bin/chromium) driven by
// playwright-core. Tests that need it are ignored when it is not installed (.ci/run installs it).

import fs from "node:fs";
import type { Browser } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

export const chromiumMissing: boolean = await Deno.stat(CHROMIUM).then(() => false, () => true);

/**
 * Launches headless Chromium. playwright-core probes /proc/sys/fs/binfmt_misc/WSLInterop with
 * fs.existsSync when it loads; Deno refuses /proc/sys to anything short of --allow-all and throws
 * where Node would answer false. That one probe is answered false here, then playwright is loaded.
 */
export async function launchBrowser(): Promise<Browser> {
  const existsSync = fs.existsSync;
  fs.existsSync = (path: fs.PathLike) => {
    try {
      return existsSync(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotCapable) return false;
      throw err;
    }
  };
  const { chromium } = await import("playwright-core");
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}
