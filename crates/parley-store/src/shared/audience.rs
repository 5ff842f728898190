//! `AudienceStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`). What differs stays with the backend: the phone locks around an upsert
//! (`postgres_audience.rs`), the read of an audience page (one JSON row on SQLite,
//! `sqlite_audience.rs`), and a few fragments from its `Dialect` (`dialect.rs`).

use std::collections::HashMap;

use async_trait::async_trait;
use parley_domain::{
    ApplicationId, ContactId, ImportId, ImportState, Segment, SegmentId, Subscription, Tags,
};
use sqlx::{QueryBuilder, Row};
use time::OffsetDateTime;

use super::{
    Backend, DbRow, contact_from_row, json, json_col, message_from_row, opt_text, parse_id, text,
};
use crate::audience::*;
use crate::dialect::{Dialect, Kind};
use crate::segment_sql::{self, lower};
use crate::tag_index::tag_index;
use crate::{MessageRecord, Millis, Result, StoreError, corrupt};

/// This backend's database (`Sqlite` or `Postgres`) and connection.
type Db = <DbRow as Row>::Database;
type Connection = <Db as sqlx::Database>::Connection;

/// Rejected rows of an import past its retention deleted per statement (a few milliseconds of
/// the writer each; an import may have kept a million).
const PRUNE_REJECTS_CHUNK: i64 = 5_000;

/// An application's saved segments, counted (its list's count and its cap's).
const COUNT_SEGMENTS: &str = "SELECT COUNT(*) FROM segments WHERE application_id = $1";

/// Phones looked up per `IN (…)` when merging a batch.
const LOOKUP_CHUNK: usize = 500;

/// One contact's insert-or-update, around how parameter 9, the tag index, is written.
macro_rules! upsert_contact {
    ($tag_index:literal) => {
        concat!(
            "INSERT INTO contacts (id, application_id, phone, wa_id, name, locale, timezone, tags, tag_index, subscription, subscription_source, subscription_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, ",
            $tag_index,
            ", $10, $11, $12, $13, $14)
             ON CONFLICT (application_id, phone) DO UPDATE SET
               wa_id = COALESCE(excluded.wa_id, contacts.wa_id),
               name = COALESCE(excluded.name, contacts.name),
               locale = COALESCE(excluded.locale, contacts.locale),
               timezone = COALESCE(excluded.timezone, contacts.timezone),
               tags = excluded.tags,
               tag_index = excluded.tag_index,
               subscription = CASE WHEN excluded.subscription_at IS NULL THEN contacts.subscription ELSE excluded.subscription END,
               subscription_source = CASE WHEN excluded.subscription_at IS NULL THEN contacts.subscription_source ELSE excluded.subscription_source END,
               subscription_at = COALESCE(excluded.subscription_at, contacts.subscription_at),
               updated_at = excluded.updated_at"
        )
    };
}

/// SQLite turns the tag index into binary JSONB on the way in (`jsonb($9)`), so segment queries
/// do not parse its text for every contact; PostgreSQL binds JSONB already.
const UPSERT_CONTACT: &str = match <Db as Dialect>::KIND {
    Kind::Sqlite => upsert_contact!("jsonb($9)"),
    Kind::Postgres => upsert_contact!("$9"),
};

pub(crate) fn audience_from_row(row: &DbRow) -> Result<AudienceContact> {
    let sub: String = row.try_get("subscription")?;
    Ok(AudienceContact {
        contact: contact_from_row(row)?,
        locale: row.try_get("locale")?,
        timezone: row.try_get("timezone")?,
        subscription: Subscription::parse(&sub).ok_or_else(|| corrupt("subscription", &sub))?,
        subscription_source: row.try_get("subscription_source")?,
        subscription_at: row.try_get("subscription_at")?,
    })
}

fn recipient_from_row(row: &DbRow) -> Result<Recipient> {
    let sub: String = row.try_get("subscription")?;
    Ok(Recipient {
        id: parse_id(row, "id", ContactId::parse)?,
        phone: row.try_get("phone")?,
        name: row.try_get("name")?,
        tags: json_col(row, "tags")?,
        subscription: Subscription::parse(&sub).ok_or_else(|| corrupt("subscription", &sub))?,
    })
}

fn segment_from_row(row: &DbRow) -> Result<SegmentRecord> {
    Ok(SegmentRecord {
        id: parse_id(row, "id", SegmentId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        name: row.try_get("name")?,
        filter: row.try_get("filter")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn count(row: &DbRow, col: &str) -> Result<u64> {
    let n: i64 = row.try_get(col)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn import_from_row(row: &DbRow) -> Result<ImportJobRecord> {
    let state: String = row.try_get("state")?;
    Ok(ImportJobRecord {
        id: parse_id(row, "id", ImportId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        format: row.try_get("format")?,
        state: ImportState::parse(&state).ok_or_else(|| corrupt("import state", &state))?,
        rows_read: count(row, "rows_read")?,
        created: count(row, "created")?,
        updated: count(row, "updated")?,
        rejected: count(row, "rejected")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        options: row.try_get("options")?,
        committed_bytes: count(row, "committed_bytes")?,
        committed_sha256: row.try_get("committed_sha256")?,
    })
}

async fn insert_rejects(conn: &mut Connection, job: &ImportId, rows: &[RejectedRow]) -> Result<()> {
    for r in rows {
        sqlx::query(
            "INSERT INTO import_rejects (job_id, line, reason, raw) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job_id, line) DO NOTHING",
        )
        .bind(job.as_str())
        .bind(r.line as i64)
        .bind(text(&r.reason))
        .bind(text(&r.raw))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

struct Existing {
    id: String,
    tags: Tags,
    subscription: Subscription,
}

async fn lookup_existing(
    conn: &mut Connection,
    app: &ApplicationId,
    phones: &[&str],
) -> Result<HashMap<String, Existing>> {
    let mut found = HashMap::with_capacity(phones.len());
    for chunk in phones.chunks(LOOKUP_CHUNK) {
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT id, phone, tags, subscription FROM contacts WHERE application_id = ",
        );
        qb.push_bind(app.as_str());
        qb.push(" AND phone IN (");
        let mut sep = qb.separated(", ");
        for p in chunk {
            sep.push_bind(*p);
        }
        qb.push(")");
        let rows = qb.build().fetch_all(&mut *conn).await?;
        for row in rows {
            let sub: String = row.try_get("subscription")?;
            found.insert(
                row.try_get("phone")?,
                Existing {
                    id: row.try_get("id")?,
                    tags: json_col(&row, "tags")?,
                    subscription: Subscription::parse(&sub)
                        .ok_or_else(|| corrupt("subscription", &sub))?,
                },
            );
        }
    }
    Ok(found)
}

/// Inserts or merges `contacts` (tags merged into the stored ones, subscription changes
/// recorded) inside the caller's transaction.
pub(crate) async fn upsert_in(
    conn: &mut Connection,
    app: &ApplicationId,
    contacts: &[ContactUpsert],
    now: Millis,
) -> Result<(UpsertCounts, Vec<usize>)> {
    // A row known by its BSUID alone updates the contact that has it, whatever its address.
    let readdressed;
    let contacts = if contacts.iter().any(|c| c.bsuid.is_some()) {
        let mut owned = contacts.to_vec();
        for c in &mut owned {
            if let Some(b) = &c.bsuid
                && !c.phone.starts_with('+')
            {
                let found: Option<String> = sqlx::query_scalar(
                    "SELECT phone FROM contacts WHERE application_id = $1 AND bsuid = $2",
                )
                .bind(app.as_str())
                .bind(text(b))
                .fetch_optional(&mut *conn)
                .await?;
                c.phone = found.unwrap_or_else(|| b.clone());
            }
        }
        readdressed = owned;
        readdressed.as_slice()
    } else {
        contacts
    };
    let phones: Vec<&str> = contacts.iter().map(|c| c.phone.as_str()).collect();
    Backend::lock_phones(conn, app, &phones).await?;
    let mut existing = lookup_existing(conn, app, &phones).await?;
    let mut counts = UpsertCounts::default();
    let mut refused = Vec::new();
    for (i, c) in contacts.iter().enumerate() {
        let (id, mut tags, current, created) = match existing.remove(&c.phone) {
            Some(e) => (e.id, e.tags, e.subscription, false),
            None => (
                ContactId::new().as_str().to_owned(),
                Tags::new(),
                Subscription::Unknown,
                true,
            ),
        };
        if !c.tags.is_empty() {
            let before = tags.clone();
            merge_tags(&mut tags, &c.tags);
            if tags_grow_past_cap(&before, &tags) {
                // Refused whole, as if not given: the contact stays as it was.
                refused.push(i);
                counts.refused += 1;
                if !created {
                    existing.insert(
                        c.phone.clone(),
                        Existing {
                            id,
                            tags: before,
                            subscription: current,
                        },
                    );
                }
                continue;
            }
        }
        let change = c.subscription.as_ref().filter(|s| s.state != current);
        sqlx::query(UPSERT_CONTACT)
            .bind(&id)
            .bind(app.as_str())
            .bind(text(&c.phone))
            .bind(opt_text(c.wa_id.as_ref().map(|w| w.as_str())))
            .bind(opt_text(c.name.as_deref()))
            .bind(opt_text(c.locale.as_deref()))
            .bind(opt_text(c.timezone.as_deref()))
            .bind(json(&tags)?)
            .bind(json(&tag_index(&tags))?)
            .bind(change.map_or(current, |s| s.state).as_str())
            .bind(change.map(|s| s.source.as_str()))
            .bind(change.map(|_| now))
            .bind(now)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        if let Some(s) = change {
            sqlx::query(
                "INSERT INTO contact_subscription_events (application_id, contact_id, state, source, note, at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(app.as_str())
            .bind(&id)
            .bind(s.state.as_str())
            .bind(text(&s.source))
            .bind(opt_text(s.note.as_deref()))
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        if created {
            counts.created += 1;
        } else {
            counts.updated += 1;
        }
        let subscription = change.map_or(current, |s| s.state);
        if let Some(b) = &c.bsuid {
            link_bsuid(conn, app, &c.phone, b, now).await?;
        }
        existing.insert(
            c.phone.clone(),
            Existing {
                id,
                tags,
                subscription,
            },
        );
    }
    Ok((counts, refused))
}

/// Links an imported row's BSUID to the contact at `address` (merging a contact already
/// known by it, `contact_identity.rs`).
async fn link_bsuid(
    conn: &mut Connection,
    app: &ApplicationId,
    address: &str,
    bsuid: &str,
    now: Millis,
) -> Result<()> {
    if address.starts_with('+') {
        let ident = crate::ContactIdentity {
            phone: Some(address.to_owned()),
            bsuid: Some(bsuid.to_owned()),
            ..crate::ContactIdentity::default()
        };
        super::resolve_in(conn, app, &ident, false, now).await?;
    } else {
        sqlx::query(
            "UPDATE contacts SET bsuid = $1 WHERE application_id = $2 AND phone = $3 AND bsuid IS NULL",
        )
        .bind(text(bsuid))
        .bind(app.as_str())
        .bind(text(address))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Backend {
    /// Completes a query ending in `… FROM contacts WHERE application_id = ` into one keyset
    /// page in phone order (code point order on both backends): after `after`, matching
    /// `search` (in the phone, or in the lower-cased name) and `segment`.
    pub(crate) fn push_contact_page(
        qb: &mut QueryBuilder<Db>,
        app: &ApplicationId,
        after: Option<&str>,
        search: Option<&str>,
        segment: &Segment,
        now: OffsetDateTime,
        limit: u32,
    ) {
        qb.push_bind(app.as_str());
        if let Some(after) = after {
            qb.push(" AND phone").push(Db::BY_CODE_POINT).push(" > ");
            qb.push_bind(text(after).into_owned());
        }
        if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
            qb.push(" AND (").push(Db::POSITION).push("phone, ");
            qb.push_bind(text(search).into_owned());
            qb.push(") > 0 OR ").push(Db::POSITION);
            qb.push("lower(COALESCE(name, '')), ");
            qb.push_bind(text(&search.to_lowercase()).into_owned());
            qb.push(") > 0)");
        }
        qb.push(" AND ");
        segment_sql::push(qb, &lower(segment, now));
        qb.push(" ORDER BY phone")
            .push(Db::BY_CODE_POINT)
            .push(" LIMIT ");
        qb.push_bind(i64::from(limit));
    }
}

#[async_trait]
impl AudienceStore for Backend {
    async fn upsert_audience(
        &self,
        app: &ApplicationId,
        contacts: &[ContactUpsert],
        now: Millis,
    ) -> Result<UpsertCounts> {
        let mut tx = self.tx().await?;
        let (counts, _) = upsert_in(&mut tx, app, contacts, now).await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn audience_contact(
        &self,
        app: &ApplicationId,
        phone: &str,
    ) -> Result<Option<AudienceContact>> {
        let row = sqlx::query("SELECT * FROM contacts WHERE application_id = $1 AND phone = $2")
            .bind(app.as_str())
            .bind(phone)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(audience_from_row).transpose()
    }

    async fn list_audience(
        &self,
        app: &ApplicationId,
        q: &ContactQuery<'_>,
    ) -> Result<Vec<AudienceContact>> {
        self.audience_page(app, q).await
    }

    async fn recipients_page(
        &self,
        app: &ApplicationId,
        segment: &Segment,
        after: Option<&str>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<Vec<Recipient>> {
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT id, phone, name, tags, subscription FROM contacts WHERE application_id = ",
        );
        Self::push_contact_page(&mut qb, app, after, None, segment, now, limit);
        let rows = qb.build().fetch_all(self.reader()).await?;
        rows.iter().map(recipient_from_row).collect()
    }

    async fn count_segment(
        &self,
        app: &ApplicationId,
        segment: &Segment,
        now: OffsetDateTime,
    ) -> Result<u64> {
        let mut qb =
            QueryBuilder::<Db>::new("SELECT COUNT(*) FROM contacts WHERE application_id = ");
        qb.push_bind(app.as_str());
        qb.push(" AND ");
        segment_sql::push(&mut qb, &lower(segment, now));
        let n: i64 = qb.build_query_scalar().fetch_one(self.reader()).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn count_segment_bounded(
        &self,
        app: &ApplicationId,
        segment: &Segment,
        now: OffsetDateTime,
        budget: std::time::Duration,
    ) -> Result<u64> {
        let mut qb =
            QueryBuilder::<Db>::new("SELECT COUNT(*) FROM contacts WHERE application_id = ");
        qb.push_bind(app.as_str());
        qb.push(" AND ");
        segment_sql::push(&mut qb, &lower(segment, now));
        let mut lease = self.filter_lease(budget).await?;
        let n = qb.build_query_scalar::<i64>().fetch_one(lease.conn()).await;
        let n = lease.finish(n).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn list_audience_bounded(
        &self,
        app: &ApplicationId,
        q: &ContactQuery<'_>,
        budget: std::time::Duration,
    ) -> Result<Vec<AudienceContact>> {
        let mut lease = self.filter_lease(budget).await?;
        let page = Self::audience_page_on(lease.conn(), app, q).await;
        match page {
            Ok(page) => lease.finish(Ok(page)).await,
            Err(StoreError::Database(e)) => lease.finish(Err(e)).await,
            Err(e) => {
                lease.finish(Ok(())).await?;
                Err(e)
            }
        }
    }

    fn filter_queries_abandoned(&self) -> u64 {
        self.filter_abandoned
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn filter_queries_running(&self) -> usize {
        self.filter_running
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn subscription_history(&self, contact: &ContactId) -> Result<Vec<SubscriptionEvent>> {
        let rows = sqlx::query(
            "SELECT state, source, note, at FROM (
               SELECT id, state, source, note, at FROM contact_subscription_events
               WHERE contact_id = $1 ORDER BY id DESC LIMIT $2) newest
             ORDER BY id",
        )
        .bind(contact.as_str())
        .bind(HISTORY_SHOWN)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("state")?;
                Ok(SubscriptionEvent {
                    state: Subscription::parse(&s).ok_or_else(|| corrupt("subscription", &s))?,
                    source: r.try_get("source")?,
                    note: r.try_get("note")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    async fn messages_to(
        &self,
        app: &ApplicationId,
        phone: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>> {
        // By address or by contact: a contact's history follows it across the phone and the
        // BSUIDs it was addressed by (migration 0015).
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(
            "SELECT * FROM messages WHERE application_id = $1 AND (to_phone = $2 OR contact_id =
               (SELECT id FROM contacts WHERE application_id = $1 AND phone = $2))
             ORDER BY id DESC LIMIT $3",
        )
        .bind(app.as_str())
        .bind(phone)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>>>()?;
        super::overlay_pending(&mut tx, &mut messages).await?;
        Ok(messages)
    }

    async fn erase_contact(&self, app: &ApplicationId, phone: &str) -> Result<EraseReport> {
        let mut tx = self.tx().await?;
        // `phone` is the address the caller knows: the phone or any BSUID of the contact.
        let found = sqlx::query(
            "SELECT id, phone, bsuid FROM contacts WHERE application_id = $1 AND (phone = $2 OR bsuid = $2)",
        )
        .bind(app.as_str())
        .bind(phone)
        .fetch_optional(&mut *tx)
        .await?;
        let (id, address, bsuid): (String, String, String) = match &found {
            Some(r) => (
                r.try_get("id")?,
                r.try_get("phone")?,
                r.try_get::<Option<String>, _>("bsuid")?.unwrap_or_default(),
            ),
            None => (String::new(), phone.to_owned(), String::new()),
        };
        let messages = sqlx::query(
            "UPDATE messages SET to_phone = 'erased', contact_id = NULL, content = $1,
               state = CASE WHEN state IN ('queued', 'sending') THEN 'skipped' ELSE state END,
               error_message = CASE WHEN state IN ('queued', 'sending') THEN 'contact erased' ELSE error_message END
             WHERE application_id = $2 AND (to_phone IN ($3, $5, $6) OR contact_id = $4)",
        )
        .bind(json(&ERASED_CONTENT)?)
        .bind(app.as_str())
        .bind(phone)
        .bind(&id)
        .bind(&address)
        .bind(&bsuid)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Their media go too (the files, once no message names them, at the next sweep).
        sqlx::query(
            "DELETE FROM inbound_media WHERE wamid IN (SELECT wamid FROM inbound_messages
               WHERE application_id = $1 AND (from_phone IN ($2, $4, $5) OR contact_id = $3
                 OR (from_user_id IS NOT NULL AND from_user_id = $5)))",
        )
        .bind(app.as_str())
        .bind(phone)
        .bind(&id)
        .bind(&address)
        .bind(&bsuid)
        .execute(&mut *tx)
        .await?;
        let inbound = sqlx::query(
            "UPDATE inbound_messages SET from_phone = 'erased', from_user_id = NULL, contact_id = NULL, text = NULL, raw = '{}',
               body = NULL, edits = NULL
             WHERE application_id = $1 AND (from_phone IN ($2, $4, $5) OR contact_id = $3
               OR (from_user_id IS NOT NULL AND from_user_id = $5))",
        )
        .bind(app.as_str())
        .bind(phone)
        .bind(&id)
        .bind(&address)
        .bind(&bsuid)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Coexistence: the WhatsApp Business app's history and echoes of this person.
        sqlx::query(
            "DELETE FROM app_messages WHERE application_id = $1 AND (contact_phone = $2 OR contact_id = $3)",
        )
        .bind(app.as_str())
        .bind(phone)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM contact_subscription_events WHERE contact_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        // The row holds every identity (phone, BSUID, parent BSUID, username): all go.
        let contacts = sqlx::query("DELETE FROM contacts WHERE application_id = $1 AND id = $2")
            .bind(app.as_str())
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(EraseReport {
            contacts,
            messages,
            inbound_messages: inbound,
        })
    }

    async fn create_segment(&self, s: &SegmentRecord, cap: u64) -> Result<bool> {
        let mut tx = self.tx().await?;
        if !super::caps::below_cap(
            &mut tx,
            "segments",
            s.application_id.as_str(),
            cap,
            COUNT_SEGMENTS,
            None,
        )
        .await?
        {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO segments (id, application_id, name, filter, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(s.id.as_str())
        .bind(s.application_id.as_str())
        .bind(text(&s.name))
        .bind(text(&s.filter))
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn segments(&self, app: &ApplicationId) -> Result<Vec<SegmentRecord>> {
        let rows = sqlx::query("SELECT * FROM segments WHERE application_id = $1 ORDER BY name")
            .bind(app.as_str())
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(segment_from_row).collect()
    }

    async fn segments_after(
        &self,
        app: &ApplicationId,
        after_name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SegmentRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM segments WHERE application_id = $1 AND ($2 IS NULL OR name > $3)
             ORDER BY name LIMIT $4",
        )
        .bind(app.as_str())
        .bind(after_name.map(text))
        .bind(after_name.map(text))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(segment_from_row).collect()
    }

    async fn segment(&self, app: &ApplicationId, id: &SegmentId) -> Result<Option<SegmentRecord>> {
        let row = sqlx::query("SELECT * FROM segments WHERE application_id = $1 AND id = $2")
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(segment_from_row).transpose()
    }

    async fn segment_by_name(
        &self,
        app: &ApplicationId,
        name: &str,
    ) -> Result<Option<SegmentRecord>> {
        let row = sqlx::query("SELECT * FROM segments WHERE application_id = $1 AND name = $2")
            .bind(app.as_str())
            .bind(name)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(segment_from_row).transpose()
    }

    async fn count_segments(&self, app: &ApplicationId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(COUNT_SEGMENTS)
            .bind(app.as_str())
            .fetch_one(self.reader())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn delete_segment(&self, app: &ApplicationId, id: &SegmentId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM segments WHERE application_id = $1 AND id = $2")
            .bind(app.as_str())
            .bind(id.as_str())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_import_job(&self, j: &ImportJobRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO import_jobs (id, application_id, format, state, rows_read, created, updated, rejected, error, created_at, updated_at, finished_at, options, committed_bytes, committed_sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(j.id.as_str())
        .bind(j.application_id.as_str())
        .bind(&j.format)
        .bind(j.state.as_str())
        .bind(j.rows_read as i64)
        .bind(j.created as i64)
        .bind(j.updated as i64)
        .bind(j.rejected as i64)
        .bind(opt_text(j.error.as_deref()))
        .bind(j.created_at)
        .bind(j.updated_at)
        .bind(j.finished_at)
        .bind(opt_text(j.options.as_deref()))
        .bind(j.committed_bytes as i64)
        .bind(j.committed_sha256.as_deref())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn update_import_job(&self, j: &ImportJobRecord) -> Result<()> {
        sqlx::query(
            "UPDATE import_jobs SET state = $1, rows_read = $2, created = $3, updated = $4, rejected = $5, error = $6, updated_at = $7, finished_at = $8,
                    format = $10, options = $11
             WHERE id = $9",
        )
        .bind(j.state.as_str())
        .bind(j.rows_read as i64)
        .bind(j.created as i64)
        .bind(j.updated as i64)
        .bind(j.rejected as i64)
        .bind(opt_text(j.error.as_deref()))
        .bind(j.updated_at)
        .bind(j.finished_at)
        .bind(j.id.as_str())
        .bind(text(&j.format))
        .bind(opt_text(j.options.as_deref()))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn add_import_rejects(&self, job: &ImportId, rows: &[RejectedRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.tx().await?;
        insert_rejects(&mut tx, job, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_import_chunk(
        &self,
        j: &ImportJobRecord,
        contacts: &[ContactUpsert],
        lines: &[u64],
        rejects: &[RejectedRow],
        now: Millis,
    ) -> Result<UpsertCounts> {
        let mut tx = self.tx().await?;
        let (counts, refused) = upsert_in(&mut tx, &j.application_id, contacts, now).await?;
        insert_rejects(&mut tx, &j.id, rejects).await?;
        let over: Vec<RejectedRow> = refused
            .into_iter()
            .map(|i| RejectedRow {
                line: lines.get(i).copied().unwrap_or_default(),
                reason: TAGS_OVER_CAP.to_owned(),
                raw: contacts[i].phone.clone(),
            })
            .collect();
        insert_rejects(&mut tx, &j.id, &over).await?;
        sqlx::query(
            "UPDATE import_jobs SET rows_read = $1, created = $2, updated = $3, rejected = $4,
               committed_bytes = $5, committed_sha256 = $6, updated_at = $7
             WHERE id = $8",
        )
        .bind(j.rows_read as i64)
        .bind((j.created + counts.created) as i64)
        .bind((j.updated + counts.updated) as i64)
        .bind((j.rejected + counts.refused) as i64)
        .bind(j.committed_bytes as i64)
        .bind(j.committed_sha256.as_deref())
        .bind(now)
        .bind(j.id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn interrupt_stale_imports(&self, before: Millis, now: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE import_jobs SET state = 'interrupted', updated_at = $1,
               error = 'Parley stopped during this import; the rows committed so far are kept. Resume it with the same file.'
             WHERE state = 'running' AND updated_at < $2",
        )
        .bind(now)
        .bind(before)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected())
    }

    async fn resume_import_job(
        &self,
        app: &ApplicationId,
        id: &ImportId,
        now: Millis,
    ) -> Result<Option<ImportJobRecord>> {
        let mut tx = self.tx().await?;
        let taken = sqlx::query(
            "UPDATE import_jobs SET state = 'running', error = NULL, finished_at = NULL, updated_at = $1
             WHERE application_id = $2 AND id = $3 AND state IN ('interrupted', 'failed')",
        )
        .bind(now)
        .bind(app.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM import_jobs WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let job = import_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(job))
    }

    async fn import_job(
        &self,
        app: &ApplicationId,
        id: &ImportId,
    ) -> Result<Option<ImportJobRecord>> {
        let row = sqlx::query("SELECT * FROM import_jobs WHERE application_id = $1 AND id = $2")
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(import_from_row).transpose()
    }

    async fn import_jobs(
        &self,
        app: &ApplicationId,
        before: Option<&ImportId>,
        limit: u32,
    ) -> Result<Vec<ImportJobRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM import_jobs WHERE application_id = $1 AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(app.as_str())
        .bind(before.map(|b| b.as_str()))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(import_from_row).collect()
    }

    async fn prune_import_jobs(&self, before: Millis, limit: u32) -> Result<u64> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM import_jobs WHERE updated_at < $1 AND state <> 'running'
             ORDER BY updated_at LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let mut deleted = 0;
        for id in ids {
            // Checked on each chunk: a resume (state back to `running`) stops the deletes.
            loop {
                let n = sqlx::query(
                    "DELETE FROM import_rejects WHERE job_id = $1 AND line IN (
                       SELECT r.line FROM import_rejects r JOIN import_jobs j ON j.id = r.job_id
                       WHERE r.job_id = $1 AND j.state <> 'running' AND j.updated_at < $2
                       ORDER BY r.line LIMIT $3)",
                )
                .bind(&id)
                .bind(before)
                .bind(PRUNE_REJECTS_CHUNK)
                .execute(self.writer())
                .await?
                .rows_affected();
                if n < PRUNE_REJECTS_CHUNK as u64 {
                    break;
                }
            }
            deleted += sqlx::query(
                "DELETE FROM import_jobs WHERE id = $1 AND state <> 'running' AND updated_at < $2",
            )
            .bind(&id)
            .bind(before)
            .execute(self.writer())
            .await?
            .rows_affected();
        }
        Ok(deleted)
    }

    async fn import_rejects(
        &self,
        app: &ApplicationId,
        id: &ImportId,
        after_line: u64,
        limit: u32,
    ) -> Result<Vec<RejectedRow>> {
        let rows = sqlx::query(
            "SELECT r.line, r.reason, r.raw FROM import_rejects r JOIN import_jobs j ON j.id = r.job_id
             WHERE j.application_id = $1 AND r.job_id = $2 AND r.line > $3 ORDER BY r.line LIMIT $4",
        )
        .bind(app.as_str())
        .bind(id.as_str())
        .bind(after_line as i64)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RejectedRow {
                    line: count(r, "line")?,
                    reason: r.try_get("reason")?,
                    raw: r.try_get("raw")?,
                })
            })
            .collect()
    }
}
