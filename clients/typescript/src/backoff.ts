export interface ReconnectOptions {
  /** The delay before the first reconnect attempt, before jitter (default 500 ms). */
  initialDelayMs?: number;
  /** The cap of the delay (default 30 000 ms). */
  maxDelayMs?: number;
  /** Give up after this many failed attempts in a row (default: never). */
  maxAttempts?: number;
}

export const DEFAULT_RECONNECT = { initialDelayMs: 500, maxDelayMs: 30_000, maxAttempts: Infinity } as const;

/**
 * The delay before reconnect attempt `attempt` (1-based): exponential
 * (`initialDelayMs · 2^(attempt-1)`, capped at `maxDelayMs`) with "equal
 * jitter": a uniformly random value between half of it and all of it, so
 * that many clients dropped at once do not come back at once.
 */
export function backoffDelay(
  attempt: number,
  options: { initialDelayMs: number; maxDelayMs: number },
  random: () => number = Math.random,
): number {
  const n = Math.max(1, Math.floor(attempt));
  const exp = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** Math.min(n - 1, 52));
  const base = Math.max(0, exp);
  return Math.round(base / 2 + random() * (base / 2));
}
