// Type-level checks (run by `npm run typecheck`, never executed): the SDK's
// public REST types, now derived from src/generated/openapi.ts, still promise
// what the hand-written ones did. A field the server renames, removes or
// retypes fails here even where src/ does not read it; a field it adds does
// not. Change these shapes only together with the SDK's public API.

import type { components } from '../../src/generated/openapi';
import type { CreateRoomBody, CreatedUser, CreateUserBody, RosterRoom, RosterUser } from '../../src/index';
import type { PresenceStatus } from '../../src/types';

type Expect<T extends true> = T;
type Extends<A, B> = [A] extends [B] ? true : false;
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** The user the SDK promised before its types were generated. */
interface PromisedUser {
  id: string;
  account_id: string;
  room_id: string | null;
  custom_id: string | null;
  username: string | null;
  name: string | null;
  nickname: string | null;
  bio: string | null;
  email?: string | null;
  email_verified: boolean;
  phone?: string | null;
  profile_picture: string | null;
  link: string | null;
  status: 'online' | 'away' | 'offline';
  status_message: string | null;
  active: boolean;
  roles: string[];
  metadata: Record<string, unknown>;
  tags: string[];
  custom_fields: Record<string, unknown>;
  require_password_change: boolean;
  has_password: boolean;
  created_at: string;
  updated_at: string;
  last_seen_at: string | null;
  deactivated_at: string | null;
}

interface PromisedRoom {
  id: string;
  account_id: string;
  space_id: string | null;
  name: string;
  visibility: 'public' | 'private';
  is_default: boolean;
  created_by: string | null;
  created_at: string;
  updated_at: string;
}

/** Every name and type the `POST /users` body accepted before. */
interface PromisedCreateUserBody {
  name?: string;
  room_id?: string;
  roomId?: string;
  profile_picture?: string;
  profilePicture?: string;
  avatar?: string;
  custom_id?: string;
  customId?: string;
  uid?: string;
  link?: string;
  role?: string;
  roles?: string[];
  status_message?: string;
  statusMessage?: string;
  statusText?: string;
  metadata?: Record<string, unknown>;
  tags?: string[];
  with_auth_token?: boolean;
  withAuthToken?: boolean;
  email?: string;
  password?: string;
  username?: string;
  active?: boolean;
  nickname?: string;
  bio?: string;
  join_default_channels?: boolean;
  joinDefaultChannels?: boolean;
  require_password_change?: boolean;
  requirePasswordChange?: boolean;
  set_random_password?: boolean;
  setRandomPassword?: boolean;
  send_welcome_email?: boolean;
  sendWelcomeEmail?: boolean;
  verified?: boolean;
  custom_fields?: Record<string, unknown>;
  customFields?: Record<string, unknown>;
  phone?: string;
  captcha_token?: string;
  captchaToken?: string;
}

interface PromisedCreateRoomBody {
  name: string;
  space_id?: string;
  spaceId?: string;
  visibility?: 'public' | 'private';
  is_default?: boolean;
  isDefault?: boolean;
}

export type Checks = [
  // Answers: what the server documents fits what the SDK promised.
  // (Key checks too: a missing optional key would still be assignable.)
  Expect<Extends<RosterUser, PromisedUser>>,
  Expect<Extends<keyof PromisedUser, keyof RosterUser>>,
  Expect<Extends<RosterRoom, PromisedRoom>>,
  Expect<Extends<keyof PromisedRoom, keyof RosterRoom>>,
  Expect<Extends<CreatedUser, { user: PromisedUser; token: string }>>,
  // Bodies: everything the SDK accepted is still accepted, under every name.
  Expect<Extends<PromisedCreateUserBody, CreateUserBody>>,
  Expect<Extends<keyof PromisedCreateUserBody, keyof CreateUserBody>>,
  Expect<Extends<PromisedCreateRoomBody, CreateRoomBody>>,
  Expect<Extends<keyof PromisedCreateRoomBody, keyof CreateRoomBody>>,
  // The realtime protocol's presence statuses are the REST API's.
  Expect<Equal<PresenceStatus, components['schemas']['Status']>>,
  Expect<Equal<RosterUser['status'], PresenceStatus>>,
];
