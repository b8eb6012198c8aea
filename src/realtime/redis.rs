//! Redis for several nodes: a shared connection that reconnects by itself,
//! and the `RedisBus`, which delivers every event to this node at once and
//! to the other nodes through a pub/sub channel (resubscribing after any
//! outage). Events from this node that come back over Redis are dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, broadcast};
use uuid::Uuid;

use super::bus::{Bus, BusEvent};

/// A Redis client with one multiplexed connection, re-made when broken.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: Arc<Mutex<Option<redis::aio::MultiplexedConnection>>>,
    prefix: Arc<str>,
}

impl Redis {
    /// A client for `url` (`redis://` or, over TLS, `rediss://`, verified
    /// against `ca_file` when given, else the system's trust store).
    pub fn open(url: &str, prefix: &str, ca_file: Option<&str>) -> anyhow::Result<Self> {
        let client = match ca_file {
            None => redis::Client::open(url)?,
            Some(path) => {
                let root_cert = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("cannot read redis_tls_ca_file {path}: {e}"))?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )?
            }
        };
        Ok(Self {
            client,
            conn: Arc::default(),
            prefix: prefix.into(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn config() -> redis::AsyncConnectionConfig {
        redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
    }

    /// The shared connection, connecting if there is none.
    pub async fn conn(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&Self::config())
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection after an error, so the next call reconnects.
    pub fn broken(&self) {
        if let Ok(mut slot) = self.conn.try_lock() {
            *slot = None;
        }
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut c = self.conn().await?;
        let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
        if r.is_err() {
            self.broken();
        }
        r.map(|_| ())
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: Uuid,
    event: BusEvent,
}

pub struct RedisBus {
    redis: Redis,
    node: Uuid,
    local: broadcast::Sender<BusEvent>,
    subscribed: Arc<AtomicBool>,
    channel: String,
}

impl RedisBus {
    pub fn start(redis: Redis, node: Uuid) -> Arc<Self> {
        let channel = format!("{}:bus", redis.prefix());
        let bus = Arc::new(Self {
            redis,
            node,
            local: broadcast::channel(65_536).0,
            subscribed: Arc::new(AtomicBool::new(false)),
            channel,
        });
        let (client, channel, local, subscribed) = (
            bus.redis.client.clone(),
            bus.channel.clone(),
            bus.local.clone(),
            bus.subscribed.clone(),
        );
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match subscribe(&client, &channel, node, &local, &subscribed).await {
                    Ok(()) => tracing::warn!("redis subscription ended; resubscribing"),
                    Err(e) => tracing::warn!(error = %e, "redis subscription failed; retrying"),
                }
                subscribed.store(false, Ordering::SeqCst);
                if local.receiver_count() == 0 && Arc::strong_count(&subscribed) == 1 {
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        });
        bus
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
    node: Uuid,
    local: &broadcast::Sender<BusEvent>,
    subscribed: &AtomicBool,
) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    subscribed.store(true, Ordering::SeqCst);
    tracing::info!("subscribed to the redis bus");
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        let Ok(bytes) = msg.get_payload::<Vec<u8>>() else {
            continue;
        };
        match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(env) if env.node != node => {
                let _ = local.send(env.event);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "unreadable event on the redis bus"),
        }
    }
    Ok(())
}

impl Bus for RedisBus {
    fn publish(&self, event: BusEvent) {
        let _ = self.local.send(event.clone());
        let (redis, channel) = (self.redis.clone(), self.channel.clone());
        let payload = match serde_json::to_vec(&Envelope {
            node: self.node,
            event,
        }) {
            Ok(p) => p,
            Err(_) => return,
        };
        tokio::spawn(async move {
            let r: redis::RedisResult<i64> = async {
                let mut c = redis.conn().await?;
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload)
                    .query_async(&mut c)
                    .await
            }
            .await;
            if let Err(e) = r {
                redis.broken();
                tracing::warn!(error = %e, "could not publish to the redis bus; other nodes miss this event");
            }
        });
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.local.subscribe()
    }

    fn kind(&self) -> &'static str {
        if self.is_subscribed() {
            "redis"
        } else {
            "redis (not subscribed)"
        }
    }
}
