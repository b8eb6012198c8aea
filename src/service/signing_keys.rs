//! The token signing keys, rotated by the [`Operator`]: new tokens carry
//! the new `kid`; the old key keeps verifying, and stays in the JWKS, for
//! 90 days.

use super::{Operator, Result};
use crate::app::App;

/// Retires the signing key in use and signs new tokens with a new one;
/// returns the new `kid`. Other nodes re-read the keys at the first token
/// that names the new one (and every minute).
pub async fn rotate(app: &App, operator: &Operator) -> Result<String> {
    let by = crate::domain::event::ActorRef::OPERATOR;
    let kid = app
        .keys
        .rotate(app.store.as_ref(), by, operator.request_id.clone())
        .await?;
    tracing::info!(kid = %kid, "signing key rotated");
    Ok(kid)
}
