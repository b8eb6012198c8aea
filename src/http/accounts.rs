//! Accounts (tenants), managed with the operator key.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Ids, Operator, encode_cursor, page};
use crate::app::App;
use crate::domain::account::{Account, CreateAccount};
use crate::service::accounts;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_account, list_accounts))
        .routes(routes!(get_account))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountCreated {
    account: Account,
    /// The account's first API key (scope `full`). Shown this once.
    api_key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountList {
    accounts: Vec<Account>,
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountOne {
    account: Account,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size: 1–100, default 50; outside that range the request is refused.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the page before.
    #[param(pattern = r"^([A-Za-z0-9_-]{21}[AQgw])?$")]
    cursor: Option<String>,
}

/// Create an account. Needs the operator key.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("operator_key" = [])),
    request_body = CreateAccount,
    responses((status = 201, description = "Account created", body = AccountCreated)))]
async fn create_account(
    State(app): State<App>,
    op: Operator,
    ApiJson(body): ApiJson<CreateAccount>,
) -> ApiResult {
    let accounts::Created { account, api_key } = accounts::create(&app, &op, &body.name).await?;
    Ok(ok(
        StatusCode::CREATED,
        "Account created",
        AccountCreated { account, api_key },
    ))
}

/// List accounts. Needs the operator key.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", security(("operator_key" = [])),
    params(ListParams), responses((status = 200, description = "Accounts", body = AccountList)))]
async fn list_accounts(
    State(app): State<App>,
    op: Operator,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let p = accounts::list(&app, &op, page(q.limit, q.cursor.as_deref())?).await?;
    Ok(ok(
        StatusCode::OK,
        "Accounts",
        AccountList {
            accounts: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Read one account. Needs the operator key.
#[utoipa::path(get, path = "/v1/accounts/{accountId}", tag = "accounts", security(("operator_key" = [])),
    params(("accountId" = Uuid, Path)), responses((status = 200, description = "Account", body = AccountOne)))]
async fn get_account(State(app): State<App>, op: Operator, ids: Ids) -> ApiResult {
    let account = accounts::get(&app, &op, ids.get("accountId")).await?;
    Ok(ok(StatusCode::OK, "Account", AccountOne { account }))
}
