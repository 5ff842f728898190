//! WhatsApp users as Meta knows them since 2026 (META_2026 §3): every user has a stable
//! business-scoped user id (BSUID) per business portfolio (and a parent BSUID when the
//! portfolio is enrolled in a parent account), may adopt a username, and then Meta withholds
//! their phone number from webhooks unless the 30-day or contact-book rule holds.
//!
//! Users are keyed here by their phone digits (`wa_id`), which the rest of the sandbox
//! uses; the BSUID is derived from (portfolio, phone, id generation), so it is the same on
//! every webhook and changes when the number changes or Meta re-issues it
//! (`user_changed_user_id`).
//!
//! The phone is withheld when the user adopted a username and none of these holds:
//! - this business number sent to or received from the user's number, by phone, in the last
//!   30 days (messages exchanged while the phone was withheld do not count: they went by
//!   BSUID);
//! - the portfolio's contact book holds the user (filled by every exchange by phone; on by
//!   default, `behaviour.contact_book`).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::state::State;

/// The 30 days of the withholding rule.
pub(crate) const PHONE_MEMORY_MS: i64 = 30 * 86_400_000;

#[derive(Debug, Clone, Default)]
pub(crate) struct Person {
    pub username: Option<String>,
    /// Bumped by `user_changed_user_id`: a new BSUID with the same phone.
    pub generation: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Users {
    /// wa_id → what the user set.
    pub people: HashMap<String, Person>,
    /// Every wa_id the sandbox has seen (to find a user by BSUID).
    pub known: HashSet<String>,
    /// (phone number id, wa_id) → virtual ms of the last exchange by phone.
    pub by_phone: HashMap<(String, String), i64>,
    /// (business id, wa_id): the portfolio's contact book.
    pub book: HashSet<(String, String)>,
}

/// FNV-1a, stable across runs and platforms.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The user's country from the calling code of their number (a few common ones; `US`
/// otherwise).
fn country(wa_id: &str) -> &'static str {
    const CODES: &[(&str, &str)] = &[
        ("972", "IL"),
        ("380", "UA"),
        ("44", "GB"),
        ("49", "DE"),
        ("33", "FR"),
        ("34", "ES"),
        ("39", "IT"),
        ("55", "BR"),
        ("91", "IN"),
        ("52", "MX"),
        ("31", "NL"),
        ("7", "RU"),
        ("1", "US"),
    ];
    CODES
        .iter()
        .find(|(code, _)| wa_id.starts_with(code))
        .map_or("US", |(_, cc)| cc)
}

impl Users {
    fn generation(&self, wa_id: &str) -> String {
        self.people
            .get(wa_id)
            .map_or(0, |p| p.generation)
            .to_string()
    }

    /// The user's BSUID in `business`.
    pub(crate) fn bsuid(&self, business: &str, wa_id: &str) -> String {
        let h = fnv(&[business, wa_id, &self.generation(wa_id)]);
        format!("{}.{h:020}", country(wa_id))
    }

    /// The user's parent BSUID (the same across enrolled portfolios).
    pub(crate) fn parent_bsuid(&self, wa_id: &str) -> String {
        let h = fnv(&["parent", wa_id, &self.generation(wa_id)]);
        format!("{}.ENT.{h:020}", country(wa_id))
    }

    /// The wa_id whose BSUID (or parent BSUID) in `business` is `id`.
    pub(crate) fn find(&self, business: &str, id: &str) -> Option<String> {
        self.known
            .iter()
            .find(|w| self.bsuid(business, w) == id || self.parent_bsuid(w) == id)
            .cloned()
    }

    pub(crate) fn username(&self, wa_id: &str) -> Option<&str> {
        self.people.get(wa_id)?.username.as_deref()
    }
}

impl State {
    /// The business portfolio owning a phone number.
    pub(crate) fn business_of_phone(&self, phone_id: &str) -> String {
        self.phone(phone_id)
            .and_then(|p| self.business_of_waba(&p.waba.id))
            .map(|b| b.id.clone())
            .unwrap_or_default()
    }

    /// True when Meta withholds the user's phone from this number's webhooks now.
    pub(crate) fn withholds_phone(&self, phone_id: &str, wa_id: &str, now_ms: i64) -> bool {
        if self.users.username(wa_id).is_none() {
            return false;
        }
        let recent = self
            .users
            .by_phone
            .get(&(phone_id.to_owned(), wa_id.to_owned()))
            .is_some_and(|at| now_ms.saturating_sub(*at) < PHONE_MEMORY_MS);
        let booked = self.config.behaviour.contact_book
            && self
                .users
                .book
                .contains(&(self.business_of_phone(phone_id), wa_id.to_owned()));
        !(recent || booked)
    }

    /// An exchange with the user's number, by phone.
    pub(crate) fn exchanged_by_phone(&mut self, phone_id: &str, wa_id: &str, now_ms: i64) {
        self.users.known.insert(wa_id.to_owned());
        self.users
            .by_phone
            .insert((phone_id.to_owned(), wa_id.to_owned()), now_ms);
        let business = self.business_of_phone(phone_id);
        self.users.book.insert((business, wa_id.to_owned()));
    }

    /// Adds the user's identities to an inbound message and its `contacts` entry, and drops
    /// `wa_id` and `from` when the phone is withheld (META_2026 §3.1).
    pub(crate) fn dress_inbound(
        &mut self,
        phone_id: &str,
        wa_id: &str,
        contact: &mut Value,
        message: &mut Value,
        now_ms: i64,
    ) {
        self.users.known.insert(wa_id.to_owned());
        let business = self.business_of_phone(phone_id);
        let bsuid = self.users.bsuid(&business, wa_id);
        contact["user_id"] = json!(bsuid);
        message["from_user_id"] = json!(bsuid);
        if self.config.behaviour.parent_bsuids {
            let parent = self.users.parent_bsuid(wa_id);
            contact["parent_user_id"] = json!(parent);
            message["from_parent_user_id"] = json!(parent);
        }
        if let Some(username) = self.users.username(wa_id) {
            contact["profile"]["username"] = json!(username);
        }
        if self.withholds_phone(phone_id, wa_id, now_ms) {
            if let Some(c) = contact.as_object_mut() {
                c.remove("wa_id");
            }
            if let Some(m) = message.as_object_mut() {
                m.remove("from");
            }
        } else {
            self.exchanged_by_phone(phone_id, wa_id, now_ms);
        }
        // Sharing their number through a REQUEST_CONTACT_INFO button puts the user in the
        // portfolio's contact book: later webhooks carry the phone (META_2026 §3.4).
        let shared = message.get("type").and_then(Value::as_str) == Some("contacts")
            && message
                .get("contacts")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.get("origin").and_then(Value::as_str) == Some("contact_request"))
                });
        if shared {
            self.users.book.insert((business, wa_id.to_owned()));
        }
    }
}

/// The recipient fields of a status (META_2026 §3.2): `recipient_user_id`, the parent under
/// the configured name, `recipient_id` unless withheld, and the lean `contacts` entry seen in
/// practice (`{"wa_id"?, "user_id"}`, no profile), kept under `_contact` for the dispatcher
/// to lift into the value.
pub(crate) fn dress_status(status: &mut Value, recipient: &StatusRecipient, parent_field: &str) {
    let failed = status.get("status").and_then(Value::as_str) == Some("failed");
    if recipient.withheld
        && let Some(s) = status.as_object_mut()
    {
        s.remove("recipient_id");
    }
    // Meta omits the BSUID on `failed` statuses of messages sent to a phone number.
    if failed && !recipient.by_bsuid {
        return;
    }
    status["recipient_user_id"] = json!(recipient.user_id);
    if let Some(parent) = &recipient.parent {
        let field = match parent_field {
            f @ ("parent_recipient_user_id" | "parent_user_id") => f,
            _ => "recipient_parent_user_id",
        };
        status[field] = json!(parent);
    }
    if !failed {
        let mut contact = json!({ "user_id": recipient.user_id });
        if !recipient.withheld {
            contact["wa_id"] = json!(recipient.wa_id);
        }
        status["_contact"] = contact;
    }
}

/// Who a sent message went to, as its statuses report it.
#[derive(Debug, Clone)]
pub(crate) struct StatusRecipient {
    pub wa_id: String,
    pub user_id: String,
    pub parent: Option<String>,
    pub by_bsuid: bool,
    pub withheld: bool,
}

/// Lifts each status's `_contact` into the value's `contacts` (one per person).
pub(crate) fn lift_status_contacts(statuses: &mut [Value]) -> Vec<Value> {
    let mut contacts: Vec<Value> = Vec::new();
    for s in statuses {
        if let Some(c) = s.as_object_mut().and_then(|o| o.remove("_contact"))
            && !contacts.contains(&c)
        {
            contacts.push(c);
        }
    }
    contacts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsuids_are_stable_per_portfolio_and_change_with_the_generation() {
        let mut users = Users::default();
        let a = users.bsuid("biz1", "4915112345678");
        assert_eq!(a, users.bsuid("biz1", "4915112345678"));
        assert_ne!(a, users.bsuid("biz2", "4915112345678"));
        assert!(a.starts_with("DE.") && a.len() == 23, "{a}");
        let parent = users.parent_bsuid("16505551234");
        assert!(parent.starts_with("US.ENT."), "{parent}");
        users.known.insert("4915112345678".into());
        assert_eq!(users.find("biz1", &a).as_deref(), Some("4915112345678"));
        users
            .people
            .entry("4915112345678".into())
            .or_default()
            .generation += 1;
        assert_ne!(users.bsuid("biz1", "4915112345678"), a);
        assert_eq!(users.find("biz1", &a), None);
    }
}

// --- control endpoints ------------------------------------------------------------------------

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State as AxumState};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::Sandbox;
use crate::control::json_body;
use crate::errors::GraphError;
use crate::state::{EventKind, digits};

type Answer = Result<Response, GraphError>;

fn user_digits(phone: &str) -> Result<String, GraphError> {
    let wa_id = digits(phone);
    if !(5..=20).contains(&wa_id.len()) {
        return Err(GraphError::invalid_param(format!(
            "`{phone}` is not a phone number: give the user's number, e.g. +4915112345678."
        )));
    }
    Ok(wa_id)
}

/// The user as the sandbox knows them: username, and BSUID per business portfolio.
fn describe(state: &State, wa_id: &str, now_ms: i64) -> Value {
    let mut bsuids = serde_json::Map::new();
    let mut withheld = serde_json::Map::new();
    for b in &state.config.businesses {
        bsuids.insert(b.id.clone(), json!(state.users.bsuid(&b.id, wa_id)));
        for w in &b.wabas {
            for p in &w.phone_numbers {
                withheld.insert(
                    p.id.clone(),
                    json!(state.withholds_phone(&p.id, wa_id, now_ms)),
                );
            }
        }
    }
    json!({
        "wa_id": wa_id,
        "username": state.users.username(wa_id),
        "bsuids": bsuids,
        "parent_bsuid": state.users.parent_bsuid(wa_id),
        "phone_withheld": withheld,
    })
}

pub(crate) async fn get_user(
    AxumState(sandbox): AxumState<Sandbox>,
    Path(phone): Path<String>,
) -> Answer {
    let wa_id = user_digits(&phone)?;
    let now_ms = sandbox.inner.clock.now_ms();
    let mut state = sandbox.inner.lock();
    // A user asked about exists from now on (a test may address them by BSUID first).
    state.users.known.insert(wa_id.clone());
    Ok(Json(describe(&state, &wa_id, now_ms)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSettings {
    /// The username adopted (`null`: none).
    username: Option<String>,
    /// Forget every exchange by phone (the 30 days pass) and remove the user from the
    /// contact books, so a username hides the phone at once.
    #[serde(default)]
    forget_phone: bool,
}

/// `POST /sandbox/users/{phone}`: the per-user "username adopted" switch.
pub(crate) async fn set_user(
    AxumState(sandbox): AxumState<Sandbox>,
    Path(phone): Path<String>,
    body: Body,
) -> Answer {
    let wa_id = user_digits(&phone)?;
    let settings: UserSettings = json_body(body).await?;
    if let Some(u) = &settings.username
        && (u.trim().is_empty() || u.chars().count() > 36)
    {
        return Err(GraphError::invalid_param(
            "Param username must be 1 to 35 characters (a-z, 0-9, . and _), or null.",
        ));
    }
    let now_ms = sandbox.inner.clock.now_ms();
    let mut state = sandbox.inner.lock();
    state.users.known.insert(wa_id.clone());
    state
        .users
        .people
        .entry(wa_id.clone())
        .or_default()
        .username = settings.username;
    if settings.forget_phone {
        state.users.by_phone.retain(|(_, w), _| w != &wa_id);
        state.users.book.retain(|(_, w)| w != &wa_id);
    }
    Ok(Json(describe(&state, &wa_id, now_ms)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeNumber {
    new_phone: String,
    phone_number_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChangeUserId {
    phone_number_id: Option<String>,
}

fn target_phone(state: &State, requested: Option<String>) -> Result<String, GraphError> {
    let id = match requested {
        Some(id) => id,
        None => state.first_phone_id().ok_or_else(|| {
            GraphError::invalid_param("The sandbox has no phone number to receive messages.")
        })?,
    };
    if state.phone(&id).is_none() {
        return Err(GraphError::invalid_param(format!(
            "Unknown phone_number_id {id}."
        )));
    }
    Ok(id)
}

/// Queues a `system` message (no `contacts` array, META_2026 §3.5).
fn queue_system(
    state: &mut State,
    phone_id: &str,
    wa_id: &str,
    message: Value,
    now_ms: i64,
) -> String {
    let wamid = crate::send::new_wamid(wa_id, true);
    let mut message = message;
    message["id"] = json!(wamid);
    message["timestamp"] = json!(now_ms.div_euclid(1000).to_string());
    message["type"] = json!("system");
    state.schedule(
        now_ms,
        phone_id,
        EventKind::Inbound {
            contact: Value::Null,
            message,
        },
    );
    wamid
}

/// `POST /sandbox/users/{phone}/change_number`: the user moves to a new number (a new
/// BSUID); the number's business gets `user_changed_number`.
pub(crate) async fn change_number(
    AxumState(sandbox): AxumState<Sandbox>,
    Path(phone): Path<String>,
    body: Body,
) -> Answer {
    let old = user_digits(&phone)?;
    let change: ChangeNumber = json_body(body).await?;
    let new = user_digits(&change.new_phone)?;
    if new == old {
        return Err(GraphError::invalid_param(
            "new_phone is the user's current number.",
        ));
    }
    let now_ms = sandbox.inner.clock.now_ms();
    let wamid = {
        let mut state = sandbox.inner.lock();
        let phone_id = target_phone(&state, change.phone_number_id)?;
        let business = state.business_of_phone(&phone_id);
        let parents = state.config.behaviour.parent_bsuids;
        let previous = state.users.bsuid(&business, &old);
        let previous_parent = state.users.parent_bsuid(&old);
        let person = state.users.people.remove(&old).unwrap_or_default();
        state.users.people.insert(new.clone(), person);
        state.users.known.insert(new.clone());
        // The same person: their window and what the business saw move to the new number.
        let moved: Vec<_> = state
            .windows
            .iter()
            .filter(|((_, w), _)| w == &old)
            .map(|((p, _), at)| (p.clone(), *at))
            .collect();
        for (p, at) in moved {
            state.windows.insert((p, new.clone()), at);
        }
        state.exchanged_by_phone(&phone_id, &new, now_ms);
        let mut system = json!({
            "body": format!("User changed from {old} to {new}"),
            "wa_id": new,
            "user_id": state.users.bsuid(&business, &new),
            "previous_user_id": previous,
            "type": "user_changed_number",
        });
        if parents {
            system["parent_user_id"] = json!(state.users.parent_bsuid(&new));
            system["previous_parent_user_id"] = json!(previous_parent);
        }
        let message = json!({ "from": old, "system": system });
        queue_system(&mut state, &phone_id, &new, message, now_ms)
    };
    sandbox.inner.wake.notify_one();
    Ok(Json(json!({ "wamid": wamid, "wa_id": new })).into_response())
}

/// `POST /sandbox/users/{phone}/change_user_id`: Meta re-issues the user's BSUID (same
/// number); the number's business gets `user_changed_user_id`, with `from` only while the
/// phone is not withheld.
pub(crate) async fn change_user_id(
    AxumState(sandbox): AxumState<Sandbox>,
    Path(phone): Path<String>,
    body: Body,
) -> Answer {
    let wa_id = user_digits(&phone)?;
    let change: ChangeUserId = json_body(body).await?;
    let now_ms = sandbox.inner.clock.now_ms();
    let (wamid, user_id) = {
        let mut state = sandbox.inner.lock();
        let phone_id = target_phone(&state, change.phone_number_id)?;
        let business = state.business_of_phone(&phone_id);
        let parents = state.config.behaviour.parent_bsuids;
        let previous = state.users.bsuid(&business, &wa_id);
        let previous_parent = state.users.parent_bsuid(&wa_id);
        state.users.known.insert(wa_id.clone());
        state
            .users
            .people
            .entry(wa_id.clone())
            .or_default()
            .generation += 1;
        let user_id = state.users.bsuid(&business, &wa_id);
        let mut system = json!({
            "body": "User's business-scoped user ID changed",
            "user_id": user_id,
            "previous_user_id": previous,
            "type": "user_changed_user_id",
        });
        if parents {
            system["parent_user_id"] = json!(state.users.parent_bsuid(&wa_id));
            system["previous_parent_user_id"] = json!(previous_parent);
        }
        let mut message = json!({ "system": system });
        if !state.withholds_phone(&phone_id, &wa_id, now_ms) {
            message["from"] = json!(wa_id);
        }
        (
            queue_system(&mut state, &phone_id, &wa_id, message, now_ms),
            user_id,
        )
    };
    sandbox.inner.wake.notify_one();
    Ok(Json(json!({ "wamid": wamid, "user_id": user_id })).into_response())
}
