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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use ::time::OffsetDateTime;
use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use super::bus::{Bus, BusEvent};
use super::close;
use super::registry::Registry;
use crate::domain::time;
use crate::domain::user::Status;
use crate::store::Store;

pub type ConnId = u64;

/// Frames queued per connection before it counts as not reading.
pub const SEND_QUEUE: usize = 256;

/// What the gateway gets for a registered connection.
pub struct ConnHandle {
    pub id: ConnId,
    pub outbox: Arc<Outbox>,
}

/// A connection's outbound side, shared by the hub (which queues frames,
/// asks for pings and closes) and the gateway (which writes them). One small
/// allocation per connection; the queue itself holds no memory while empty —
/// thousands of idle connections cost nothing here (a bounded `mpsc` would
/// preallocate a block of 32 slots, ~1 KiB, per connection).
#[derive(Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    notify: Notify,
}

#[derive(Default)]
struct OutboxState {
    queue: VecDeque<Utf8Bytes>,
    /// `Some(close code)` once the hub wants the connection closed.
    kill: Option<u16>,
    /// The heartbeat sweeper asks for a ping.
    ping: bool,
}

/// What the gateway should do next for a connection.
#[derive(Debug)]
pub enum Out {
    Frame(Utf8Bytes),
    Ping,
    Close(u16),
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame; a full queue means the client does not read: the
    /// connection is asked to close (4009) and the frame dropped.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        let mut st = self.lock();
        if st.kill.is_some() {
            return false;
        }
        let ok = if st.queue.len() >= SEND_QUEUE {
            st.kill = Some(close::SLOW_CONSUMER);
            false
        } else {
            st.queue.push_back(frame);
            true
        };
        drop(st);
        self.notify.notify_one();
        ok
    }

    /// Asks the connection to close with `code`.
    pub fn close(&self, code: u16) {
        self.lock().kill = Some(code);
        self.notify.notify_one();
    }

    fn ping(&self) {
        self.lock().ping = true;
        self.notify.notify_one();
    }

    fn try_next(&self) -> Option<Out> {
        let mut st = self.lock();
        if let Some(code) = st.kill {
            return Some(Out::Close(code));
        }
        if let Some(frame) = st.queue.pop_front() {
            if st.queue.is_empty() {
                // Give a burst's memory back: an idle connection holds none.
                st.queue = VecDeque::new();
            }
            return Some(Out::Frame(frame));
        }
        std::mem::take(&mut st.ping).then_some(Out::Ping)
    }

    /// The next thing to do; waits while there is nothing. One consumer.
    pub async fn next(&self) -> Out {
        loop {
            if let Some(out) = self.try_next() {
                return out;
            }
            // `notify_one` leaves a permit when nobody waits: no lost wake-up.
            self.notify.notified().await;
        }
    }
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
    outbox: Arc<Outbox>,
    /// Few (`rooms_per_connection`): a vector is smaller than a set.
    rooms: Vec<Uuid>,
    /// The token the connection was opened with, for per-token kicks.
    token: Option<Uuid>,
}

/// One user's presence in one room, on this node.
struct Present {
    conns: usize,
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
    /// How often every connection is pinged (one sweeper for all of them,
    /// not a timer per connection).
    pub heartbeat: Duration,
}

/// A change of this node's presence, settled with the registry in order by
/// one worker: the registry says whether the rest of the world must hear it.
enum Transition {
    Arrive {
        account: Uuid,
        room: Uuid,
        user: Uuid,
        status: Status,
        done: oneshot::Sender<()>,
    },
    Depart {
        account: Uuid,
        room: Uuid,
        user: Uuid,
    },
    Status {
        account: Uuid,
        user: Uuid,
        status: Status,
        rooms: Vec<Uuid>,
    },
}

/// A user's first arrival in a room, or last departure from it, over the
/// whole cluster (the registry says which node saw it): what presence
/// webhooks (`participant.joined|left`) are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participant {
    pub account: Uuid,
    pub room: Uuid,
    pub user: Uuid,
    pub joined: bool,
    pub at: OffsetDateTime,
}

/// Where participant changes go, once someone listens ([`Hub::participants`]).
type ParticipantSink = Arc<OnceLock<mpsc::Sender<Participant>>>;

pub struct Hub {
    state: Mutex<State>,
    registry: Arc<dyn Registry>,
    transitions: mpsc::UnboundedSender<Transition>,
    participants: ParticipantSink,
    limits: Limits,
    next_id: AtomicU64,
}

impl Hub {
    /// Starts the hub: it listens to the bus, settles transitions with the
    /// registry (announcing and persisting them), and beats.
    pub fn start(
        bus: Arc<dyn Bus>,
        store: Arc<dyn Store>,
        registry: Arc<dyn Registry>,
        limits: Limits,
    ) -> Arc<Self> {
        let (transitions, rx) = mpsc::unbounded_channel::<Transition>();
        let participants = ParticipantSink::default();
        tokio::spawn(settle(
            rx,
            bus.clone(),
            store,
            registry.clone(),
            participants.clone(),
        ));
        let hub = Arc::new(Self {
            state: Mutex::default(),
            registry,
            transitions,
            participants,
            limits,
            next_id: AtomicU64::new(1),
        });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(limits.heartbeat.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(hub) = weak.upgrade() else { return };
                for conn in hub.lock().conns.values() {
                    conn.outbox.ping();
                }
            }
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

    /// The participant changes settled on this node from now on, for the
    /// one listener there can be (`None` for a second caller): at most
    /// `capacity` wait; past that they are dropped (and counted) rather
    /// than slow the settling of presence.
    pub fn participants(&self, capacity: usize) -> Option<mpsc::Receiver<Participant>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.participants.set(tx).ok().map(|()| rx)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `in-process`, `redis`, or `redis (degraded: per-node presence)`.
    pub fn presence_mode(&self) -> String {
        self.registry.describe()
    }

    fn send(&self, t: Transition) {
        // The worker lives as long as the hub.
        let _ = self.transitions.send(t);
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
        let outbox = Arc::new(Outbox::default());
        st.conns.insert(
            id,
            Conn {
                account,
                user,
                ip,
                outbox: outbox.clone(),
                rooms: Vec::new(),
                token: None,
            },
        );
        st.users
            .entry((account, user))
            .or_insert(UserState {
                conns: 0,
                status: Status::Online,
            })
            .conns += 1;
        *st.ips.entry(ip).or_default() += 1;
        metrics::gauge!("roster_realtime_connections").increment(1.0);
        Ok(ConnHandle { id, outbox })
    }

    /// Forgets a closed connection; its rooms see it go after the grace period.
    pub fn unregister(self: &Arc<Self>, id: ConnId) {
        let mut st = self.lock();
        let Some(conn) = st.conns.remove(&id) else {
            return;
        };
        for room in &conn.rooms {
            self.leave_locked(&mut st, id, conn.account, conn.user, *room, false);
        }
        if let Some(n) = st.ips.get_mut(&conn.ip) {
            *n -= 1;
            if *n == 0 {
                st.ips.remove(&conn.ip);
            }
        }
        if let Some(u) = st.users.get_mut(&(conn.account, conn.user)) {
            u.conns -= 1;
            if u.conns == 0 {
                st.users.remove(&(conn.account, conn.user));
            }
        }
        metrics::gauge!("roster_realtime_connections").decrement(1.0);
    }

    /// Joins a room; returns who is present there now, on every node.
    pub async fn join(self: &Arc<Self>, id: ConnId, room: Uuid) -> Result<Vec<Member>, Refusal> {
        let (account, arrived) = {
            let mut st = self.lock();
            let st = &mut *st;
            let conn = st.conns.get_mut(&id).ok_or(Refusal::NotJoined)?;
            let (account, user) = (conn.account, conn.user);
            let mut arrived = None;
            if !conn.rooms.contains(&room) {
                if conn.rooms.len() >= self.limits.rooms_per_connection {
                    return Err(Refusal::TooManyRooms);
                }
                conn.rooms.push(room);
                let status = st
                    .users
                    .get(&(account, user))
                    .map_or(Status::Online, |u| u.status);
                let r = st.rooms.entry((account, room)).or_default();
                r.conns.insert(id);
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
                                pending_offline: None,
                            },
                        );
                        let (done, settled) = oneshot::channel();
                        self.send(Transition::Arrive {
                            account,
                            room,
                            user,
                            status,
                            done,
                        });
                        arrived = Some(settled);
                    }
                }
            }
            (account, arrived)
        };
        if let Some(settled) = arrived {
            let _ = settled.await;
        }
        metrics::counter!("roster_realtime_joins_total").increment(1);
        Ok(self.registry.members(account, room).await)
    }

    /// Leaves a room at once (an explicit `leave`).
    pub fn leave(self: &Arc<Self>, id: ConnId, room: Uuid) -> Result<(), Refusal> {
        let mut st = self.lock();
        let conn = st.conns.get_mut(&id).ok_or(Refusal::NotJoined)?;
        let Some(at) = conn.rooms.iter().position(|r| *r == room) else {
            return Err(Refusal::NotJoined);
        };
        conn.rooms.swap_remove(at);
        let (account, user) = (conn.account, conn.user);
        self.leave_locked(&mut st, id, account, user, room, true);
        Ok(())
    }

    fn leave_locked(
        self: &Arc<Self>,
        st: &mut State,
        id: ConnId,
        account: Uuid,
        user: Uuid,
        room: Uuid,
        immediate: bool,
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
            self.send(Transition::Depart {
                account,
                room,
                user,
            });
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
        self.send(Transition::Depart {
            account,
            room,
            user,
        });
    }

    /// `online` or `away`, for the user in every room they are present in.
    pub fn set_status(&self, id: ConnId, status: Status) -> Result<(), Refusal> {
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
        let rooms = st
            .rooms
            .iter()
            .filter(|((a, _), r)| *a == account && r.users.contains_key(&user))
            .map(|((_, room), _)| *room)
            .collect();
        self.send(Transition::Status {
            account,
            user,
            status,
            rooms,
        });
        Ok(())
    }

    /// Delivers a bus event to this node's connections.
    pub fn dispatch(self: &Arc<Self>, event: &BusEvent) {
        match event {
            BusEvent::RoomClosed {
                account_id,
                room_id,
                user_id,
            } => {
                let frame: Utf8Bytes = serde_json::json!({ "type": "removed", "room_id": room_id })
                    .to_string()
                    .into();
                {
                    let mut st = self.lock();
                    let conns: Vec<ConnId> = st
                        .rooms
                        .get(&(*account_id, *room_id))
                        .map(|r| r.conns.iter().copied().collect())
                        .unwrap_or_default();
                    for id in conns {
                        let Some(conn) = st.conns.get_mut(&id) else {
                            continue;
                        };
                        if user_id.is_some_and(|u| u != conn.user) {
                            continue;
                        }
                        conn.rooms.retain(|r| r != room_id);
                        conn.outbox.push(frame.clone());
                        let user = conn.user;
                        self.leave_locked(&mut st, id, *account_id, user, *room_id, true);
                    }
                }
            }
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
                    if let Some(conn) = st.conns.get(id) {
                        // A full queue closes the connection: it does not read.
                        conn.outbox.push(frame.clone());
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
                        conn.outbox.close(close::POLICY);
                        metrics::counter!("roster_realtime_kicks_total").increment(1);
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
                        conn.outbox.close(close::POLICY);
                        metrics::counter!("roster_realtime_kicks_total").increment(1);
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
            conn.outbox.close(code);
        }
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }
}

/// The transition worker: settles each change with the registry, in order,
/// announces what the world must hear, and records status transitions on the
/// user record. Between changes it beats and reaps dead nodes.
async fn settle(
    mut rx: mpsc::UnboundedReceiver<Transition>,
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    registry: Arc<dyn Registry>,
    participants: ParticipantSink,
) {
    // The user record follows in its own task, so that an arrival is
    // announced and acknowledged without waiting for a database write.
    let (records, pending) = mpsc::unbounded_channel();
    tokio::spawn(record(pending, store));
    let persist = |account: Uuid, user: Uuid, status: Status, at: OffsetDateTime| {
        // The recorder lives as long as this worker.
        let _ = records.send((account, user, status, at));
    };
    let presence = |account_id, room_id, user_id, status, at: OffsetDateTime| BusEvent::Presence {
        account_id,
        room_id,
        user_id,
        status,
        at: time::format(at),
    };
    let participant = |account, room, user, joined, at| {
        let Some(tx) = participants.get() else { return };
        if tx
            .try_send(Participant {
                account,
                room,
                user,
                joined,
                at,
            })
            .is_err()
        {
            metrics::counter!("roster_participant_events_dropped_total").increment(1);
        }
    };
    let mut beat = tokio::time::interval(super::registry::HEARTBEAT);
    loop {
        tokio::select! {
            t = rx.recv() => {
                let Some(t) = t else { return };
                let now = time::now();
                match t {
                    Transition::Arrive { account, room, user, status, done } => {
                        if registry.arrive(account, room, user, &time::format(now)).await {
                            bus.publish(presence(account, room, user, status, now));
                            participant(account, room, user, true, now);
                        }
                        if registry.user_rooms(account, user, 1).await == 1 {
                            registry.set_status(account, user, status).await;
                            persist(account, user, status, now);
                        }
                        let _ = done.send(());
                    }
                    Transition::Depart { account, room, user } => {
                        if registry.depart(account, room, user).await {
                            bus.publish(presence(account, room, user, Status::Offline, now));
                            participant(account, room, user, false, now);
                        }
                        if registry.user_rooms(account, user, -1).await <= 0 {
                            persist(account, user, Status::Offline, now);
                        }
                    }
                    Transition::Status { account, user, status, rooms } => {
                        registry.set_status(account, user, status).await;
                        for room in rooms {
                            bus.publish(presence(account, room, user, status, now));
                        }
                        persist(account, user, status, now);
                    }
                }
            }
            _ = beat.tick() => {
                registry.tick().await;
                let reaped = registry.reap().await;
                let now = time::now();
                for (account, room, user) in reaped.gone {
                    bus.publish(presence(account, room, user, Status::Offline, now));
                    participant(account, room, user, false, now);
                }
                for (account, user) in reaped.offline {
                    persist(account, user, Status::Offline, now);
                }
            }
        }
    }
}

/// Writes presence transitions to the user records: whatever queued up while
/// the previous batch was written goes next, one write per user (the latest
/// transition wins, so a user's record never goes back in time), all of the
/// batch's writes at once (the store groups them into few transactions).
async fn record(
    mut rx: mpsc::UnboundedReceiver<(Uuid, Uuid, Status, OffsetDateTime)>,
    store: Arc<dyn Store>,
) {
    let mut batch: Vec<(Uuid, Uuid, Status, OffsetDateTime)> = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let mut latest: HashMap<(Uuid, Uuid), (Status, OffsetDateTime)> = HashMap::new();
        for (account, user, status, at) in batch.drain(..) {
            latest.insert((account, user), (status, at));
        }
        let writes = latest.into_iter().map(|((account, user), (status, at))| {
            let store = store.clone();
            async move {
                if let Err(e) = store.set_presence(account, user, status, at).await {
                    tracing::warn!(error = %e, "could not record presence");
                }
            }
        });
        futures::future::join_all(writes).await;
    }
}
