//! Accounts (tenants), managed with the operator key.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Ids, Operator, encode_cursor, page};
use crate::app::App;
use crate::domain::account::{Account, Scope, account_name};
use crate::domain::event::{ActorRef, Change};
use crate::secret::ApiKeySecret;
use crate::store::NewApiKey;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_account, list_accounts))
        .routes(routes!(get_account))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    name: String,
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
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Creates an account and its first API key. Needs the operator key.
pub async fn create(app: &App, name: &str) -> ApiResult<(Account, String)> {
    let account = Account {
        id: Uuid::now_v7(),
        name: account_name(name)?,
        created_at: crate::domain::time::now(),
    };
    let (secret, hash) = ApiKeySecret::generate();
    let key = NewApiKey {
        id: secret.id,
        name: "default".into(),
        scope: Scope::Full,
        secret_hash: hash,
        created_at: account.created_at,
    };
    let change = Change::new(
        account.created_at,
        ActorRef::OPERATOR,
        Some(super::envelope::request_id()),
    );
    app.store.create_account(&account, &key, &change).await?;
    Ok((account, secret.full))
}

/// Create an account. Needs the operator key.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("operator_key" = [])),
    request_body = CreateAccount,
    responses((status = 201, description = "Account created", body = AccountCreated)))]
async fn create_account(
    State(app): State<App>,
    _op: Operator,
    ApiJson(body): ApiJson<CreateAccount>,
) -> ApiResult {
    let (account, api_key) = create(&app, &body.name).await?;
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
    _op: Operator,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let p = app
        .store
        .list_accounts(page(q.limit, q.cursor.as_deref())?)
        .await?;
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
async fn get_account(State(app): State<App>, _op: Operator, ids: Ids) -> ApiResult {
    let account = app.store.get_account(ids.get("accountId")).await?;
    Ok(ok(StatusCode::OK, "Account", AccountOne { account }))
}
