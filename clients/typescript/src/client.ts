/**
 * `RosterClient`: the realtime connection to Roster's `/v1/realtime`
 * (protocol: docs/realtime.md in the server repository).
 */

import { backoffDelay, DEFAULT_RECONNECT, type ReconnectOptions } from './backoff';
import { Emitter } from './emitter';
import { RosterConnectionError, RosterError, RosterTimeoutError } from './errors';
import type {
  ConnectionState,
  Member,
  PresenceEvent,
  PresenceStatus,
  RosterClientEvents,
  SettableStatus,
  Snapshot,
  WebSocketConstructor,
  WebSocketLike,
  Welcome,
} from './types';
import { buildRealtimeUrl } from './url';

export interface RosterClientOptions {
  /** `https://roster.example.com` (or `http://…`, `ws://…`, `wss://…`). */
  serverUrl: string;
  /** The user token (`token` of `POST /users`, or `POST /users/{id}/tokens`). */
  authToken: string;
  /**
   * The WebSocket class. Defaults to `globalThis.WebSocket` (browsers,
   * Node ≥ 22, Deno, Bun); where there is none (Node 20) the `ws` package is
   * loaded by `connect()` (a dependency of this package, imported only then,
   * so browser bundles never include it).
   */
  WebSocket?: WebSocketConstructor;
  /**
   * Called before every reconnect attempt for a fresh token (a token-refresh
   * callback). Without it the client reconnects with the token it has, and
   * does not reconnect at all after close code 1008 (token revoked).
   */
  getToken?: () => string | Promise<string>;
  /** Backoff of automatic reconnection, or `false` to never reconnect. */
  reconnect?: ReconnectOptions | false;
  /** How long a request (`join`, `leave`, `setStatus`, `ping`) waits for its answer (default 10 000 ms). */
  requestTimeoutMs?: number;
  /** How long `connect()` (and each reconnect attempt) waits for `welcome` (default 10 000 ms). */
  connectTimeoutMs?: number;
}

/** WebSocket close codes of the protocol. */
export const CloseCodes = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY: 1008,
  TOO_BIG: 1009,
  SERVER_ERROR: 1011,
  HEARTBEAT_TIMEOUT: 4000,
  RATE_LIMITED: 4008,
  SLOW_CONSUMER: 4009,
} as const;

const OPEN = 1;
/** Close code the client uses when it gives up on a silent connection itself. */
const CLIENT_LIVENESS_TIMEOUT = 4000;

type Frame = Record<string, unknown> & { type?: unknown; id?: unknown };

interface Pending {
  type: string;
  resolve: (answer: { ack: Frame; snapshot?: Snapshot }) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  snapshot?: Snapshot;
}

/** The client of Roster's realtime gateway: connect, join rooms, receive presence. */
export class RosterClient extends Emitter<RosterClientEvents> {
  private readonly serverUrl: string;
  private token: string;
  /** The WebSocket class; null until `connect()` loads `ws` where there is no global one. */
  private WS: WebSocketConstructor | null;
  private readonly getToken: (() => string | Promise<string>) | undefined;
  private readonly backoff: Required<ReconnectOptions> | false;
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;

  private socket: WebSocketLike | null = null;
  /** Bumped whenever the client abandons a socket: events of older sockets are ignored. */
  private generation = 0;
  private currentState: ConnectionState = 'idle';
  private currentWelcome: Welcome | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Rooms joined (and to re-join after a reconnect), in join order. */
  private readonly joined = new Set<string>();
  private desiredStatus: SettableStatus = 'online';
  private connecting: Promise<Welcome> | null = null;
  /** Rejects the connection attempt in flight (used by `close()`). */
  private abortOpen: ((err: Error) => void) | null = null;
  private closedByUser = false;
  private attempt = 0;
  private lastCloseCode = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private livenessTimer: ReturnType<typeof setInterval> | null = null;
  private lastHeard = 0;
  private livenessProbe = false;

  constructor(options: RosterClientOptions) {
    super();
    if (!options || typeof options.serverUrl !== 'string') throw new TypeError('serverUrl is required');
    if (typeof options.authToken !== 'string' || options.authToken === '') throw new TypeError('authToken is required');
    if (options.WebSocket !== undefined && typeof options.WebSocket !== 'function') {
      throw new TypeError('WebSocket must be a WebSocket class (e.g. the `ws` package)');
    }
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? null;
    buildRealtimeUrl(options.serverUrl, options.authToken); // validates serverUrl now, not at connect()
    this.serverUrl = options.serverUrl;
    this.token = options.authToken;
    this.WS = WS;
    this.getToken = options.getToken;
    this.backoff =
      options.reconnect === false
        ? false
        : {
            initialDelayMs: options.reconnect?.initialDelayMs ?? DEFAULT_RECONNECT.initialDelayMs,
            maxDelayMs: options.reconnect?.maxDelayMs ?? DEFAULT_RECONNECT.maxDelayMs,
            maxAttempts: options.reconnect?.maxAttempts ?? DEFAULT_RECONNECT.maxAttempts,
          };
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  }

  /** Where the connection stands. */
  get state(): ConnectionState {
    return this.currentState;
  }

  /** The current connection's `welcome` (null while not connected). */
  get welcome(): Welcome | null {
    return this.currentWelcome;
  }

  /** The rooms this client has joined (and re-joins after a reconnect). */
  get rooms(): string[] {
    return [...this.joined];
  }

  /** The status last set with `setStatus` (re-applied after a reconnect). */
  get status(): SettableStatus {
    return this.desiredStatus;
  }

  /**
   * Opens the connection; resolves with the server's `welcome` once it
   * arrives. Rejects with `RosterConnectionError` (`code` `REFUSED`) when the
   * socket closes first — which is how a refused token looks in a browser.
   */
  connect(): Promise<Welcome> {
    if (this.currentState === 'connected' && this.currentWelcome) return Promise.resolve(this.currentWelcome);
    if (this.connecting) return this.connecting;
    if (this.currentState === 'reconnecting') return this.nextConnected();
    this.closedByUser = false;
    this.attempt = 0;
    this.currentState = 'connecting';
    const p: Promise<Welcome> = this.firstOpen().then(
      (welcome) => {
        if (this.connecting === p) this.connecting = null;
        return welcome;
      },
      (err: unknown) => {
        if (this.connecting === p) {
          this.connecting = null;
          if (this.currentState === 'connecting') this.currentState = 'closed';
        }
        throw err;
      },
    );
    this.connecting = p;
    return p;
  }

  /**
   * Joins a room; without `roomId`, the room named in the token (CollabKit's
   * argument-less `join()`). Resolves with the room's snapshot once the server
   * acknowledges; rejects with `RosterError` (`FORBIDDEN`, `NOT_FOUND`,
   * `LIMIT`, …). Joined rooms are re-joined after a reconnect.
   */
  async join(roomId?: string): Promise<Snapshot> {
    const frame: Frame = { type: 'join' };
    if (roomId !== undefined) frame.room_id = roomId;
    const { ack, snapshot } = await this.request(frame);
    const id = str(ack.room_id) ?? snapshot?.roomId ?? roomId;
    if (id === undefined) throw new RosterError('BAD_RESPONSE', 'the join ack names no room');
    this.joined.add(id);
    return snapshot ?? { roomId: id, members: [] };
  }

  /**
   * Leaves a room (`offline` is announced to the others at once). While the
   * client is reconnecting, the room is simply not re-joined.
   */
  async leave(roomId: string): Promise<void> {
    const wasJoined = this.joined.delete(roomId);
    if (this.currentState === 'reconnecting') return;
    try {
      await this.request({ type: 'leave', room_id: roomId });
    } catch (err) {
      if (wasJoined && err instanceof RosterError && err.code !== 'NOT_FOUND') this.joined.add(roomId);
      throw err;
    }
  }

  /**
   * Sets the user's status (`online` or `away`) in every room they joined.
   * While the client is reconnecting, it is remembered and applied once back.
   */
  async setStatus(status: SettableStatus): Promise<void> {
    if (status !== 'online' && status !== 'away') throw new TypeError("status must be 'online' or 'away'");
    if (this.currentState === 'reconnecting') {
      this.desiredStatus = status;
      return;
    }
    await this.request({ type: 'set_status', status });
    this.desiredStatus = status;
  }

  /** Sends a `ping`; resolves with the round trip in milliseconds. */
  async ping(): Promise<number> {
    const started = Date.now();
    await this.request({ type: 'ping' });
    return Date.now() - started;
  }

  /**
   * Closes the connection for good (no reconnect), forgets the joined rooms
   * and rejects every request still waiting. Resolves once the socket has
   * closed (at most ~2 s). `connect()` may be called again afterwards.
   */
  close(): Promise<void> {
    this.closedByUser = true;
    this.connecting = null;
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    const socket = this.socket;
    const wasConnected = this.currentState === 'connected';
    const wasActive = wasConnected || this.currentState === 'reconnecting';
    this.abandonSocket();
    this.abortOpen?.(new RosterConnectionError('CLOSED', 'close() was called'));
    this.abortOpen = null;
    this.rejectAll(new RosterConnectionError('CLOSED', 'close() was called'));
    this.currentState = 'closed';
    this.currentWelcome = null;
    this.joined.clear();
    this.desiredStatus = 'online';
    if (wasActive) this.emit('disconnected', { code: CloseCodes.NORMAL, reason: 'client closed', willReconnect: false });
    if (!socket) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      socket.addEventListener('close', () => {
        clearTimeout(timer);
        resolve();
      });
      try {
        socket.close(CloseCodes.NORMAL, 'client closed');
      } catch {
        clearTimeout(timer);
        resolve();
      }
    });
  }

  // ---- internals ----

  /**
   * `connect()`'s first socket: loads `ws` first when there is no WebSocket
   * class yet (Node 20). `close()` during that load rejects with `CLOSED`.
   */
  private firstOpen(): Promise<Welcome> {
    if (this.WS) return this.open(false);
    return new Promise<Welcome>((resolve, reject) => {
      let aborted = false;
      const abort = (err: Error) => {
        aborted = true;
        reject(err);
      };
      this.abortOpen = abort;
      loadNodeWebSocket().then(
        (WS) => {
          if (this.abortOpen === abort) this.abortOpen = null;
          if (aborted) return;
          this.WS ??= WS;
          this.open(false).then(resolve, reject);
        },
        (err: unknown) => {
          if (this.abortOpen === abort) this.abortOpen = null;
          if (!aborted) reject(err);
        },
      );
    });
  }

  /** Opens one socket and waits for `welcome`. */
  private open(reconnected: boolean): Promise<Welcome> {
    return new Promise<Welcome>((resolve, reject) => {
      let url: string;
      let socket: WebSocketLike;
      try {
        if (!this.WS) throw new Error('no WebSocket class');
        url = buildRealtimeUrl(this.serverUrl, this.token);
        socket = new this.WS(url);
      } catch (err) {
        reject(new RosterConnectionError('REFUSED', `could not open the WebSocket: ${message(err)}`));
        return;
      }
      const gen = ++this.generation;
      this.socket = socket;
      let welcomed = false;
      let httpStatus: number | undefined;
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this.abortOpen === fail) this.abortOpen = null;
        reject(err);
      };
      this.abortOpen = fail;
      const timer = setTimeout(() => {
        if (gen !== this.generation || welcomed) return;
        this.abandonSocket();
        try {
          socket.close();
        } catch {
          /* already closing */
        }
        fail(new RosterConnectionError('TIMEOUT', `no welcome from the server within ${this.connectTimeoutMs} ms`));
      }, this.connectTimeoutMs);

      socket.addEventListener('error', (event: { message?: unknown; error?: { message?: unknown } }) => {
        // Node's `ws` reports a refused upgrade as "Unexpected server response: 401"; browsers say nothing.
        const text = String(event?.message ?? event?.error?.message ?? '');
        const m = /Unexpected server response: (\d{3})/.exec(text);
        if (m) httpStatus = Number(m[1]);
      });
      socket.addEventListener('message', (event: { data: unknown }) => {
        if (gen !== this.generation) return;
        const frame = parseFrame(event.data);
        if (!frame) return;
        this.lastHeard = Date.now();
        if (!welcomed) {
          if (frame.type !== 'welcome') return;
          welcomed = true;
          settled = true;
          clearTimeout(timer);
          if (this.abortOpen === fail) this.abortOpen = null;
          const welcome: Welcome = {
            connectionId: str(frame.connection_id) ?? '',
            userId: str(frame.user_id) ?? '',
            accountId: str(frame.account_id) ?? '',
            heartbeatMs: typeof frame.heartbeat_ms === 'number' ? frame.heartbeat_ms : 25_000,
          };
          this.currentWelcome = welcome;
          this.currentState = 'connected';
          this.attempt = 0;
          this.startLiveness(welcome.heartbeatMs);
          this.emit('connected', { ...welcome, reconnected });
          resolve(welcome);
          if (reconnected) void this.restore();
          return;
        }
        this.onFrame(frame);
      });
      socket.addEventListener('close', (event: { code?: number; reason?: string }) => {
        if (gen !== this.generation) return;
        const code = typeof event?.code === 'number' ? event.code : CloseCodes.ABNORMAL;
        const reason = typeof event?.reason === 'string' ? event.reason : '';
        if (!welcomed) {
          this.socket = null;
          const what =
            httpStatus !== undefined
              ? `the server refused the connection (HTTP ${httpStatus})`
              : 'the connection closed before the server welcomed it (a refused token, origin or connection limit, or an unreachable server)';
          fail(
            new RosterConnectionError('REFUSED', what, {
              closeCode: code,
              closeReason: reason,
              ...(httpStatus !== undefined ? { status: httpStatus } : {}),
            }),
          );
          return;
        }
        this.onClosed(code, reason);
      });
    });
  }

  private onFrame(frame: Frame): void {
    switch (frame.type) {
      case 'ack': {
        const p = this.takePending(frame.id);
        if (p) p.resolve({ ack: frame, ...(p.snapshot ? { snapshot: p.snapshot } : {}) });
        return;
      }
      case 'error': {
        const err = new RosterError(
          str(frame.code) ?? 'ERROR',
          str(frame.message) ?? 'the server refused the frame',
          idOf(frame.id),
        );
        const p = this.takePending(frame.id);
        if (p) p.reject(err);
        else this.emit('error', err);
        return;
      }
      case 'snapshot': {
        const snapshot: Snapshot = {
          roomId: str(frame.room_id) ?? '',
          members: Array.isArray(frame.members) ? frame.members.map(toMember) : [],
        };
        const p = this.pending.get(numericId(frame.id));
        if (p) p.snapshot = snapshot;
        this.emit('snapshot', snapshot);
        return;
      }
      case 'presence': {
        const event: PresenceEvent = {
          roomId: str(frame.room_id) ?? '',
          userId: str(frame.user_id) ?? '',
          status: (str(frame.status) ?? 'offline') as PresenceStatus,
          at: str(frame.at) ?? '',
        };
        this.emit('presence', event);
        return;
      }
      default:
        // `welcome` again or a frame type this SDK does not know yet: ignored.
        return;
    }
  }

  private request(frame: Frame): Promise<{ ack: Frame; snapshot?: Snapshot }> {
    const socket = this.socket;
    if (this.currentState !== 'connected' || !socket || socket.readyState !== OPEN) {
      return Promise.reject(
        new RosterConnectionError('NOT_CONNECTED', `cannot send ${String(frame.type)}: the client is ${this.currentState}`),
      );
    }
    const id = this.nextId++;
    const type = String(frame.type);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) {
          reject(new RosterTimeoutError(`no answer to ${type} (id ${id}) within ${this.requestTimeoutMs} ms`, id));
        }
      }, this.requestTimeoutMs);
      this.pending.set(id, { type, resolve, reject, timer });
      try {
        const { type: t, ...rest } = frame;
        socket.send(JSON.stringify({ type: t, id, ...rest }));
      } catch (err) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new RosterConnectionError('DISCONNECTED', `could not send ${type}: ${message(err)}`));
      }
    });
  }

  private takePending(id: unknown): Pending | undefined {
    const key = numericId(id);
    const p = this.pending.get(key);
    if (!p) return undefined;
    this.pending.delete(key);
    clearTimeout(p.timer);
    return p;
  }

  private rejectAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  /** Forgets the current socket: its later events are ignored. */
  private abandonSocket(): void {
    this.generation++;
    this.socket = null;
    this.stopLiveness();
  }

  /** An established connection closed (not by `close()`). */
  private onClosed(code: number, reason: string): void {
    this.abandonSocket();
    this.currentWelcome = null;
    this.rejectAll(
      new RosterConnectionError('DISCONNECTED', `the connection closed (${code}${reason ? `: ${reason}` : ''})`, {
        closeCode: code,
        closeReason: reason,
      }),
    );
    this.lastCloseCode = code;
    const willReconnect =
      !this.closedByUser && this.backoff !== false && !(code === CloseCodes.POLICY && !this.getToken);
    this.currentState = willReconnect ? 'reconnecting' : 'closed';
    this.emit('disconnected', { code, reason, willReconnect });
    if (willReconnect) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closedByUser || this.backoff === false) return;
    this.attempt++;
    if (this.attempt > this.backoff.maxAttempts) {
      this.giveUp(`gave up reconnecting after ${this.backoff.maxAttempts} attempts`);
      return;
    }
    const delayMs = backoffDelay(this.attempt, this.backoff);
    this.currentState = 'reconnecting';
    this.emit('reconnecting', { attempt: this.attempt, delayMs });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.reconnectNow();
    }, delayMs);
  }

  private async reconnectNow(): Promise<void> {
    if (this.closedByUser) return;
    if (this.getToken) {
      let fresh: string;
      try {
        fresh = await this.getToken();
      } catch (err) {
        if (this.closedByUser) return;
        this.emit('error', new RosterConnectionError('REFUSED', `getToken() failed: ${message(err)}`));
        this.scheduleReconnect();
        return;
      }
      if (this.closedByUser) return;
      if (typeof fresh !== 'string' || fresh === '') {
        this.giveUp('getToken() returned no token');
        return;
      }
      if (this.lastCloseCode === CloseCodes.POLICY && fresh === this.token) {
        this.giveUp('the token was revoked (close 1008) and getToken() returned the same token');
        return;
      }
      this.token = fresh;
    }
    try {
      await this.open(true);
    } catch (err) {
      if (this.closedByUser) return;
      if (err instanceof RosterConnectionError && err.status === 401 && !this.getToken) {
        this.giveUp('the server refuses the token (HTTP 401) and there is no getToken() to get another');
        return;
      }
      this.scheduleReconnect();
    }
  }

  private giveUp(why: string): void {
    this.currentState = 'closed';
    this.emit('error', new RosterConnectionError('REFUSED', why, { closeCode: this.lastCloseCode }));
    this.emit('disconnected', { code: this.lastCloseCode, reason: why, willReconnect: false });
  }

  /** After a reconnect: re-join every room (in order) and re-apply `away`. */
  private async restore(): Promise<void> {
    const gen = this.generation;
    for (const room of [...this.joined]) {
      for (let tries = 0; ; tries++) {
        if (gen !== this.generation) return;
        try {
          await this.join(room);
          break;
        } catch (err) {
          if (gen !== this.generation) return;
          if (err instanceof RosterError && err.code === 'RATE_LIMITED' && tries < 5) {
            await new Promise((r) => setTimeout(r, 1000));
            continue;
          }
          if (err instanceof RosterError && ['FORBIDDEN', 'NOT_FOUND', 'VALIDATION_ERROR'].includes(err.code)) {
            this.joined.delete(room);
          }
          if (err instanceof RosterError || err instanceof RosterConnectionError) this.emit('error', err);
          break;
        }
      }
    }
    if (gen !== this.generation || this.desiredStatus === 'online') return;
    try {
      await this.request({ type: 'set_status', status: this.desiredStatus });
    } catch (err) {
      if (gen === this.generation && (err instanceof RosterError || err instanceof RosterConnectionError)) {
        this.emit('error', err);
      }
    }
  }

  /** While connected and nothing is heard for a heartbeat, ping; no answer means a dead connection. */
  private startLiveness(heartbeatMs: number): void {
    this.stopLiveness();
    const every = Math.max(1000, heartbeatMs);
    this.lastHeard = Date.now();
    this.livenessTimer = setInterval(() => {
      if (this.currentState !== 'connected' || this.livenessProbe) return;
      if (Date.now() - this.lastHeard < every) return;
      this.livenessProbe = true;
      const gen = this.generation;
      this.request({ type: 'ping' })
        .catch((err: unknown) => {
          if (gen === this.generation && err instanceof RosterTimeoutError) {
            const socket = this.socket;
            try {
              socket?.close(CLIENT_LIVENESS_TIMEOUT, 'no answer from the server');
            } catch {
              /* ignore */
            }
            this.onClosed(CLIENT_LIVENESS_TIMEOUT, 'no answer from the server');
          }
        })
        .finally(() => {
          this.livenessProbe = false;
        });
    }, every);
  }

  private stopLiveness(): void {
    if (this.livenessTimer) clearInterval(this.livenessTimer);
    this.livenessTimer = null;
  }

  /** For `connect()` while reconnecting: the next successful connection, or the end. */
  private nextConnected(): Promise<Welcome> {
    return new Promise((resolve, reject) => {
      const offC = this.on('connected', (w) => {
        offC();
        offD();
        const { reconnected: _r, ...welcome } = w;
        resolve(welcome);
      });
      const offD = this.on('disconnected', (d) => {
        if (d.willReconnect) return;
        offC();
        offD();
        reject(new RosterConnectionError('REFUSED', d.reason || 'the connection ended', { closeCode: d.code }));
      });
    });
  }
}

/** `true` in the CommonJS build, `false` in the ESM build (set by tsup.config.ts). */
declare const __ROSTER_CJS__: boolean;

/**
 * The `ws` package, for runtimes without a global `WebSocket` (Node 20),
 * loaded only then. The ESM build imports it with a variable specifier and
 * the bundler hints that make webpack and Vite leave the import alone, so a
 * browser bundle neither includes `ws` nor needs it. The CommonJS build uses
 * `require` (a dynamic `import()` inside CommonJS fails in test runners such
 * as Jest that run modules in a VM without ESM support).
 */
async function loadNodeWebSocket(): Promise<WebSocketConstructor> {
  let mod: unknown;
  try {
    if (__ROSTER_CJS__) {
      mod = require('ws');
    } else {
      const specifier = 'ws';
      mod = await import(/* webpackIgnore: true */ /* @vite-ignore */ specifier);
    }
  } catch (err) {
    throw new RosterConnectionError(
      'REFUSED',
      `there is no global WebSocket and the \`ws\` package could not be loaded (${message(err)}): ` +
        'install it (`npm install ws`) or pass a WebSocket class: `new RosterClient({ ..., WebSocket })`',
    );
  }
  const m = mod as { default?: unknown; WebSocket?: unknown };
  const WS = typeof m.default === 'function' ? m.default : typeof m.WebSocket === 'function' ? m.WebSocket : mod;
  if (typeof WS !== 'function') {
    throw new RosterConnectionError('REFUSED', 'the `ws` package did not export a WebSocket class');
  }
  return WS as WebSocketConstructor;
}

function parseFrame(data: unknown): Frame | null {
  let text: string;
  if (typeof data === 'string') text = data;
  else if (data instanceof ArrayBuffer) text = new TextDecoder().decode(data);
  else if (ArrayBuffer.isView(data)) {
    text = new TextDecoder().decode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  } else return null;
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Frame) : null;
  } catch {
    return null;
  }
}

function toMember(m: unknown): Member {
  const o = (m && typeof m === 'object' ? m : {}) as Record<string, unknown>;
  return {
    userId: str(o.user_id) ?? '',
    status: (str(o.status) ?? 'online') as PresenceStatus,
    at: str(o.at) ?? '',
  };
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Our ids are numbers; an echo that comes back as a numeric string matches too. */
function numericId(id: unknown): number {
  if (typeof id === 'number') return id;
  if (typeof id === 'string' && /^\d+$/.test(id)) return Number(id);
  return NaN;
}

function idOf(id: unknown): string | number | undefined {
  return typeof id === 'number' || typeof id === 'string' ? id : undefined;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
