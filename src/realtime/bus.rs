//! The bus: how presence events and kicks reach every node's connections.
//! `InProcessBus` serves a single node; a Redis implementation serves many.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::user::Status;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusEvent {
    /// Someone's status in a room changed.
    Presence {
        account_id: Uuid,
        room_id: Uuid,
        user_id: Uuid,
        status: Status,
        at: String,
    },
    /// A room is gone (deleted), or — with `user_id` — a member was removed
    /// from it: their connections leave the room.
    RoomClosed {
        account_id: Uuid,
        room_id: Uuid,
        user_id: Option<Uuid>,
    },
    /// Close every connection of a user (deactivated, deleted, revoked).
    Kick {
        account_id: Uuid,
        user_id: Uuid,
        reason: String,
    },
    /// Close the connections opened with one token (revoked, logged out).
    KickToken {
        account_id: Uuid,
        user_id: Uuid,
        token_id: Uuid,
        reason: String,
    },
}

pub trait Bus: Send + Sync + 'static {
    fn publish(&self, event: BusEvent);
    fn subscribe(&self) -> broadcast::Receiver<BusEvent>;
    /// `in-process`, `redis`, … for `/readyz`.
    fn kind(&self) -> &'static str;
}

/// One node: a broadcast channel.
pub struct InProcessBus {
    tx: broadcast::Sender<BusEvent>,
}

impl InProcessBus {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(65_536).0,
        }
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus for InProcessBus {
    fn publish(&self, event: BusEvent) {
        // No subscriber yet simply means nobody to tell.
        let _ = self.tx.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }
}
