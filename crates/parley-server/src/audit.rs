//! The audit log's intake: a middleware around every request that may change something
//! (POST, PUT, PATCH, DELETE). It puts an empty [`ActorSlot`] in the request; the extractors
//! that authenticate (`AppAuth`, the console's `SignedIn` and `SignedInJson`) fill it. When
//! the answer is a success (2xx, or a form's 3xx) and someone was identified, one entry is
//! written: who, the action named after the matched route (`campaign.start`), the id in the
//! path, the route, the client's address and the time.
//!
//! Not recorded: sending a message (the message is its own record), previews and counts
//! (they change nothing), sign-in and sign-out, and Meta's webhooks (no actor).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use parley_domain::{ApplicationId, AuditEntryId};
use parley_store::access::{ActorKind, AuditEntry};

use crate::AppState;

/// Who made a request, as the audit log names them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorKind,
    /// `usr_…` or `tok_…`.
    pub id: String,
    /// The user's email or the token's label.
    pub label: String,
    pub application: ApplicationId,
}

impl Actor {
    /// A console user signed in to the application.
    pub fn user(user: &parley_domain::UserId, email: &str, app: &ApplicationId) -> Actor {
        Actor {
            kind: ActorKind::User,
            id: user.to_string(),
            label: email.to_owned(),
            application: app.clone(),
        }
    }
}

/// Filled by the authenticating extractors of a mutating request.
#[derive(Clone, Default)]
pub struct ActorSlot(Arc<Mutex<Option<Actor>>>);

impl ActorSlot {
    /// Names the request's actor, when the request is one the audit log watches.
    pub fn fill(parts: &Parts, actor: Actor) {
        if let Some(slot) = parts.extensions.get::<ActorSlot>()
            && let Ok(mut a) = slot.0.lock()
        {
            *a = Some(actor);
        }
    }

    fn take(&self) -> Option<Actor> {
        self.0.lock().ok().and_then(|mut a| a.take())
    }
}

/// Put on a response by a handler that created something, so the entry names its id.
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// Routes whose mutating methods change nothing worth an entry.
const NOT_AUDITED: &[&str] = &[
    "/api/v1/messages",
    "/api/v1/segments/preview",
    "/api/v1/personalize/preview",
    "/contacts/count",
    "/import/preview",
    "/campaigns/whatsapp/preview",
    // A read receipt and the typing indicator: customer-facing niceties, many per reply.
    "/inbox/{contact}/read",
    "/inbox/{contact}/typing",
    "/login",
    "/logout",
    "/webhooks/whatsapp",
];

/// Path parameters that are never written to the log: a contact's phone number is personal
/// data that must go when the contact is erased.
const PRIVATE_PARAMS: &[&str] = &["phone"];

pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(req).await;
    };
    if NOT_AUDITED.contains(&route.as_str()) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let (mut parts, body) = req.into_parts();
    let params: Vec<(String, String)> = RawPathParams::from_request_parts(&mut parts, &state)
        .await
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let slot = ActorSlot::default();
    parts.extensions.insert(slot.clone());
    let resp = next.run(Request::from_parts(parts, body)).await;
    if !(resp.status().is_success() || resp.status().is_redirection()) {
        return resp;
    }
    let (Some(actor), Some(action)) = (slot.take(), action_of(&method, &route, &params)) else {
        return resp;
    };
    let target = resp
        .extensions()
        .get::<AuditTarget>()
        .map(|t| t.0.clone())
        .or_else(|| {
            params
                .iter()
                .find(|(k, _)| k != "action" && !PRIVATE_PARAMS.contains(&k.as_str()))
                .map(|(_, v)| v.chars().take(128).collect())
        });
    state
        .engine
        .record_audit(AuditEntry {
            id: AuditEntryId::new(),
            application_id: actor.application,
            at: 0,
            actor_kind: actor.kind,
            actor_id: actor.id,
            actor_label: actor.label,
            action,
            target,
            method: method.to_string(),
            path: route,
            address,
        })
        .await;
    resp
}

/// `<resource>.<verb>` for a route: the resource is the route's first word (singular), the
/// verb its last literal word after it (`start`, `sync`, `revoke`), the `{action}` parameter's
/// value, or else what the method does (`create`, `update`, `delete`).
pub fn action_of(method: &Method, route: &str, params: &[(String, String)]) -> Option<String> {
    let special = match (method.as_str(), route) {
        ("DELETE", "/api/v1/platforms/{id}") => Some("platform.disconnect"),
        ("POST", "/api/v1/platforms/{id}/phone_numbers") => Some("platform.add_number"),
        (_, "/import/upload" | "/api/v1/contacts/import") => Some("contact.import"),
        (_, "/templates/uploads" | "/api/v1/media/uploads") => Some("media.upload"),
        ("POST" | "PUT", "/settings/opt-out" | "/api/v1/settings/opt-out") => {
            Some("opt_out_keywords.update")
        }
        ("POST" | "PUT", "/settings/pricing" | "/api/v1/pricing/rates") => {
            Some("price_table.update")
        }
        ("DELETE", "/settings/pricing" | "/api/v1/pricing/rates") => Some("price_table.reset"),
        _ => None,
    };
    if let Some(s) = special {
        return Some(s.to_owned());
    }
    let words: Vec<&str> = route
        .trim_start_matches("/api/v1")
        .split('/')
        .filter(|w| !w.is_empty() && !matches!(*w, "settings" | "whatsapp"))
        .collect();
    let first = words.first()?;
    if first.starts_with('{') {
        return None;
    }
    let resource = first.strip_suffix('s').unwrap_or(first).replace('-', "_");
    let last = words.last().copied().unwrap_or_default();
    let verb = if last == "{action}" {
        let v = params.iter().find(|(k, _)| k == "action")?.1.as_str();
        if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return None;
        }
        v.to_owned()
    } else if words.len() > 1 && !last.starts_with('{') {
        match last {
            "new" => "create".to_owned(),
            other => other.replace('-', "_"),
        }
    } else {
        match *method {
            Method::POST => "create",
            Method::PUT | Method::PATCH => "update",
            Method::DELETE => "delete",
            _ => return None,
        }
        .to_owned()
    };
    Some(format!("{resource}.{verb}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(method: Method, route: &str, params: &[(&str, &str)]) -> Option<String> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        action_of(&method, route, &params)
    }

    #[test]
    fn actions_are_named_after_the_route() {
        let id = [("id", "cmp_1")];
        assert_eq!(
            act(Method::POST, "/api/v1/campaigns", &[]).as_deref(),
            Some("campaign.create")
        );
        assert_eq!(
            act(Method::POST, "/api/v1/campaigns/{id}/start", &id).as_deref(),
            Some("campaign.start")
        );
        assert_eq!(
            act(Method::PATCH, "/api/v1/templates/{id}", &id).as_deref(),
            Some("template.update")
        );
        assert_eq!(
            act(Method::DELETE, "/api/v1/platforms/{id}", &id).as_deref(),
            Some("platform.disconnect")
        );
        assert_eq!(
            act(Method::POST, "/api/v1/platforms/whatsapp/signup", &[]).as_deref(),
            Some("platform.signup")
        );
        assert_eq!(
            act(Method::POST, "/api/v1/tokens/{id}/revoke", &id).as_deref(),
            Some("token.revoke")
        );
        assert_eq!(
            act(
                Method::POST,
                "/campaigns/whatsapp/{id}/{action}",
                &[("id", "cmp_1"), ("action", "pause")]
            )
            .as_deref(),
            Some("campaign.pause")
        );
        assert_eq!(
            act(
                Method::POST,
                "/settings/platforms/{id}/{action}",
                &[("id", "plt_1"), ("action", "<script>")]
            ),
            None,
            "an action that is no word is not recorded (the route answers 404 anyway)"
        );
        assert_eq!(
            act(Method::POST, "/campaigns/whatsapp/new", &[]).as_deref(),
            Some("campaign.create")
        );
        assert_eq!(
            act(Method::POST, "/templates/{id}/delete", &id).as_deref(),
            Some("template.delete")
        );
        assert_eq!(
            act(Method::POST, "/settings/tokens", &[]).as_deref(),
            Some("token.create")
        );
        assert_eq!(
            act(
                Method::PUT,
                "/api/v1/contacts/{phone}",
                &[("phone", "+4915")]
            )
            .as_deref(),
            Some("contact.update")
        );
    }
}
