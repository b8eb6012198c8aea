//! The `list-users` scenario: `GET /users` with each filter of the list API,
//! at growing account sizes (`--list-sizes`), to show which filters keep
//! their latency as the table grows (keyset pagination over an index) and
//! which do not (a scan). One account is grown over HTTP from one size to
//! the next; the growth itself is a row (`list-users seed→N`).
//!
//! The seeded users are shaped so that each filter selects a known share:
//! user `i` is `Member {i:07}` / `m-{i:07}`, carries tag `t{i % 10}` (10%)
//! and `rare` when `i % 1000 == 0` (0.1%), holds the custom role `Tester`
//! (no permissions) when `i % 100 == 0` (1%; not the built-in `bot`, of
//! which an account may hold 25), and is a member of the room `Lobby` when
//! `i % 10 == 0` (10%). Every user is `offline`.

use std::collections::HashMap;

use super::*;

/// A filter as named in the table, and its query string (after `limit`).
struct Filter {
    label: &'static str,
    query: String,
}

/// The filters measured at one size; `deep` is a keyset cursor 90% of the
/// way through the account, `one` the custom id of a single user.
fn filters(room: &str, role: &str, deep: &str, one: &str) -> Vec<Filter> {
    let f = |label, query: String| Filter { label, query };
    vec![
        f("first page", String::new()),
        f("deep page", format!("&cursor={deep}")),
        f("status=offline (all)", "&status=offline".into()),
        f("status=online (none)", "&status=online".into()),
        f("tag (10%)", "&tag=t3".into()),
        f("tag (10%) deep", format!("&tag=t3&cursor={deep}")),
        f("tag (0.1%)", "&tag=rare".into()),
        f("tag (none)", "&tag=nobody".into()),
        f("role (1%)", format!("&role={role}")),
        f("room (10%)", format!("&room_id={room}")),
        f("q (all)", "&q=member".into()),
        f("q (one user)", format!("&q={one}")),
    ]
}

/// Labels live as long as the run; there are a few dozen.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn size_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

const PAGE: u32 = 50;

/// `list-users`: see the module comment.
pub(super) async fn list_users(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    const NAME: &str = "list-users";
    let account = ctx.create_account("bench list-users").await?;
    let mut api = Api::new(ctx.roster.clone());
    let room = api
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &format!("/v1/accounts/{}/rooms", account.id),
            Some(&account.key),
            Some(&json!({ "name": "Lobby" })),
        )
        .await?;
    let room = str_at(&room, "/room/id")?.to_owned();
    let role = api
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &format!("/v1/accounts/{}/roles", account.id),
            Some(&account.key),
            Some(&json!({ "name": "Tester", "permissions": [] })),
        )
        .await?;
    let role = str_at(&role, "/role/id")?.to_owned();
    let users_path = format!("/v1/accounts/{}/users", account.id);

    let mut rows = Vec::new();
    // The ceiling does not depend on the account size: once per level.
    let mut ceilings = HashMap::new();
    for &c in &ctx.concurrency {
        let ep = ctx.ceiling.clone();
        let path = format!("/v1/accounts/{}/users?limit={PAGE}", Uuid::nil());
        let fake = bearer("ceiling")?;
        let make: MakeRequest =
            Arc::new(move |_, _| ep.request(Method::GET, &path, Some(&fake), None));
        let row = ctx
            .measure_ceiling(NAME, &ctx.load(c, StatusCode::OK, make))
            .await;
        ceilings.insert(c, row.clone());
        rows.push(row);
    }

    // (filter, concurrency) → (size, index in rows), for the growth ratio.
    let mut series: BTreeMap<(&'static str, usize), Vec<(usize, usize)>> = BTreeMap::new();
    let mut seeded = 0usize;
    for &size in &ctx.plan.list_sizes {
        let label = size_label(size);
        rows.push(seed(ctx, &account, &room, &role, seeded, size, &label).await?);
        seeded = size;

        // Setup calls, not measured: the deep cursor and the one user.
        let deep_user = format!("m-{:07}", size * 9 / 10);
        let one_user = format!("m-{:07}", size / 2);
        let found = api
            .expect(
                StatusCode::OK,
                Method::GET,
                &format!("{users_path}?limit=1&q={deep_user}"),
                Some(&account.key),
                None,
            )
            .await?;
        let deep_id = str_at(&found, "/users/0/id")
            .with_context(|| format!("finding {deep_user} for the deep cursor"))?;
        let deep = roster::http::extract::encode_cursor(Uuid::try_parse(deep_id)?);

        for filter in filters(&room, &role, &deep, &one_user) {
            let path = format!("{users_path}?limit={PAGE}{}", filter.query);
            let first = api
                .expect(StatusCode::OK, Method::GET, &path, Some(&account.key), None)
                .await?;
            let page_users = first
                .pointer("/users")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let scenario = leak(format!("{NAME} {label} {}", filter.label));
            for &c in &ctx.concurrency {
                let ep = ctx.roster.clone();
                let (path, key) = (path.clone(), account.key.clone());
                let make: MakeRequest =
                    Arc::new(move |_, _| ep.request(Method::GET, &path, Some(&key), None));
                let load = ctx.load(c, StatusCode::OK, make);
                let mut row = ctx
                    .measure_roster_against(scenario, &load, ceilings.get(&c))
                    .await;
                row.extra.insert("users", size as f64);
                row.extra.insert("page_users", page_users as f64);
                series
                    .entry((filter.label, c))
                    .or_default()
                    .push((size, rows.len()));
                rows.push(row);
            }
        }
    }

    // p99 at the largest size over p99 at the smallest (bar: ≤ 2).
    for points in series.values() {
        if let (Some(&(_, first)), Some(&(_, last))) = (points.first(), points.last())
            && first != last
            && let (Some(small), Some(large)) = (rows[first].p99_ms, rows[last].p99_ms)
            && small > 0.0
        {
            rows[last].extra.insert("p99_vs_smallest", large / small);
        }
    }
    Ok(rows)
}

/// Grows the account from `from` to `to` users over HTTP, 64 at a time,
/// and returns the run as a row (its rate is the seeding rate).
async fn seed(
    ctx: &Ctx,
    account: &Account,
    room: &str,
    role: &str,
    from: usize,
    to: usize,
    label: &str,
) -> anyhow::Result<Row> {
    let ep = ctx.roster.clone();
    let path = format!("/v1/accounts/{}/users", account.id);
    let key = account.key.clone();
    let (room, role) = (room.to_owned(), role.to_owned());
    let next = Arc::new(AtomicU64::new(from as u64));
    let make: MakeRequest = Arc::new(move |_, _| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let mut tags = vec![format!("t{}", i % 10)];
        if i.is_multiple_of(1000) {
            tags.push("rare".into());
        }
        let mut user = json!({
            "name": format!("Member {i:07}"),
            "customId": format!("m-{i:07}"),
            "tags": tags,
        });
        if i.is_multiple_of(100) {
            user["roles"] = json!([role]);
        }
        if i.is_multiple_of(10) {
            user["roomId"] = json!(room);
        }
        ep.request(
            Method::POST,
            &path,
            Some(&key),
            Some(serde_json::to_vec(&user)?),
        )
    });
    let load = Load {
        concurrency: 64,
        // Bounded by the count; the clock is only a safety net.
        duration: Duration::from_secs(3600),
        count: Some((to - from) as u64),
        expect: StatusCode::CREATED,
        make,
        pace: None,
    };
    let scenario = leak(format!("list-users seed→{label}"));
    let mut row = ctx.measure_roster_against(scenario, &load, None).await;
    row.extra.insert("users", to as f64);
    if let Some((kind, t)) = row.error_kinds.iter().next() {
        bail!(
            "seeding {scenario}: {} errors (first: {kind}: {})",
            row.errors,
            t.sample
        );
    }
    Ok(row)
}
