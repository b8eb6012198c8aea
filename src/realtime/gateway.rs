//! The WebSocket endpoint `/v1/realtime`: authenticates at the upgrade, then
//! runs one loop per connection that reads client frames, writes answers and
//! the hub's queued events, pings, and enforces the limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::close;
use super::hub::{ConnHandle, Hub, Out, Refusal};
use crate::app::App;
use crate::config::Config;
use crate::domain::room::Visibility;
use crate::domain::user::Status;
use crate::http::envelope::ApiError;
use crate::service::{Actor, ActorKind, access_links};
use crate::store::{Store, StoreError, TokenCheck};

/// Who a connection belongs to, from its token.
#[derive(Clone, Copy)]
struct Identity {
    account: Uuid,
    /// The user's id; for a guest, the id of their access link.
    user: Uuid,
    token_room: Option<Uuid>,
    /// A guest (access-link token) may join only its room.
    guest: bool,
    /// The token's id (a guest's: its link's), for per-token kicks.
    token: Uuid,
}

/// Open the realtime connection (WebSocket). The `user` token comes as
/// `Authorization: Bearer` or the `token` query parameter. Protocol:
/// `docs/realtime.md`.
#[utoipa::path(get, path = "/v1/realtime", tag = "realtime",
    params(("token" = Option<String>, Query, description = "the user token, for browsers")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, description = "No token, or an invalid, revoked or expired one"),
        (status = 403, description = "Origin not allowed"),
        (status = 429, description = "Too many connections for this user or address"),
    ))]
pub async fn realtime(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match authorize(&app, &headers, &query).await {
        Err(e) => e.into_response(),
        Ok(who) => {
            let ws = match ws {
                Ok(ws) => ws,
                Err(_) => {
                    return ApiError::bad_request("this route takes a WebSocket upgrade")
                        .into_response();
                }
            };
            // Behind a trusted proxy, the per-address cap counts clients.
            let ip = crate::http::auth::client_ip(&app, &headers, peer);
            let handle = match app.hub.register(who.account, who.user, ip) {
                Ok(h) => {
                    app.hub.bind_token(h.id, who.token);
                    h
                }
                Err(r) => {
                    let reason = match r {
                        Refusal::TooManyForIp => "address",
                        Refusal::TooManyForUser => "user",
                        _ => "other",
                    };
                    metrics::counter!("roster_realtime_refused_total", "reason" => reason)
                        .increment(1);
                    let msg = match r {
                        Refusal::TooManyForIp => "too many realtime connections from this address",
                        _ => "too many realtime connections for this user",
                    };
                    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", msg);
                    e.retry_after = Some(5);
                    return e.into_response();
                }
            };
            if who.guest
                && let Err(e) = open_guest_link(&app, &who).await
            {
                app.hub.unregister(handle.id);
                return e.into_response();
            }
            let limit = app.config.realtime_max_frame_bytes;
            let tasks = app.realtime_tasks.clone();
            // tungstenite's read buffer is allocated up front and kept for
            // the connection's life (its 128 KiB default would dominate the
            // memory of thousands of idle sockets); client frames are a few
            // hundred bytes, and a larger one grows the buffer as needed.
            // Writes go out unbuffered.
            ws.max_message_size(limit)
                .max_frame_size(limit)
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(0)
                .max_write_buffer_size(limit.max(64 * 1024) * 2)
                .on_failed_upgrade({
                    let hub = app.hub.clone();
                    let id = handle.id;
                    move |_| hub.unregister(id)
                })
                .on_upgrade(move |socket| {
                    let parts = Parts {
                        hub: app.hub,
                        store: app.store,
                        config: app.config,
                        shutdown: app.realtime_shutdown,
                    };
                    let task = tasks.track_future(connection(parts, socket, handle, who));
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| {
                        tracing::debug!(
                            bytes = std::mem::size_of_val(&task),
                            "realtime: the state of one connection's task"
                        );
                    });
                    task
                })
        }
    }
}

async fn authorize(
    app: &App,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Identity, ApiError> {
    let allowed = &app.config.realtime_allowed_origins;
    if !allowed.is_empty()
        && let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && !allowed.iter().any(|a| a == origin)
    {
        return Err(ApiError::forbidden(
            "this Origin may not open realtime connections",
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned())
        .or_else(|| query.get("token").cloned())
        .ok_or_else(|| {
            ApiError::unauthorized("send the user token as `Authorization: Bearer …` or `?token=`")
        })?;
    let claims = match app.verify_account_token(&token).await {
        Ok(c) => c,
        Err(_) => return authorize_guest(app, &token).await,
    };
    match app
        .store
        .check_user_token(
            claims.account_id,
            claims.user_id,
            claims.jti,
            crate::domain::time::now(),
        )
        .await
        .map_err(ApiError::from)?
    {
        TokenCheck::Valid(user) if claims.typ == "access" && user.require_password_change => Err(
            ApiError::forbidden("this user must change their password first: POST /auth/password"),
        ),
        TokenCheck::Valid(_) => Ok(Identity {
            account: claims.account_id,
            user: claims.user_id,
            token_room: claims.room_id,
            guest: false,
            token: claims.jti,
        }),
        TokenCheck::Invalid => Err(ApiError::unauthorized(
            "the token was revoked, or its user is deactivated or deleted",
        )),
    }
}

/// A guest link's token, by its signature. The link itself is opened (and a
/// one-time link spent) by [`open_guest_link`], once nothing but the
/// upgrade itself can still refuse the connection.
async fn authorize_guest(app: &App, token: &str) -> Result<Identity, ApiError> {
    let claims = app
        .keys
        .verify_guest_token(token)
        .map_err(|_| ApiError::unauthorized("the token is not a valid user or guest token"))?;
    Ok(Identity {
        account: claims.account_id,
        user: claims.link_id,
        token_room: Some(claims.room_id),
        guest: true,
        token: claims.link_id,
    })
}

/// Opens a guest's link: it must still be live and for the room the token
/// names; a one-time link is spent now. Called after every other check of
/// the request (a plain GET without an upgrade, a connection limit), so a
/// refused request leaves the link as it was.
async fn open_guest_link(app: &App, who: &Identity) -> Result<(), ApiError> {
    let guest = Actor {
        account_id: who.account,
        kind: ActorKind::Guest {
            link_id: who.user,
            room_id: who.token_room.unwrap_or_default(),
        },
        request_id: Some(crate::http::envelope::request_id()),
        surface: None,
    };
    access_links::open(app, &guest).await?;
    Ok(())
}

/// A token bucket for client frames.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            tokens: rate * 2.0,
            rate,
            burst: rate * 2.0,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// tungstenite's read buffer per connection, in bytes.
const READ_BUFFER: usize = 512;
/// How long one write to a client may take before it counts as not reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Refused frames (over the rate) before the connection is closed.
const MAX_RATE_VIOLATIONS: u32 = 20;

/// What a connection needs of the app: a few handles, not the whole `App`
/// (344 bytes that every connection's task would hold for its life).
struct Parts {
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    config: Arc<Config>,
    shutdown: tokio_util::sync::CancellationToken,
}

/// What woke a connection up.
enum Event {
    Shutdown,
    Out(Out),
    In(Option<Result<Message, axum::Error>>),
}

/// One connection's loop. It is the whole of the connection's task, kept
/// small on purpose: the task's future is allocated once per connection and
/// lives as long as it, so the rare, large states (handling a client frame,
/// which may read the database) are boxed while they run rather than inlined,
/// and no timer lives here (the hub's one sweeper asks for pings).
// Not an `async fn`: its arguments would be moved into locals and the task
// would hold both copies (1,624 bytes, against 1,152 as an `async` block).
#[allow(clippy::manual_async_fn)]
fn connection(
    app: Parts,
    mut socket: WebSocket,
    handle: ConnHandle,
    who: Identity,
) -> impl Future<Output = ()> + Send {
    async move {
        let ConnHandle { id, outbox } = handle;
        let silence = Duration::from_millis(app.config.heartbeat_timeout_ms.max(10));
        let mut last_heard = Instant::now();
        let mut bucket = Bucket::new(app.config.realtime_frames_per_second);
        let mut violations = 0u32;

        // A string at once: a `Value` bound here would live (with its heap
        // map) as long as the connection.
        let welcome = json!({
            "type": "welcome",
            "connection_id": id.to_string(),
            "user_id": who.user,
            "account_id": who.account,
            "guest": who.guest,
            "heartbeat_ms": app.config.heartbeat_ms,
        })
        .to_string();
        let mut close_code: Option<u16> = if send(&mut socket, welcome.into()).await {
            None
        } else {
            Some(close::SLOW_CONSUMER)
        };

        while close_code.is_none() {
            let event = tokio::select! {
                () = app.shutdown.cancelled() => Event::Shutdown,
                out = outbox.next() => Event::Out(out),
                msg = socket.recv() => Event::In(msg),
            };
            match event {
                Event::Shutdown => close_code = Some(close::GOING_AWAY),
                Event::Out(Out::Close(code)) => close_code = Some(code),
                Event::Out(Out::Frame(frame)) => {
                    if !send(&mut socket, frame).await {
                        close_code = Some(close::SLOW_CONSUMER);
                    }
                }
                Event::Out(Out::Ping) => {
                    if last_heard.elapsed() > silence {
                        close_code = Some(close::HEARTBEAT_TIMEOUT);
                    } else if !send_message(&mut socket, Message::Ping(Default::default())).await {
                        close_code = Some(close::SLOW_CONSUMER);
                    }
                }
                Event::In(msg) => {
                    last_heard = Instant::now();
                    match msg {
                        None | Some(Ok(Message::Close(_))) => break,
                        Some(Err(e)) => {
                            let text = e.to_string();
                            if text.contains("too long")
                                || text.contains("Space limit")
                                || text.contains("capacity")
                            {
                                close_code = Some(close::TOO_BIG);
                            } else {
                                break;
                            }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Binary(_))) => {
                            let e = error_frame(&None, "BAD_REQUEST", "frames are JSON text");
                            if !send(&mut socket, e).await {
                                close_code = Some(close::SLOW_CONSUMER);
                            }
                        }
                        Some(Ok(Message::Text(text))) => {
                            let answers = if bucket.take() {
                                violations = 0;
                                // Boxed: this state is large and rare (see above).
                                Box::pin(handle_frame(&app.store, &app.hub, id, who, &text)).await
                            } else {
                                violations += 1;
                                if violations >= MAX_RATE_VIOLATIONS {
                                    close_code = Some(close::RATE_LIMITED);
                                    continue;
                                }
                                vec![error_frame(
                                    &frame_id(&text),
                                    "RATE_LIMITED",
                                    "too many frames per second; slow down",
                                )]
                            };
                            for a in answers {
                                if !send(&mut socket, a).await {
                                    close_code = Some(close::SLOW_CONSUMER);
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
        app.hub.unregister(id);
        if let Some(code) = close_code {
            Box::pin(close_with(socket, code)).await;
        }
    }
}

/// Sends our close frame, then lets the client answer pending pings and the
/// close, so it reads the close code rather than a reset connection.
async fn close_with(mut socket: WebSocket, code: u16) {
    let reason = match code {
        close::GOING_AWAY => "server shutting down",
        close::POLICY => "token revoked or user deactivated",
        close::TOO_BIG => "frame too large",
        close::HEARTBEAT_TIMEOUT => "heartbeat timeout",
        close::RATE_LIMITED => "too many frames",
        close::SLOW_CONSUMER => "send queue full",
        _ => "",
    };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if socket.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(m)) = socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        }
    })
    .await;
}

async fn send(socket: &mut WebSocket, text: Utf8Bytes) -> bool {
    send_message(socket, Message::Text(text)).await
}

/// A write that does not complete within `SEND_TIMEOUT` counts as a client
/// that does not read.
async fn send_message(socket: &mut WebSocket, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await,
        Ok(Ok(()))
    )
}

fn frame_id(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("id").cloned())
}

fn error_frame(id: &Option<Value>, code: &str, message: &str) -> Utf8Bytes {
    let mut v = json!({ "type": "error", "code": code, "message": message });
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    v.to_string().into()
}

fn ack(id: &Option<Value>, of: &str, extra: Value) -> Utf8Bytes {
    let mut v = json!({ "type": "ack", "of": of });
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    v.to_string().into()
}

/// Handles one client frame; returns the frames to answer with.
async fn handle_frame(
    store: &Arc<dyn Store>,
    hub: &Arc<Hub>,
    id: u64,
    who: Identity,
    text: &str,
) -> Vec<Utf8Bytes> {
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return vec![error_frame(
            &None,
            "BAD_REQUEST",
            "a frame is a JSON object",
        )];
    };
    let fid = frame.get("id").cloned();
    if let Some(v) = &fid
        && !(v.is_number() || v.as_str().is_some_and(|s| s.chars().count() <= 64))
    {
        return vec![error_frame(
            &None,
            "VALIDATION_ERROR",
            "id must be a number or a string of at most 64 characters",
        )];
    }
    let kind = frame
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let allowed: &[&str] = match kind {
        "join" | "leave" => &["type", "id", "room_id"],
        "set_status" => &["type", "id", "status"],
        "ping" => &["type", "id"],
        _ => {
            return vec![error_frame(
                &fid,
                "BAD_REQUEST",
                "unknown frame type; expected join, leave, set_status or ping",
            )];
        }
    };
    if let Some(k) = frame.keys().find(|k| !allowed.contains(&k.as_str())) {
        return vec![error_frame(
            &fid,
            "VALIDATION_ERROR",
            &format!("unknown field `{k}`"),
        )];
    }
    match kind {
        "ping" => vec![ack(&fid, "ping", json!({}))],
        "set_status" => {
            let status = match frame.get("status").and_then(Value::as_str) {
                Some("online") => Status::Online,
                Some("away") => Status::Away,
                _ => {
                    return vec![error_frame(
                        &fid,
                        "VALIDATION_ERROR",
                        "status must be online or away",
                    )];
                }
            };
            let _ = hub.set_status(id, status);
            vec![ack(&fid, "set_status", json!({ "status": status }))]
        }
        "leave" => {
            let Some(room) = frame
                .get("room_id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::try_parse(s).ok())
            else {
                return vec![error_frame(
                    &fid,
                    "VALIDATION_ERROR",
                    "room_id must be a room id",
                )];
            };
            match hub.leave(id, room) {
                Ok(()) => vec![ack(&fid, "leave", json!({ "room_id": room }))],
                Err(_) => vec![error_frame(
                    &fid,
                    "NOT_FOUND",
                    "this connection has not joined that room",
                )],
            }
        }
        _ => {
            let room = match frame.get("room_id") {
                None | Some(Value::Null) => match who.token_room {
                    Some(r) => r,
                    None => {
                        return vec![error_frame(
                            &fid,
                            "VALIDATION_ERROR",
                            "room_id is required: the token names no room",
                        )];
                    }
                },
                Some(Value::String(s)) => match Uuid::try_parse(s) {
                    Ok(r) => r,
                    Err(_) => return vec![error_frame(&fid, "NOT_FOUND", "room not found")],
                },
                Some(_) => {
                    return vec![error_frame(
                        &fid,
                        "VALIDATION_ERROR",
                        "room_id must be a string",
                    )];
                }
            };
            if who.guest && who.token_room != Some(room) {
                return vec![error_frame(
                    &fid,
                    "FORBIDDEN",
                    "a guest may join only the room of their link",
                )];
            }
            match may_join(store.as_ref(), who, room).await {
                Ok(()) => {}
                Err((code, msg)) => return vec![error_frame(&fid, code, msg)],
            }
            match hub.join(id, room).await {
                Ok(members) => {
                    let mut snapshot =
                        json!({ "type": "snapshot", "room_id": room, "members": members });
                    if let Some(i) = &fid {
                        snapshot["id"] = i.clone();
                    }
                    vec![
                        snapshot.to_string().into(),
                        ack(&fid, "join", json!({ "room_id": room })),
                    ]
                }
                Err(Refusal::TooManyRooms) => vec![error_frame(
                    &fid,
                    "LIMIT",
                    "this connection has joined as many rooms as it may",
                )],
                Err(_) => vec![error_frame(
                    &fid,
                    "INTERNAL_ERROR",
                    "the connection is closing",
                )],
            }
        }
    }
}

/// Public rooms: anyone in the account. Private rooms: members only.
async fn may_join(
    store: &dyn Store,
    who: Identity,
    room: Uuid,
) -> Result<(), (&'static str, &'static str)> {
    let found = match store.get_room(who.account, room).await {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => return Err(("NOT_FOUND", "room not found")),
        Err(e) => {
            tracing::error!(error = %e, "realtime: room lookup failed");
            return Err(("INTERNAL_ERROR", "internal error"));
        }
    };
    // Guests, and public rooms outside any space, need no second read.
    if who.guest || (found.visibility == Visibility::Public && found.space_id.is_none()) {
        return Ok(());
    }
    // The same rule as REST's reads and joins (store::ROOM_VISIBLE).
    match store.room_visible_to(who.account, room, who.user).await {
        Ok(true) => Ok(()),
        Ok(false) if found.visibility == Visibility::Private => {
            Err(("FORBIDDEN", "this room is private and you are not a member"))
        }
        // A public room of a private space the user is not in: not there for them.
        Ok(false) => Err(("NOT_FOUND", "room not found")),
        Err(e) => {
            tracing::error!(error = %e, "realtime: membership lookup failed");
            Err(("INTERNAL_ERROR", "internal error"))
        }
    }
}
