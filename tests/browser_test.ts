// The web page in a real browser (Debian's Chromium driven by playwright-core): two pages register
// and chat with each other and with a TCP client, page back through history, show markup as text,
// and ride out a server restart without missing or doubling a message. The picture of two pages
// chatting is written to docs/web.png with UPDATE_SCREENSHOT=1 (elsewhere it goes to a temp file).

import type { Browser, Page } from "playwright-core";
import { assert, assertEquals } from "./support/assert.ts";
import { CHROMIUM, chromiumMissing, launchBrowser } from "./support/browser.ts";
import { backends, type Frame, sanitized, startTestServer, type TestClient, uniqueName } from "./support/helpers.ts";
import { sleep, uniqueWord } from "./support/util.ts";

if (chromiumMissing) {
  // deno-lint-ignore no-console
  console.log(`browser tests skipped: no ${CHROMIUM} (apt-get install chromium)`);
}

const browserTest = { ignore: chromiumMissing, ...sanitized };

/** Opens the page, registers `username` and waits for the chat to show. */
async function openAndRegister(
  browser: Browser,
  url: string,
  username: string,
  viewport = { width: 900, height: 560 },
) {
  const page = await browser.newPage({ viewport });
  const dialogs: string[] = [];
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  await page.goto(url);
  await page.fill("#username", username);
  await page.fill("#password", "secret123");
  await page.click("#register-button");
  await page.waitForSelector("#chat:not([hidden])", { timeout: 10_000 });
  return { page, dialogs, errors };
}

/** Types a message and presses Enter. */
async function say(page: Page, text: string): Promise<void> {
  await page.focus("#message");
  await page.fill("#message", text);
  await page.keyboard.press("Enter");
}

/** The ids of the messages the page shows, in order. */
function shownIds(page: Page): Promise<number[]> {
  return page.$$eval("#messages li[data-id]", (items) => items.map((item) => Number(item.getAttribute("data-id"))));
}

/** Waits until the page shows a message whose text is exactly `text`. */
async function waitForText(page: Page, text: string, timeout = 10_000): Promise<void> {
  await page.locator("#messages li[data-id] .text").getByText(text, { exact: true }).first().waitFor({ timeout });
}

/** Waits until no send is pending on the page. */
async function waitForNoPending(page: Page, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (await page.locator("#messages li.pending").count() > 0) {
    if (Date.now() > deadline) throw new Error("a send is still pending");
    await sleep(50);
  }
}

async function sendFromTcp(client: TestClient, text: string): Promise<Frame> {
  await client.send({ type: "send_message", message: text });
  return await client.waitFor((f) => f.type === "new_message" && f.message === text);
}

Deno.test({
  name: "browser: two pages and a TCP client chat; history pages back; markup shows as text and runs nothing",
  ...browserTest,
  async fn() {
    await using server = await startTestServer(backends[0], { RATE_LIMIT_PER_SEC: "0" }, { httpPort: 0 });
    const url = `http://127.0.0.1:${server.service.httpPort}/`;
    await using terminal = await server.connect();
    const terminalName = String((await terminal.registerAndLogin(uniqueName("terminal"))).username);
    // More history than one page (50), so that scrolling up asks for an older page.
    const tag = uniqueName("h");
    for (let i = 0; i < 60; i++) await terminal.send({ type: "send_message", message: `${tag} ${i}` });
    await terminal.waitFor((f) => f.message === `${tag} 59`);

    const browser = await launchBrowser();
    try {
      const alice = await openAndRegister(browser, url, uniqueName("alice"));
      const bob = await openAndRegister(browser, url, uniqueName("bob"));
      await waitForText(alice.page, `${tag} 59`);
      assert(!(await alice.page.isVisible(`text="${tag} 0"`)), "the first page already holds the oldest message");

      // Scrolling to the top asks for the older page; the order stays by id.
      await alice.page.$eval("#messages", (list) => list.scrollTop = 0);
      await waitForText(alice.page, `${tag} 0`);
      const ids = await shownIds(alice.page);
      assertEquals(ids, [...ids].sort((a, b) => a - b));
      assertEquals(new Set(ids).size, ids.length);

      await say(alice.page, "hello from alice");
      await waitForText(bob.page, "hello from alice");
      await alice.page.waitForSelector("#messages li.own[data-id] >> text=hello from alice");
      await waitForNoPending(alice.page);
      assertEquals((await terminal.waitFor((f) => f.message === "hello from alice")).type, "new_message");

      const markup = "<img src=x onerror=alert(1)>";
      await say(bob.page, markup);
      await waitForText(alice.page, markup);
      assertEquals(await alice.page.$$eval("#messages img", (images) => images.length), 0);
      assertEquals(await bob.page.$$eval("#messages img", (images) => images.length), 0);
      await terminal.waitFor((f) => f.message === markup);

      await sendFromTcp(terminal, "hello from a terminal");
      await waitForText(alice.page, "hello from a terminal");
      await waitForText(bob.page, "hello from a terminal");
      await alice.page.locator("#users li", { hasText: terminalName }).waitFor();

      // An error code becomes a sentence: an empty send is not sent, a too-long one is refused.
      await say(bob.page, "x".repeat(4001));
      await bob.page.waitForSelector("#messages li.failed >> text=/not sent: The server refused the message/");

      const phone = await openAndRegister(browser, url, uniqueName("carol"), { width: 390, height: 700 });
      await waitForText(phone.page, "hello from a terminal");
      const overflow = await phone.page.$eval("html", (html) => html.scrollWidth > html.clientWidth);
      assertEquals(overflow, false, "the page is wider than a phone");

      for (const { dialogs, errors } of [alice, bob, phone]) {
        assertEquals(dialogs, [], "a dialog opened: script ran");
        assertEquals(errors, []);
      }
    } finally {
      await browser.close();
    }
  },
});

/** The sidebar's button for the conversation titled `title`. */
function roomButton(page: Page, list: "room-list" | "dm-list", title: string) {
  return page.locator(`#${list} button.room`, { hasText: title });
}

Deno.test({
  name: "browser: rooms and DMs: create, join, chat, unread badge, typing notice, invite, remove, leave",
  ...browserTest,
  async fn() {
    await using server = await startTestServer(backends[0], { RATE_LIMIT_PER_SEC: "0" }, { httpPort: 0 });
    const url = `http://127.0.0.1:${server.service.httpPort}/`;
    const browser = await launchBrowser();
    try {
      const aliceName = uniqueName("alice");
      const alice = await openAndRegister(browser, url, aliceName);
      const bob = await openAndRegister(browser, url, uniqueName("bob"));
      const bobName = (await bob.page.textContent("#me"))!;

      // Alice creates a public room; Bob finds it among the public rooms and joins it.
      const roomName = uniqueName("plans");
      await alice.page.click("#create-details summary");
      await alice.page.fill("#room-name", roomName);
      await alice.page.selectOption("#room-visibility", "public");
      await alice.page.click("#create-button");
      await alice.page.locator("#room-title", { hasText: roomName }).waitFor();
      await roomButton(alice.page, "room-list", roomName).waitFor();
      await bob.page.click("#browse-details summary");
      await bob.page.fill("#browse-query", roomName);
      await bob.page.click("#browse-form button");
      await bob.page.locator("#public-list li", { hasText: roomName }).getByRole("button", { name: /Join/ }).click();
      await bob.page.locator("#room-title", { hasText: roomName }).waitFor();
      await waitForText(alice.page, `${bobName} joined`);
      await alice.page.locator("#room-info", { hasText: "public room, 2 members" }).waitFor();

      await say(alice.page, "hello room");
      await waitForText(bob.page, "hello room");

      // Bob looks at the lobby: Alice's next message shows as an unread badge on the room, in bold.
      await roomButton(bob.page, "room-list", "Lobby").click();
      await bob.page.locator("#room-title", { hasText: "Lobby" }).waitFor();
      await say(alice.page, "are you there?");
      const badge = roomButton(bob.page, "room-list", roomName).locator(".badge");
      await badge.waitFor();
      assertEquals(await badge.textContent(), "1");
      assert(await roomButton(bob.page, "room-list", roomName).evaluate((b) => b.classList.contains("unread")));
      assert(!(await bob.page.isVisible("#messages >> text=are you there?")), "a room's message shows in the lobby");

      // Opening the room shows the message and clears the badge (the read marker moves).
      await roomButton(bob.page, "room-list", roomName).click();
      await waitForText(bob.page, "are you there?");
      await badge.waitFor({ state: "detached" });

      // Alice types without sending: Bob sees that she is typing.
      await alice.page.focus("#message");
      await alice.page.keyboard.type("I am typ");
      await bob.page.locator("#typing", { hasText: `${aliceName} is typing…` }).waitFor();
      await alice.page.fill("#message", "");

      // Bob opens a DM with Alice from the online list; Alice, in the room, sees it as unread.
      await bob.page.locator("#users button", { hasText: aliceName }).click();
      await bob.page.locator("#room-title", { hasText: aliceName }).waitFor();
      await say(bob.page, "psst, a secret");
      await waitForText(bob.page, "psst, a secret");
      const dm = roomButton(alice.page, "dm-list", bobName);
      await dm.locator(".badge", { hasText: "1" }).waitFor();
      await dm.click();
      await waitForText(alice.page, "psst, a secret");
      await say(alice.page, "secret received");
      await waitForText(bob.page, "secret received");

      // Bob leaves the room: it leaves his sidebar, and Alice sees him go.
      await roomButton(bob.page, "room-list", roomName).click();
      await bob.page.click("#leave-button");
      await bob.page.locator("#room-title", { hasText: "Lobby" }).waitFor();
      await roomButton(bob.page, "room-list", roomName).waitFor({ state: "detached" });
      await roomButton(alice.page, "room-list", roomName).click();
      await waitForText(alice.page, `${bobName} left`);
      await alice.page.locator("#room-info", { hasText: "public room, 1 member" }).waitFor();

      // A private room: Alice invites Bob by name, he accepts, then she removes him.
      const secretName = uniqueName("secret");
      await alice.page.click("#create-details summary");
      await alice.page.fill("#room-name", secretName);
      await alice.page.selectOption("#room-visibility", "private");
      await alice.page.click("#create-button");
      await alice.page.locator("#room-title", { hasText: secretName }).waitFor();
      await alice.page.click("#members-button");
      await alice.page.fill("#invite-user", bobName);
      await alice.page.click("#invite-form button");
      await waitForText(alice.page, `${aliceName} invited ${bobName}`);
      await bob.page.locator("#invite-list li", { hasText: secretName }).getByRole("button", { name: /Accept/ })
        .click();
      await bob.page.locator("#room-title", { hasText: secretName }).waitFor();
      await waitForText(alice.page, `${bobName} joined`);
      await alice.page.locator("#member-list li", { hasText: bobName }).getByRole("button", { name: /Remove/ }).click();
      await bob.page.locator("#chat-status", { hasText: `${aliceName} removed you from ${secretName}` }).waitFor();
      await roomButton(bob.page, "room-list", secretName).waitFor({ state: "detached" });
      assertEquals(await bob.page.textContent("#room-title"), "Lobby");

      for (const { dialogs, errors } of [alice, bob]) assertEquals([dialogs, errors], [[], []]);
    } finally {
      await browser.close();
    }
  },
});

Deno.test({
  name: "browser: the server restarts under the pages; they reconnect, catch up and miss or double nothing",
  ...browserTest,
  async fn() {
    // A fixed port, so that the restarted server is where the pages reconnect to.
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const httpPort = (probe.addr as Deno.NetAddr).port;
    probe.close();
    let server = await startTestServer(backends[0], { RATE_LIMIT_PER_SEC: "0" }, { httpPort });
    const url = `http://127.0.0.1:${httpPort}/`;
    const browser = await launchBrowser();
    try {
      const alice = await openAndRegister(browser, url, uniqueName("alice"));
      const bob = await openAndRegister(browser, url, uniqueName("bob"));
      // A room both are in, whose conversation both have read; then both look at the lobby.
      const roomName = uniqueName("r");
      await alice.page.click("#create-details summary");
      await alice.page.fill("#room-name", roomName);
      await alice.page.click("#create-button");
      await alice.page.locator("#room-title", { hasText: roomName }).waitFor();
      await bob.page.click("#browse-details summary");
      await bob.page.fill("#browse-query", roomName);
      await bob.page.click("#browse-form button");
      await bob.page.locator("#public-list li", { hasText: roomName }).getByRole("button", { name: /Join/ }).click();
      await say(alice.page, "room before the restart");
      await waitForText(bob.page, "room before the restart");
      for (const { page } of [alice, bob]) {
        await roomButton(page, "room-list", "Lobby").click();
        await page.locator("#room-title", { hasText: "Lobby" }).waitFor();
      }
      await say(alice.page, "before the restart");
      await waitForText(bob.page, "before the restart");

      await server.close();
      await alice.page.waitForSelector("#connection-status >> text=/reconnecting/", { timeout: 10_000 });
      // Typed while the server is away: pending now, sent once the page is back.
      await say(bob.page, "typed while away");
      server = await startTestServer(backends[0], { RATE_LIMIT_PER_SEC: "0" }, { httpPort });
      // Sent before the pages are back: only the catch-up with `after` can bring these.
      await using terminal = await server.connect();
      await terminal.registerAndLogin();
      for (let i = 0; i < 5; i++) await sendFromTcp(terminal, `while away ${i}`);
      // And one in the room, which the pages learn of from the room list and their catch-up.
      const found = await terminal.request({ type: "room_list", scope: "public", query: roomName });
      const roomId = (found.rooms as Frame[])[0].id;
      await terminal.request({ type: "room_join", room: roomId });
      await terminal.request({ type: "send_message", room: roomId, message: "room while away" });

      for (const { page } of [alice, bob]) {
        for (let i = 0; i < 5; i++) await waitForText(page, `while away ${i}`, 20_000);
        await waitForText(page, "typed while away", 20_000);
      }
      await sendFromTcp(terminal, "after the restart");
      const history = await terminal.request({ type: "get_history", limit: 500 });
      const all = (history.messages as Frame[]).map((m) => Number(m.id));
      for (const { page, dialogs, errors } of [alice, bob]) {
        await waitForText(page, "after the restart");
        await waitForNoPending(page);
        const ids = await shownIds(page);
        // Every message since the page's first one, once each, in id order.
        assertEquals(ids, all.slice(all.indexOf(ids[0])));
        assertEquals(dialogs, []);
        assertEquals(errors.filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(e)), []);
        // The room's message shows as unread, then once in the room.
        await roomButton(page, "room-list", roomName).locator(".badge", { hasText: "1" }).waitFor();
        await roomButton(page, "room-list", roomName).click();
        await waitForText(page, "room while away");
        assertEquals(await page.locator("#messages li .text", { hasText: "room while away" }).count(), 1);
      }
    } finally {
      await browser.close();
      await server.close();
    }
  },
});

Deno.test({
  name: "browser: two pages chatting, side by side, in one picture",
  ...browserTest,
  async fn() {
    // A database of its own, so that the picture shows only this conversation.
    await using server = await startTestServer(backends[0], { DATA_DIR: "memory://" }, { httpPort: 0 });
    const url = `http://127.0.0.1:${server.service.httpPort}/`;
    await using terminal = await server.connect();
    await terminal.registerAndLogin("dana_terminal");
    const browser = await launchBrowser();
    try {
      const alice = await openAndRegister(browser, url, "alice", { width: 820, height: 520 });
      const bob = await openAndRegister(browser, url, "bob", { width: 390, height: 520 });
      await say(alice.page, "Hi Bob! The web page is up.");
      await waitForText(bob.page, "Hi Bob! The web page is up.");
      await sendFromTcp(terminal, "And I'm in a terminal, same chat.");
      await waitForText(alice.page, "And I'm in a terminal, same chat.");
      // A public room: Alice makes it, Bob (on his phone) finds it and joins.
      await alice.page.click("#create-details summary");
      await alice.page.fill("#room-name", "weekend plans");
      await alice.page.click("#create-button");
      await alice.page.locator("#room-title", { hasText: "weekend plans" }).waitFor();
      await bob.page.click("#sidebar-button");
      await bob.page.click("#browse-details summary");
      await bob.page.locator("#public-list li", { hasText: "weekend plans" }).getByRole("button", { name: /Join/ })
        .click();
      await bob.page.locator("#room-title", { hasText: "weekend plans" }).waitFor();
      await say(alice.page, "Hike on Saturday?");
      await waitForText(bob.page, "Hike on Saturday?");
      await say(bob.page, "Yes! <b>markup</b> shows as text, by the way.");
      await waitForText(alice.page, "Yes! <b>markup</b> shows as text, by the way.");
      // Meanwhile in the lobby and in a DM: unread badges on Alice's sidebar.
      await sendFromTcp(terminal, "Anyone up for lunch?");
      const dm = await terminal.request({ type: "dm_open", user: "alice" });
      const dmRoom = (dm.room as Frame).id;
      await terminal.send({ type: "send_message", room: dmRoom, message: "psst: cake in the kitchen" });
      await terminal.send({ type: "send_message", room: dmRoom, message: "bring a fork" });
      await roomButton(alice.page, "dm-list", "dana_terminal").locator(".badge", { hasText: "2" }).waitFor();
      await roomButton(alice.page, "room-list", "Lobby").locator(".badge", { hasText: "1" }).waitFor();
      await alice.page.locator("#users li", { hasText: "dana_terminal" }).waitFor();
      await alice.page.focus("#message");
      await alice.page.keyboard.type("Great, I'll bring");
      await bob.page.locator("#typing", { hasText: "alice is typing…" }).waitFor();
      for (const { page } of [alice, bob]) await waitForNoPending(page);
      // (Alice keeps the focus: leaving the field would say she stopped typing.)
      await bob.page.locator("#message").blur();
      const shots = [await alice.page.screenshot(), await bob.page.screenshot()];
      // Composed on a blank page of its own (no CSP there), then saved as one picture.
      const canvas = await browser.newPage({ viewport: { width: 820 + 390 + 48, height: 520 + 32 } });
      await canvas.setContent(
        `<body style="margin:0;padding:16px;background:#d1d5db;display:flex;gap:16px;align-items:flex-start">${
          shots.map((shot) => `<img style="border-radius:8px" src="data:image/png;base64,${shot.toString("base64")}">`)
            .join("")
        }</body>`,
      );
      const update = Deno.env.get("UPDATE_SCREENSHOT") === "1";
      const path = update
        ? new URL("../docs/web.png", import.meta.url).pathname
        : await Deno.makeTempFile({ suffix: ".png" });
      try {
        await canvas.screenshot({ path });
        const png = await Deno.readFile(path);
        assertEquals([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "not a PNG");
      } finally {
        if (!update) await Deno.remove(path);
      }
      for (const { dialogs, errors } of [alice, bob]) assertEquals([dialogs, errors], [[], []]);
    } finally {
      await browser.close();
    }
  },
});

Deno.test({
  name: "browser: usable by keyboard alone: register, log in, send, and reach the older-messages button",
  ...browserTest,
  async fn() {
    await using server = await startTestServer(backends[0], { RATE_LIMIT_PER_SEC: "0" }, { httpPort: 0 });
    await using terminal = await server.connect();
    await terminal.registerAndLogin();
    const tag = uniqueName("k");
    for (let i = 0; i < 55; i++) await terminal.send({ type: "send_message", message: `${tag} ${i}` });
    await terminal.waitFor((f) => f.message === `${tag} 54`);
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 900, height: 560 } });
      await page.goto(`http://127.0.0.1:${server.service.httpPort}/`);
      // The username field has the focus on load (autofocus, and the page focuses it again when its
      // script starts): wait for that rather than type into a page still starting.
      await page.waitForSelector("#username:focus", { timeout: 10_000 });
      // Tab moves to the password, then to the buttons.
      await page.keyboard.type(uniqueName("keys"));
      await page.keyboard.press("Tab");
      await page.keyboard.type("secret123");
      await page.keyboard.press("Tab");
      await page.keyboard.press("Tab");
      assertEquals(await page.$eval(":focus", (element) => element.id), "register-button");
      await page.keyboard.press("Enter"); // Register (then log in)
      try {
        await page.waitForSelector("#chat:not([hidden])", { timeout: 20_000 });
      } catch (err) {
        const status = await page.$eval("#login-status", (element) => element.textContent).catch(() => "?");
        throw new Error(`the chat did not open; the login form says: ${status}`, { cause: err });
      }
      // After logging in the message field has the focus: type and press Enter.
      await page.keyboard.type("sent by keyboard");
      await page.keyboard.press("Enter");
      await waitForText(page, "sent by keyboard");
      await terminal.waitFor((f) => f.message === "sent by keyboard");
      // Shift+Tab back through the page reaches the older-messages button; Enter loads the older page.
      const focused = () => page.$eval(":focus", (element) => element.id).catch(() => "");
      for (let i = 0; i < 10 && await focused() !== "older-button"; i++) await page.keyboard.press("Shift+Tab");
      assertEquals(await focused(), "older-button");
      await page.keyboard.press("Enter");
      await waitForText(page, `${tag} 0`);
    } finally {
      await browser.close();
    }
  },
});

Deno.test({
  name:
    "browser: a send answered unavailable is not resent after its user logs out, not even as the next user of the tab",
  ...browserTest,
  async fn() {
    await using server = await startTestServer(backends[0], { RATE_LIMIT_PER_SEC: "0" }, { httpPort: 0 });
    const url = `http://127.0.0.1:${server.service.httpPort}/`;
    await using terminal = await server.connect();
    await terminal.registerAndLogin(uniqueName("watch"));
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      // The page's first send is answered `unavailable` (as while the database is away), unsent.
      let faked = false;
      await page.routeWebSocket(/\/ws$/, (ws) => {
        const upstream = ws.connectToServer();
        ws.onMessage((message) => {
          const frame = JSON.parse(String(message));
          if (!faked && frame.type === "send_message") {
            faked = true;
            ws.send(JSON.stringify({
              type: "error",
              code: "unavailable",
              message: "The server cannot store messages right now",
              request_id: frame.request_id,
            }));
            return;
          }
          upstream.send(message);
        });
        upstream.onMessage((message) => ws.send(message));
      });
      await page.goto(url);
      const first = uniqueName("first");
      await page.fill("#username", first);
      await page.fill("#password", "secret123");
      await page.click("#register-button");
      await page.waitForSelector("#chat:not([hidden])", { timeout: 10_000 });
      const secret = `${first}'s words`;
      await say(page, secret);
      await page.locator("#chat-status").getByText(/./).waitFor({ timeout: 10_000 });
      assert(faked, "the send was not answered unavailable");

      // The first user leaves; another logs in on the same tab before the 2 s resend is due.
      await page.click("#logout-button");
      await page.waitForSelector("#username", { state: "visible", timeout: 10_000 });
      const second = uniqueName("second");
      await page.fill("#username", second);
      await page.fill("#password", "secret123");
      await page.click("#register-button");
      await page.waitForSelector("#chat:not([hidden])", { timeout: 10_000 });
      await say(page, `${second} is here`);
      await terminal.waitFor((f) => f.type === "new_message" && f.message === `${second} is here`);
      // Past the resend's time: the first user's words were sent by nobody.
      await sleep(2500);
      const history = await terminal.request({ type: "get_history", limit: 50 });
      const texts = (history.messages as Frame[]).map((m) => m.message);
      assertEquals(texts.includes(secret), false, "the first user's message went out after they logged out");
      assert(texts.includes(`${second} is here`));
    } finally {
      await browser.close();
    }
  },
});

Deno.test({
  name:
    "browser: search finds messages in the lobby and in rooms, each with its conversation; a result opens its room at the message, paging back to it",
  ...browserTest,
  async fn() {
    await using server = await startTestServer(
      backends[0],
      { RATE_LIMIT_PER_SEC: "0", SEARCH_LIMIT_PER_MIN: "0" },
      { httpPort: 0 },
    );
    const url = `http://127.0.0.1:${server.service.httpPort}/`;
    const browser = await launchBrowser();
    try {
      const alice = await openAndRegister(browser, url, uniqueName("alice"));
      const tag = uniqueWord();
      const roomName = uniqueName("archive");
      await alice.page.click("#create-details summary");
      await alice.page.fill("#room-name", roomName);
      await alice.page.click("#create-button");
      await alice.page.locator("#room-title", { hasText: roomName }).waitFor();
      // The word to find, then more than a page (50) of other messages after it.
      await say(alice.page, `the old${tag} plan`);
      await waitForText(alice.page, `the old${tag} plan`);
      for (let i = 0; i < 60; i++) await say(alice.page, `filler ${i}`);
      await waitForText(alice.page, "filler 59");
      await waitForNoPending(alice.page);
      await roomButton(alice.page, "room-list", "Lobby").or(alice.page.locator("button.room", { hasText: "Lobby" }))
        .first().click();
      await say(alice.page, `old${tag} in the lobby too`);
      await waitForText(alice.page, `old${tag} in the lobby too`);

      await alice.page.click("#search-details summary");
      await alice.page.fill("#search-query", `OLD${tag}`);
      await alice.page.click("#search-form button");
      const results = alice.page.locator("#search-results .search-result");
      await results.nth(1).waitFor({ timeout: 10_000 });
      assertEquals(await results.count(), 2);
      const shown = await results.allTextContents();
      assert(shown[0].startsWith("Lobby"), `newest first, from the lobby: ${shown[0]}`);
      assert(shown[1].includes(roomName) && shown[1].includes(`the old${tag} plan`), shown[1]);

      // The room's result opens the room, pages back past the newest 50, and marks the message.
      await results.nth(1).click();
      await alice.page.locator("#room-title", { hasText: roomName }).waitFor();
      const found = alice.page.locator("#messages li.found");
      await found.waitFor({ timeout: 10_000 });
      assertEquals((await found.locator(".text").textContent())?.trim(), `the old${tag} plan`);

      // A query matching nothing says so.
      await alice.page.fill("#search-query", `nothing${tag}`);
      await alice.page.click("#search-form button");
      await alice.page.locator("#search-status", { hasText: "No messages match." }).waitFor();
      assertEquals(alice.errors, []);
    } finally {
      await browser.close();
    }
  },
});
