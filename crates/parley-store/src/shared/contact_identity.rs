//! Contact identity (META_2026 §3.8), written once for both backends: a webhook names a person
//! by phone, business-scoped user id (BSUID), parent BSUID, or several of them; this finds the
//! one contact they name, creates it when none does, links identities a webhook carries
//! together, merges two contacts that turn out to be one person, and re-points a contact
//! when Meta says its number or BSUID changed.
//!
//! `contacts.phone` is the contact's address: the E.164 number when known, else the BSUID
//! (see migration 0015). Every function here runs in the caller's transaction, after
//! `Backend::lock_phones` on every key it may write, so two webhooks about one person
//! serialize on PostgreSQL as imports do (SQLite has one writer).

use parley_domain::{ApplicationId, ContactId, Subscription, Tags};
use sqlx::Row;

use super::{Backend, DbRow, json, json_col, opt_text, text};
use crate::dialect::{Dialect, Kind};
use crate::tag_index::tag_index;
use crate::{ContactIdentity, Millis, Result, corrupt};

type Db = <DbRow as Row>::Database;
type Connection = <Db as sqlx::Database>::Connection;

/// What a merge needs of a contact.
struct Person {
    id: String,
    phone: String,
    wa_id: Option<String>,
    name: Option<String>,
    locale: Option<String>,
    timezone: Option<String>,
    tags: Tags,
    last_inbound_at: Option<Millis>,
    created_at: Millis,
    subscription: String,
    subscription_source: Option<String>,
    subscription_at: Option<Millis>,
    bsuid: Option<String>,
    parent_bsuid: Option<String>,
    username: Option<String>,
}

const PERSON_COLUMNS: &str = "id, phone, wa_id, name, locale, timezone, tags, last_inbound_at, created_at, subscription, subscription_source, subscription_at, bsuid, parent_bsuid, username";

fn person_from_row(row: &DbRow) -> Result<Person> {
    Ok(Person {
        id: row.try_get("id")?,
        phone: row.try_get("phone")?,
        wa_id: row.try_get("wa_id")?,
        name: row.try_get("name")?,
        locale: row.try_get("locale")?,
        timezone: row.try_get("timezone")?,
        tags: json_col(row, "tags")?,
        last_inbound_at: row.try_get("last_inbound_at")?,
        created_at: row.try_get("created_at")?,
        subscription: row.try_get("subscription")?,
        subscription_source: row.try_get("subscription_source")?,
        subscription_at: row.try_get("subscription_at")?,
        bsuid: row.try_get("bsuid")?,
        parent_bsuid: row.try_get("parent_bsuid")?,
        username: row.try_get("username")?,
    })
}

/// True when the address column holds a phone number (E.164 always starts with `+`).
fn is_phone(address: &str) -> bool {
    address.starts_with('+')
}

async fn find_by(
    conn: &mut Connection,
    app: &ApplicationId,
    column: &str,
    value: &str,
) -> Result<Option<Person>> {
    let sql = format!(
        "SELECT {PERSON_COLUMNS} FROM contacts WHERE application_id = $1 AND {column} = $2 ORDER BY created_at, id LIMIT 1"
    );
    // `column` is one of this file's constants, never input.
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(app.as_str())
        .bind(text(value))
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(person_from_row).transpose()
}

/// The contacts `ident` names, found by phone, by BSUID and (when neither) by parent BSUID:
/// none, one, or two different contacts (one by phone, one by BSUID).
async fn named(
    conn: &mut Connection,
    app: &ApplicationId,
    ident: &ContactIdentity,
) -> Result<Vec<Person>> {
    let mut found: Vec<Person> = Vec::new();
    if let Some(phone) = &ident.phone
        && let Some(p) = find_by(conn, app, "phone", phone).await?
    {
        found.push(p);
    }
    if let Some(bsuid) = &ident.bsuid
        && let Some(p) = find_by(conn, app, "bsuid", bsuid).await?
        && !found.iter().any(|f| f.id == p.id)
    {
        found.push(p);
    }
    if found.is_empty()
        && ident.phone.is_none()
        && ident.bsuid.is_none()
        && let Some(parent) = &ident.parent_bsuid
        && let Some(p) = find_by(conn, app, "parent_bsuid", parent).await?
    {
        found.push(p);
    }
    Ok(found)
}

/// Locks every key `ident` may write (no-op on SQLite's single writer).
async fn lock(
    conn: &mut Connection,
    app: &ApplicationId,
    idents: &[&ContactIdentity],
) -> Result<()> {
    let mut keys: Vec<&str> = Vec::new();
    for i in idents {
        keys.extend(i.phone.as_deref());
        keys.extend(i.bsuid.as_deref());
    }
    if keys.is_empty() {
        return Ok(());
    }
    Backend::lock_phones(conn, app, &keys).await
}

/// The contact `ident` names, after linking what it carries together (and merging two
/// contacts it shows to be one person). With `create`, a person nobody knew becomes a new
/// contact; without, `None`. An identity with neither phone nor BSUID nor parent is `None`.
pub(crate) async fn resolve_in(
    conn: &mut Connection,
    app: &ApplicationId,
    ident: &ContactIdentity,
    create: bool,
    now: Millis,
) -> Result<Option<ContactId>> {
    if ident.phone.is_none() && ident.bsuid.is_none() && ident.parent_bsuid.is_none() {
        return Ok(None);
    }
    lock(conn, app, &[ident]).await?;
    let mut found = named(conn, app, ident).await?;
    let survivor = match found.len() {
        0 if !create => return Ok(None),
        0 => {
            let Some(address) = ident.address() else {
                return Ok(None);
            };
            let id = ContactId::new();
            let inserted = sqlx::query(
                "INSERT INTO contacts (id, application_id, phone, wa_id, name, tags, bsuid, parent_bsuid, username, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, '{}', $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(id.as_str())
            .bind(app.as_str())
            .bind(text(address))
            .bind(opt_text(ident.wa_id().as_deref()))
            .bind(opt_text(ident.name.as_deref()))
            .bind(opt_text(ident.bsuid.as_deref()))
            .bind(opt_text(ident.parent_bsuid.as_deref()))
            .bind(opt_text(ident.username.as_deref()))
            .bind(now)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(Some(id));
            }
            // Someone else created it meanwhile (PostgreSQL without a lock on this key).
            match named(conn, app, ident).await?.into_iter().next() {
                Some(p) => p,
                None => return Ok(None),
            }
        }
        1 => found.remove(0),
        _ => {
            let b = found.remove(1);
            let a = found.remove(0);
            merge(conn, a, b, now).await?
        }
    };
    set_identity(conn, &survivor, ident, false, now).await?;
    Ok(Some(parse_id_str(&survivor.id)?))
}

/// The columns `learn_in` reads in bulk: what its check and `set_identity` use (the rest of a
/// `Person`, tags above all, cost more to read and decode than the lookup).
const LEARN_COLUMNS: &str = "id, phone, wa_id, name, created_at, bsuid, parent_bsuid, username";

/// The contacts whose `column` (`phone` or `bsuid`, this file's constants) is one of
/// `values`, in one read per 500, by that value (the first created when several share it).
/// Only `LEARN_COLUMNS` are read: the other fields are empty, so these are for `learn_in`'s
/// check and `set_identity` only, never for a merge.
async fn people_by(
    conn: &mut Connection,
    app: &ApplicationId,
    column: &str,
    values: &[&str],
) -> Result<std::collections::HashMap<String, Person>> {
    let mut out = std::collections::HashMap::new();
    for chunk in values.chunks(500) {
        let marks: Vec<String> = (2..=chunk.len() + 1).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {LEARN_COLUMNS} FROM contacts WHERE application_id = $1 AND {column} IN ({})
             ORDER BY created_at, id",
            marks.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(app.as_str());
        for v in chunk {
            query = query.bind(text(v));
        }
        for row in query.fetch_all(&mut *conn).await? {
            let p = Person {
                id: row.try_get("id")?,
                phone: row.try_get("phone")?,
                wa_id: row.try_get("wa_id")?,
                name: row.try_get("name")?,
                locale: None,
                timezone: None,
                tags: Tags::default(),
                last_inbound_at: None,
                created_at: row.try_get("created_at")?,
                subscription: String::new(),
                subscription_source: None,
                subscription_at: None,
                bsuid: row.try_get("bsuid")?,
                parent_bsuid: row.try_get("parent_bsuid")?,
                username: row.try_get("username")?,
            };
            let key = if column == "phone" {
                Some(p.phone.clone())
            } else {
                p.bsuid.clone()
            };
            if let Some(key) = key {
                out.entry(key).or_insert(p);
            }
        }
    }
    Ok(out)
}

/// What a round of status webhooks reveals (`Store::learn_contacts`): each identity is linked
/// as `resolve_in` would without creating. Every key is locked first (one sorted lock), then
/// the contacts the identities name are read in one read per 500 by BSUID and one by phone:
/// an identity whose contact (by BSUID) already has every identifier it names is skipped, and
/// the common case, a phone and a BSUID nobody has yet, links the BSUID to the phone's contact
/// (or does nothing when no contact has the phone) without reading again: two reads per
/// status cost more than the rest of its application. Anything else (two contacts to merge, a
/// contact this round already changed) goes through `resolve_in`, and after it every later
/// identity too, since it may have changed contacts read here.
pub(crate) async fn learn_in(
    conn: &mut Connection,
    app: &ApplicationId,
    idents: &[ContactIdentity],
    now: Millis,
) -> Result<()> {
    let all: Vec<&ContactIdentity> = idents.iter().collect();
    lock(conn, app, &all).await?;
    let bsuids: Vec<&str> = idents.iter().filter_map(|i| i.bsuid.as_deref()).collect();
    let known = people_by(conn, app, "bsuid", &bsuids).await?;
    let phones: Vec<&str> = idents
        .iter()
        .filter(|i| i.bsuid.as_ref().is_some_and(|b| !known.contains_key(b)))
        .filter_map(|i| i.phone.as_deref())
        .collect();
    let by_phone = people_by(conn, app, "phone", &phones).await?;
    // Contacts and keys this call wrote: an identity naming one of them reads afresh.
    let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut fresh = true;
    for ident in idents {
        // Nothing new: the contact already has every identifier the status names.
        if let Some(p) = ident.bsuid.as_ref().and_then(|b| known.get(b))
            && (ident.phone.is_none()
                || (is_phone(&p.phone) && ident.phone.as_deref() == Some(p.phone.as_str())))
            && (ident.parent_bsuid.is_none() || ident.parent_bsuid == p.parent_bsuid)
            && (ident.username.is_none() || ident.username == p.username)
        {
            continue;
        }
        // A phone and a BSUID no contact had: `named` finds the phone's contact alone.
        if fresh
            && let (Some(b), Some(phone)) = (&ident.bsuid, &ident.phone)
            && !known.contains_key(b)
            && !written.contains(b)
            && !written.contains(phone)
        {
            match by_phone.get(phone) {
                None => continue,
                Some(p) if !written.contains(&p.id) => {
                    set_identity(conn, p, ident, false, now).await?;
                    written.extend([p.id.clone(), p.phone.clone(), b.clone(), phone.clone()]);
                    continue;
                }
                Some(_) => {}
            }
        }
        fresh = false;
        resolve_in(conn, app, ident, false, now).await?;
    }
    Ok(())
}

/// Meta said a person's number or BSUID changed (`user_changed_number`,
/// `user_changed_user_id`): the contact known by `previous` (its old BSUID, or its old
/// phone) now answers to `current`, with its whole history. A contact already known by
/// `current` is merged in. When nobody knew `previous`, this is `resolve_in(current)`.
pub(crate) async fn repoint_in(
    conn: &mut Connection,
    app: &ApplicationId,
    previous: &ContactIdentity,
    current: &ContactIdentity,
    now: Millis,
) -> Result<Option<ContactId>> {
    lock(conn, app, &[previous, current]).await?;
    let mut old = None;
    if let Some(bsuid) = &previous.bsuid {
        old = find_by(conn, app, "bsuid", bsuid).await?;
    }
    if old.is_none()
        && let Some(phone) = &previous.phone
    {
        old = find_by(conn, app, "phone", phone).await?;
    }
    let Some(mut old) = old else {
        return resolve_in(conn, app, current, true, now).await;
    };
    // Whoever already answers to the new identity is the same person.
    for other in named(conn, app, current).await? {
        if other.id != old.id {
            old = merge(conn, old, other, now).await?;
        }
    }
    set_identity(conn, &old, current, true, now).await?;
    Ok(Some(parse_id_str(&old.id)?))
}

fn parse_id_str(id: &str) -> Result<ContactId> {
    ContactId::parse(id).map_err(|_| corrupt("contacts.id", id))
}

/// Writes what `ident` adds to `p`. Without `replace`, a BSUID the contact already has is
/// replaced only by a new one (Meta's newest word on who this is), a phone is never removed,
/// and the name is filled only when missing; with `replace` (an identity change), the new
/// BSUID and parent replace the old even when absent from `ident` only for the parent.
async fn set_identity(
    conn: &mut Connection,
    p: &Person,
    ident: &ContactIdentity,
    replace: bool,
    now: Millis,
) -> Result<()> {
    let bsuid = ident.bsuid.clone().or_else(|| p.bsuid.clone());
    let parent = if replace && ident.bsuid.is_some() {
        ident.parent_bsuid.clone()
    } else {
        ident
            .parent_bsuid
            .clone()
            .or_else(|| p.parent_bsuid.clone())
    };
    let address = match (&ident.phone, &bsuid) {
        (Some(phone), _) => phone.clone(),
        (None, _) if is_phone(&p.phone) => p.phone.clone(),
        (None, Some(b)) => b.clone(),
        (None, None) => p.phone.clone(),
    };
    let wa_id = ident.wa_id().or_else(|| p.wa_id.clone());
    let username = ident.username.clone().or_else(|| p.username.clone());
    if address == p.phone
        && bsuid == p.bsuid
        && parent == p.parent_bsuid
        && username == p.username
        && wa_id == p.wa_id
        && (p.name.is_some() || ident.name.is_none())
    {
        return Ok(());
    }
    sqlx::query(
        "UPDATE contacts SET phone = $1, bsuid = $2, parent_bsuid = $3, username = $4, wa_id = $5,
           name = COALESCE(name, $6), updated_at = $7 WHERE id = $8",
    )
    .bind(text(&address))
    .bind(opt_text(bsuid.as_deref()))
    .bind(opt_text(parent.as_deref()))
    .bind(opt_text(username.as_deref()))
    .bind(opt_text(wa_id.as_deref()))
    .bind(opt_text(ident.name.as_deref()))
    .bind(now)
    .bind(&p.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Makes two contacts one (DECISIONS.md, "Contact identity"): the one created first
/// survives; the other's messages, inbound messages and consent history move to it; fields
/// the survivor lacks are filled from the other; tags are united with the survivor's value
/// winning a clash; the window is the later of the two; the consent state is the one
/// changed last. The absorbed contact is deleted. Returns the survivor as written.
async fn merge(conn: &mut Connection, a: Person, b: Person, now: Millis) -> Result<Person> {
    let (mut keep, gone) = if (a.created_at, &a.id) <= (b.created_at, &b.id) {
        (a, b)
    } else {
        (b, a)
    };
    for table in [
        "messages",
        "inbound_messages",
        "contact_subscription_events",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET contact_id = $1 WHERE contact_id = $2"
        )))
        .bind(&keep.id)
        .bind(&gone.id)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM contacts WHERE id = $1")
        .bind(&gone.id)
        .execute(&mut *conn)
        .await?;
    if !is_phone(&keep.phone) && is_phone(&gone.phone) {
        keep.phone = gone.phone.clone();
    }
    keep.wa_id = keep.wa_id.or(gone.wa_id);
    keep.name = keep.name.or(gone.name);
    keep.locale = keep.locale.or(gone.locale);
    keep.timezone = keep.timezone.or(gone.timezone);
    keep.bsuid = keep.bsuid.or(gone.bsuid);
    keep.parent_bsuid = keep.parent_bsuid.or(gone.parent_bsuid);
    keep.username = keep.username.or(gone.username);
    for (k, v) in gone.tags {
        if !keep.tags.keys().any(|n| n.eq_ignore_ascii_case(&k)) {
            keep.tags.insert(k, v);
        }
    }
    keep.last_inbound_at = keep.last_inbound_at.max(gone.last_inbound_at);
    if gone.subscription_at.unwrap_or(Millis::MIN) > keep.subscription_at.unwrap_or(Millis::MIN)
        && Subscription::parse(&gone.subscription).is_some()
    {
        keep.subscription = gone.subscription;
        keep.subscription_source = gone.subscription_source;
        keep.subscription_at = gone.subscription_at;
    }
    let sql = match <Db as Dialect>::KIND {
        Kind::Sqlite => {
            "UPDATE contacts SET phone = $1, wa_id = $2, name = $3, locale = $4, timezone = $5,
               bsuid = $6, parent_bsuid = $7, username = $8, tags = $9, tag_index = jsonb($10),
               last_inbound_at = $11, subscription = $12, subscription_source = $13,
               subscription_at = $14, updated_at = $15 WHERE id = $16"
        }
        Kind::Postgres => {
            "UPDATE contacts SET phone = $1, wa_id = $2, name = $3, locale = $4, timezone = $5,
               bsuid = $6, parent_bsuid = $7, username = $8, tags = $9, tag_index = $10,
               last_inbound_at = $11, subscription = $12, subscription_source = $13,
               subscription_at = $14, updated_at = $15 WHERE id = $16"
        }
    };
    sqlx::query(sql)
        .bind(text(&keep.phone))
        .bind(opt_text(keep.wa_id.as_deref()))
        .bind(opt_text(keep.name.as_deref()))
        .bind(opt_text(keep.locale.as_deref()))
        .bind(opt_text(keep.timezone.as_deref()))
        .bind(opt_text(keep.bsuid.as_deref()))
        .bind(opt_text(keep.parent_bsuid.as_deref()))
        .bind(opt_text(keep.username.as_deref()))
        .bind(json(&keep.tags)?)
        .bind(json(&tag_index(&keep.tags))?)
        .bind(keep.last_inbound_at)
        .bind(&keep.subscription)
        .bind(opt_text(keep.subscription_source.as_deref()))
        .bind(keep.subscription_at)
        .bind(now)
        .bind(&keep.id)
        .execute(&mut *conn)
        .await?;
    tracing::info!(survivor = %keep.id, absorbed = %gone.id, "two contacts were one person: merged");
    Ok(keep)
}
