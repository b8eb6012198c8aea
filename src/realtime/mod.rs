//! The realtime side: the WebSocket gateway (`gateway`), the presence
//! registry of this node (`hub`), and the `bus` every presence event and
//! kick travels through — even on one node, so that one code path serves one
//! node and many (the Redis bus plugs in behind the same trait).
//!
//! Protocol and close codes: `docs/realtime.md`.

pub mod bus;
pub mod gateway;
pub mod hub;
pub mod redis;
pub mod registry;

/// WebSocket close codes Roster uses beyond the standard ones.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    /// The token was revoked, or the user deactivated or deleted.
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const SERVER_ERROR: u16 = 1011;
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    pub const RATE_LIMITED: u16 = 4008;
    pub const SLOW_CONSUMER: u16 = 4009;
}
