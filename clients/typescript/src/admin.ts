/**
 * `RosterAdmin`: a small server-side helper for Roster's REST API, authenticated
 * with an account's API key. Keep it on your server: the API key must never
 * reach a browser. Answers keep the API's snake_case shapes (docs/users.md).
 */

import { RosterApiError } from './errors';
import { buildHttpUrl } from './url';

/** A user as the API answers it (`email`, `phone`, `metadata["@private"]` only for API keys and `view-other-user-info`). */
export interface RosterUser {
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
  /** `offline` until the user joins a room on the realtime connection. */
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

export interface RosterRoom {
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

/**
 * The body of `POST /users`: the union of CollabKit, CometChat, Rocket.Chat
 * and LiveDigital. Send each field under one of its names (snake_case or the
 * camelCase / vendor alias), never two. Unknown fields are refused.
 */
export interface CreateUserBody {
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

export interface CreateRoomBody {
  name: string;
  space_id?: string;
  spaceId?: string;
  /** `public` (default) or `private` (members only). */
  visibility?: 'public' | 'private';
  is_default?: boolean;
  isDefault?: boolean;
}

/** What `createUser` resolves with: the user and their realtime token (a 90-day JWT). */
export interface CreatedUser {
  user: RosterUser;
  token: string;
}

/** The minimal `fetch` the helper needs (the global one by default). */
export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; signal?: unknown },
) => Promise<{ status: number; text(): Promise<string> }>;

export interface RosterAdminOptions {
  /** `https://roster.example.com` */
  serverUrl: string;
  /** An API key of the account (`rk_…`); scope `full` to create. */
  apiKey: string;
  accountId: string;
  /** Defaults to the global `fetch` (Node ≥ 18, browsers, Deno, Bun). */
  fetch?: FetchLike;
  /** Per-request timeout (default 30 000 ms). */
  timeoutMs?: number;
}

interface Envelope<T> {
  success?: boolean;
  data?: T | null;
  error?: { code?: string; message?: string; field?: string; details?: unknown } | null;
  request_id?: string;
}

export class RosterAdmin {
  private readonly serverUrl: string;
  private readonly apiKey: string;
  private readonly accountId: string;
  private readonly fetchImpl: FetchLike;
  private readonly timeoutMs: number;

  constructor(options: RosterAdminOptions) {
    if (!options || typeof options.serverUrl !== 'string') throw new TypeError('serverUrl is required');
    if (typeof options.apiKey !== 'string' || options.apiKey === '') throw new TypeError('apiKey is required');
    if (typeof options.accountId !== 'string' || options.accountId === '') throw new TypeError('accountId is required');
    const f = options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
    if (!f) throw new TypeError('no fetch implementation: pass `fetch` (Node 18+ has a global one)');
    buildHttpUrl(options.serverUrl, '/'); // validates
    this.serverUrl = options.serverUrl;
    this.apiKey = options.apiKey;
    this.accountId = options.accountId;
    this.fetchImpl = options.fetch ?? ((url, init) => (globalThis as unknown as { fetch: FetchLike }).fetch(url, init));
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** `POST /users` → the user and their token (CollabKit's `data`). */
  createUser(body: CreateUserBody): Promise<CreatedUser> {
    return this.call<CreatedUser>('POST', '/users', body);
  }

  /** `POST /rooms` → the room. */
  async createRoom(body: CreateRoomBody): Promise<RosterRoom> {
    return (await this.call<{ room: RosterRoom }>('POST', '/rooms', body)).room;
  }

  /** `GET /users/{userId}` → the user (its `status` shows presence). */
  async getUser(userId: string): Promise<RosterUser> {
    return (await this.call<{ user: RosterUser }>('GET', `/users/${encodeURIComponent(userId)}`)).user;
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = buildHttpUrl(this.serverUrl, `/v1/accounts/${encodeURIComponent(this.accountId)}${path}`);
    const headers: Record<string, string> = { Authorization: `Bearer ${this.apiKey}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const controller = typeof AbortController === 'function' ? new AbortController() : undefined;
    const timer = controller ? setTimeout(() => controller.abort(), this.timeoutMs) : undefined;
    let status: number;
    let text: string;
    try {
      const res = await this.fetchImpl(url, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(controller ? { signal: controller.signal } : {}),
      });
      status = res.status;
      text = await res.text();
    } catch (err) {
      const timedOut = controller?.signal.aborted === true;
      throw new RosterApiError(
        timedOut ? 'TIMEOUT' : 'NETWORK_ERROR',
        timedOut
          ? `${method} ${path}: no answer within ${this.timeoutMs} ms`
          : `${method} ${path}: ${err instanceof Error ? err.message : String(err)}`,
        0,
      );
    } finally {
      if (timer) clearTimeout(timer);
    }
    let envelope: Envelope<T>;
    try {
      envelope = JSON.parse(text) as Envelope<T>;
    } catch {
      throw new RosterApiError('BAD_RESPONSE', `${method} ${path}: HTTP ${status} with a body that is not JSON`, status);
    }
    if (status >= 400 || envelope.success === false || envelope.error) {
      const e = envelope.error ?? {};
      throw new RosterApiError(e.code ?? `HTTP_${status}`, e.message ?? `${method} ${path}: HTTP ${status}`, status, {
        ...(e.field !== undefined ? { field: e.field } : {}),
        ...(e.details !== undefined ? { details: e.details } : {}),
        ...(envelope.request_id !== undefined ? { requestId: envelope.request_id } : {}),
      });
    }
    if (envelope.data === undefined || envelope.data === null) {
      throw new RosterApiError('BAD_RESPONSE', `${method} ${path}: HTTP ${status} without data`, status);
    }
    return envelope.data;
  }
}
