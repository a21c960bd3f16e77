// The DOM of the login form and of the open conversation: its messages and membership events,
// pending sends, the typing line. Every text from the network goes in with textContent, never as HTML.

import { describeMembership, formatTime } from "./format.js";

export class ChatView {
  constructor(doc) {
    this.doc = doc;
    this.el = Object.fromEntries(
      [
        "login",
        "login-form",
        "username",
        "password",
        "login-button",
        "register-button",
        "login-status",
        "chat",
        "me",
        "connection-status",
        "logout-button",
        "older-button",
        "messages",
        "chat-status",
        "typing",
        "send-form",
        "message",
      ].map((id) => [id, doc.getElementById(id)]),
    );
  }

  showLogin(status = "") {
    this.el.chat.hidden = true;
    this.el.login.hidden = false;
    this.el["login-status"].textContent = status;
    this.el.password.value = "";
    this.el.username.focus();
  }

  setLoginStatus(text) {
    this.el["login-status"].textContent = text;
  }

  showChat(username) {
    this.el.login.hidden = true;
    this.el.chat.hidden = false;
    this.el.me.textContent = username;
    this.el.messages.replaceChildren();
    this.el.typing.textContent = "";
    this.el["chat-status"].textContent = "";
    this.el.message.focus();
  }

  setConnectionStatus(text) {
    this.el["connection-status"].textContent = text;
  }

  /** A problem to show under the messages (empty text clears it). */
  showError(text) {
    this.el["chat-status"].textContent = text;
  }

  setOlderAvailable(available) {
    this.el["older-button"].hidden = !available;
  }

  /** Shows `conversation` alone: its events in id order, then its pending sends. */
  showConversation(conversation, isOwn) {
    this.el.messages.replaceChildren();
    const events = [...conversation.events.values()].sort((a, b) => a.id - b.id);
    this.addMessages(events, isOwn);
    for (const entry of conversation.pending.values()) {
      this.addPending(entry);
      if (entry.status === "failed") this.failPending(entry.clientMsgId, entry.error ?? "");
    }
    this.setOlderAvailable(conversation.hasOlder && conversation.loaded);
    this.el.messages.scrollTop = this.el.messages.scrollHeight;
  }

  /** The typing line under the messages ("" clears it). */
  setTyping(text) {
    this.el.typing.textContent = text;
  }

  /** Inserts events (new ones, any ids) in id order, before the pending sends. */
  addMessages(messages, isOwn) {
    const list = this.el.messages;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const heightBefore = list.scrollHeight;
    let insertedAbove = false;
    for (const message of messages) {
      const item = this.#messageItem(message, isOwn(message));
      const after = this.#firstItemAfter(message.id);
      if (after && after.dataset.id !== undefined) insertedAbove = true;
      list.insertBefore(item, after);
    }
    if (atBottom && !insertedAbove) list.scrollTop = list.scrollHeight;
    else if (insertedAbove) list.scrollTop += list.scrollHeight - heightBefore;
  }

  addPending(entry) {
    const item = this.doc.createElement("li");
    item.className = "own pending";
    item.dataset.pending = entry.clientMsgId;
    const note = this.#span("note", "sending…");
    item.append(note, this.#span("sender", `${this.el.me.textContent} (you)`), this.#span("text", entry.text));
    this.el.messages.append(item);
    this.el.messages.scrollTop = this.el.messages.scrollHeight;
  }

  removePending(clientMsgId) {
    this.#pendingItem(clientMsgId)?.remove();
  }

  failPending(clientMsgId, reason) {
    const item = this.#pendingItem(clientMsgId);
    if (!item) return;
    item.classList.replace("pending", "failed");
    item.querySelector(".note").textContent = `not sent: ${reason}`;
  }

  /** Scrolls to message `id` and marks it for a moment; false if it is not shown. */
  highlight(id) {
    const item = this.el.messages.querySelector(`li[data-id="${Number(id)}"]`);
    if (!item) return false;
    for (const old of this.el.messages.querySelectorAll("li.found")) old.classList.remove("found");
    item.classList.add("found");
    item.scrollIntoView({ block: "center" });
    return true;
  }

  /** Whether the message list is scrolled to (near) its top, where older messages are asked for. */
  nearTop() {
    return this.el.messages.scrollTop < 40;
  }

  #messageItem(message, own) {
    const item = this.doc.createElement("li");
    item.dataset.id = String(message.id);
    if (message.kind === "member") {
      item.className = "notice";
      const time = this.#span("time", formatTime(message.timestamp));
      time.title = message.timestamp + " UTC";
      item.append(time, this.#span("text", describeMembership(message)));
      return item;
    }
    if (own) item.className = "own";
    const time = this.#span("time", formatTime(message.timestamp));
    time.title = message.timestamp + " UTC";
    const sender = this.#span("sender", own ? `${message.sender} (you)` : message.sender);
    item.append(time, sender, this.#span("text", message.message));
    return item;
  }

  #span(className, text) {
    const span = this.doc.createElement("span");
    span.className = className;
    span.textContent = text;
    return span;
  }

  /** The first list item that goes after message `id`: a message with a larger id, or a pending send. */
  #firstItemAfter(id) {
    let after = null;
    for (let item = this.el.messages.lastElementChild; item; item = item.previousElementSibling) {
      if (item.dataset.id === undefined || Number(item.dataset.id) > id) after = item;
      else break;
    }
    return after;
  }

  #pendingItem(clientMsgId) {
    for (const item of this.el.messages.querySelectorAll("li[data-pending]")) {
      if (item.dataset.pending === clientMsgId) return item;
    }
    return null;
  }
}
