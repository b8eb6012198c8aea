//! An account's webhook endpoints and their delivery log.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::api_keys::ListParams;
use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::webhook::{CreateWebhook, Delivery, UpdateWebhook, Webhook};
use crate::service::webhooks;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(rotate_secret))
        .routes(routes!(retry_delivery))
        .routes(routes!(replay))
        .routes(routes!(send_test))
}

/// A new signing secret, shown this once; the old one keeps signing beside
/// it for 24 h (two signatures in `webhook-signature`). Needs
/// `manage-settings`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/webhooks/{webhookId}/rotate-secret", tag = "webhooks",
    params(("accountId" = Uuid, Path), ("webhookId" = Uuid, Path)),
    responses((status = 200, description = "Secret rotated", body = WebhookCreated)))]
async fn rotate_secret(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let webhooks::Created { webhook, secret } =
        webhooks::rotate_secret(&app, &caller, ids.get("webhookId")).await?;
    Ok(ok(
        StatusCode::OK,
        "Secret rotated",
        WebhookCreated { webhook, secret },
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryOne {
    delivery: Delivery,
}

/// Make one delivery due now again, whatever its state. Needs
/// `manage-settings`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/webhooks/{webhookId}/deliveries/{deliveryId}/retry", tag = "webhooks",
    params(("accountId" = Uuid, Path), ("webhookId" = Uuid, Path), ("deliveryId" = Uuid, Path)),
    responses((status = 202, description = "Delivery queued", body = DeliveryOne)))]
async fn retry_delivery(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let delivery =
        webhooks::retry(&app, &caller, ids.get("webhookId"), ids.get("deliveryId")).await?;
    Ok(ok(
        StatusCode::ACCEPTED,
        "Delivery queued",
        DeliveryOne { delivery },
    ))
}

/// Send the endpoint's matching events again from `since_seq` or `since`
/// (oldest first, at most 10,000 per call). Needs `manage-settings`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/webhooks/{webhookId}/replay", tag = "webhooks",
    params(("accountId" = Uuid, Path), ("webhookId" = Uuid, Path)), request_body = webhooks::Replay,
    responses((status = 202, description = "Events queued", body = webhooks::Replayed)))]
async fn replay(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(body): ApiJson<webhooks::Replay>,
) -> ApiResult {
    let done = webhooks::replay(&app, &caller, ids.get("webhookId"), body).await?;
    Ok(ok(StatusCode::ACCEPTED, "Events queued", done))
}

/// Send the endpoint a `webhook.test` event. Needs `manage-settings`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/webhooks/{webhookId}/test", tag = "webhooks",
    params(("accountId" = Uuid, Path), ("webhookId" = Uuid, Path)),
    responses((status = 202, description = "Test event queued")))]
async fn send_test(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let id = webhooks::test(&app, &caller, ids.get("webhookId")).await?;
    Ok(ok(
        StatusCode::ACCEPTED,
        "Test event queued",
        serde_json::json!({ "event_id": id }),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    webhook: Webhook,
    /// The signing secret (`whsec_…`, Standard Webhooks), shown this once.
    secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookOne {
    webhook: Webhook,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    webhooks: Vec<Webhook>,
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<Delivery>,
    next_cursor: Option<String>,
}

/// Create a webhook endpoint. Needs `manage-settings`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/webhooks", tag = "webhooks",
    params(("accountId" = Uuid, Path)), request_body = CreateWebhook,
    responses((status = 201, description = "Webhook created", body = WebhookCreated)))]
async fn create_webhook(
    State(app): State<App>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult {
    let webhooks::Created { webhook, secret } = webhooks::create(&app, &caller, body).await?;
    Ok(ok(
        StatusCode::CREATED,
        "Webhook created",
        WebhookCreated { webhook, secret },
    ))
}

/// List the account's webhook endpoints. Needs `manage-settings`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/webhooks", tag = "webhooks",
    params(("accountId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Webhooks", body = WebhookList)))]
async fn list_webhooks(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let p = webhooks::list(&app, &caller, page(q.limit, q.cursor.as_deref())).await?;
    Ok(ok(
        StatusCode::OK,
        "Webhooks",
        WebhookList {
            webhooks: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Read a webhook endpoint. Needs `manage-settings`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/webhooks/{webhookId}", tag = "webhooks",
    params(("accountId" = Uuid, Path), ("webhookId" = Uuid, Path)),
    responses((status = 200, description = "Webhook", body = WebhookOne)))]
async fn get_webhook(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let webhook = webhooks::get(&app, &caller, ids.get("webhookId")).await?;
    Ok(ok(StatusCode::OK, "Webhook", WebhookOne { webhook }))
}

/// Change a webhook endpoint (`url`, `events`, `description`, `enabled`).
/// Needs `manage-settings`.
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/webhooks/{webhookId}", tag = "webhooks",
    params(("accountId" = Uuid, Path), ("webhookId" = Uuid, Path)), request_body = UpdateWebhook,
    responses((status = 200, description = "Webhook updated", body = WebhookOne)))]
async fn update_webhook(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> ApiResult {
    let webhook = webhooks::update(&app, &caller, ids.get("webhookId"), body).await?;
    Ok(ok(
        StatusCode::OK,
        "Webhook updated",
        WebhookOne { webhook },
    ))
}

/// Delete a webhook endpoint and its delivery log. Needs `manage-settings`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/webhooks/{webhookId}", tag = "webhooks",
    params(("accountId" = Uuid, Path), ("webhookId" = Uuid, Path)),
    responses((status = 200, description = "Webhook deleted")))]
async fn delete_webhook(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let id = ids.get("webhookId");
    webhooks::delete(&app, &caller, id).await?;
    Ok(ok(
        StatusCode::OK,
        "Webhook deleted",
        serde_json::json!({ "id": id }),
    ))
}

/// An endpoint's deliveries, oldest first, each with its attempts (status,
/// latency, the start of the answer, the error). Needs `manage-settings`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/webhooks/{webhookId}/deliveries", tag = "webhooks",
    params(("accountId" = Uuid, Path), ("webhookId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Deliveries", body = DeliveryList)))]
async fn list_deliveries(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let p = webhooks::deliveries(
        &app,
        &caller,
        ids.get("webhookId"),
        page(q.limit, q.cursor.as_deref()),
    )
    .await?;
    Ok(ok(
        StatusCode::OK,
        "Deliveries",
        DeliveryList {
            deliveries: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}
