/** The realtime endpoint's path. */
export const REALTIME_PATH = '/v1/realtime';

/**
 * Builds the WebSocket URL of the realtime endpoint from a server URL:
 * `http(s)://host[/base]` becomes `ws(s)://host[/base]/v1/realtime?token=…`;
 * a `ws(s)://` URL is used as given, with `/v1/realtime` appended unless its
 * path already ends with it. The token is always put in the `token` query
 * parameter (browsers cannot set headers on a WebSocket).
 */
export function buildRealtimeUrl(serverUrl: string, token: string): string {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw new TypeError(`serverUrl must be an absolute http(s):// or ws(s):// URL, got ${JSON.stringify(serverUrl)}`);
  }
  switch (url.protocol) {
    case 'http:':
      url.protocol = 'ws:';
      break;
    case 'https:':
      url.protocol = 'wss:';
      break;
    case 'ws:':
    case 'wss:':
      break;
    default:
      throw new TypeError(`serverUrl must use http, https, ws or wss, got ${url.protocol}`);
  }
  const path = url.pathname.replace(/\/+$/, '');
  if (!path.endsWith(REALTIME_PATH)) url.pathname = path + REALTIME_PATH;
  url.hash = '';
  url.searchParams.set('token', token);
  return url.toString();
}

/** Builds an http(s) URL of a REST route from a server URL (`ws(s)://` is accepted too). */
export function buildHttpUrl(serverUrl: string, path: string): string {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw new TypeError(`serverUrl must be an absolute http(s):// URL, got ${JSON.stringify(serverUrl)}`);
  }
  if (url.protocol === 'ws:') url.protocol = 'http:';
  else if (url.protocol === 'wss:') url.protocol = 'https:';
  else if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`serverUrl must use http or https, got ${url.protocol}`);
  }
  const base = url.pathname.replace(/\/+$/, '');
  return `${url.protocol}//${url.host}${base}${path}`;
}
