// The web chat page: wires the connection, the state and the views together. Log in or register,
// say hello for protocol v2, then the lobby, rooms and DMs side by side: history per conversation
// with older pages, live messages and membership events, unread badges and read markers, typing
// notices, sends through a resend-safe outbox, and reconnection that catches up every conversation.

import { ChatConnection, ConnectionLost } from "./connection.js";
import { describeError, describeTyping, formatUnread } from "./format.js";
import { History } from "./history.js";
import { Outbox } from "./outbox.js";
import { RoomPanelView } from "./room_panel.js";
import { RoomActions } from "./room_actions.js";
import { Rooms } from "./rooms.js";
import { SearchView } from "./search.js";
import { SidebarView } from "./sidebar.js";
import { ChatState, LOBBY, roomTitle } from "./state.js";
import { TypingNotices, TypingSender } from "./typing.js";
import { ChatView } from "./view.js";

const USERS_REFRESH_MS = 15_000;

const state = new ChatState();
const view = new ChatView(document);
const sidebar = new SidebarView(document);
const panel = new RoomPanelView(document);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const connection = new ChatConnection(`${scheme}://${location.host}/ws`);
const history = new History(connection);
const rooms = new Rooms(connection, state);
const outbox = new Outbox(connection, state);
const actions = new RoomActions(document, { state, rooms, view, sidebar, panel, openRoom: (room) => openRoom(room) });
actions.onChanged = () => renderSidebar();
const search = new SearchView(
  document,
  connection,
  (room) => room === LOBBY ? "Lobby" : roomTitle(state.rooms.get(room)) || "a room",
);
search.onOpen = (result) => void openAt(result.room, result.id);
const typingSender = new TypingSender((room, typing) => connection.notify({ type: "typing", room, state: typing }));
const typingNotices = new TypingNotices((room) => {
  if (room === state.current) view.setTyping(describeTyping(typingNotices.who(room)));
});
/** Kept in memory only, to log in again after a reconnect. */
let credentials = null;
let loadingOlder = false;
let usersTimer;
let resumeTimer;
let refreshing = false;
let refreshAgain = false;

connection.onStatus = (text) => view.setConnectionStatus(text);
connection.onMessage = (frame) => received(frame);
connection.onPush = (frame) => {
  if (!credentials) return;
  if (frame.type === "member_event") received(frame);
  else if (frame.type === "read") {
    state.applyRead(frame.room, frame.id, frame.unread);
    renderSidebar();
  } else if (frame.type === "typing" && !state.isMe(frame.user)) typingNotices.apply(frame);
};
connection.onError = (frame) => {
  if (credentials) view.showError(describeError(frame));
  else view.setLoginStatus(describeError(frame));
};
connection.onOpen = () => {
  if (credentials) void resume();
};
connection.start();

outbox.onSent = (entry) => {
  if (entry.room === state.current) view.removePending(entry.clientMsgId);
};
outbox.onFailed = (entry) => {
  if (entry.room === state.current) view.failPending(entry.clientMsgId, entry.error);
};
outbox.onProblem = (text) => view.showError(text);

// Opening a conversation from the sidebar moves the focus to its messages (the sidebar may close).
sidebar.onOpen = (room) => void openRoom(room).then(() => view.el.messages.focus());

const el = (id) => document.getElementById(id);
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
view.el.message.addEventListener("input", () => typingSender.input(state.current, view.el.message.value));
view.el.message.addEventListener("blur", () => typingSender.stop());
el("sidebar-button").addEventListener("click", () => setSidebarOpen(!el("chat").classList.contains("sidebar-open")));
el("sidebar").addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || !el("chat").classList.contains("sidebar-open")) return;
  setSidebarOpen(false);
  el("sidebar-button").focus();
});
document.addEventListener("visibilitychange", () => void markSeen());
globalThis.addEventListener("focus", () => void markSeen());

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
    forgetSession();
    state.me = { id: reply.user_id, username: reply.username };
    credentials = { username, password };
    view.showChat(reply.username);
    await connection.request({ type: "hello", protocol: 2 });
    await refreshRooms();
    await openRoom(LOBBY);
    await refreshUsers();
    usersTimer = setInterval(() => void refreshUsers(), USERS_REFRESH_MS);
  } catch (err) {
    view.setLoginStatus(
      err instanceof ConnectionLost ? "Not connected to the server; try again in a moment." : String(err),
    );
  }
}

/** Forgets the user logged in: their state, their sends, and every timer that could act for them. */
function forgetSession() {
  clearInterval(usersTimer);
  clearTimeout(resumeTimer);
  outbox.clear();
  search.clear();
  typingSender.clear();
  typingNotices.clear();
  rooms.clear();
  state.reset();
  sidebar.clear();
  el("sidebar-button").textContent = "Rooms";
}

async function logOut() {
  typingSender.stop();
  credentials = null;
  forgetSession();
  setSidebarOpen(false);
  view.showLogin();
  try {
    await connection.request({ type: "logout" });
  } catch {
    // Not connected: the next connection starts logged out anyway.
  }
}

/** After a reconnect: log in again, catch up every conversation, resend what was not acknowledged. */
async function resume() {
  try {
    const reply = await connection.request({ type: "login", ...credentials });
    if (reply.status !== "success") {
      if (reply.code === "invalid_credentials") {
        credentials = null;
        forgetSession();
        view.showLogin(describeError(reply));
        return;
      }
      // The database is away or logins are throttled: stay on the chat and try again.
      view.showError(describeError(reply));
      const retryMs = Math.max(2000, Math.min(Number(reply.retry_after_ms) || 0, 60_000));
      clearTimeout(resumeTimer);
      resumeTimer = setTimeout(() => {
        if (credentials && connection.isOpen) void resume();
      }, retryMs);
      return;
    }
    view.showError("");
    await connection.request({ type: "hello", protocol: 2 });
    await refreshRooms();
    for (const conversation of [...state.conversations.values()]) {
      if (!conversation.loaded) continue;
      const { added, error } = await history.catchUp(conversation);
      if (state.conversations.get(conversation.id) !== conversation) continue; // left, or logged out
      if (error) view.showError(describeError(error));
      if (isCurrent(conversation)) view.addMessages(added, (m) => state.isOwn(m));
    }
    if (!state.conversation(state.current).loaded) await openRoom(state.current);
    await refreshUsers();
    outbox.resendAll();
    void markSeen();
  } catch (err) {
    if (!(err instanceof ConnectionLost)) throw err;
    // Lost again: the next onOpen resumes.
  }
}

/** A new_message or member_event, live or the own copy of a send. */
function received(frame) {
  if (!credentials) return;
  const room = typeof frame.room === "string" ? frame.room : LOBBY;
  const aboutMe = frame.type === "member_event" && state.isMe(frame.user);
  if (aboutMe && (frame.membership === "leave" || frame.membership === "kick")) return removed(room, frame);
  // A room not listed yet, or a membership change (member counts come from the room objects).
  if (!state.rooms.has(room) || frame.type === "member_event") void refreshRoomsSoon();
  if (aboutMe && frame.membership === "invite") return;
  if (frame.type === "new_message") {
    typingNotices.stopped(room, frame.sender);
    if (!state.users.includes(frame.sender)) void refreshUsers();
  }
  const seen = room === state.current && document.visibilityState === "visible";
  state.noteLive(room, frame, seen);
  const conversation = state.conversation(room);
  const added = conversation.add([frame]);
  if (room === state.current && added.length > 0) {
    view.addMessages(added, (m) => state.isOwn(m));
    if (frame.type === "member_event" && panel.toolsOpen) void actions.loadMembers();
    void markSeen();
  }
  renderSidebar();
}

/** The user left `room` (on another page) or was removed from it. */
function removed(room, frame) {
  const title = roomTitle(state.rooms.get(room));
  const wasOpen = state.current === room;
  state.removeRoom(room);
  if (frame.membership === "kick" && title) view.showError(`${frame.by ?? "The owner"} removed you from ${title}.`);
  if (wasOpen) void openRoom(LOBBY);
  else renderSidebar();
}

/** refreshRooms, once for any number of calls while one is on its way (and once more after it). */
async function refreshRoomsSoon() {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  try {
    do {
      refreshAgain = false;
      await refreshRooms();
    } while (refreshAgain && credentials);
  } finally {
    refreshing = false;
  }
}

async function refreshRooms() {
  const shown = state.current;
  const result = await rooms.refresh();
  if ("error" in result) return result.error && view.showError(result.error);
  // The room shown is no longer listed (left or removed meanwhile): the lobby is shown instead.
  if (state.current !== shown) return await openRoom(state.current);
  panel.update(state.rooms.get(state.current));
  renderSidebar();
}

/** Shows the conversation of `room`, reading its newest history the first time. */
async function openRoom(room) {
  if (room !== state.current) typingSender.stop();
  state.current = state.rooms.has(room) ? room : LOBBY;
  setSidebarOpen(false);
  const conversation = state.conversation(state.current);
  panel.show(state.rooms.get(state.current));
  view.showConversation(conversation, (m) => state.isOwn(m));
  view.setTyping(describeTyping(typingNotices.who(state.current)));
  renderSidebar();
  if (!conversation.loaded && connection.isOpen && !(await showPage(conversation, history.newest(conversation)))) {
    return;
  }
  await markSeen();
}

/**
 * Shows a page of `conversation`'s history once it has come, unless another conversation is
 * shown by then. True if it was shown; false after an error (shown) or a lost connection.
 */
async function showPage(conversation, page) {
  try {
    const { added, error } = await page;
    if (!isCurrent(conversation)) return false;
    if (error) {
      view.showError(describeError(error));
      return false;
    }
    view.addMessages(added, (m) => state.isOwn(m));
    view.setOlderAvailable(conversation.hasOlder);
    return true;
  } catch (err) {
    if (!(err instanceof ConnectionLost)) throw err;
    return false;
  }
}

/** Pages back this far at most to show a message found by search. */
const MAX_PAGES_BACK = 40;

/** Opens `room` at message `id` (a search result): older pages are read until it is shown. */
async function openAt(room, id) {
  await openRoom(room);
  const conversation = state.conversation(state.current);
  for (let page = 0; page < MAX_PAGES_BACK && isCurrent(conversation); page++) {
    if (conversation.oldestId === undefined || conversation.oldestId <= id || !conversation.hasOlder) break;
    await loadOlder();
  }
  if (isCurrent(conversation) && !view.highlight(id)) view.showError("That message is too far back to show here.");
}

/** Whether `conversation` is the one shown (not one of a room left since, or of a user logged out). */
function isCurrent(conversation) {
  return conversation.id === state.current && state.conversations.get(conversation.id) === conversation;
}

/** Moves the read marker of the open conversation, when the page is seen and it has new messages. */
async function markSeen() {
  if (!credentials || document.visibilityState !== "visible") return;
  await rooms.markRead(state.current);
  renderSidebar();
}

async function loadOlder() {
  const conversation = state.conversation(state.current);
  if (loadingOlder || !conversation.hasOlder || conversation.oldestId === undefined) return;
  if (!connection.isOpen || !credentials) return;
  loadingOlder = true;
  try {
    await showPage(conversation, history.older(conversation));
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
    sidebar.setUsers(reply.users, (name) => state.isMe(name));
  } catch (err) {
    if (!(err instanceof ConnectionLost)) throw err;
  }
}

function renderSidebar() {
  if (!credentials) return;
  const lists = state.sidebar();
  sidebar.render(lists, state.current);
  // At phone width the badges are out of sight: the Rooms button counts what is unread elsewhere.
  let unread = 0;
  for (const room of [...lists.rooms, ...lists.dms]) if (room.id !== state.current) unread += room.unread;
  const button = el("sidebar-button");
  button.textContent = unread > 0 ? `Rooms (${formatUnread(unread)})` : "Rooms";
  if (unread > 0) button.setAttribute("aria-label", `Rooms, ${formatUnread(unread)} unread elsewhere`);
  else button.removeAttribute("aria-label");
}

/** At phone width the sidebar covers the conversation while it is open. */
function setSidebarOpen(open) {
  el("chat").classList.toggle("sidebar-open", open);
  el("sidebar-button").setAttribute("aria-expanded", String(open));
}

function sendTyped() {
  const text = view.el.message.value;
  if (text.trim() === "") return;
  view.el.message.value = "";
  typingSender.stop();
  const entry = outbox.send(state.current, text);
  view.addPending(entry);
  view.showError("");
}
