/**
 * `RosterAdmin`: a small server-side helper for Roster's REST API, authenticated
 * with an account's API key. Keep it on your server: the API key must never
 * reach a browser. Answers keep the API's snake_case shapes (docs/users.md).
 */

import { RosterApiError } from './errors';
import type { components, paths } from './generated/openapi';
import { buildHttpUrl } from './url';

// The REST shapes come from src/generated/openapi.ts, generated from the
// server's OpenAPI document (`npm run gen:types`): a field renamed or removed
// in the server breaks this file's type-check. What the document cannot say
// (below: fields it marks optional that the server always sends, and the
// vendor aliases it does not list) is added here, keyed by the generated
// field names so that it breaks the same way.

type Schemas = components['schemas'];
type AccountPaths = {
  [P in keyof paths as P extends `/v1/accounts/{accountId}${infer Rest}` ? Rest : never]: paths[P];
};
/** The `data` of a JSON success answer (a marker type, which fails to type-check where used, if it has none). */
type SuccessData<Response> = Response extends { content: { 'application/json': { data?: infer D } } }
  ? NonNullable<D>
  : { __error: 'this answer has no JSON `data` in the OpenAPI document' };
/** `{ [k in keyof T]: T[k] }`: shows an intersection as one object type. */
type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** `Omit` that refuses a key `T` does not have. */
type StrictOmit<T, K extends keyof T> = Omit<T, K>;
/** `T` with the keys `K` (which must exist in `T`) required and never `undefined`. */
type WithRequired<T, K extends keyof T> = Simplify<Omit<T, K> & Required<Pick<T, K>>>;
/** The alias names a body accepts, each typed as the documented field it stands for. */
type Aliases<Body, M extends Record<string, keyof Body>> = { [A in keyof M]?: Body[M[A]] };

type UserView = Schemas['UserView'];
/**
 * Keys the server always sends (`null` when unset) although the document
 * marks them optional (utoipa leaves every `Option` field out of `required`).
 * `email` and `phone` are truly optional: they are left out for viewers who
 * may not see them.
 */
type UserAlwaysSent =
  | 'room_id'
  | 'custom_id'
  | 'username'
  | 'name'
  | 'nickname'
  | 'bio'
  | 'profile_picture'
  | 'link'
  | 'status_message'
  | 'last_seen_at'
  | 'deactivated_at';

/**
 * A user as the API answers it: the document's `UserView` (`email`, `phone`,
 * `metadata["@private"]` only for API keys and `view-other-user-info`; `status`
 * is `offline` until the user joins a room on the realtime connection).
 */
export type RosterUser = WithRequired<UserView, UserAlwaysSent>;

/** A room as the API answers it: the document's `Room` (`space_id` and `created_by` always sent, maybe `null`). */
export type RosterRoom = WithRequired<Schemas['Room'], 'space_id' | 'created_by'>;

type CreateUserRequest = Schemas['CreateUserRequest'];
/**
 * The body of `POST /users`: the document's `CreateUserRequest` (the union of
 * CollabKit, CometChat, Rocket.Chat and LiveDigital) plus the camelCase and
 * vendor aliases the server also accepts. Send each field under one of its
 * names, never two. Unknown fields are refused.
 */
export type CreateUserBody = Simplify<
  CreateUserRequest &
    Aliases<
      CreateUserRequest,
      {
        roomId: 'room_id';
        profilePicture: 'profile_picture';
        avatar: 'profile_picture';
        customId: 'custom_id';
        uid: 'custom_id';
        statusMessage: 'status_message';
        statusText: 'status_message';
        withAuthToken: 'with_auth_token';
        joinDefaultChannels: 'join_default_channels';
        requirePasswordChange: 'require_password_change';
        setRandomPassword: 'set_random_password';
        sendWelcomeEmail: 'send_welcome_email';
        customFields: 'custom_fields';
        captchaToken: 'captcha_token';
      }
    >
>;

type CreateRoom = Schemas['CreateRoom'];
/**
 * The body of `POST /rooms`: the document's `CreateRoom` plus its camelCase
 * aliases; `visibility` is `public` (default) or `private` (members only) —
 * the document gives it as a string with that pattern, the SDK as the
 * document's `Visibility` enum.
 */
export type CreateRoomBody = Simplify<
  StrictOmit<CreateRoom, 'visibility'> & {
    visibility?: Schemas['Visibility'] | null;
  } & Aliases<CreateRoom, { spaceId: 'space_id'; isDefault: 'is_default' }>
>;

/** What `createUser` resolves with: the user and their realtime token (a 90-day JWT). */
export type CreatedUser = Simplify<StrictOmit<Schemas['UserCreated'], 'user'> & { user: RosterUser }>;

// The `data` of each success answer the helper reads.
type CreateUserData = SuccessData<AccountPaths['/users']['post']['responses'][201]>;
type CreateRoomData = SuccessData<AccountPaths['/rooms']['post']['responses'][201]>;
type GetUserData = SuccessData<AccountPaths['/users/{userId}']['get']['responses'][200]>;

/** The document's user as the SDK types it: the server always sends the `UserAlwaysSent` keys. */
const wireUser = (user: UserView): RosterUser => user as RosterUser;
/** The document's room as the SDK types it: the server always sends `space_id` and `created_by`. */
const wireRoom = (room: Schemas['Room']): RosterRoom => room as RosterRoom;

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

/**
 * The envelope of every native answer (the document's `Envelope`, its
 * `error` an `ErrorBody`), read defensively: a proxy's or a broken answer
 * may lack any part of it.
 */
type Envelope<T> = Partial<Omit<Schemas['Envelope'], 'data' | 'error'>> & {
  data?: T | null;
  error?: Partial<Schemas['ErrorBody']> | null;
};

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
  async createUser(body: CreateUserBody): Promise<CreatedUser> {
    const data = await this.call<CreateUserData>('POST', '/users', body);
    return { ...data, user: wireUser(data.user) };
  }

  /** `POST /rooms` → the room. */
  async createRoom(body: CreateRoomBody): Promise<RosterRoom> {
    return wireRoom((await this.call<CreateRoomData>('POST', '/rooms', body)).room);
  }

  /** `GET /users/{userId}` → the user (its `status` shows presence). */
  async getUser(userId: string): Promise<RosterUser> {
    return wireUser((await this.call<GetUserData>('GET', `/users/${encodeURIComponent(userId)}`)).user);
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
