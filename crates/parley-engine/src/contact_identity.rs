//! Who a webhook is about (META_2026 §3): the phone, business-scoped user id (BSUID), parent
//! BSUID and username a `messages` webhook carries, turned into a [`ContactIdentity`] the store
//! matches to one contact (`Store::resolve_contact`). Inbound messages create their contact;
//! statuses only teach what they reveal (a phone first seen on a status is kept); identity
//! change system messages re-point the contact; a `contacts` reply to a
//! `REQUEST_CONTACT_INFO` button stores the shared phone.
//!
//! BSUIDs are validated loosely (§3.6): an id that does not look like Meta's documented shape
//! is logged and used as sent; only an id that could be confused with a phone is dropped.

use std::collections::{HashMap, HashSet};

use parley_domain::{ApplicationId, Bsuid, E164, PhoneNumberId};
use parley_meta::{InboundMessage, MessagesValue, SystemChange, WebhookContact};
use parley_store::{ContactIdentity, InboundRecord, KnownIdentity, PhoneNumberRecord};

use crate::Engine;

/// A BSUID from a webhook: kept byte-exact; a malformed one is logged, a phone-like one is
/// dropped with a note.
fn bsuid(raw: Option<&str>, notes: &mut Vec<String>) -> Option<String> {
    let raw = raw?;
    match Bsuid::parse(raw) {
        Ok(b) => {
            if !b.is_well_formed() {
                tracing::warn!(bsuid = %b, "a business-scoped user id not in Meta's documented shape; used as sent");
            }
            Some(b.as_str().to_owned())
        }
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    }
}

/// A phone from Meta's `wa_id` (digits), as E.164.
fn phone(raw: Option<&str>, notes: &mut Vec<String>) -> Option<String> {
    let raw = raw?;
    match E164::from_wa_id(raw) {
        Ok(p) => Some(p.as_str().to_owned()),
        Err(e) => {
            notes.push(format!("`{raw}`: {e}"));
            None
        }
    }
}

/// The `contacts` entry that names the same person as `wa_id` or `user_id`.
fn contact_entry<'a>(
    contacts: &'a [WebhookContact],
    wa_id: Option<&str>,
    user_id: Option<&str>,
) -> Option<&'a WebhookContact> {
    contacts
        .iter()
        .find(|c| {
            (wa_id.is_some() && c.wa_id.as_deref() == wa_id)
                || (user_id.is_some() && c.user_id.as_deref() == user_id)
        })
        .or(match contacts {
            // One contact and nothing to tell it by: it is the sender (Meta sends one per
            // value of a one-to-one chat).
            [only] if wa_id.is_none() && user_id.is_none() => Some(only),
            _ => None,
        })
}

/// Everything an inbound message and its `contacts` entry say about the sender; `None` when
/// they name nobody.
pub(crate) fn sender_identity(
    value: &MessagesValue,
    msg: &InboundMessage,
    notes: &mut Vec<String>,
) -> Option<ContactIdentity> {
    let entry = contact_entry(
        &value.contacts,
        msg.from.as_deref(),
        msg.from_user_id.as_deref(),
    );
    let ident = ContactIdentity {
        phone: phone(
            msg.from
                .as_deref()
                .or_else(|| entry.and_then(|c| c.wa_id.as_deref())),
            notes,
        ),
        bsuid: bsuid(
            msg.from_user_id
                .as_deref()
                .or_else(|| entry.and_then(|c| c.user_id.as_deref())),
            notes,
        ),
        parent_bsuid: bsuid(
            msg.from_parent_user_id
                .as_deref()
                .or_else(|| entry.and_then(|c| c.parent_user_id.as_deref())),
            notes,
        ),
        username: entry.and_then(WebhookContact::username).map(str::to_owned),
        name: entry.and_then(WebhookContact::name).map(str::to_owned),
    };
    (!ident.is_empty()).then_some(ident)
}

/// The address of the contact `ident` names (its phone when known, else its BSUID).
pub(crate) async fn contact_address(
    engine: &Engine,
    app: &ApplicationId,
    ident: &ContactIdentity,
) -> parley_store::Result<Option<String>> {
    if let Some(phone) = &ident.phone {
        return Ok(Some(phone.clone()));
    }
    let Some(bsuid) = &ident.bsuid else {
        return Ok(None);
    };
    Ok(engine
        .store
        .contact_by_bsuid(app, bsuid)
        .await?
        .map(|c| c.phone))
}

async fn number_of(
    engine: &Engine,
    value: &MessagesValue,
) -> parley_store::Result<Option<PhoneNumberRecord>> {
    let Some(pnid) = value
        .metadata
        .as_ref()
        .and_then(|m| m.phone_number_id.as_deref())
    else {
        return Ok(None);
    };
    match PhoneNumberId::parse(pnid) {
        Ok(id) => engine.store.phone_number(&id).await,
        Err(_) => Ok(None),
    }
}

/// What statuses (and their `contacts`, new in 2026) reveal about a recipient: a phone, a
/// BSUID and a parent BSUID named together are linked on the contact that has any of them.
/// A status never creates a contact. Each person is looked at once per webhook value, and
/// only when the status names them by more than one identifier (one alone links nothing).
/// Nothing is parsed or written here: [`Learning::flush`] checks the round's identities
/// against the contacts first, and parses and learns only what is new.
pub(crate) async fn learn_from_statuses(
    engine: &Engine,
    value: &MessagesValue,
    learning: &mut Learning,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let mut seen = HashSet::new();
    let mut app = None;
    for status in &value.statuses {
        // `recipient_id` of a group is the group's id, not a phone.
        let recipient_phone = status
            .recipient_id
            .as_deref()
            .filter(|r| r.bytes().all(|b| b.is_ascii_digit()));
        let entry = contact_entry(
            &value.contacts,
            recipient_phone,
            status.recipient_user_id.as_deref(),
        );
        let wa_id = recipient_phone.or_else(|| entry.and_then(|c| c.wa_id.as_deref()));
        let user_id = status
            .recipient_user_id
            .as_deref()
            .or_else(|| entry.and_then(|c| c.user_id.as_deref()));
        let parent = status
            .recipient_parent()
            .or_else(|| entry.and_then(|c| c.parent_user_id.as_deref()));
        let named = [wa_id, user_id, parent].iter().flatten().count();
        if named < 2 || !seen.insert((wa_id, user_id, parent)) {
            continue;
        }
        if app.is_none() {
            app = Some(learning.application_of(engine, value).await?);
        }
        let Some(Some(app)) = &app else {
            return Ok(());
        };
        learning.pending.push(Named {
            app: app.clone(),
            wa_id: wa_id.map(str::to_owned),
            bsuid: bsuid(user_id, notes),
            parent_bsuid: bsuid(parent, notes),
            username: entry.and_then(WebhookContact::username).map(str::to_owned),
            event: learning.event,
        });
    }
    Ok(())
}

/// An identity a status names, as received: its phone (`wa_id`) not parsed yet.
struct Named {
    app: ApplicationId,
    wa_id: Option<String>,
    bsuid: Option<String>,
    parent_bsuid: Option<String>,
    username: Option<String>,
    /// The event of the round that named it (for a note on a phone that does not parse).
    event: usize,
}

impl Named {
    /// True when the contact with its BSUID already has every identifier it names (what
    /// `learn_contacts` skips): its phone compared as the digits of the contact's E.164, so
    /// no phone is parsed for a person already known.
    fn known_in(&self, known: &HashMap<String, KnownIdentity>) -> bool {
        let Some(k) = self.bsuid.as_ref().and_then(|b| known.get(b)) else {
            return false;
        };
        let phone_known = match &self.wa_id {
            None => true,
            Some(digits) => k.phone.strip_prefix('+') == Some(digits.as_str()),
        };
        phone_known
            && (self.parent_bsuid.is_none() || self.parent_bsuid == k.parent_bsuid)
            && (self.username.is_none() || self.username == k.username)
    }
}

/// The identities a round of status webhooks names, written together by [`Learning::flush`]
/// (one read and one transaction per application instead of a read and a transaction per
/// status), and each number's application looked up once per round.
#[derive(Default)]
pub(crate) struct Learning {
    numbers: HashMap<String, Option<ApplicationId>>,
    pending: Vec<Named>,
    /// The round's event being applied (its index), set by the processor.
    pub(crate) event: usize,
    /// Notes for the round's events, by index: phones that did not parse.
    pub(crate) notes: Vec<(usize, String)>,
}

impl Learning {
    async fn application_of(
        &mut self,
        engine: &Engine,
        value: &MessagesValue,
    ) -> parley_store::Result<Option<ApplicationId>> {
        let Some(pnid) = value
            .metadata
            .as_ref()
            .and_then(|m| m.phone_number_id.as_deref())
        else {
            return Ok(None);
        };
        if let Some(app) = self.numbers.get(pnid) {
            return Ok(app.clone());
        }
        let app = number_of(engine, value).await?.map(|n| n.application_id);
        self.numbers.insert(pnid.to_owned(), app.clone());
        Ok(app)
    }

    /// Writes what was collected; called before anything that may read a contact (inbound
    /// messages, other webhook fields) and before the round's statuses are applied, so the
    /// order of a round's effects is the order of its events. An identity whose contact (by
    /// BSUID) already has all of it is dropped after one read per 500 BSUIDs: its phone is
    /// not parsed (libphonenumber, ~20–30 µs a call) and nothing is written.
    pub(crate) async fn flush(&mut self, engine: &Engine) -> parley_store::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        // Repeats dropped by reference (the keys are not copied: a round names thousands).
        let mut by_app: Vec<(&ApplicationId, Vec<&Named>)> = Vec::new();
        let mut seen = HashSet::with_capacity(pending.len());
        for named in &pending {
            let key = (
                &named.app,
                named.wa_id.as_deref(),
                named.bsuid.as_deref(),
                named.parent_bsuid.as_deref(),
                named.username.as_deref(),
            );
            if !seen.insert(key) {
                continue;
            }
            match by_app.iter_mut().find(|(a, _)| **a == named.app) {
                Some((_, all)) => all.push(named),
                None => by_app.push((&named.app, vec![named])),
            }
        }
        for (app, all) in by_app {
            let bsuids: Vec<&str> = all.iter().filter_map(|n| n.bsuid.as_deref()).collect();
            let known = engine.store.known_identities(app, &bsuids).await?;
            let mut idents = Vec::new();
            for named in all.iter().filter(|n| !n.known_in(&known)) {
                let mut notes = Vec::new();
                idents.push(ContactIdentity {
                    phone: phone(named.wa_id.as_deref(), &mut notes),
                    bsuid: named.bsuid.clone(),
                    parent_bsuid: named.parent_bsuid.clone(),
                    username: named.username.clone(),
                    name: None,
                });
                self.notes
                    .extend(notes.into_iter().map(|note| (named.event, note)));
            }
            if idents.is_empty() {
                continue;
            }
            engine
                .store
                .learn_contacts(app, &idents, engine.now())
                .await?;
        }
        Ok(())
    }
}

/// `user_changed_number` / `user_changed_user_id` (§3.5): the contact known by the previous
/// BSUID (or the old phone in `from`) answers to the new ones from now on, with its history.
pub(crate) async fn apply_identity_change(
    engine: &Engine,
    number: &PhoneNumberRecord,
    msg: &InboundMessage,
    change: &SystemChange,
    notes: &mut Vec<String>,
) -> parley_store::Result<Option<ContactIdentity>> {
    let previous = ContactIdentity {
        phone: phone(msg.from.as_deref(), notes),
        bsuid: bsuid(
            change
                .previous_user_id
                .as_deref()
                .or(msg.from_user_id.as_deref()),
            notes,
        ),
        parent_bsuid: bsuid(change.previous_parent_user_id.as_deref(), notes),
        ..ContactIdentity::default()
    };
    let current = ContactIdentity {
        phone: phone(change.new_phone(), notes),
        bsuid: bsuid(change.user_id.as_deref(), notes),
        parent_bsuid: bsuid(change.parent_user_id.as_deref(), notes),
        ..ContactIdentity::default()
    };
    if current.is_empty() {
        notes.push(format!(
            "system message {} names no new number or BSUID",
            msg.id
        ));
        return Ok(None);
    }
    let contact = engine
        .store
        .repoint_contact(&number.application_id, &previous, &current, engine.now())
        .await?;
    tracing::info!(
        kind = change.kind.as_deref().unwrap_or(""),
        contact_id = ?contact.as_ref().map(|c| c.as_str().to_owned()),
        "a customer's WhatsApp identity changed; contact re-pointed"
    );
    Ok(Some(current))
}

/// A `contacts` message answering a `REQUEST_CONTACT_INFO` button (`origin:
/// contact_request`) shares the sender's own phone: it is stored on the contact. A contact
/// card shared for any other reason (`origin: other`) is someone else's and changes nothing.
pub(crate) async fn apply_shared_phone(
    engine: &Engine,
    record: &InboundRecord,
    msg: &InboundMessage,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let shared = msg.shared_contacts();
    let Some(wa_id) = shared
        .iter()
        .filter(|c| c.origin.as_deref() == Some("contact_request"))
        .flat_map(|c| &c.phones)
        .find_map(|p| {
            p.wa_id.clone().or_else(|| {
                p.phone
                    .as_deref()
                    .map(|s| s.chars().filter(char::is_ascii_digit).collect())
            })
        })
    else {
        return Ok(());
    };
    let Some(phone) = phone(Some(&wa_id), notes) else {
        return Ok(());
    };
    let ident = ContactIdentity {
        phone: Some(phone),
        bsuid: record.from.bsuid.clone(),
        parent_bsuid: record.from.parent_bsuid.clone(),
        ..ContactIdentity::default()
    };
    engine
        .store
        .resolve_contact(&record.application_id, &ident, false, engine.now())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(wa_id: Option<&str>, parent: Option<&str>, username: Option<&str>) -> Named {
        Named {
            app: ApplicationId::new(),
            wa_id: wa_id.map(str::to_owned),
            bsuid: Some("DE.1001".into()),
            parent_bsuid: parent.map(str::to_owned),
            username: username.map(str::to_owned),
            event: 0,
        }
    }

    fn known(
        phone: &str,
        parent: Option<&str>,
        username: Option<&str>,
    ) -> HashMap<String, KnownIdentity> {
        HashMap::from([(
            "DE.1001".to_owned(),
            KnownIdentity {
                phone: phone.into(),
                bsuid: "DE.1001".into(),
                parent_bsuid: parent.map(str::to_owned),
                username: username.map(str::to_owned),
            },
        )])
    }

    #[test]
    fn an_identity_is_known_only_when_the_contact_has_all_of_it() {
        let k = known("+4915112349901", Some("DE.ENT.1"), Some("pablo"));
        // Everything it names is there (absent parts are no news).
        assert!(named(Some("4915112349901"), None, None).known_in(&k));
        assert!(named(Some("4915112349901"), Some("DE.ENT.1"), Some("pablo")).known_in(&k));
        assert!(named(None, Some("DE.ENT.1"), None).known_in(&k));
        // A phone, parent or username the contact does not have is new.
        assert!(!named(Some("4915112349902"), None, None).known_in(&k));
        assert!(!named(Some("4915112349901"), Some("DE.ENT.2"), None).known_in(&k));
        assert!(!named(Some("4915112349901"), None, Some("pablo.m")).known_in(&k));
        // A contact known by its BSUID alone (no phone yet) learns the phone.
        let by_bsuid = known("DE.1001", None, None);
        assert!(!named(Some("4915112349901"), None, None).known_in(&by_bsuid));
        assert!(named(None, None, None).known_in(&by_bsuid));
        // A BSUID nobody has (a new one for a known phone, or a new person) is new.
        assert!(!named(Some("4915112349901"), None, None).known_in(&HashMap::new()));
        let mut no_bsuid = named(Some("4915112349901"), Some("DE.ENT.1"), None);
        no_bsuid.bsuid = None;
        assert!(!no_bsuid.known_in(&k));
    }
}
