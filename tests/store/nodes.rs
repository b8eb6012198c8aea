//! PostgreSQL only: what several Roster nodes sharing one database need.

use roster::store::Store;
use roster::store::postgres::PostgresStore;
use sqlx::Connection;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_the_database_once() {
    let Some(database) = TestDatabase::new().await else {
        return;
    };
    let nodes = futures::future::join_all((0..4).map(|_| PostgresStore::open(&database.url))).await;
    let nodes: Vec<PostgresStore> = nodes
        .into_iter()
        .map(|n| n.expect("every node opens"))
        .collect();

    // Each sees the schema, and what one writes the others read.
    let account = new_account(&nodes[0]).await;
    for node in &nodes {
        assert_eq!(node.backend(), "postgres");
        node.ping().await.unwrap();
        assert_eq!(node.get_account(account).await.unwrap().id, account);
    }
    drop(nodes);
    let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let known: Vec<i64> = roster::store::postgres::migrator()
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(applied, known, "each migration applied once");
    // Opening again later finds nothing left to do.
    PostgresStore::open(&database.url).await.unwrap();
    let _ = conn.close().await;
}
