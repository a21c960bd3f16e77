// The field rules of protocol v2's requests (rooms, direct messages, read markers, typing): each
// reads one field of a frame and throws the contract's error for a value it cannot be.

import { ChatError } from "../core/errors.ts";
import { field, type Frame } from "./protocol.ts";

/** The lobby's room id: v1's one conversation, stored in `messages`. */
export const LOBBY = "lobby";
/** A room id made by the server: a kind letter, then 20 random characters of [a-z0-9]. */
const ROOM_ID_PATTERN = /^[rd]_[a-z0-9]{20}$/;
export const MAX_ROOM_NAME_LENGTH = 64;
/** Control and format characters (categories Cc and Cf) are not allowed in room names. */
const CONTROL_OR_FORMAT = /[\p{Cc}\p{Cf}]/u;
const USERNAME_PATTERN = /^[A-Za-z0-9_.-]{3,50}$/;

/** Why a room request cannot be served: the same words whether the room is missing or hidden. */
export function roomNotFound(): ChatError {
  return new ChatError("room_not_found", "No such room");
}

/** Whether `id` has the shape of a room id the server could have made. */
export function isRoomId(id: string): boolean {
  return ROOM_ID_PATTERN.test(id);
}

/**
 * The frame's `room`: "lobby" when absent or null (v1), else a string. A string that is no room
 * id the server makes names no room (room_not_found, as for any room one may not see).
 */
export function roomOf(frame: Frame): string {
  const value = field(frame, "room");
  if (value === undefined || value === null) return LOBBY;
  return requireRoomId(value);
}

/** The frame's required `room` field (the lobby allowed). */
export function requiredRoomOf(frame: Frame): string {
  const value = field(frame, "room");
  if (value === undefined || value === null) throw new ChatError("bad_request", "room is required");
  return requireRoomId(value);
}

function requireRoomId(value: unknown): string {
  if (typeof value !== "string" || value.length > 100) {
    throw new ChatError("bad_request", "room must be a room id (a string)");
  }
  if (value !== LOBBY && !isRoomId(value)) throw roomNotFound();
  return value;
}

/** A room's name: 1 to 64 characters after trimming, with no control or format characters. */
export function roomNameOf(frame: Frame): string {
  const value = field(frame, "name");
  if (typeof value !== "string") throw new ChatError("invalid_room_name", "name must be a string");
  const name = value.trim();
  let length = 0;
  for (const _ of name) if (++length > MAX_ROOM_NAME_LENGTH) break;
  if (length === 0 || length > MAX_ROOM_NAME_LENGTH) {
    throw new ChatError("invalid_room_name", `name must be 1 to ${MAX_ROOM_NAME_LENGTH} characters`);
  }
  if (CONTROL_OR_FORMAT.test(name) || !name.isWellFormed()) {
    throw new ChatError("invalid_room_name", "name must not contain control or format characters");
  }
  return name;
}

/** One of `allowed`, or `fallback` when the field is absent or null; bad_request otherwise. */
export function choiceOf<T extends string>(frame: Frame, name: string, allowed: readonly T[], fallback?: T): T {
  const value = field(frame, name);
  if ((value === undefined || value === null) && fallback !== undefined) return fallback;
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw new ChatError("bad_request", `${name} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}`);
  }
  return value as T;
}

/** The frame's `user`: a username (case as the client typed it); user_not_found if it cannot be one. */
export function targetUserOf(frame: Frame): string {
  const value = field(frame, "user");
  if (typeof value !== "string") throw new ChatError("bad_request", "user must be a username");
  if (!USERNAME_PATTERN.test(value)) throw new ChatError("user_not_found", "No such user");
  return value;
}

/** A non-negative integer id field (`id` of mark_read, say); bad_request otherwise. */
export function eventIdOf(frame: Frame, name: string): number {
  const value = field(frame, name);
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ChatError("bad_request", `${name} must be a non-negative integer`);
  }
  return value;
}

/** An optional `limit` from 1 (default `fallback`), clamped to `max`; bad_request otherwise. */
export function pageLimitOf(frame: Frame, fallback: number, max: number): number {
  const value = field(frame, "limit");
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new ChatError("bad_request", "limit must be an integer of at least 1");
  }
  return Math.min(value, max);
}

/** An optional string field of at most `max` characters (a cursor or a query), or undefined. */
export function optionalTextOf(frame: Frame, name: string, max: number): string | undefined {
  const value = field(frame, name);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value.length > max) {
    throw new ChatError("bad_request", `${name} must be a string of at most ${max} characters`);
  }
  return value;
}
