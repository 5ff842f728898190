//! Who may do what in an application: the four roles of a console user, ordered by reach.
//! What each allows is written out in `docs/SECURITY.md` ("Roles"); the console's route table
//! (`parley-server/src/console/roles.rs`) and the engine's user management apply it.

use serde::{Deserialize, Serialize};

/// A user's role in one application. Ordered: each role may do all the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything in the application; changes nothing.
    Viewer,
    /// A viewer who also works the audience and the conversations: imports contacts, saves
    /// segments, sends messages and replies. No platforms, templates, campaigns or users.
    Agent,
    /// Everything in the application, including inviting users and changing their roles,
    /// except anything that gives, changes or takes away the owner role.
    Admin,
    /// Everything, including managing owners.
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Agent, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Agent => "agent",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Result<Role, RoleError> {
        match s.trim() {
            "viewer" => Ok(Role::Viewer),
            "agent" => Ok(Role::Agent),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            other => Err(RoleError(crate::excerpt(other).into_owned())),
        }
    }

    /// Whether this role reaches `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    /// Whether a user with this role may give `target`'s role `to` (or take it away): an
    /// admin manages admins, agents and viewers; only an owner touches the owner role.
    pub fn may_manage(self, from: Option<Role>, to: Option<Role>) -> bool {
        let touches_owner = from == Some(Role::Owner) || to == Some(Role::Owner);
        match self {
            Role::Owner => true,
            Role::Admin => !touches_owner,
            Role::Agent | Role::Viewer => false,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role: use owner, admin, agent or viewer")]
pub struct RoleError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Owner.allows(Role::Admin));
        assert!(Role::Admin.allows(Role::Agent));
        assert!(Role::Agent.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Agent));
        assert!(!Role::Agent.allows(Role::Admin));
        assert!(!Role::Admin.allows(Role::Owner));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn only_owners_touch_the_owner_role() {
        assert!(Role::Admin.may_manage(Some(Role::Agent), Some(Role::Admin)));
        assert!(Role::Admin.may_manage(None, Some(Role::Viewer)));
        assert!(!Role::Admin.may_manage(Some(Role::Owner), Some(Role::Admin)));
        assert!(!Role::Admin.may_manage(Some(Role::Agent), Some(Role::Owner)));
        assert!(!Role::Admin.may_manage(Some(Role::Owner), None));
        assert!(Role::Owner.may_manage(Some(Role::Owner), None));
        assert!(!Role::Agent.may_manage(None, Some(Role::Viewer)));
    }
}
