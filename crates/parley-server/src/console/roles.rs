//! Which role each console route needs: the one table `SignedIn` and `SignedInJson` check
//! on every request, by method and route pattern. Anything not listed fails closed: a read
//! (GET) needs `viewer`, anything else `admin`. The roles are described in
//! `docs/SECURITY.md` ("Roles").

use axum::http::Method;
use parley_domain::Role;

/// Routes that need more than `viewer` to be read: management pages.
const ADMIN_PAGES: &[&str] = &[
    "/settings/users",
    "/settings/tokens",
    "/settings/audit",
    "/settings/events",
    "/templates/new",
    "/campaigns/whatsapp/new",
];

/// Reads made with POST (they change nothing), for every role.
const VIEWER_POSTS: &[&str] = &[
    "/contacts/count",
    "/campaigns/whatsapp/preview",
    "/session/application",
    "/account/password",
    "/account/totp/start",
    "/account/totp/confirm",
    "/account/totp/disable",
    "/account/sessions/{id}/end",
];

/// What agents may do beyond reading: work the audience (imports, segments) and the
/// conversations (sends and replies go through the API and the conversation pages).
const AGENT_POSTS: &[&str] = &[
    "/inbox/{contact}/reply",
    "/inbox/{contact}/media",
    "/inbox/{contact}/read",
    "/inbox/{contact}/typing",
    "/inbox/{contact}/assign",
    "/import/preview",
    "/import/preview/workbook",
    "/import/upload",
    "/segments",
];
const AGENT_PAGES: &[&str] = &["/import"];

/// The role a console route needs, by method and matched route pattern.
pub fn required_role(method: &Method, route: &str) -> Role {
    let under = |prefixes: &[&str]| {
        prefixes
            .iter()
            .any(|p| route == *p || route.starts_with(&format!("{p}/")))
    };
    if *method == Method::GET || *method == Method::HEAD {
        if under(ADMIN_PAGES) {
            Role::Admin
        } else if AGENT_PAGES.contains(&route) {
            Role::Agent
        } else {
            Role::Viewer
        }
    } else if VIEWER_POSTS.contains(&route) {
        Role::Viewer
    } else if AGENT_POSTS.contains(&route) {
        Role::Agent
    } else {
        Role::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_for_viewers_and_changes_for_admins_unless_listed() {
        assert_eq!(required_role(&Method::GET, "/messages"), Role::Viewer);
        assert_eq!(
            required_role(&Method::GET, "/dashboards/meta"),
            Role::Viewer
        );
        assert_eq!(required_role(&Method::GET, "/settings/users"), Role::Admin);
        assert_eq!(required_role(&Method::GET, "/settings/tokens"), Role::Admin);
        assert_eq!(required_role(&Method::GET, "/settings/events"), Role::Admin);
        assert_eq!(
            required_role(&Method::GET, "/settings/events/{id}"),
            Role::Admin
        );
        assert_eq!(
            required_role(&Method::POST, "/settings/events/{id}/{action}"),
            Role::Admin
        );
        assert_eq!(
            required_role(&Method::POST, "/settings/users/invite"),
            Role::Admin
        );
        assert_eq!(required_role(&Method::POST, "/segments"), Role::Agent);
        assert_eq!(required_role(&Method::GET, "/inbox"), Role::Viewer);
        assert_eq!(
            required_role(&Method::GET, "/inbox/{contact}"),
            Role::Viewer
        );
        assert_eq!(required_role(&Method::GET, "/inbox/events"), Role::Viewer);
        for action in ["reply", "media", "read", "typing", "assign"] {
            assert_eq!(
                required_role(&Method::POST, &format!("/inbox/{{contact}}/{action}")),
                Role::Agent
            );
        }
        assert_eq!(required_role(&Method::POST, "/templates/sync"), Role::Admin);
        assert_eq!(
            required_role(&Method::POST, "/a/route/nobody/listed"),
            Role::Admin
        );
        assert_eq!(required_role(&Method::DELETE, "/messages"), Role::Admin);
        assert_eq!(
            required_role(&Method::POST, "/contacts/count"),
            Role::Viewer
        );
    }
}
