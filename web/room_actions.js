// What the room controls do: create a room, browse and join public rooms, accept or decline an
// invitation, open a DM (from the online list or by name), invite, remove a member, leave, and
// the members panel. Each runs one request of rooms.js and shows its error as a sentence.

import { LOBBY } from "./state.js";

export class RoomActions {
  /** Called after a request changed the rooms (the sidebar is drawn again). */
  onChanged = () => {};

  #el;
  #state;
  #rooms;
  #view;
  #sidebar;
  #panel;
  #openRoom;

  /** `deps`: {state, rooms, view, sidebar, panel, openRoom(room): Promise}. */
  constructor(doc, { state, rooms, view, sidebar, panel, openRoom }) {
    this.#el = (id) => doc.getElementById(id);
    this.#state = state;
    this.#rooms = rooms;
    this.#view = view;
    this.#sidebar = sidebar;
    this.#panel = panel;
    this.#openRoom = openRoom;
    this.#bind();
  }

  /** Opens the DM with `user`, made on first use. */
  openDm(user) {
    return this.#act(() => this.#rooms.dmOpen(user), (result) => this.#openRoom(result.room.id));
  }

  /** Lists the open room's members in the members panel (with Remove buttons for its owner). */
  async loadMembers() {
    const room = this.#state.current;
    const reply = await this.#rooms.members(room);
    if (room !== this.#state.current || !this.#panel.toolsOpen || this.#state.me === null) return;
    if ("error" in reply) return reply.error && this.#view.showError(reply.error);
    const facts = this.#state.rooms.get(room);
    const canKick = facts?.role === "owner" && facts?.kind !== "dm";
    this.#panel.setMembers(reply.members, canKick, (name) => this.#state.isMe(name));
  }

  #bind() {
    const el = this.#el;
    const rooms = this.#rooms;
    const joinAndOpen = (room) => void this.#act(() => rooms.join(room), (result) => this.#openRoom(result.room.id));
    this.#sidebar.onAccept = joinAndOpen;
    this.#sidebar.onJoin = joinAndOpen;
    this.#sidebar.onDecline = (room) => void this.#act(() => rooms.leave(room));
    this.#sidebar.onMessageUser = (user) => void this.openDm(user);
    this.#panel.onToolsToggled = (open) => {
      if (open) void this.loadMembers();
    };
    this.#panel.onKick = (user) => {
      const room = this.#state.current;
      void this.#act(() => rooms.kick(room, user), () => this.loadMembers());
    };
    el("leave-button").addEventListener("click", () => {
      const room = this.#state.current;
      void this.#act(() => rooms.leave(room), () => this.#openRoom(LOBBY));
    });
    el("create-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = el("room-name").value.trim();
      if (name === "") return this.#view.showError("Give the room a name.");
      void this.#act(() => rooms.create(name, el("room-visibility").value), (result) => {
        el("room-name").value = "";
        el("create-details").open = false;
        return this.#openRoom(result.room.id);
      });
    });
    el("browse-form").addEventListener("submit", (event) => {
      event.preventDefault();
      void this.#browse();
    });
    el("browse-details").addEventListener("toggle", () => {
      if (el("browse-details").open) void this.#browse();
    });
    el("dm-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const user = el("dm-user").value.trim();
      if (user !== "") void this.openDm(user).then((opened) => opened && (el("dm-user").value = ""));
    });
    el("invite-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const user = el("invite-user").value.trim();
      const room = this.#state.current;
      if (user === "") return;
      void this.#act(() => rooms.invite(room, user), () => {
        el("invite-user").value = "";
        return this.loadMembers();
      });
    });
  }

  async #browse() {
    const reply = await this.#rooms.browse(this.#el("browse-query").value.trim());
    if (this.#state.me === null) return;
    if ("error" in reply) return reply.error && this.#view.showError(reply.error);
    const isMember = (id) => ["owner", "member"].includes(this.#state.rooms.get(id)?.role);
    this.#sidebar.setPublicRooms(reply.rooms, isMember);
  }

  /** Runs a room request; shows its error, or hands its result on. Returns whether it worked. */
  async #act(request, then = () => {}) {
    const result = await request();
    if ("error" in result) {
      if (result.error) this.#view.showError(result.error);
      return false;
    }
    this.#view.showError("");
    this.onChanged();
    await then(result);
    return true;
  }
}
