//! This node's presence registry: which connections are open, which rooms
//! each has joined, who is present where. Transitions become `BusEvent`s;
//! events coming back from the bus are delivered to the local connections of
//! the room. The user record's `status` and `last_seen_at` are written on
//! transitions only, in order, by one background task.
//!
//! The lock is a plain mutex held for map updates only — never across an
//! `.await` — and every send to a connection is a non-blocking `try_send`
//! into its bounded queue: a client that does not read is dropped, it never
//! slows the others.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::time::OffsetDateTime;
use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::bus::{Bus, BusEvent};
use super::close;
use crate::domain::time;
use crate::domain::user::Status;
use crate::store::Store;

pub type ConnId = u64;

/// Frames queued per connection before it counts as not reading.
pub const SEND_QUEUE: usize = 256;

/// What the gateway gets for a registered connection.
pub struct ConnHandle {
    pub id: ConnId,
    pub out: mpsc::Receiver<Utf8Bytes>,
    /// Becomes `Some(close code)` when the hub wants the connection closed.
    pub kill: watch::Receiver<Option<u16>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub user_id: Uuid,
    pub status: Status,
    pub at: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyForUser,
    TooManyForIp,
    TooManyRooms,
    NotJoined,
}

struct Conn {
    account: Uuid,
    user: Uuid,
    ip: IpAddr,
    tx: mpsc::Sender<Utf8Bytes>,
    kill: watch::Sender<Option<u16>>,
    rooms: HashSet<Uuid>,
    /// The token the connection was opened with, for per-token kicks.
    token: Option<Uuid>,
}

/// One user's presence in one room.
struct Present {
    conns: usize,
    since: String,
    /// Set while the user's last connection has gone and the grace period runs.
    pending_offline: Option<u64>,
}

#[derive(Default)]
struct Room {
    conns: HashSet<ConnId>,
    users: HashMap<Uuid, Present>,
}

struct UserState {
    conns: usize,
    status: Status,
    rooms_present: usize,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    rooms: HashMap<(Uuid, Uuid), Room>,
    users: HashMap<(Uuid, Uuid), UserState>,
    ips: HashMap<IpAddr, usize>,
    generation: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections_per_user: usize,
    pub connections_per_ip: usize,
    pub rooms_per_connection: usize,
    pub grace: Duration,
}

pub struct Hub {
    state: Mutex<State>,
    bus: Arc<dyn Bus>,
    persist: mpsc::UnboundedSender<(Uuid, Uuid, Status, OffsetDateTime)>,
    limits: Limits,
    next_id: AtomicU64,
}

impl Hub {
    /// Starts the hub: it listens to the bus and persists transitions.
    pub fn start(bus: Arc<dyn Bus>, store: Arc<dyn Store>, limits: Limits) -> Arc<Self> {
        let (persist, mut rx) = mpsc::unbounded_channel::<(Uuid, Uuid, Status, OffsetDateTime)>();
        tokio::spawn(async move {
            while let Some((account, user, status, at)) = rx.recv().await {
                if let Err(e) = store.set_presence(account, user, status, at).await {
                    tracing::warn!(error = %e, "could not record presence");
                }
            }
        });
        let hub = Arc::new(Self {
            state: Mutex::default(),
            bus: bus.clone(),
            persist,
            limits,
            next_id: AtomicU64::new(1),
        });
        let mut events = bus.subscribe();
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => match weak.upgrade() {
                        Some(hub) => hub.dispatch(&event),
                        None => return,
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the hub fell behind the bus");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        hub
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Registers a new connection, within the per-user and per-IP caps.
    pub fn register(&self, account: Uuid, user: Uuid, ip: IpAddr) -> Result<ConnHandle, Refusal> {
        let mut st = self.lock();
        let user_conns = st.users.get(&(account, user)).map_or(0, |u| u.conns);
        if user_conns >= self.limits.connections_per_user {
            return Err(Refusal::TooManyForUser);
        }
        if st.ips.get(&ip).copied().unwrap_or(0) >= self.limits.connections_per_ip {
            return Err(Refusal::TooManyForIp);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, out) = mpsc::channel(SEND_QUEUE);
        let (kill_tx, kill) = watch::channel(None);
        st.conns.insert(
            id,
            Conn {
                account,
                user,
                ip,
                tx,
                kill: kill_tx,
                rooms: HashSet::new(),
                token: None,
            },
        );
        st.users
            .entry((account, user))
            .or_insert(UserState {
                conns: 0,
                status: Status::Online,
                rooms_present: 0,
            })
            .conns += 1;
        *st.ips.entry(ip).or_default() += 1;
        metrics::gauge!("roster_realtime_connections").increment(1.0);
        Ok(ConnHandle { id, out, kill })
    }

    /// Forgets a closed connection; its rooms see it go after the grace period.
    pub fn unregister(self: &Arc<Self>, id: ConnId) {
        let mut events = Vec::new();
        {
            let mut st = self.lock();
            let Some(conn) = st.conns.remove(&id) else {
                return;
            };
            for room in &conn.rooms {
                self.leave_locked(
                    &mut st,
                    id,
                    conn.account,
                    conn.user,
                    *room,
                    false,
                    &mut events,
                );
            }
            if let Some(n) = st.ips.get_mut(&conn.ip) {
                *n -= 1;
                if *n == 0 {
                    st.ips.remove(&conn.ip);
                }
            }
            if let Some(u) = st.users.get_mut(&(conn.account, conn.user)) {
                u.conns -= 1;
                if u.conns == 0 && u.rooms_present == 0 {
                    st.users.remove(&(conn.account, conn.user));
                }
            }
            metrics::gauge!("roster_realtime_connections").decrement(1.0);
        }
        self.emit(events);
    }

    /// Joins a room; returns who is present there now.
    pub fn join(self: &Arc<Self>, id: ConnId, room: Uuid) -> Result<Vec<Member>, Refusal> {
        let mut events = Vec::new();
        let members = {
            let mut st = self.lock();
            let st = &mut *st;
            let conn = st.conns.get_mut(&id).ok_or(Refusal::NotJoined)?;
            let (account, user) = (conn.account, conn.user);
            if !conn.rooms.contains(&room) {
                if conn.rooms.len() >= self.limits.rooms_per_connection {
                    return Err(Refusal::TooManyRooms);
                }
                conn.rooms.insert(room);
                let status = st
                    .users
                    .get(&(account, user))
                    .map_or(Status::Online, |u| u.status);
                let r = st.rooms.entry((account, room)).or_default();
                r.conns.insert(id);
                let now = time::format(time::now());
                match r.users.get_mut(&user) {
                    Some(p) => {
                        p.conns += 1;
                        // Back within the grace period: nobody noticed.
                        p.pending_offline = None;
                    }
                    None => {
                        r.users.insert(
                            user,
                            Present {
                                conns: 1,
                                since: now.clone(),
                                pending_offline: None,
                            },
                        );
                        events.push(BusEvent::Presence {
                            account_id: account,
                            room_id: room,
                            user_id: user,
                            status,
                            at: now,
                        });
                        if let Some(u) = st.users.get_mut(&(account, user)) {
                            u.rooms_present += 1;
                            if u.rooms_present == 1 {
                                let _ = self.persist.send((account, user, u.status, time::now()));
                            }
                        }
                    }
                }
            }
            let r = &st.rooms[&(account, room)];
            r.users
                .iter()
                .map(|(u, p)| Member {
                    user_id: *u,
                    status: st
                        .users
                        .get(&(account, *u))
                        .map_or(Status::Online, |s| s.status),
                    at: p.since.clone(),
                })
                .collect()
        };
        self.emit(events);
        Ok(members)
    }

    /// Leaves a room at once (an explicit `leave`).
    pub fn leave(self: &Arc<Self>, id: ConnId, room: Uuid) -> Result<(), Refusal> {
        let mut events = Vec::new();
        {
            let mut st = self.lock();
            let conn = st.conns.get_mut(&id).ok_or(Refusal::NotJoined)?;
            if !conn.rooms.remove(&room) {
                return Err(Refusal::NotJoined);
            }
            let (account, user) = (conn.account, conn.user);
            self.leave_locked(&mut st, id, account, user, room, true, &mut events);
        }
        self.emit(events);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn leave_locked(
        self: &Arc<Self>,
        st: &mut State,
        id: ConnId,
        account: Uuid,
        user: Uuid,
        room: Uuid,
        immediate: bool,
        events: &mut Vec<BusEvent>,
    ) {
        let Some(r) = st.rooms.get_mut(&(account, room)) else {
            return;
        };
        r.conns.remove(&id);
        let Some(p) = r.users.get_mut(&user) else {
            return;
        };
        p.conns -= 1;
        if p.conns > 0 {
            return;
        }
        if immediate {
            r.users.remove(&user);
            if r.conns.is_empty() && r.users.is_empty() {
                st.rooms.remove(&(account, room));
            }
            Self::gone(st, &self.persist, account, user, room, events);
        } else {
            st.generation += 1;
            let generation = st.generation;
            p.pending_offline = Some(generation);
            let hub = Arc::clone(self);
            let grace = self.limits.grace;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                hub.expire(account, room, user, generation);
            });
        }
    }

    /// The grace period ran out: if the user did not come back, they are gone.
    fn expire(&self, account: Uuid, room: Uuid, user: Uuid, generation: u64) {
        let mut events = Vec::new();
        {
            let mut st = self.lock();
            let Some(r) = st.rooms.get_mut(&(account, room)) else {
                return;
            };
            if !r
                .users
                .get(&user)
                .is_some_and(|p| p.conns == 0 && p.pending_offline == Some(generation))
            {
                return;
            }
            r.users.remove(&user);
            if r.conns.is_empty() && r.users.is_empty() {
                st.rooms.remove(&(account, room));
            }
            Self::gone(&mut st, &self.persist, account, user, room, &mut events);
        }
        self.emit(events);
    }

    /// A user left a room for good: announce it, and record them offline if
    /// it was their last room.
    fn gone(
        st: &mut State,
        persist: &mpsc::UnboundedSender<(Uuid, Uuid, Status, OffsetDateTime)>,
        account: Uuid,
        user: Uuid,
        room: Uuid,
        events: &mut Vec<BusEvent>,
    ) {
        let now = time::now();
        events.push(BusEvent::Presence {
            account_id: account,
            room_id: room,
            user_id: user,
            status: Status::Offline,
            at: time::format(now),
        });
        if let Some(u) = st.users.get_mut(&(account, user)) {
            u.rooms_present -= 1;
            if u.rooms_present == 0 {
                let _ = persist.send((account, user, Status::Offline, now));
                if u.conns == 0 {
                    st.users.remove(&(account, user));
                }
            }
        }
    }

    /// `online` or `away`, for the user in every room they are present in.
    pub fn set_status(&self, id: ConnId, status: Status) -> Result<(), Refusal> {
        let mut events = Vec::new();
        {
            let mut st = self.lock();
            let conn = st.conns.get(&id).ok_or(Refusal::NotJoined)?;
            let (account, user) = (conn.account, conn.user);
            let Some(u) = st.users.get_mut(&(account, user)) else {
                return Ok(());
            };
            if u.status == status {
                return Ok(());
            }
            u.status = status;
            let present = u.rooms_present > 0;
            let at = time::now();
            if present {
                let _ = self.persist.send((account, user, status, at));
            }
            for ((a, room), r) in &st.rooms {
                if *a == account && r.users.contains_key(&user) {
                    events.push(BusEvent::Presence {
                        account_id: account,
                        room_id: *room,
                        user_id: user,
                        status,
                        at: time::format(at),
                    });
                }
            }
        }
        self.emit(events);
        Ok(())
    }

    fn emit(&self, events: Vec<BusEvent>) {
        for e in events {
            self.bus.publish(e);
        }
    }

    /// Delivers a bus event to this node's connections.
    pub fn dispatch(&self, event: &BusEvent) {
        match event {
            BusEvent::Presence {
                account_id,
                room_id,
                user_id,
                status,
                at,
            } => {
                let frame: Utf8Bytes = serde_json::json!({
                    "type": "presence",
                    "room_id": room_id,
                    "user_id": user_id,
                    "status": status,
                    "at": at,
                })
                .to_string()
                .into();
                let st = self.lock();
                let Some(room) = st.rooms.get(&(*account_id, *room_id)) else {
                    return;
                };
                for id in &room.conns {
                    if let Some(conn) = st.conns.get(id)
                        && conn.tx.try_send(frame.clone()).is_err()
                    {
                        // Full (or closing): this client does not read.
                        conn.kill.send_replace(Some(close::SLOW_CONSUMER));
                    }
                }
                metrics::counter!("roster_presence_events_total").increment(1);
            }
            BusEvent::KickToken {
                account_id,
                user_id,
                token_id,
                reason,
            } => {
                let st = self.lock();
                for conn in st.conns.values() {
                    if conn.account == *account_id
                        && conn.user == *user_id
                        && conn.token == Some(*token_id)
                    {
                        conn.kill.send_replace(Some(close::POLICY));
                        tracing::info!(user_id = %user_id, reason = %reason, "closing a revoked token's connection");
                    }
                }
            }
            BusEvent::Kick {
                account_id,
                user_id,
                reason,
            } => {
                let st = self.lock();
                let mut n = 0;
                for conn in st.conns.values() {
                    if conn.account == *account_id && conn.user == *user_id {
                        conn.kill.send_replace(Some(close::POLICY));
                        n += 1;
                    }
                }
                if n > 0 {
                    tracing::info!(user_id = %user_id, connections = n, reason = %reason, "closing a user's connections");
                }
            }
        }
    }

    /// Records the token connection `id` was opened with.
    pub fn bind_token(&self, id: ConnId, token: Uuid) {
        if let Some(conn) = self.lock().conns.get_mut(&id) {
            conn.token = Some(token);
        }
    }

    /// Asks every connection on this node to close with `code`.
    pub fn close_all(&self, code: u16) {
        for conn in self.lock().conns.values() {
            conn.kill.send_replace(Some(code));
        }
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }
}
