//! The storage contract: one suite, written once against `Arc<dyn Store>`,
//! run against every backend.
//!
//! SQLite runs on a fresh file per test. PostgreSQL runs on a fresh database
//! per test when `ROSTER_TEST_POSTGRES_URL` names a server (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); without it the `postgres::*`
//! tests say they were skipped and pass, except when `CI=true`, where they
//! fail so that CI never skips a backend silently.

mod access;
mod accounts;
mod events;
mod harness;
mod isolation;
mod nodes;
mod presence;
mod rooms;
mod sessions;
mod tokens;
mod users;

/// Declares each listed contract test once per backend, as
/// `sqlite::<name>` and `postgres::<name>`.
macro_rules! contract {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = crate::harness::Backend::sqlite().await;
                    crate::$module::$name(backend.store()).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = crate::harness::Backend::postgres().await else {
                        return;
                    };
                    crate::$module::$name(backend.store()).await;
                }
            )*
        }
    };
}

contract! {
    access::invites_expire_are_used_up_and_revoked,
    access::the_room_cap_holds_under_concurrent_joins,
    access::one_time_links_work_once_and_permanent_ones_until_they_expire,
    presence::presence_transitions_are_recorded_and_reset,
    presence::membership_is_looked_up_within_the_account,
    accounts::an_account_and_its_first_key_round_trip,
    accounts::accounts_are_listed_by_id_in_pages,
    accounts::api_keys_are_listed_revoked_and_looked_up,
    accounts::custom_field_declarations_are_changed_atomically,
    accounts::server_state_and_signing_keys_are_kept,
    rooms::rooms_are_created_read_listed_patched_and_deleted,
    rooms::deleting_a_room_removes_its_memberships,
    rooms::new_users_join_the_default_rooms_when_asked,
    rooms::joining_more_default_rooms_than_allowed_is_refused,
    events::every_user_change_writes_its_event_with_its_change,
    users::a_user_round_trips_every_field,
    users::unique_clashes_name_the_field_and_write_nothing,
    users::an_unknown_room_is_not_found_and_nothing_is_written,
    users::the_twenty_sixth_bot_is_refused,
    users::the_bot_cap_holds_under_concurrent_writes,
    users::users_are_filtered_and_paged_by_id,
    users::a_patch_sets_clears_replaces_and_merges,
    users::deleting_a_user_erases_everything_of_theirs,
    users::concurrent_creates_with_one_custom_id_let_exactly_one_through,
    tokens::deactivation_ends_tokens_and_reactivation_does_not_revive_them,
    tokens::a_token_is_good_only_until_it_expires_and_only_for_its_user,
    isolation::another_accounts_ids_are_not_found_everywhere,
    sessions::users_are_found_by_each_login_name_within_their_account,
    sessions::a_refresh_token_is_spent_once_and_its_reuse_revokes_the_session,
    sessions::a_refresh_token_expires_and_dies_with_its_user_state,
    sessions::ending_a_session_revokes_its_tokens_and_nothing_else,
    sessions::a_password_change_keeps_one_session_and_ends_the_others,
    sessions::issuing_beyond_the_cap_revokes_the_oldest_live_tokens,
    sessions::the_token_cap_holds_under_concurrent_issues,
    sessions::revoking_everything_before_a_moment_ends_tokens_and_sessions,
    sessions::rotating_the_signing_key_retires_the_others,
    sessions::signup_settings_are_replaced_and_leave_the_rest_alone,
    sessions::the_outbox_is_claimed_once_retried_and_finished,
    sessions::a_reset_link_works_once_before_it_expires_and_ends_the_sessions,
    sessions::mail_and_verification_links_are_written_with_the_user,
    sessions::email_settings_are_replaced_and_leave_the_rest_alone,
}
