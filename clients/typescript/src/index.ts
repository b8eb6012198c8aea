export { RosterClient, CloseCodes } from './client';
export type { RosterClientOptions } from './client';
// CollabKit's client, under its own name: `import CollabKitClient from '@roster/client'`
// (or `import { CollabKitClient }`) is `RosterClient` — the same class, so
// `new CollabKitClient({ serverUrl, authToken })`, `connect()` and `join()`
// (the token's room) work unchanged. The default export is the same class.
export { RosterClient as CollabKitClient, RosterClient as default } from './client';
export type { RosterClientOptions as CollabKitClientOptions } from './client';
export { RosterAdmin } from './admin';
export type {
  RosterAdminOptions,
  RosterUser,
  RosterRoom,
  CreateUserBody,
  CreateRoomBody,
  CreatedUser,
  FetchLike,
} from './admin';
export { RosterError, RosterTimeoutError, RosterConnectionError, RosterApiError } from './errors';
export { Emitter } from './emitter';
export type { Listener } from './emitter';
export { backoffDelay, DEFAULT_RECONNECT } from './backoff';
export type { ReconnectOptions } from './backoff';
export { buildRealtimeUrl, buildHttpUrl, REALTIME_PATH } from './url';
export type {
  ConnectionState,
  ConnectedEvent,
  DisconnectedEvent,
  Member,
  PresenceEvent,
  PresenceStatus,
  ReconnectingEvent,
  RosterClientEvents,
  SettableStatus,
  Snapshot,
  WebSocketConstructor,
  WebSocketLike,
  Welcome,
} from './types';
