//! The `Store` contract (tenancy, platforms and numbers, templates, contacts, inbound, messages,
//! claims, acceptances, statuses, webhooks), written once for both backends: compiled into
//! `sqlite.rs` and `postgres.rs`, whose vocabulary (`Backend`, `DbRow`, `Tx`, `text`, `json`,
//! `reader()`/`writer()`) it uses.
//!
//! What differs between the dialects stays in the backend module and is called from here:
//! `claim_due` (SKIP LOCKED vs the single writer), `lock_wamids` (advisory locks vs none
//! needed), `load_status_rows`/`take_orphans`/`write_status_rows`/`insert_orphans` (the status
//! merge's batch statements), `confirm_quota_rows` and `finish_events` (JSON-function batch
//! statements), and the audience upsert `upsert_in`.

use async_trait::async_trait;
use parley_domain::{
    AccountId, ApplicationId, ContactId, MessageContent, MessageId, PhoneNumberId, PlatformId,
    UserId,
};
use sqlx::Row;

use super::{
    Backend, DbRow, LIKE_IGNORES_CASE, Tx, add_counters, confirm_quota_rows, contact_from_row,
    insert_orphans, insert_status_log, json, learn_in, load_status_rows, lock_wamids,
    message_from_row, normalize_status_rows, note_entry_point_in, opt_text, overlay_pending,
    parse_id, phone_from_row, platform_from_row, record_reaches_in, repoint_in, resolve_in,
    suspend_stat_triggers, take_orphans, template_from_row, text, upsert_conversation_in,
    upsert_in, write_status_rows,
};
use super::{PRUNE_CHUNK, execute_in, old_rows};
use crate::lattice::Batch;
use crate::types::*;
use crate::{Millis, Result, StaleSending, Store, StoreError, corrupt, serde_name};

fn application_from_row(row: &DbRow) -> Result<ApplicationRecord> {
    Ok(ApplicationRecord {
        id: parse_id(row, "id", ApplicationId::parse)?,
        account_id: parse_id(row, "account_id", AccountId::parse)?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn user_from_row(row: &DbRow) -> Result<UserRecord> {
    Ok(UserRecord {
        id: parse_id(row, "id", UserId::parse)?,
        account_id: parse_id(row, "account_id", AccountId::parse)?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        totp_enabled: row.try_get::<Option<Vec<u8>>, _>("totp_secret")?.is_some(),
    })
}

/// The oldest unprocessed webhook events after `$3` (`$1` at most, as long as their bodies
/// stay within `$2` bytes, always at least one), with `$extra` added to the condition.
/// One statement, so one snapshot: the batch stops where the bodies pass the budget (sizes
/// are never negative, so the events within it are a prefix), and only the bodies of those
/// are read. It was two statements (the ids and sizes, then the events up to the last id that
/// fit, `processed_at IS NULL` asked again): a round finished between them left nothing at or
/// below that id, and the answer was "nothing pending" while later events waited
/// (docs/TESTING.md).
macro_rules! pending_events {
    ($extra:literal) => {
        concat!(
            "SELECT w.id, w.received_at, b.body, w.attempts
             FROM (SELECT id, received_at, attempts,
                          SUM(size) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS upto,
                          ROW_NUMBER() OVER (ORDER BY id) AS n
                   FROM (SELECT id, received_at, attempts, size FROM webhook_events
                         WHERE processed_at IS NULL ",
            $extra,
            " AND id > $3 ORDER BY id LIMIT $1) p) w
             JOIN webhook_bodies b ON b.id = w.id
             WHERE w.n = 1 OR w.upto <= $2
             ORDER BY w.id"
        )
    };
}

/// Runs one of the `pending_events!` reads. On a read connection: on SQLite the one writer
/// stays free for the intake's commits (a read that starts after the processor's last commit
/// sees it, in WAL).
async fn read_pending(
    store: &Backend,
    sql: &'static str,
    after: i64,
    limit: u32,
) -> Result<Vec<WebhookEventRecord>> {
    let rows = sqlx::query(sql)
        .bind(i64::from(limit))
        .bind(crate::PENDING_BODY_BUDGET)
        .bind(after)
        .fetch_all(store.reader())
        .await?;
    rows.iter().map(webhook_event_from_row).collect()
}

/// Statuses written to `status_log` per statement.
const STATUS_LOG_CHUNK: usize = 2_000;

fn webhook_event_from_row(row: &DbRow) -> Result<WebhookEventRecord> {
    Ok(WebhookEventRecord {
        id: row.try_get("id")?,
        received_at: row.try_get("received_at")?,
        body: row.try_get("body")?,
        attempts: row.try_get("attempts")?,
    })
}

/// Folds in the statuses that arrived before their wamid was known, for every row whose
/// wamid this batch recorded, then writes the merged rows back in one statement (the rules
/// are in `lattice.rs`).
///
/// The merge counts its own statistics (`message_stats.rs`): the rows' contributions before
/// and after are summed per counter in Rust and written with the merge, and the message
/// triggers are switched off around the `UPDATE` (migration 0042, `suspend_stat_triggers`).
async fn write_statuses(tx: &mut Tx, batch: &mut Batch) -> Result<()> {
    let fresh = batch.take_new_wamids();
    if !fresh.is_empty() {
        for row in take_orphans(tx, &fresh).await? {
            let state: String = row.try_get("state")?;
            batch.fold_orphan(
                row.try_get("wamid")?,
                &state,
                row.try_get("at")?,
                row.try_get("error_code")?,
                row.try_get("error_message")?,
            )?;
        }
    }
    if !batch.is_dirty() {
        return Ok(());
    }
    normalize_status_rows(batch);
    suspend_stat_triggers(tx, true).await?;
    let batch: &Batch = batch;
    // The statistics are counted while the write runs.
    let ((), deltas) = while_running(write_status_rows(tx, batch), || {
        batch.stat_deltas(LIKE_IGNORES_CASE)
    })
    .await?;
    suspend_stat_triggers(tx, false).await?;
    add_counters(tx, &deltas).await
}

/// Starts `io` (on SQLite its statement then runs on the connection's own thread), does `work`
/// meanwhile, then waits for `io`: the two overlap instead of taking turns. An error of `io`
/// drops what `work` made.
async fn while_running<T, E, U>(
    io: impl std::future::Future<Output = std::result::Result<T, E>>,
    work: impl FnOnce() -> U,
) -> std::result::Result<(T, U), E> {
    let mut io = std::pin::pin!(io);
    let started = std::future::poll_fn(|cx| std::task::Poll::Ready(io.as_mut().poll(cx))).await;
    let made = work();
    let done = match started {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => io.await,
    }?;
    Ok((done, made))
}

#[async_trait]
impl Store for Backend {
    fn wakeups(&self) -> crate::Wakeups {
        self.wakeups.clone()
    }

    async fn create_account(&self, id: &AccountId, name: &str, now: Millis) -> Result<()> {
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id.as_str())
            .bind(text(name))
            .bind(now)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn create_application(
        &self,
        id: &ApplicationId,
        account: &AccountId,
        name: &str,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO applications (id, account_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(text(name))
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn applications(&self) -> Result<Vec<ApplicationRecord>> {
        let rows = sqlx::query("SELECT * FROM applications ORDER BY created_at, id")
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(application_from_row).collect()
    }

    async fn applications_after(
        &self,
        after: Option<&ApplicationId>,
        limit: u32,
    ) -> Result<Vec<ApplicationRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM applications WHERE ($1 IS NULL OR id > $2) ORDER BY id LIMIT $3",
        )
        .bind(after.map(ApplicationId::as_str))
        .bind(after.map(ApplicationId::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(application_from_row).collect()
    }

    async fn application(&self, id: &ApplicationId) -> Result<Option<ApplicationRecord>> {
        let row = sqlx::query("SELECT * FROM applications WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(application_from_row).transpose()
    }

    async fn add_api_token(
        &self,
        app: &ApplicationId,
        token_hash: &str,
        label: &str,
        now: Millis,
    ) -> Result<()> {
        use crate::access::{AccessStore, NewToken};
        self.insert_token(
            &NewToken {
                id: parley_domain::TokenId::new(),
                application_id: app.clone(),
                token_hash: token_hash.to_owned(),
                label: label.to_owned(),
                scopes: parley_domain::Scopes::ALL,
                expires_at: None,
                now,
            },
            u64::MAX,
        )
        .await
        .map(|_| ())
    }

    async fn create_user(
        &self,
        id: &UserId,
        account: &AccountId,
        email: &str,
        password_hash: &str,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (id, account_id, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(email)
        .bind(password_hash)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(text(email))
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn upsert_platform(&self, p: &NewPlatform) -> Result<PlatformId> {
        let token = self.cipher.encrypt(p.access_token.as_bytes());
        let row = sqlx::query(
            "INSERT INTO platforms (id, application_id, business_id, waba_id, waba_name, status, access_token, details, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (application_id, waba_id) DO UPDATE SET
               business_id = excluded.business_id, waba_name = excluded.waba_name, status = excluded.status,
               access_token = excluded.access_token, details = excluded.details, updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(p.id.as_str())
        .bind(p.application_id.as_str())
        .bind(p.business_id.as_ref().map_or("", |b| b.as_str()))
        .bind(p.waba_id.as_str())
        .bind(opt_text(p.waba_name.as_deref()))
        .bind(&p.status)
        .bind(token)
        .bind(json(&p.details)?)
        .bind(p.now)
        .bind(p.now)
        .fetch_one(self.writer())
        .await
        .map_err(|e| crate::waba_taken(e, p.waba_id.as_str()))?;
        parse_id(&row, "id", PlatformId::parse)
    }

    async fn platforms(&self, app: &ApplicationId) -> Result<Vec<PlatformRecord>> {
        let rows = sqlx::query("SELECT * FROM platforms WHERE application_id = $1 ORDER BY id")
            .bind(app.as_str())
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(platform_from_row).collect()
    }

    async fn platform(
        &self,
        app: &ApplicationId,
        id: &PlatformId,
    ) -> Result<Option<PlatformRecord>> {
        let row = sqlx::query("SELECT * FROM platforms WHERE id = $1 AND application_id = $2")
            .bind(id.as_str())
            .bind(app.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(platform_from_row).transpose()
    }

    async fn platform_token(&self, id: &PlatformId) -> Result<String> {
        let row = sqlx::query("SELECT access_token FROM platforms WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("platform {id}")))?;
        let blob: Vec<u8> = row.try_get("access_token")?;
        let plain = self.cipher.decrypt(&blob)?;
        String::from_utf8(plain).map_err(|e| corrupt("access_token", e))
    }

    async fn upsert_phone_number(&self, p: &PhoneNumberRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO phone_numbers (phone_number_id, platform_id, application_id, display_phone_number, verified_name, quality_rating, messaging_limit, throughput_mps, status, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (phone_number_id) DO UPDATE SET
               platform_id = excluded.platform_id, application_id = excluded.application_id,
               display_phone_number = excluded.display_phone_number, verified_name = excluded.verified_name,
               quality_rating = excluded.quality_rating, messaging_limit = excluded.messaging_limit,
               throughput_mps = excluded.throughput_mps, status = excluded.status, updated_at = excluded.updated_at
             WHERE phone_numbers.application_id = excluded.application_id",
        )
        .bind(p.phone_number_id.as_str())
        .bind(p.platform_id.as_str())
        .bind(p.application_id.as_str())
        .bind(text(&p.display_phone_number))
        .bind(opt_text(p.verified_name.as_deref()))
        .bind(opt_text(p.quality_rating.as_deref()))
        .bind(opt_text(p.messaging_limit.as_deref()))
        .bind(i64::from(p.throughput_mps))
        .bind(opt_text(p.status.as_deref()))
        .bind(p.updated_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn phone_numbers(&self, app: &ApplicationId) -> Result<Vec<PhoneNumberRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM phone_numbers WHERE application_id = $1 ORDER BY phone_number_id",
        )
        .bind(app.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(phone_from_row).collect()
    }

    async fn phone_numbers_after(
        &self,
        app: &ApplicationId,
        after: Option<&PhoneNumberId>,
        limit: u32,
    ) -> Result<Vec<PhoneNumberRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM phone_numbers WHERE application_id = $1
               AND ($2 IS NULL OR phone_number_id > $3)
             ORDER BY phone_number_id LIMIT $4",
        )
        .bind(app.as_str())
        .bind(after.map(|a| a.as_str()))
        .bind(after.map(|a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(phone_from_row).collect()
    }

    async fn all_phone_numbers(&self) -> Result<Vec<PhoneNumberRecord>> {
        let rows = sqlx::query("SELECT * FROM phone_numbers ORDER BY phone_number_id")
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(phone_from_row).collect()
    }

    async fn phone_number(
        &self,
        phone_number_id: &PhoneNumberId,
    ) -> Result<Option<PhoneNumberRecord>> {
        let row = sqlx::query("SELECT * FROM phone_numbers WHERE phone_number_id = $1")
            .bind(phone_number_id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(phone_from_row).transpose()
    }

    async fn upsert_template(&self, t: &TemplateRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO templates (id, application_id, platform_id, meta_id, name, language, category, status, model, raw, updated_at, deleted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (platform_id, name, language) DO UPDATE SET
               meta_id = excluded.meta_id, category = excluded.category, status = excluded.status,
               model = excluded.model, raw = excluded.raw, updated_at = excluded.updated_at,
               deleted_at = excluded.deleted_at",
        )
        .bind(t.id.as_str())
        .bind(t.application_id.as_str())
        .bind(t.platform_id.as_str())
        .bind(opt_text(t.meta_id.as_deref()))
        .bind(t.template.name.as_str())
        .bind(t.template.language.as_str())
        .bind(text(&serde_name(&t.template.category)?).into_owned())
        .bind(text(&serde_name(&t.template.status)?).into_owned())
        .bind(json(&t.template)?)
        .bind(json(&t.raw)?)
        .bind(t.updated_at)
        .bind(t.deleted_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn template(
        &self,
        app: &ApplicationId,
        name: &str,
        language: &str,
    ) -> Result<Option<TemplateRecord>> {
        let row = sqlx::query(
            "SELECT * FROM templates WHERE application_id = $1 AND name = $2 AND language = $3 AND deleted_at IS NULL ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(app.as_str())
        .bind(text(name))
        .bind(text(language))
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(template_from_row).transpose()
    }

    async fn templates(&self, app: &ApplicationId) -> Result<Vec<TemplateRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM templates WHERE application_id = $1 ORDER BY name, language",
        )
        .bind(app.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn upsert_contacts(
        &self,
        app: &ApplicationId,
        contacts: &[NewContact],
        now: Millis,
    ) -> Result<u64> {
        // Through the audience upsert, which keeps the tag index that segments read.
        let upserts: Vec<_> = contacts
            .iter()
            .map(crate::audience::ContactUpsert::from_new)
            .collect();
        let mut tx = self.tx().await?;
        let (counts, _) = upsert_in(&mut tx, app, &upserts, now).await?;
        tx.commit().await?;
        Ok(counts.created + counts.updated)
    }

    async fn contact_by_phone(
        &self,
        app: &ApplicationId,
        phone: &str,
    ) -> Result<Option<ContactRecord>> {
        let row = sqlx::query("SELECT * FROM contacts WHERE application_id = $1 AND phone = $2")
            .bind(app.as_str())
            .bind(text(phone))
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(contact_from_row).transpose()
    }

    async fn count_contacts(&self, app: &ApplicationId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contacts WHERE application_id = $1")
            .bind(app.as_str())
            .fetch_one(self.reader())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn record_inbound(&self, m: &InboundRecord) -> Result<bool> {
        let mut tx = self.tx().await?;
        // A concurrent insert of the same wamid waits here for the first to commit, then
        // inserts nothing: exactly one caller sees `true`.
        let inserted = sqlx::query(
            "INSERT INTO inbound_messages (wamid, application_id, phone_number_id, from_phone, kind, text, raw, received_at, from_user_id, body, refers_to)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (wamid) DO NOTHING",
        )
        .bind(text(m.wamid.as_str()))
        .bind(m.application_id.as_str())
        .bind(m.phone_number_id.as_str())
        .bind(text(&m.from_phone))
        .bind(m.kind.as_str())
        .bind(opt_text(m.text.as_deref()))
        .bind(json(&m.raw)?)
        .bind(m.received_at)
        .bind(opt_text(m.from.bsuid.as_deref()))
        .bind(json(&m.body)?)
        .bind(opt_text(m.refers_to.as_deref()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(media) = &m.media {
            sqlx::query(
                "INSERT INTO inbound_media (wamid, application_id, phone_number_id, media_id,
                   declared_mime, declared_sha256, state, attempts, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)
                 ON CONFLICT (wamid) DO NOTHING",
            )
            .bind(text(m.wamid.as_str()))
            .bind(m.application_id.as_str())
            .bind(m.phone_number_id.as_str())
            .bind(text(&media.media_id))
            .bind(opt_text(media.declared_mime.as_deref()))
            .bind(opt_text(media.declared_sha256.as_deref()))
            .bind(m.received_at)
            .execute(&mut *tx)
            .await?;
        }
        let Some(contact_id) =
            resolve_in(&mut tx, &m.application_id, &m.from, true, m.received_at).await?
        else {
            tx.commit().await?;
            return Ok(true);
        };
        // The window only moves forward: a late inbound (older than the last) leaves it. CASE
        // rather than MAX/GREATEST, which the two dialects spell differently. A system notice
        // is not the user writing: it leaves the window as it was.
        if m.kind.opens_window() {
            sqlx::query(
                "UPDATE contacts SET
               last_inbound_at = CASE WHEN COALESCE(last_inbound_at, 0) > $1
                 THEN COALESCE(last_inbound_at, 0) ELSE $1 END,
               updated_at = $1
             WHERE id = $2",
            )
            .bind(m.received_at)
            .bind(contact_id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        // Edits and revokes change an earlier message: they are not activity of their own.
        if !matches!(
            m.kind,
            parley_domain::InboundKind::Edit | parley_domain::InboundKind::Revoke
        ) {
            upsert_conversation_in(
                &mut tx,
                &m.application_id,
                contact_id.as_str(),
                m.received_at,
                "inbound",
                m.kind.as_str(),
                m.text.as_deref(),
                Some(m.wamid.as_str()),
            )
            .await?;
            if m.opens_entry_point() {
                note_entry_point_in(
                    &mut tx,
                    &m.application_id,
                    contact_id.as_str(),
                    m.received_at,
                    m.phone_number_id.as_str(),
                )
                .await?;
            }
        }
        let contact_id = contact_id.as_str().to_owned();
        sqlx::query("UPDATE inbound_messages SET contact_id = $1 WHERE wamid = $2")
            .bind(contact_id)
            .bind(text(m.wamid.as_str()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn resolve_contact(
        &self,
        app: &ApplicationId,
        ident: &ContactIdentity,
        create: bool,
        now: Millis,
    ) -> Result<Option<ContactId>> {
        let mut tx = self.tx().await?;
        let id = resolve_in(&mut tx, app, ident, create, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn learn_contacts(
        &self,
        app: &ApplicationId,
        idents: &[ContactIdentity],
        now: Millis,
    ) -> Result<()> {
        if idents.is_empty() {
            return Ok(());
        }
        let mut tx = self.tx().await?;
        learn_in(&mut tx, app, idents, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn known_identities(
        &self,
        app: &ApplicationId,
        bsuids: &[&str],
    ) -> Result<std::collections::HashMap<String, KnownIdentity>> {
        let mut out = std::collections::HashMap::with_capacity(bsuids.len());
        if bsuids.is_empty() {
            return Ok(out);
        }
        for known in super::read_known_identities(self.reader(), app, bsuids).await? {
            out.insert(known.bsuid.clone(), known);
        }
        Ok(out)
    }

    async fn repoint_contact(
        &self,
        app: &ApplicationId,
        previous: &ContactIdentity,
        current: &ContactIdentity,
        now: Millis,
    ) -> Result<Option<ContactId>> {
        let mut tx = self.tx().await?;
        let id = repoint_in(&mut tx, app, previous, current, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn contact_by_bsuid(
        &self,
        app: &ApplicationId,
        bsuid: &str,
    ) -> Result<Option<ContactRecord>> {
        // Two index lookups (`contacts_app_bsuid`, then `contacts_app_parent_bsuid`): an `OR`
        // of the two columns made SQLite read every contact of the application, once per
        // status webhook that names a BSUID.
        let row = sqlx::query(
            "SELECT * FROM contacts WHERE id = COALESCE(
               (SELECT id FROM contacts WHERE application_id = $1 AND bsuid = $2),
               (SELECT id FROM contacts WHERE application_id = $1 AND parent_bsuid = $2
                ORDER BY created_at LIMIT 1))",
        )
        .bind(app.as_str())
        .bind(text(bsuid))
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(contact_from_row).transpose()
    }

    async fn insert_message(&self, m: &NewMessage) -> Result<InsertOutcome> {
        let (name, language) = match &m.content {
            MessageContent::Template { template } => (
                Some(template.name.as_str()),
                Some(template.language.as_str()),
            ),
            _ => (None, None),
        };
        // One statement: a concurrent insert with the same key waits for the first to commit
        // and then inserts nothing, instead of failing on the unique index.
        let mut tx = self.tx().await?;
        // Its place in its lane (number, contact): the lane's row stays locked until the
        // commit, so places follow the order the sends of one contact are committed in, on
        // every node (migration 0041; the sender claims only a lane's head).
        let lane = m
            .contact_id
            .as_ref()
            .map_or(m.to_phone.as_str(), |c| c.as_str());
        let lane_seq: i64 = sqlx::query_scalar(
            "INSERT INTO send_lanes (phone_number_id, lane, last_seq) VALUES ($1, $2, 1)
             ON CONFLICT (phone_number_id, lane) DO UPDATE SET last_seq = send_lanes.last_seq + 1
             RETURNING last_seq",
        )
        .bind(m.phone_number_id.as_str())
        .bind(text(lane))
        .fetch_one(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO messages (id, application_id, phone_number_id, contact_id, to_phone, kind, template_name, template_language, content, reply_to, idempotency_key, state, next_attempt_at, queued_at, updated_at, country, lane, lane_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', $12, $13, $14, $15, $16, $17)
             ON CONFLICT (application_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
        )
        .bind(m.id.as_str())
        .bind(m.application_id.as_str())
        .bind(m.phone_number_id.as_str())
        .bind(m.contact_id.as_ref().map(|c| c.as_str()))
        .bind(text(&m.to_phone))
        .bind(m.content.kind())
        .bind(opt_text(name))
        .bind(opt_text(language))
        .bind(json(&m.content)?)
        .bind(m.reply_to.as_ref().map(|w| text(w.as_str())))
        .bind(opt_text(m.idempotency_key.as_deref()))
        .bind(m.now)
        .bind(m.now)
        .bind(m.now)
        .bind(parley_domain::phone::country_of(&m.to_phone))
        .bind(text(lane))
        .bind(lane_seq)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            if let Some(contact) = &m.contact_id {
                upsert_conversation_in(
                    &mut tx,
                    &m.application_id,
                    contact.as_str(),
                    m.now,
                    "outbound",
                    m.content.kind(),
                    m.content.summary().as_deref(),
                    None,
                )
                .await?;
            }
            tx.commit().await?;
            return Ok(InsertOutcome::Created);
        }
        tx.rollback().await?;
        let key = m.idempotency_key.as_deref().unwrap_or_default();
        // The message that holds the key, as every reader sees it (its statuses still in
        // `status_log` merged in): the row is committed (the conflict waited for it).
        let mut tx = self.read_tx().await?;
        let row = sqlx::query(
            "SELECT * FROM messages WHERE application_id = $1 AND idempotency_key = $2",
        )
        .bind(m.application_id.as_str())
        .bind(text(key))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            corrupt(
                "idempotency_key",
                "the insert conflicted but no message holds the key",
            )
        })?;
        let mut existing = message_from_row(&row)?;
        overlay_pending(&mut tx, Some(&mut existing)).await?;
        Ok(InsertOutcome::Existing(existing))
    }

    async fn message(&self, app: &ApplicationId, id: &MessageId) -> Result<Option<MessageRecord>> {
        let mut tx = self.read_tx().await?;
        let row = sqlx::query("SELECT * FROM messages WHERE application_id = $1 AND id = $2")
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let mut message = row.as_ref().map(message_from_row).transpose()?;
        overlay_pending(&mut tx, message.as_mut()).await?;
        Ok(message)
    }

    async fn messages(
        &self,
        app: &ApplicationId,
        after: Option<&MessageId>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>> {
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(
            "SELECT * FROM messages WHERE application_id = $1 AND ($2 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(app.as_str())
        .bind(after.map(|a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>>>()?;
        overlay_pending(&mut tx, &mut messages).await?;
        Ok(messages)
    }

    async fn claim_due_messages(
        &self,
        phone_number_id: &PhoneNumberId,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<MessageRecord>> {
        let out = self
            .claim_due(None, phone_number_id, now, lease_until, limit)
            .await?;
        Ok(crate::sort_claimed(out.unwrap_or_default()))
    }

    async fn record_acceptances(&self, accepted: &[Acceptance]) -> Result<Vec<MessageId>> {
        if accepted.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.tx().await?;
        lock_wamids(&mut tx, accepted.iter().map(|a| a.wamid.as_str())).await?;
        let mut batch = Batch::default();
        let ids: Vec<&str> = accepted.iter().map(|a| a.id.as_str()).collect();
        load_status_rows(&mut tx, &mut batch, "id", &ids).await?;
        let (missing, confirms) = batch.accept_all(accepted);
        write_statuses(&mut tx, &mut batch).await?;
        confirm_quota_rows(&mut tx, &confirms).await?;
        record_reaches_in(&mut tx, &confirms).await?;
        tx.commit().await?;
        Ok(missing)
    }

    async fn reschedule_message(
        &self,
        id: &MessageId,
        next_attempt_at: Millis,
        error: Option<(i64, &str)>,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET state = 'queued', lease_until = NULL, next_attempt_at = $1,
               error_code = $2, error_message = $3, updated_at = $4
             WHERE id = $5 AND state IN ('queued', 'sending')",
        )
        .bind(next_attempt_at)
        .bind(error.map(|e| e.0))
        .bind(error.map(|e| text(e.1)))
        .bind(now)
        .bind(id.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn fail_message(
        &self,
        id: &MessageId,
        code: i64,
        message: &str,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET state = 'failed', lease_until = NULL, error_code = $1, error_message = $2,
               failed_at = COALESCE(failed_at, $3), updated_at = $3
             WHERE id = $4 AND state IN ('queued', 'sending')",
        )
        .bind(code)
        .bind(text(message))
        .bind(now)
        .bind(id.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn apply_status(&self, change: &StatusChange) -> Result<Option<MessageRecord>> {
        let matched = self.apply_statuses(std::slice::from_ref(change)).await?;
        let Some(Some(facts)) = matched.into_iter().next() else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT * FROM messages WHERE id = $1")
            .bind(facts.id.as_str())
            .fetch_one(self.writer())
            .await?;
        Ok(Some(message_from_row(&row)?))
    }

    async fn apply_statuses(
        &self,
        changes: &[StatusChange],
    ) -> Result<Vec<Option<crate::events::MessageFacts>>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.tx().await?;
        lock_wamids(&mut tx, changes.iter().map(|c| c.wamid.as_str())).await?;
        let mut batch = Batch::default();
        load_status_rows(&mut tx, &mut batch, "id", &Batch::ids_named(changes)).await?;
        let wamids = batch.wamids_unmatched(changes);
        load_status_rows(&mut tx, &mut batch, "wamid", &wamids).await?;
        let (matched, orphans) = batch.merge_all(changes);
        write_statuses(&mut tx, &mut batch).await?;
        if !orphans.is_empty() {
            insert_orphans(&mut tx, &orphans).await?;
        }
        // What the caller learns is made while the commit runs; a failed commit drops it.
        let ((), facts) = while_running(tx.commit(), || batch.matched_facts(matched)).await?;
        facts
    }

    async fn requeue_stale_sending(&self, now: Millis, grace_ms: i64) -> Result<StaleSending> {
        // The grace counts from when a running Parley first saw the lease expired: after an
        // outage, Meta's retried status webhooks get the whole grace to reach it, and a restart
        // does not start the grace again (each row is requeued once, after one grace).
        let noticed = sqlx::query(
            "UPDATE messages SET stale_since = $1
             WHERE state = 'sending' AND lease_until IS NOT NULL AND lease_until < $1 AND stale_since IS NULL",
        )
        .bind(now)
        .execute(self.writer())
        .await?
        .rows_affected();
        // A stale row whose campaign was cancelled meanwhile is not sent any more: the sender
        // claims no message of a campaign that is not running, so requeued it would wait forever.
        sqlx::query(
            "UPDATE messages SET state = 'skipped', hold_reason = 'cancelled', lease_until = NULL, stale_since = NULL,
               error_message = 'the campaign was cancelled before this message was sent', updated_at = $1
             WHERE state = 'sending' AND wamid IS NULL AND stale_since IS NOT NULL AND stale_since + $2 <= $1
               AND campaign_id IN (SELECT id FROM campaigns WHERE state = 'cancelled')",
        )
        .bind(now)
        .bind(grace_ms)
        .execute(self.writer())
        .await?;
        // A send Meta answered "held for quality assessment" (`meta_status`, noted before the
        // acceptance is written) is never sent again from here: Meta has it and releases or
        // fails it later, with statuses that name it by our id (META_2026 §6.3).
        // The grace is measured in applied webhooks, not only in time: a row goes again only
        // once every webhook received before its grace ended has been applied, so a status
        // naming it that is stored but still waiting (the webhook processor's node died and its
        // lease has not lapsed yet, or the processor is behind under load) settles it first.
        let requeued = sqlx::query(
            "UPDATE messages SET state = 'queued', lease_until = NULL, stale_since = NULL, next_attempt_at = $1, updated_at = $1
             WHERE state = 'sending' AND wamid IS NULL AND stale_since IS NOT NULL AND stale_since + $2 <= $1
               AND meta_status IS NULL
               AND NOT EXISTS (SELECT 1 FROM webhook_events e
                               WHERE e.processed_at IS NULL AND e.received_at < messages.stale_since + $2)",
        )
        .bind(now)
        .bind(grace_ms)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(StaleSending { noticed, requeued })
    }

    async fn next_due_at(&self, phone_number_id: &PhoneNumberId) -> Result<Option<Millis>> {
        let v: Option<i64> = sqlx::query_scalar(
            concat!(
                "SELECT MIN(next_attempt_at) FROM messages WHERE phone_number_id = $1 AND state = 'queued'
               AND (campaign_id IS NULL OR EXISTS (
                 SELECT 1 FROM campaigns c WHERE c.id = messages.campaign_id AND c.state = 'running'))
               AND ",
                lane_head!()
            ),
        )
        .bind(phone_number_id.as_str())
        .fetch_one(self.reader())
        .await?;
        Ok(v)
    }

    async fn insert_webhook_events(&self, bodies: &[&[u8]], now: Millis) -> Result<Vec<i64>> {
        // Rows per statement: the intake's batches hold up to a thousand deliveries, and a
        // statement per row is a round trip to the database (sqlx's SQLite thread) each.
        const ROWS: usize = 256;
        let mut ids = Vec::with_capacity(bodies.len());
        if bodies.is_empty() {
            return Ok(ids);
        }
        let mut tx = self.tx().await?;
        for chunk in bodies.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO webhook_events (received_at, size) VALUES {} RETURNING id",
                (0..chunk.len())
                    .map(|i| format!("($1, ${})", i + 2))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(now);
            for body in chunk {
                q = q.bind(i64::try_from(body.len()).unwrap_or(i64::MAX));
            }
            // One multi-row VALUES list takes its ids in order on both backends (a sequence
            // or SQLite's rowid, under the write lock of this transaction).
            let mut chunk_ids = q.fetch_all(&mut *tx).await?;
            chunk_ids.sort_unstable();
            if chunk_ids.len() != chunk.len() {
                return Err(crate::corrupt("webhook_events", "ids not returned"));
            }
            let sql = format!(
                "INSERT INTO webhook_bodies (id, body) VALUES {}",
                (0..chunk.len())
                    .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, body) in chunk_ids.iter().zip(chunk) {
                q = q.bind(*id).bind(*body);
            }
            q.execute(&mut *tx).await?;
            ids.extend(chunk_ids);
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn pending_webhook_events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WebhookEventRecord>> {
        read_pending(self, pending_events!(""), after, limit).await
    }

    async fn unprojected_webhook_events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WebhookEventRecord>> {
        read_pending(self, pending_events!("AND projected = 0"), after, limit).await
    }

    async fn project_statuses(
        &self,
        events: &[i64],
        statuses: &[(i64, StatusChange)],
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.tx().await?;
        // Only the events still pending: one the processor finished meanwhile has its statuses
        // merged already (its rows here would change nothing, but nothing would delete them).
        let mut q = sqlx::QueryBuilder::new(
            "UPDATE webhook_events SET projected = 1 WHERE processed_at IS NULL AND id IN (",
        );
        let mut list = q.separated(", ");
        for id in events {
            list.push_bind(*id);
        }
        q.push(") RETURNING id");
        let kept: std::collections::HashSet<i64> = q
            .build_query_scalar::<i64>()
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        // Each status's place in its delivery (the key with the event's id).
        let mut rows: Vec<(i64, i64, &StatusChange)> = Vec::with_capacity(statuses.len());
        let mut n = 0;
        for (i, (event, change)) in statuses.iter().enumerate() {
            n = match i {
                0 => 0,
                _ if statuses[i - 1].0 == *event => n + 1,
                _ => 0,
            };
            // Readers find a status by the message id it names (every send of Parley's
            // carries it); one without is for the merge alone.
            if kept.contains(event) && change.message_id.is_some() {
                rows.push((*event, n, change));
            }
        }
        for chunk in rows.chunks(STATUS_LOG_CHUNK) {
            insert_status_log(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_webhook_events(
        &self,
        done: &[(i64, Option<String>)],
        now: Millis,
    ) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        // The events' statuses still in `status_log` go with them: the processor merged them
        // before it finished the events, so the messages hold them now.
        let mut tx = self.tx().await?;
        Self::finish_events(&mut tx, done, now).await?;
        let ids: Vec<i64> = done.iter().map(|d| d.0).collect();
        for chunk in ids.chunks(PRUNE_CHUNK) {
            execute_in(&mut tx, "DELETE FROM status_log WHERE event_id IN (", chunk).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn prune_webhook_events(
        &self,
        before: Millis,
        after: i64,
        limit: u32,
    ) -> Result<crate::Pruned> {
        let rows = sqlx::query(
            "SELECT id, received_at, processed_at FROM webhook_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let (old, next) = old_rows(&rows, ("id", "received_at"), before, (after, limit), |r| {
            Ok(r.try_get::<Option<i64>, _>("processed_at")?.is_some())
        })?;
        let mut deleted = 0;
        for chunk in old.chunks(PRUNE_CHUNK) {
            let mut tx = self.tx().await?;
            execute_in(&mut tx, "DELETE FROM webhook_bodies WHERE id IN (", chunk).await?;
            // A projection that raced the processor's finish (several nodes) may have left
            // rows of a finished event; they change nothing, and go with it.
            execute_in(&mut tx, "DELETE FROM status_log WHERE event_id IN (", chunk).await?;
            deleted += execute_in(
                &mut tx,
                "DELETE FROM webhook_events WHERE processed_at IS NOT NULL AND id IN (",
                chunk,
            )
            .await?;
            tx.commit().await?;
        }
        Ok(crate::Pruned { deleted, next })
    }

    async fn count_webhook_events(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events")
            .fetch_one(self.reader())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
