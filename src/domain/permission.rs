//! Permissions and the built-in roles that hold them.
//!
//! A permission is a kebab-case name (Rocket.Chat's vocabulary). A role is a
//! named set of permissions; the built-in ones are fixed here. API keys with
//! scope `full` hold every permission of their account, `read` keys only the
//! reading ones.

use serde::{Deserialize, Serialize};

/// Every permission Roster checks. Declared once; names derive from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    CreateUser,
    ViewOtherUserInfo,
    EditOtherUserInfo,
    EditOtherUserActiveStatus,
    EditOtherUserPassword,
    DeleteUser,
    AssignRoles,
    ManageRoles,
    CreateSpace,
    CreateRoom,
    ManageRooms,
    ManageApiKeys,
    ManageSettings,
    IssueUserTokens,
    /// Read the account's audit log (every change, who made it, the
    /// resource after it). Not held by `read` keys: the log shows more
    /// than any one resource's reader sees.
    ViewAuditLog,
}

impl Permission {
    pub const ALL: [Permission; 15] = [
        Permission::CreateUser,
        Permission::ViewOtherUserInfo,
        Permission::EditOtherUserInfo,
        Permission::EditOtherUserActiveStatus,
        Permission::EditOtherUserPassword,
        Permission::DeleteUser,
        Permission::AssignRoles,
        Permission::ManageRoles,
        Permission::CreateSpace,
        Permission::CreateRoom,
        Permission::ManageRooms,
        Permission::ManageApiKeys,
        Permission::ManageSettings,
        Permission::IssueUserTokens,
        Permission::ViewAuditLog,
    ];

    /// The permission's name as the API spells it (`manage-roles`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// True for permissions that only read; a `read` API key holds these.
    pub fn is_read_only(self) -> bool {
        matches!(self, Permission::ViewOtherUserInfo)
    }
}

/// The roles every account has. Their id and name are the same.
pub const BUILTIN_ROLES: [&str; 4] = ["admin", "user", "bot", "guest"];

/// Permissions of a built-in role; `None` when `role` is not built in.
pub fn builtin_role_permissions(role: &str) -> Option<&'static [Permission]> {
    match role {
        "admin" => Some(&Permission::ALL),
        "user" | "bot" => Some(&[Permission::CreateRoom, Permission::CreateSpace]),
        "guest" => Some(&[]),
        _ => None,
    }
}

/// Whether a user holding `roles` holds `permission`.
pub fn roles_grant(roles: &[String], permission: Permission) -> bool {
    roles
        .iter()
        .any(|r| builtin_role_permissions(r).is_some_and(|perms| perms.contains(&permission)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_holds_everything_and_guest_nothing() {
        let admin = vec!["admin".to_owned()];
        let guest = vec!["guest".to_owned()];
        for p in Permission::ALL {
            assert!(roles_grant(&admin, p));
            assert!(!roles_grant(&guest, p));
        }
    }

    #[test]
    fn plain_users_may_create_rooms_but_not_users() {
        let user = vec!["user".to_owned()];
        assert!(roles_grant(&user, Permission::CreateRoom));
        assert!(!roles_grant(&user, Permission::CreateUser));
    }

    #[test]
    fn names_are_kebab_case() {
        let v = serde_json::to_value(Permission::EditOtherUserActiveStatus).unwrap();
        assert_eq!(v, "edit-other-user-active-status");
    }
}
