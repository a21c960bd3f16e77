// The web chat page: wires the connection, the state and the view together. Log in or register,
// newest history and older pages, live messages, sends with a client_msg_id and a pending state,
// who is online, and reconnection that catches up with `after` so nothing is missed or doubled.

import { ChatConnection, ConnectionLost } from "./connection.js";
import { describeError } from "./format.js";
import { ChatState } from "./state.js";
import { ChatView } from "./view.js";

const PAGE_SIZE = 50;
/** Catch-up pages after a reconnect: at most this many, of the server's largest page each. */
const MAX_CATCH_UP_PAGES = 200;
const CATCH_UP_PAGE = 500;
const USERS_REFRESH_MS = 15_000;

const state = new ChatState();
const view = new ChatView(document);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const connection = new ChatConnection(`${scheme}://${location.host}/ws`);
/** Kept in memory only, to log in again after a reconnect. */
let credentials = null;
let loadingOlder = false;
let usersTimer;

connection.onStatus = (text) => view.setConnectionStatus(text);
connection.onMessage = (frame) => {
  const added = state.add([frame]);
  if (added.length > 0) view.addMessages(added, (m) => state.isOwn(m));
  if (added.length > 0 && !state.users.includes(frame.sender)) void refreshUsers();
};
connection.onError = (frame) => {
  if (credentials) view.showError(describeError(frame));
  else view.setLoginStatus(describeError(frame));
};
connection.onOpen = () => {
  if (credentials) void resume();
};
connection.start();

view.el["login-form"].addEventListener("submit", (event) => {
  event.preventDefault();
  void logIn(false);
});
view.el["register-button"].addEventListener("click", () => void logIn(true));
view.el["logout-button"].addEventListener("click", () => void logOut());
view.el["older-button"].addEventListener("click", () => void loadOlder());
view.el.messages.addEventListener("scroll", () => {
  if (view.nearTop()) void loadOlder();
});
view.el["send-form"].addEventListener("submit", (event) => {
  event.preventDefault();
  sendTyped();
});
view.el.message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendTyped();
  }
});

async function logIn(register) {
  const username = view.el.username.value.trim();
  const password = view.el.password.value;
  if (!username || !password) {
    view.setLoginStatus("Enter a username and a password.");
    return;
  }
  view.setLoginStatus(register ? "Registering…" : "Logging in…");
  try {
    if (register) {
      const reply = await connection.request({ type: "register", username, password });
      if (reply.status !== "success") return view.setLoginStatus(describeError(reply));
    }
    const reply = await connection.request({ type: "login", username, password });
    if (reply.status !== "success") return view.setLoginStatus(describeError(reply));
    state.reset();
    state.me = { id: reply.user_id, username: reply.username };
    credentials = { username, password };
    view.showChat(reply.username);
    await loadNewest();
    await refreshUsers();
    clearInterval(usersTimer);
    usersTimer = setInterval(() => void refreshUsers(), USERS_REFRESH_MS);
  } catch (err) {
    view.setLoginStatus(
      err instanceof ConnectionLost ? "Not connected to the server; try again in a moment." : String(err),
    );
  }
}

async function logOut() {
  credentials = null;
  clearInterval(usersTimer);
  // Nothing of this user's may run after they left (a resend would go out as the next user).
  for (const timer of timers) clearTimeout(timer);
  timers.clear();
  state.reset();
  state.me = null;
  view.showLogin();
  try {
    await connection.request({ type: "logout" });
  } catch {
    // Not connected: the next connection starts logged out anyway.
  }
}

/** After a reconnect: log in again, catch up on what was missed, resend what was not acknowledged. */
async function resume() {
  try {
    const reply = await connection.request({ type: "login", ...credentials });
    if (reply.status !== "success") {
      if (reply.code === "invalid_credentials") {
        credentials = null;
        view.showLogin(describeError(reply));
        return;
      }
      // The database is away or logins are throttled: stay on the chat and try again.
      view.showError(describeError(reply));
      const retryMs = Math.max(2000, Math.min(Number(reply.retry_after_ms) || 0, 60_000));
      later(() => {
        if (credentials && connection.isOpen) void resume();
      }, retryMs);
      return;
    }
    view.showError("");
    if (state.messages.size === 0) await loadNewest();
    else await catchUp();
    await refreshUsers();
    for (const entry of state.pending.values()) {
      if (entry.status === "pending") void deliver(entry);
    }
  } catch (err) {
    if (!(err instanceof ConnectionLost)) throw err;
    // Lost again: the next onOpen resumes.
  }
}

async function loadNewest() {
  const reply = await connection.request({ type: "get_history", limit: PAGE_SIZE });
  if (reply.type !== "history_response") return view.showError(describeError(reply));
  state.hasOlder = reply.messages.length >= PAGE_SIZE;
  view.addMessages(state.add(reply.messages), (m) => state.isOwn(m));
  view.setOlderAvailable(state.hasOlder);
}

/** Pages forward from the newest message known until nothing newer is left. */
async function catchUp() {
  for (let page = 0; page < MAX_CATCH_UP_PAGES; page++) {
    const reply = await connection.request({ type: "get_history", after: state.newestId, limit: CATCH_UP_PAGE });
    if (reply.type !== "history_response") return view.showError(describeError(reply));
    if (reply.messages.length === 0) return;
    view.addMessages(state.add(reply.messages), (m) => state.isOwn(m));
  }
}

async function loadOlder() {
  if (loadingOlder || !state.hasOlder || state.oldestId === undefined || !connection.isOpen || !credentials) return;
  loadingOlder = true;
  try {
    const reply = await connection.request({ type: "get_history", before: state.oldestId, limit: PAGE_SIZE });
    if (reply.type !== "history_response") return view.showError(describeError(reply));
    state.hasOlder = reply.messages.length >= PAGE_SIZE;
    view.addMessages(state.add(reply.messages), (m) => state.isOwn(m));
    view.setOlderAvailable(state.hasOlder);
  } catch (err) {
    if (!(err instanceof ConnectionLost)) throw err;
  } finally {
    loadingOlder = false;
  }
}

async function refreshUsers() {
  if (!connection.isOpen || !credentials) return;
  try {
    const reply = await connection.request({ type: "list_users" });
    if (reply.type !== "users_response") return;
    state.users = reply.users;
    view.setUsers(reply.users, state.me?.username ?? "");
  } catch (err) {
    if (!(err instanceof ConnectionLost)) throw err;
  }
}

function sendTyped() {
  const text = view.el.message.value;
  if (text.trim() === "") return;
  view.el.message.value = "";
  const entry = state.addPending(newClientMsgId(), text);
  view.addPending(entry);
  view.showError("");
  void deliver(entry);
}

/** Sends one pending message; on a lost connection it stays pending and is resent after the reconnect. */
async function deliver(entry) {
  if (!connection.isOpen) return;
  let reply;
  try {
    reply = await connection.request({ type: "send_message", message: entry.text, client_msg_id: entry.clientMsgId });
  } catch (err) {
    if (err instanceof ConnectionLost) return;
    throw err;
  }
  if (reply.type === "new_message") {
    state.pending.delete(entry.clientMsgId);
    view.removePending(entry.clientMsgId);
    return;
  }
  if (reply.code === "unavailable") {
    // The database is away: the same client_msg_id is resent at the next reconnect or send.
    view.showError(describeError(reply));
    later(() => {
      // Only while it is still this user's pending message: after a log-out it is nobody's.
      if (state.pending.get(entry.clientMsgId) === entry) void deliver(entry);
    }, 2000);
    return;
  }
  entry.status = "failed";
  view.failPending(entry.clientMsgId, describeError(reply));
}

/** Timers that belong to the logged-in user: cleared on log-out. */
const timers = new Set();

function later(fn, ms) {
  const timer = setTimeout(() => {
    timers.delete(timer);
    fn();
  }, ms);
  timers.add(timer);
}

/** A UUID; crypto.randomUUID needs a secure context, which a LAN address over http is not. */
function newClientMsgId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
