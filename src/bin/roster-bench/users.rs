//! The user scenarios: `create-users` and `get-user`.

use super::*;

/// Builds `POST /users` requests creating distinct users without passwords.
pub(super) fn create_user_requests(ep: &Endpoint, account: &str, key: &HeaderValue) -> MakeRequest {
    let ep = ep.clone();
    let path = format!("/v1/accounts/{account}/users");
    let key = key.clone();
    Arc::new(move |w, n| {
        let body = format!(r#"{{"name":"Bench User {w}-{n}","customId":"b-{w}-{n}"}}"#);
        ep.request(Method::POST, &path, Some(&key), Some(body.into_bytes()))
    })
}

/// `create-users`: each request creates a distinct user (no password).
pub(super) async fn create_users(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    const NAME: &str = "create-users";
    let mut rows = Vec::new();
    for &c in &ctx.concurrency {
        let fake = bearer("ceiling")?;
        let load = ctx.load(
            c,
            StatusCode::CREATED,
            create_user_requests(&ctx.ceiling, &Uuid::nil().to_string(), &fake),
        );
        let ceiling = ctx.measure_ceiling(NAME, &load).await;
        let account = ctx
            .create_account(&format!("bench create-users c{c}"))
            .await?;
        let load = ctx.load(
            c,
            StatusCode::CREATED,
            create_user_requests(&ctx.roster, &account.id, &account.key),
        );
        let roster = ctx.measure_roster(NAME, &load, &ceiling).await;
        rows.push(ceiling);
        rows.push(roster);
    }
    Ok(rows)
}

/// `get-user`: users read themselves with their own token (token check + read).
pub(super) async fn get_user(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    const NAME: &str = "get-user";
    let account = ctx.create_account("bench get-user").await?;
    let mut api = Api::new(ctx.roster.clone());
    let path = format!("/v1/accounts/{}/users", account.id);
    // (path of the user, their own token)
    let mut users: Vec<(String, HeaderValue)> = Vec::with_capacity(ctx.plan.users);
    for i in 0..ctx.plan.users {
        let data = api
            .expect(
                StatusCode::CREATED,
                Method::POST,
                &path,
                Some(&account.key),
                Some(&json!({ "name": format!("Reader {i}"), "customId": format!("r-{i}") })),
            )
            .await
            .context("creating the users to read")?;
        let id = str_at(&data, "/user/id")?;
        users.push((format!("{path}/{id}"), bearer(str_at(&data, "/token")?)?));
    }
    let users = Arc::new(users);
    let reads = |ep: &Endpoint| -> MakeRequest {
        let ep = ep.clone();
        let users = users.clone();
        Arc::new(move |w, n| {
            // Workers start at different users and walk through all of them.
            let i = (w * 7919 + n as usize) % users.len();
            let (path, token) = &users[i];
            ep.request(Method::GET, path, Some(token), None)
        })
    };
    let mut rows = Vec::new();
    for &c in &ctx.concurrency {
        let load = ctx.load(c, StatusCode::OK, reads(&ctx.ceiling));
        let ceiling = ctx.measure_ceiling(NAME, &load).await;
        let load = ctx.load(c, StatusCode::OK, reads(&ctx.roster));
        let roster = ctx.measure_roster(NAME, &load, &ceiling).await;
        rows.push(ceiling);
        rows.push(roster);
    }
    Ok(rows)
}
