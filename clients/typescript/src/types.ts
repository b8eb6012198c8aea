/** Public types of the realtime client (camelCase; the wire is snake_case). */

import type { RosterConnectionError, RosterError } from './errors';

/** A user's presence in a room. `offline` is only ever announced, never set. */
export type PresenceStatus = 'online' | 'away' | 'offline';

/** What a client may set with `setStatus`. */
export type SettableStatus = 'online' | 'away';

/** The server's `welcome` frame: the connection is authenticated. */
export interface Welcome {
  connectionId: string;
  userId: string;
  accountId: string;
  /** How often the server pings; the client checks liveness at this pace. */
  heartbeatMs: number;
}

/** One member of a room, as listed in a snapshot. */
export interface Member {
  userId: string;
  status: PresenceStatus;
  /** RFC 3339 time of the member's last presence change. */
  at: string;
}

/** Who is present in a room right now (the joiner included), sent on join. */
export interface Snapshot {
  roomId: string;
  members: Member[];
}

/** Someone came online, went away or went offline in a room this connection joined. */
export interface PresenceEvent {
  roomId: string;
  userId: string;
  status: PresenceStatus;
  /** RFC 3339 time of the change. */
  at: string;
}

export interface ConnectedEvent extends Welcome {
  /** `true` when this is an automatic reconnection (rooms are being re-joined). */
  reconnected: boolean;
}

export interface DisconnectedEvent {
  /** The WebSocket close code (1000 normal, 1001 server shutting down, 1006 dropped, 1008 token revoked, …). */
  code: number;
  reason: string;
  /** Whether the client is going to reconnect by itself. */
  willReconnect: boolean;
}

export interface ReconnectingEvent {
  /** 1 for the first attempt after a drop, then 2, 3, … until one succeeds. */
  attempt: number;
  /** How long the client waits before this attempt. */
  delayMs: number;
}

/** The events `RosterClient` emits, and what each listener receives. */
export interface RosterClientEvents {
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  reconnecting: ReconnectingEvent;
  presence: PresenceEvent;
  snapshot: Snapshot;
  /**
   * Problems that no promise of yours receives: an `error` frame answering no
   * request, a room that could not be re-joined after a reconnect, `getToken`
   * throwing, giving up reconnecting.
   */
  error: RosterError | RosterConnectionError;
}

/** `'idle'` before `connect()`, then `'connecting'`, `'connected'`, `'reconnecting'`, `'closed'`. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/**
 * The part of the WebSocket API the client uses. The browser's `WebSocket`
 * and Node's `ws` package both fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  addEventListener(type: string, listener: (event: any) => void): void;
}

/** A WebSocket class: `globalThis.WebSocket` in browsers, `require('ws')` in Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;
