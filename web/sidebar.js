// The sidebar's DOM: the lobby and rooms, the DMs (each with an unread badge, bold when unread),
// the invitations (accept, decline), public rooms found by a search (join), and who is online (a
// button to message them). Buttons carry the room id or username; what they do is main.js's.

import { formatUnread } from "./format.js";
import { roomTitle } from "./state.js";

export class SidebarView {
  /** Called with a room id: open that conversation. */
  onOpen = (_room) => {};
  /** Called with a room id: accept the invitation (room_join). */
  onAccept = (_room) => {};
  /** Called with a room id: decline the invitation (room_leave). */
  onDecline = (_room) => {};
  /** Called with a public room id: join it. */
  onJoin = (_room) => {};
  /** Called with a username: open the DM with them. */
  onMessageUser = (_username) => {};

  constructor(doc) {
    this.doc = doc;
    this.el = Object.fromEntries(
      ["room-list", "dm-list", "invitations", "invite-list", "public-list", "users"].map((id) => [
        id,
        doc.getElementById(id),
      ]),
    );
    doc.getElementById("sidebar").addEventListener("click", (event) => this.#clicked(event));
  }

  /** Renders the lists of `state.sidebar()`, marking `current` as the conversation shown. */
  render({ rooms, dms, invitations }, current) {
    this.el["room-list"].replaceChildren(...rooms.map((room) => this.#roomItem(room, current)));
    const noDm = this.doc.createElement("li");
    noDm.className = "empty";
    noDm.textContent = "None yet: choose someone online.";
    this.el["dm-list"].replaceChildren(...(dms.length > 0 ? dms.map((room) => this.#roomItem(room, current)) : [noDm]));
    this.el["invite-list"].replaceChildren(...invitations.map((room) => this.#invitationItem(room)));
    this.el.invitations.hidden = invitations.length === 0;
  }

  /** Empties every list (logout). */
  clear() {
    for (const list of ["room-list", "dm-list", "invite-list", "public-list", "users"]) this.el[list].replaceChildren();
    this.el.invitations.hidden = true;
    this.doc.getElementById("browse-details").open = false;
    this.doc.getElementById("create-details").open = false;
  }

  /** The public rooms a search found; `isMember(id)` says which the user is in already. */
  setPublicRooms(rooms, isMember) {
    if (rooms.length === 0) {
      const item = this.doc.createElement("li");
      item.className = "empty";
      item.textContent = "No public room found.";
      this.el["public-list"].replaceChildren(item);
      return;
    }
    this.el["public-list"].replaceChildren(...rooms.map((room) => {
      const item = this.doc.createElement("li");
      const name = this.#span("name", roomTitle(room));
      const count = this.#span("count", `${room.members} ${room.members === 1 ? "member" : "members"}`);
      const member = isMember(room.id);
      const button = this.#button(member ? "Open" : "Join", member ? "open" : "join", room.id);
      button.setAttribute("aria-label", `${member ? "Open" : "Join"} ${roomTitle(room)}`);
      item.append(name, count, button);
      return item;
    }));
  }

  setUsers(usernames, isMe) {
    this.el.users.replaceChildren(...usernames.map((name) => {
      const item = this.doc.createElement("li");
      if (isMe(name)) {
        item.append(this.#span("name", `${name} (you)`));
        return item;
      }
      const button = this.#button(name, "dm", name);
      button.className = "link";
      button.title = `Message ${name}`;
      item.append(button);
      return item;
    }));
  }

  #roomItem(room, current) {
    const item = this.doc.createElement("li");
    const title = roomTitle(room);
    const button = this.#button("", "open", room.id);
    button.className = "room";
    const unread = room.id === current ? 0 : room.unread;
    if (room.id === current) button.setAttribute("aria-current", "true");
    if (unread > 0) button.classList.add("unread");
    const name = this.#span("name", room.kind === "private" ? `${title} (private)` : title);
    button.append(name);
    if (unread > 0) {
      const badge = this.#span("badge", formatUnread(unread));
      badge.title = `${unread} unread`;
      button.append(badge);
      button.setAttribute("aria-label", `${title}, ${formatUnread(unread)} unread`);
    }
    item.append(button);
    return item;
  }

  #invitationItem(room) {
    const item = this.doc.createElement("li");
    const accept = this.#button("Accept", "accept", room.id);
    accept.setAttribute("aria-label", `Accept the invitation to ${roomTitle(room)}`);
    const decline = this.#button("Decline", "decline", room.id);
    decline.setAttribute("aria-label", `Decline the invitation to ${roomTitle(room)}`);
    item.append(this.#span("name", roomTitle(room)), accept, decline);
    return item;
  }

  #clicked(event) {
    const button = event.target instanceof Element ? event.target.closest("button[data-action]") : null;
    if (!button) return;
    const value = button.dataset.value;
    switch (button.dataset.action) {
      case "open":
        return this.onOpen(value);
      case "accept":
        return this.onAccept(value);
      case "decline":
        return this.onDecline(value);
      case "join":
        return this.onJoin(value);
      case "dm":
        return this.onMessageUser(value);
    }
  }

  #button(text, action, value) {
    const button = this.doc.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.dataset.action = action;
    button.dataset.value = value;
    return button;
  }

  #span(className, text) {
    const span = this.doc.createElement("span");
    span.className = className;
    span.textContent = text;
    return span;
  }
}
