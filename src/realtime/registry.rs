//! Who is present where, across every node: the registry the hub asks
//! before it announces anything. `LocalRegistry` serves one node (and is each
//! node's record of its own part); `RedisRegistry` shares it through Redis,
//! with per-node bookkeeping so that a crashed node's users go offline, and
//! falls back to this node's own view when Redis does not answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::hub::Member;
use crate::domain::user::Status;

#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// The user is now present in the room on this node; true if they were
    /// present nowhere before (announce them).
    async fn arrive(&self, account: Uuid, room: Uuid, user: Uuid, since: &str) -> bool;
    /// The user's last connection in the room on this node is gone; true if
    /// they are now present nowhere (announce them gone).
    async fn depart(&self, account: Uuid, room: Uuid, user: Uuid) -> bool;
    /// Adds `delta` to the number of rooms the user is present in; returns it.
    async fn user_rooms(&self, account: Uuid, user: Uuid, delta: i64) -> i64;
    async fn set_status(&self, account: Uuid, user: Uuid, status: Status);
    async fn status(&self, account: Uuid, user: Uuid) -> Status;
    /// Who is present in the room, everywhere.
    async fn members(&self, account: Uuid, room: Uuid) -> Vec<Member>;
    /// Called every few seconds: a node's heartbeat.
    async fn tick(&self) {}
    /// Users whose node died: (room, user) pairs gone and users now offline.
    async fn reap(&self) -> Reaped {
        Reaped::default()
    }
    /// `in-process`, `redis` or `redis (degraded: per-node presence)`.
    fn describe(&self) -> String;
}

#[derive(Debug, Default)]
pub struct Reaped {
    pub gone: Vec<(Uuid, Uuid, Uuid)>,
    pub offline: Vec<(Uuid, Uuid)>,
}

/// This node's part: (account, room, user, since) present, (account, user,
/// rooms) counts, (account, user, status).
type Snapshot = (
    Vec<(Uuid, Uuid, Uuid, String)>,
    Vec<(Uuid, Uuid, i64)>,
    Vec<(Uuid, Uuid, Status)>,
);

#[derive(Default)]
struct LocalState {
    /// (account, room) → user → (count, since)
    rooms: HashMap<(Uuid, Uuid), HashMap<Uuid, (i64, String)>>,
    user_rooms: HashMap<(Uuid, Uuid), i64>,
    status: HashMap<(Uuid, Uuid), Status>,
}

/// One node's presence, in memory.
#[derive(Default)]
pub struct LocalRegistry {
    state: Mutex<LocalState>,
}

impl LocalRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arrive_now(&self, account: Uuid, room: Uuid, user: Uuid, since: &str) -> bool {
        let mut st = self.lock();
        let e = st
            .rooms
            .entry((account, room))
            .or_default()
            .entry(user)
            .or_insert((0, since.to_owned()));
        e.0 += 1;
        e.0 == 1
    }

    fn depart_now(&self, account: Uuid, room: Uuid, user: Uuid) -> bool {
        let mut st = self.lock();
        let Some(r) = st.rooms.get_mut(&(account, room)) else {
            return false;
        };
        let Some(e) = r.get_mut(&user) else {
            return false;
        };
        e.0 -= 1;
        if e.0 > 0 {
            return false;
        }
        r.remove(&user);
        if r.is_empty() {
            st.rooms.remove(&(account, room));
        }
        true
    }

    fn user_rooms_now(&self, account: Uuid, user: Uuid, delta: i64) -> i64 {
        let mut st = self.lock();
        let n = st.user_rooms.entry((account, user)).or_default();
        *n += delta;
        let v = *n;
        if v <= 0 {
            st.user_rooms.remove(&(account, user));
            st.status.remove(&(account, user));
        }
        v
    }

    fn members_now(&self, account: Uuid, room: Uuid) -> Vec<Member> {
        let st = self.lock();
        st.rooms
            .get(&(account, room))
            .map(|r| {
                r.iter()
                    .map(|(u, (_, since))| Member {
                        user_id: *u,
                        status: st
                            .status
                            .get(&(account, *u))
                            .copied()
                            .unwrap_or(Status::Online),
                        at: since.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every (account, room, user) present and each user's room count, for
    /// replaying this node's part into Redis.
    fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        let present = st
            .rooms
            .iter()
            .flat_map(|((a, r), users)| {
                users
                    .iter()
                    .map(move |(u, (_, since))| (*a, *r, *u, since.clone()))
            })
            .collect();
        let counts = st
            .user_rooms
            .iter()
            .map(|((a, u), n)| (*a, *u, *n))
            .collect();
        let statuses = st.status.iter().map(|((a, u), s)| (*a, *u, *s)).collect();
        (present, counts, statuses)
    }
}

#[async_trait]
impl Registry for LocalRegistry {
    async fn arrive(&self, account: Uuid, room: Uuid, user: Uuid, since: &str) -> bool {
        self.arrive_now(account, room, user, since)
    }

    async fn depart(&self, account: Uuid, room: Uuid, user: Uuid) -> bool {
        self.depart_now(account, room, user)
    }

    async fn user_rooms(&self, account: Uuid, user: Uuid, delta: i64) -> i64 {
        self.user_rooms_now(account, user, delta)
    }

    async fn set_status(&self, account: Uuid, user: Uuid, status: Status) {
        self.lock().status.insert((account, user), status);
    }

    async fn status(&self, account: Uuid, user: Uuid) -> Status {
        self.lock()
            .status
            .get(&(account, user))
            .copied()
            .unwrap_or(Status::Online)
    }

    async fn members(&self, account: Uuid, room: Uuid) -> Vec<Member> {
        self.members_now(account, room)
    }

    fn describe(&self) -> String {
        "in-process".into()
    }
}

/// How long a node counts as alive after its last heartbeat.
const NODE_TTL_SECONDS: u64 = 15;

/// Decrements a hash field and deletes it at zero, atomically.
const DECR_SCRIPT: &str = r"
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if v <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v";

/// The registry shared by every node through Redis. Each node also keeps
/// its own part in a `LocalRegistry`: the answer while Redis is down, and
/// what it replays into Redis when it comes back.
pub struct RedisRegistry {
    redis: super::redis::Redis,
    node: Uuid,
    mine: LocalRegistry,
    degraded: AtomicBool,
    script: redis::Script,
}

impl RedisRegistry {
    pub fn new(redis: super::redis::Redis, node: Uuid) -> Arc<Self> {
        Arc::new(Self {
            redis,
            node,
            mine: LocalRegistry::default(),
            degraded: AtomicBool::new(false),
            script: redis::Script::new(DECR_SCRIPT),
        })
    }

    fn key(&self, parts: &str) -> String {
        format!("{}:{parts}", self.redis.prefix())
    }

    fn node_key(&self, node: Uuid) -> String {
        self.key(&format!("node:{node}"))
    }

    fn degrade(&self, e: &redis::RedisError) {
        if !self.degraded.swap(true, Ordering::SeqCst) {
            tracing::warn!(error = %e, "redis unreachable: presence is per-node until it returns");
        }
    }

    /// Heartbeat: marks this node alive, and, after an outage, puts this
    /// node's part back into Redis (its old part first taken out).
    async fn heartbeat(&self) {
        let mut c = match self.redis.conn().await {
            Ok(c) => c,
            Err(e) => return self.degrade(&e),
        };
        let alive = self.key(&format!("alive:{}", self.node));
        let r: redis::RedisResult<()> = redis::pipe()
            .cmd("SET")
            .arg(&alive)
            .arg(1)
            .arg("EX")
            .arg(NODE_TTL_SECONDS)
            .ignore()
            .cmd("SADD")
            .arg(self.key("nodes"))
            .arg(self.node.to_string())
            .ignore()
            .query_async(&mut c)
            .await;
        if let Err(e) = r {
            self.redis.broken();
            return self.degrade(&e);
        }
        if self.degraded.load(Ordering::SeqCst) {
            match self.resync(&mut c).await {
                Ok(()) => {
                    self.degraded.store(false, Ordering::SeqCst);
                    tracing::info!("redis is back: this node's presence is shared again");
                }
                Err(e) => self.degrade(&e),
            }
        }
    }

    async fn resync(&self, c: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<()> {
        self.take_out(c, self.node).await?;
        let (present, counts, statuses) = self.mine.snapshot();
        let mut p = redis::pipe();
        for (a, r, u, since) in present {
            p.cmd("HINCRBY")
                .arg(self.key(&format!("presence:{a}:{r}")))
                .arg(u.to_string())
                .arg(1)
                .ignore();
            p.cmd("HSETNX")
                .arg(self.key(&format!("since:{a}:{r}")))
                .arg(u.to_string())
                .arg(since)
                .ignore();
            p.cmd("HINCRBY")
                .arg(self.node_key(self.node))
                .arg(format!("p|{a}|{r}|{u}"))
                .arg(1)
                .ignore();
        }
        for (a, u, n) in counts {
            p.cmd("HINCRBY")
                .arg(self.key(&format!("userrooms:{a}")))
                .arg(u.to_string())
                .arg(n)
                .ignore();
            p.cmd("HINCRBY")
                .arg(self.node_key(self.node))
                .arg(format!("u|{a}|{u}"))
                .arg(n)
                .ignore();
        }
        for (a, u, s) in statuses {
            p.cmd("HSET")
                .arg(self.key(&format!("status:{a}")))
                .arg(u.to_string())
                .arg(s.as_str())
                .ignore();
        }
        p.query_async::<()>(c).await
    }

    /// Removes a node's contributions; returns what that took offline.
    async fn take_out(
        &self,
        c: &mut redis::aio::MultiplexedConnection,
        node: Uuid,
    ) -> redis::RedisResult<Reaped> {
        let parts: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(self.node_key(node))
            .query_async(c)
            .await?;
        let mut out = Reaped::default();
        for (field, n) in parts {
            let f: Vec<&str> = field.split('|').collect();
            let ids: Vec<Uuid> = f[1..]
                .iter()
                .filter_map(|s| Uuid::try_parse(s).ok())
                .collect();
            match (f.first().copied(), ids.as_slice()) {
                (Some("p"), [a, r, u]) => {
                    let left: i64 = self
                        .script
                        .key(self.key(&format!("presence:{a}:{r}")))
                        .arg(u.to_string())
                        .arg(n)
                        .invoke_async(c)
                        .await?;
                    if left <= 0 {
                        let _: () = redis::cmd("HDEL")
                            .arg(self.key(&format!("since:{a}:{r}")))
                            .arg(u.to_string())
                            .query_async(c)
                            .await?;
                        out.gone.push((*a, *r, *u));
                    }
                }
                (Some("u"), [a, u]) => {
                    let left: i64 = self
                        .script
                        .key(self.key(&format!("userrooms:{a}")))
                        .arg(u.to_string())
                        .arg(n)
                        .invoke_async(c)
                        .await?;
                    if left <= 0 {
                        out.offline.push((*a, *u));
                    }
                }
                _ => {}
            }
        }
        let _: () = redis::cmd("DEL")
            .arg(self.node_key(node))
            .query_async(c)
            .await?;
        Ok(out)
    }

    async fn try_arrive(
        &self,
        account: Uuid,
        room: Uuid,
        user: Uuid,
        since: &str,
    ) -> redis::RedisResult<bool> {
        let mut c = self.redis.conn().await?;
        let (n,): (i64,) = redis::pipe()
            .cmd("HINCRBY")
            .arg(self.key(&format!("presence:{account}:{room}")))
            .arg(user.to_string())
            .arg(1)
            .cmd("HSETNX")
            .arg(self.key(&format!("since:{account}:{room}")))
            .arg(user.to_string())
            .arg(since)
            .ignore()
            .cmd("HINCRBY")
            .arg(self.node_key(self.node))
            .arg(format!("p|{account}|{room}|{user}"))
            .arg(1)
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    async fn try_depart(&self, account: Uuid, room: Uuid, user: Uuid) -> redis::RedisResult<bool> {
        let mut c = self.redis.conn().await?;
        let left: i64 = self
            .script
            .key(self.key(&format!("presence:{account}:{room}")))
            .arg(user.to_string())
            .arg(1)
            .invoke_async(&mut c)
            .await?;
        let _: i64 = self
            .script
            .key(self.node_key(self.node))
            .arg(format!("p|{account}|{room}|{user}"))
            .arg(1)
            .invoke_async(&mut c)
            .await?;
        if left <= 0 {
            let _: () = redis::cmd("HDEL")
                .arg(self.key(&format!("since:{account}:{room}")))
                .arg(user.to_string())
                .query_async(&mut c)
                .await?;
        }
        Ok(left <= 0)
    }

    async fn try_user_rooms(
        &self,
        account: Uuid,
        user: Uuid,
        delta: i64,
    ) -> redis::RedisResult<i64> {
        let mut c = self.redis.conn().await?;
        let key = self.key(&format!("userrooms:{account}"));
        let field = format!("u|{account}|{user}");
        if delta >= 0 {
            let (n,): (i64,) = redis::pipe()
                .cmd("HINCRBY")
                .arg(&key)
                .arg(user.to_string())
                .arg(delta)
                .cmd("HINCRBY")
                .arg(self.node_key(self.node))
                .arg(&field)
                .arg(delta)
                .ignore()
                .query_async(&mut c)
                .await?;
            Ok(n)
        } else {
            let n: i64 = self
                .script
                .key(&key)
                .arg(user.to_string())
                .arg(-delta)
                .invoke_async(&mut c)
                .await?;
            let _: i64 = self
                .script
                .key(self.node_key(self.node))
                .arg(&field)
                .arg(-delta)
                .invoke_async(&mut c)
                .await?;
            if n <= 0 {
                let _: () = redis::cmd("HDEL")
                    .arg(self.key(&format!("status:{account}")))
                    .arg(user.to_string())
                    .query_async(&mut c)
                    .await?;
            }
            Ok(n)
        }
    }

    async fn try_members(&self, account: Uuid, room: Uuid) -> redis::RedisResult<Vec<Member>> {
        let mut c = self.redis.conn().await?;
        let (present, since, status): (
            HashMap<String, i64>,
            HashMap<String, String>,
            HashMap<String, String>,
        ) = redis::pipe()
            .cmd("HGETALL")
            .arg(self.key(&format!("presence:{account}:{room}")))
            .cmd("HGETALL")
            .arg(self.key(&format!("since:{account}:{room}")))
            .cmd("HGETALL")
            .arg(self.key(&format!("status:{account}")))
            .query_async(&mut c)
            .await?;
        Ok(present
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .filter_map(|(u, _)| {
                let id = Uuid::try_parse(&u).ok()?;
                Some(Member {
                    user_id: id,
                    status: status
                        .get(&u)
                        .and_then(|s| Status::parse(s))
                        .unwrap_or(Status::Online),
                    at: since.get(&u).cloned().unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn try_reap(&self) -> redis::RedisResult<Reaped> {
        let mut c = self.redis.conn().await?;
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key("nodes"))
            .query_async(&mut c)
            .await?;
        let mut out = Reaped::default();
        for node in nodes
            .iter()
            .filter_map(|n| Uuid::try_parse(n).ok())
            .filter(|n| *n != self.node)
        {
            let alive: bool = redis::cmd("EXISTS")
                .arg(self.key(&format!("alive:{node}")))
                .query_async(&mut c)
                .await?;
            if alive {
                continue;
            }
            // One reaper per dead node.
            let lock: Option<String> = redis::cmd("SET")
                .arg(self.key(&format!("reap:{node}")))
                .arg(self.node.to_string())
                .arg("NX")
                .arg("EX")
                .arg(60)
                .query_async(&mut c)
                .await?;
            if lock.is_none() {
                continue;
            }
            tracing::warn!(node = %node, "a node stopped answering: its users go offline");
            let r = self.take_out(&mut c, node).await?;
            out.gone.extend(r.gone);
            out.offline.extend(r.offline);
            let _: () = redis::cmd("SREM")
                .arg(self.key("nodes"))
                .arg(node.to_string())
                .query_async(&mut c)
                .await?;
        }
        Ok(out)
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn arrive(&self, account: Uuid, room: Uuid, user: Uuid, since: &str) -> bool {
        let local = self.mine.arrive_now(account, room, user, since);
        match self.try_arrive(account, room, user, since).await {
            Ok(new) => new,
            Err(e) => {
                self.redis.broken();
                self.degrade(&e);
                local
            }
        }
    }

    async fn depart(&self, account: Uuid, room: Uuid, user: Uuid) -> bool {
        let local = self.mine.depart_now(account, room, user);
        match self.try_depart(account, room, user).await {
            Ok(gone) => gone,
            Err(e) => {
                self.redis.broken();
                self.degrade(&e);
                local
            }
        }
    }

    async fn user_rooms(&self, account: Uuid, user: Uuid, delta: i64) -> i64 {
        let local = self.mine.user_rooms_now(account, user, delta);
        match self.try_user_rooms(account, user, delta).await {
            Ok(n) => n,
            Err(e) => {
                self.redis.broken();
                self.degrade(&e);
                local
            }
        }
    }

    async fn set_status(&self, account: Uuid, user: Uuid, status: Status) {
        self.mine.lock().status.insert((account, user), status);
        let r: redis::RedisResult<()> = async {
            let mut c = self.redis.conn().await?;
            redis::cmd("HSET")
                .arg(self.key(&format!("status:{account}")))
                .arg(user.to_string())
                .arg(status.as_str())
                .query_async(&mut c)
                .await
        }
        .await;
        if let Err(e) = r {
            self.redis.broken();
            self.degrade(&e);
        }
    }

    async fn status(&self, account: Uuid, user: Uuid) -> Status {
        let r: redis::RedisResult<Option<String>> = async {
            let mut c = self.redis.conn().await?;
            redis::cmd("HGET")
                .arg(self.key(&format!("status:{account}")))
                .arg(user.to_string())
                .query_async(&mut c)
                .await
        }
        .await;
        match r {
            Ok(s) => s
                .as_deref()
                .and_then(Status::parse)
                .unwrap_or(Status::Online),
            Err(_) => Registry::status(&self.mine, account, user).await,
        }
    }

    async fn members(&self, account: Uuid, room: Uuid) -> Vec<Member> {
        match self.try_members(account, room).await {
            Ok(m) => m,
            Err(e) => {
                self.redis.broken();
                self.degrade(&e);
                self.mine.members_now(account, room)
            }
        }
    }

    async fn tick(&self) {
        self.heartbeat().await;
    }

    async fn reap(&self) -> Reaped {
        if self.degraded.load(Ordering::SeqCst) {
            return Reaped::default();
        }
        self.try_reap().await.unwrap_or_else(|e| {
            self.degrade(&e);
            Reaped::default()
        })
    }

    fn describe(&self) -> String {
        if self.degraded.load(Ordering::SeqCst) {
            "redis (degraded: per-node presence)".into()
        } else {
            "redis".into()
        }
    }
}

/// How often nodes beat and look for dead peers.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
