/** Errors thrown (or passed to `error` listeners) by the SDK. */

/** A request on the realtime connection was refused by the server (an `error` frame), or timed out. */
export class RosterError extends Error {
  /** The server's error code (`FORBIDDEN`, `NOT_FOUND`, `VALIDATION_ERROR`, …) or `TIMEOUT`. */
  readonly code: string;
  /** The id of the client frame the error answers, when it answers one. */
  readonly requestId: string | number | undefined;

  constructor(code: string, message: string, requestId?: string | number) {
    super(message);
    this.name = 'RosterError';
    this.code = code;
    this.requestId = requestId;
  }
}

/** The server did not answer a request within `requestTimeoutMs`. `code` is `TIMEOUT`. */
export class RosterTimeoutError extends RosterError {
  constructor(message: string, requestId?: string | number) {
    super('TIMEOUT', message, requestId);
    this.name = 'RosterTimeoutError';
  }
}

/**
 * The realtime connection could not be opened, or was lost.
 *
 * - `code` `REFUSED`: the socket closed before the server's `welcome` frame. A
 *   refused upgrade (401 bad/revoked token, 403 origin, 429 too many
 *   connections) looks exactly like this in browsers, which do not expose the
 *   HTTP status; `status` carries it when the WebSocket implementation does
 *   (Node's `ws` does).
 * - `code` `DISCONNECTED`: the connection closed while a request was waiting.
 * - `code` `NOT_CONNECTED`: a request was made while there is no open connection.
 * - `code` `CLOSED`: `close()` was called.
 * - `code` `TIMEOUT`: no `welcome` within `connectTimeoutMs`.
 */
export class RosterConnectionError extends Error {
  readonly code: 'REFUSED' | 'DISCONNECTED' | 'NOT_CONNECTED' | 'CLOSED' | 'TIMEOUT';
  /** The WebSocket close code, when the socket closed. */
  readonly closeCode: number | undefined;
  /** The WebSocket close reason, when the socket closed. */
  readonly closeReason: string | undefined;
  /** The HTTP status of a refused upgrade, when the WebSocket implementation exposes it (not in browsers). */
  readonly status: number | undefined;

  constructor(
    code: RosterConnectionError['code'],
    message: string,
    details: { closeCode?: number; closeReason?: string; status?: number } = {},
  ) {
    super(message);
    this.name = 'RosterConnectionError';
    this.code = code;
    this.closeCode = details.closeCode;
    this.closeReason = details.closeReason;
    this.status = details.status;
  }
}

/** A REST call of `RosterAdmin` failed; `code`, `field` and `message` come from the error envelope. */
export class RosterApiError extends Error {
  /** `VALIDATION_ERROR`, `NOT_FOUND`, `CONFLICT`, `UNAUTHORIZED`, … (or `NETWORK_ERROR` / `BAD_RESPONSE`). */
  readonly code: string;
  /** The HTTP status (0 when no answer came). */
  readonly status: number;
  /** The field a `VALIDATION_ERROR` or `CONFLICT` names, in its canonical snake_case name. */
  readonly field: string | undefined;
  readonly details: unknown;
  /** The server's `request_id`, to find the request in its logs. */
  readonly requestId: string | undefined;

  constructor(
    code: string,
    message: string,
    status: number,
    extra: { field?: string; details?: unknown; requestId?: string } = {},
  ) {
    super(message);
    this.name = 'RosterApiError';
    this.code = code;
    this.status = status;
    this.field = extra.field;
    this.details = extra.details;
    this.requestId = extra.requestId;
  }
}
