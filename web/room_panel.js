// The DOM above the messages: the open conversation's title, its Members and Leave buttons, and
// the members panel (invite by name; remove a member, for the owner). What the buttons do is main.js's.

import { roomTitle } from "./state.js";

const KIND_TEXT = { lobby: "everyone", public: "public room", private: "private room", dm: "direct message" };

export class RoomPanelView {
  /** Called with a username: remove them from the open room (owner only). */
  onKick = (_username) => {};

  constructor(doc) {
    this.doc = doc;
    this.el = Object.fromEntries(
      ["room-title", "room-info", "members-button", "leave-button", "room-tools", "invite-form", "member-list"]
        .map((id) => [id, doc.getElementById(id)]),
    );
    this.el["members-button"].addEventListener("click", () => this.setToolsOpen(this.el["room-tools"].hidden));
    this.el["member-list"].addEventListener("click", (event) => {
      const button = event.target instanceof Element ? event.target.closest("button[data-user]") : null;
      if (button) this.onKick(button.dataset.user);
    });
  }

  /** Whether the members panel is open. */
  get toolsOpen() {
    return !this.el["room-tools"].hidden;
  }

  /** Shows the bar for `room` (a room object); the members panel closes. */
  show(room) {
    this.update(room);
    this.setToolsOpen(false);
  }

  /** Shows the newest facts of the room shown (its member count, say); the members panel stays as it is. */
  update(room) {
    const kind = room?.kind ?? "lobby";
    this.el["room-title"].textContent = roomTitle(room) || "Lobby";
    const count = room?.members;
    const members = Number.isSafeInteger(count) && kind !== "lobby"
      ? `, ${count} ${count === 1 ? "member" : "members"}`
      : "";
    this.el["room-info"].textContent = `${KIND_TEXT[kind] ?? kind}${members}`;
    this.el["members-button"].hidden = kind === "lobby";
    this.el["leave-button"].hidden = kind === "lobby" || kind === "dm";
    this.el["invite-form"].hidden = kind === "dm";
  }

  setToolsOpen(open) {
    this.el["room-tools"].hidden = !open;
    this.el["members-button"].setAttribute("aria-expanded", String(open));
    if (!open) this.el["member-list"].replaceChildren();
    this.onToolsToggled(open);
  }

  /** Called when the members panel opens (to load the members) or closes. */
  onToolsToggled = (_open) => {};

  /** The members of the open room; `canKick` when the user owns it (not themselves). */
  setMembers(members, canKick, isMe) {
    this.el["member-list"].replaceChildren(...members.map((member) => {
      const item = this.doc.createElement("li");
      const name = this.doc.createElement("span");
      name.className = member.online ? "name online" : "name";
      const role = member.role === "owner" ? " (owner)" : member.role === "invited" ? " (invited)" : "";
      name.textContent = `${member.username}${isMe(member.username) ? " (you)" : ""}${role}`;
      item.append(name);
      if (canKick && !isMe(member.username)) {
        const kick = this.doc.createElement("button");
        kick.type = "button";
        kick.textContent = "Remove";
        kick.dataset.user = member.username;
        kick.setAttribute("aria-label", `Remove ${member.username} from the room`);
        item.append(kick);
      }
      return item;
    }));
  }
}
