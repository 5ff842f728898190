//! The SQLite backend: one file, WAL, `synchronous=NORMAL`, one writer connection (SQLite
//! serializes writers anyway; one connection avoids "database is locked") and a read pool.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use parley_domain::{
    AccountId, ApplicationId, ContactId, MessageId, MessageState, PlatformId, UserId,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::lattice::{Batch, STATUS_COLUMNS, StatusRow, orphan_json};
use crate::types::*;
use crate::{Millis, Result, SecretCipher, Store, StoreError, corrupt};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one writing connection; area modules (`sqlite_*.rs`) write through it.
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    pub(crate) cipher: SecretCipher,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &Path, cipher: SecretCipher) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            cipher,
        })
    }

    pub(crate) async fn tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// A JSON column as `T`; a document that does not fit is `Corrupt`, not a decode panic.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| corrupt(col, e))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt("serialize", e))
}

// The vocabulary the shared modules (`shared/*.rs`) are written in; `postgres.rs` defines the
// same names for PostgreSQL.
pub(crate) type DbRow = SqliteRow;
pub(crate) type Backend = SqliteStore;

/// Text as bound: SQLite stores any text as it is.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

pub(crate) fn opt_text(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(text)
}

/// A value as a JSON parameter (SQLite keeps JSON as text).
pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    to_json(v)
}

impl SqliteStore {
    /// Where reads go: the read-only pool.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Where writes go: the one writing connection.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

#[path = "shared/rows.rs"]
mod rows;
pub(crate) use rows::*;
#[path = "shared/audience.rs"]
mod audience;
#[path = "shared/platforms.rs"]
mod platforms;
#[path = "shared/templates.rs"]
mod templates;
pub(crate) use audience::{audience_from_row, upsert_in};

/// A JSON array of strings, for `… IN (SELECT value FROM json_each(?))`.
pub(crate) fn json_strings<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::Value::Array(
        items
            .into_iter()
            .map(|s| serde_json::Value::String(s.to_owned()))
            .collect(),
    )
    .to_string()
}

/// One message's status columns as `json_array` gives them, in `STATUS_COLUMNS` order.
type StatusTuple = (
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// Reads the rows with these ids (`by = "id"`) or wamids (`by = "wamid"`) into the batch.
/// SQLite hands them over as one JSON array in one row: sqlx's driver moves every row to the
/// async side on its own, which cost more than the lookups themselves.
async fn load_status_rows(
    tx: &mut Transaction<'static, Sqlite>,
    batch: &mut Batch,
    by: &str,
    keys: &[&str],
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT json_group_array(json_array({STATUS_COLUMNS})) FROM messages
         WHERE {by} IN (SELECT value FROM json_each(?))"
    );
    let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(json_strings(keys.iter().copied()))
        .fetch_one(&mut **tx)
        .await?;
    let rows: Vec<StatusTuple> =
        serde_json::from_str(&rows).map_err(|e| corrupt("status rows", e))?;
    for r in rows {
        batch.add(StatusRow {
            id: r.0,
            state: MessageState::from_str(&r.1).map_err(|e| corrupt("state", e))?,
            wamid: r.2,
            error_code: r.3,
            error_message: r.4,
            updated_at: r.5,
            sending_at: r.6,
            accepted_at: r.7,
            sent_at: r.8,
            delivered_at: r.9,
            read_at: r.10,
            failed_at: r.11,
        });
    }
    Ok(())
}

/// Folds in the statuses that arrived before their wamid was known, for every row whose
/// wamid this batch recorded, then writes the merged rows back in one statement.
async fn write_status_rows(tx: &mut Transaction<'static, Sqlite>, batch: &mut Batch) -> Result<()> {
    let fresh = batch.take_new_wamids();
    if !fresh.is_empty() {
        let orphans = sqlx::query(
            "DELETE FROM orphan_statuses WHERE wamid IN (SELECT value FROM json_each(?))
             RETURNING wamid, state, at, error_code, error_message",
        )
        .bind(json_strings(fresh.iter().map(String::as_str)))
        .fetch_all(&mut **tx)
        .await?;
        for row in orphans {
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
    for new_wamid in [true, false] {
        let Some(rows) = batch.dirty_json(new_wamid) else {
            continue;
        };
        // The same statement, with the wamid column only for rows whose wamid is new.
        macro_rules! merge_sql {
            ($wamid:literal) => {
                concat!(
                    "UPDATE messages SET state = j.value ->> 'state', ",
                    $wamid,
                    "error_code = j.value ->> 'error_code', error_message = j.value ->> 'error_message',
                       lease_until = NULL, updated_at = j.value ->> 'updated_at',
                       sending_at = j.value ->> 'sending_at', accepted_at = j.value ->> 'accepted_at',
                       sent_at = j.value ->> 'sent_at', delivered_at = j.value ->> 'delivered_at',
                       read_at = j.value ->> 'read_at', failed_at = j.value ->> 'failed_at'
                     FROM jsonb_each(?) AS j WHERE messages.id = j.value ->> 'id'"
                )
            };
        }
        let sql = if new_wamid {
            merge_sql!("wamid = j.value ->> 'wamid', ")
        } else {
            merge_sql!("")
        };
        sqlx::query(sql).bind(rows).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Confirms quota ledger entries (see `CampaignStore::confirm_quota`): each contact counts
/// from its acceptance, and a slot its message reserved becomes a confirmed one.
///
/// The rows are grouped per (scope, contact) here (a contact twice in one batch keeps its
/// latest reach, and whichever of its messages held the reservation releases it), so each
/// ledger row is looked up once: the reserved ones are updated, then the rest inserted.
pub(crate) async fn confirm_quota_rows(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[crate::lattice::QuotaConfirmation<'_>],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    #[derive(serde::Serialize)]
    struct Group<'a> {
        scope: &'a str,
        contact: &'a str,
        at: Millis,
        ids: Vec<&'a str>,
    }
    let mut index: foldhash::HashMap<(&str, &str), usize> = foldhash::HashMap::default();
    let mut groups: Vec<Group<'_>> = Vec::with_capacity(rows.len());
    for &(scope, contact, id, at) in rows {
        match index.get(&(scope, contact)) {
            Some(&i) => {
                let g = &mut groups[i];
                g.at = g.at.max(at);
                g.ids.push(id);
            }
            None => {
                index.insert((scope, contact), groups.len());
                groups.push(Group {
                    scope,
                    contact,
                    at,
                    ids: vec![id],
                });
            }
        }
    }
    let json = serde_json::to_string(&groups).map_err(|e| corrupt("quota rows", e))?;
    sqlx::query(
        "UPDATE quota_reach SET last_at = MAX(quota_reach.last_at, j.value ->> 'at'),
           reserved_by = CASE WHEN quota_reach.reserved_by IN (SELECT value FROM json_each(j.value -> 'ids'))
                              THEN NULL ELSE quota_reach.reserved_by END
         FROM jsonb_each(?1) AS j
         WHERE quota_reach.scope_key = j.value ->> 'scope' AND quota_reach.contact = j.value ->> 'contact'",
    )
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO quota_reach (scope_key, contact, last_at, reserved_by)
         SELECT j.value ->> 'scope', j.value ->> 'contact', j.value ->> 'at', NULL FROM jsonb_each(?1) AS j WHERE true
         ON CONFLICT (scope_key, contact) DO NOTHING",
    )
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(&self, id: &AccountId, name: &str, now: Millis) -> Result<()> {
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)")
            .bind(id.as_str())
            .bind(name)
            .bind(now)
            .execute(&self.writer)
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
            "INSERT INTO applications (id, account_id, name, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(name)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn applications(&self) -> Result<Vec<ApplicationRecord>> {
        let rows = sqlx::query("SELECT * FROM applications ORDER BY created_at, id")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ApplicationRecord {
                    id: parse_id(row, "id", ApplicationId::parse)?,
                    account_id: parse_id(row, "account_id", AccountId::parse)?,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn add_api_token(
        &self,
        app: &ApplicationId,
        token_hash: &str,
        label: &str,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, application_id, label, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(app.as_str())
        .bind(label)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn application_by_token_hash(&self, token_hash: &str) -> Result<Option<ApplicationId>> {
        let row = sqlx::query("SELECT application_id FROM api_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| parse_id(&r, "application_id", ApplicationId::parse))
            .transpose()
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
            "INSERT INTO users (id, account_id, email, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .bind(email)
        .bind(password_hash)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            Ok(UserRecord {
                id: parse_id(&row, "id", UserId::parse)?,
                account_id: parse_id(&row, "account_id", AccountId::parse)?,
                email: row.try_get("email")?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    async fn upsert_platform(&self, p: &NewPlatform) -> Result<PlatformId> {
        let token = self.cipher.encrypt(p.access_token.as_bytes());
        let row = sqlx::query(
            "INSERT INTO platforms (id, application_id, business_id, waba_id, waba_name, status, access_token, details, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (application_id, waba_id) DO UPDATE SET
               business_id = excluded.business_id, waba_name = excluded.waba_name, status = excluded.status,
               access_token = excluded.access_token, details = excluded.details, updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(p.id.as_str())
        .bind(p.application_id.as_str())
        .bind(&p.business_id)
        .bind(&p.waba_id)
        .bind(&p.waba_name)
        .bind(&p.status)
        .bind(token)
        .bind(json(&p.details)?)
        .bind(p.now)
        .bind(p.now)
        .fetch_one(&self.writer)
        .await?;
        parse_id(&row, "id", PlatformId::parse)
    }

    async fn platforms(&self, app: &ApplicationId) -> Result<Vec<PlatformRecord>> {
        let rows = sqlx::query("SELECT * FROM platforms WHERE application_id = ? ORDER BY id")
            .bind(app.as_str())
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(platform_from_row).collect()
    }

    async fn platform(&self, id: &PlatformId) -> Result<Option<PlatformRecord>> {
        let row = sqlx::query("SELECT * FROM platforms WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(platform_from_row).transpose()
    }

    async fn platform_token(&self, id: &PlatformId) -> Result<String> {
        let row = sqlx::query("SELECT access_token FROM platforms WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("platform {id}")))?;
        let blob: Vec<u8> = row.try_get("access_token")?;
        let plain = self.cipher.decrypt(&blob)?;
        String::from_utf8(plain).map_err(|e| corrupt("access_token", e))
    }

    async fn upsert_phone_number(&self, p: &PhoneNumberRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO phone_numbers (phone_number_id, platform_id, application_id, display_phone_number, verified_name, quality_rating, messaging_limit, throughput_mps, status, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (phone_number_id) DO UPDATE SET
               platform_id = excluded.platform_id, application_id = excluded.application_id,
               display_phone_number = excluded.display_phone_number, verified_name = excluded.verified_name,
               quality_rating = excluded.quality_rating, messaging_limit = excluded.messaging_limit,
               throughput_mps = excluded.throughput_mps, status = excluded.status, updated_at = excluded.updated_at",
        )
        .bind(&p.phone_number_id)
        .bind(p.platform_id.as_str())
        .bind(p.application_id.as_str())
        .bind(&p.display_phone_number)
        .bind(&p.verified_name)
        .bind(&p.quality_rating)
        .bind(&p.messaging_limit)
        .bind(i64::from(p.throughput_mps))
        .bind(&p.status)
        .bind(p.updated_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn phone_numbers(&self, app: &ApplicationId) -> Result<Vec<PhoneNumberRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM phone_numbers WHERE application_id = ? ORDER BY phone_number_id",
        )
        .bind(app.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(phone_from_row).collect()
    }

    async fn all_phone_numbers(&self) -> Result<Vec<PhoneNumberRecord>> {
        let rows = sqlx::query("SELECT * FROM phone_numbers ORDER BY phone_number_id")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(phone_from_row).collect()
    }

    async fn phone_number(&self, phone_number_id: &str) -> Result<Option<PhoneNumberRecord>> {
        let row = sqlx::query("SELECT * FROM phone_numbers WHERE phone_number_id = ?")
            .bind(phone_number_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(phone_from_row).transpose()
    }

    async fn upsert_template(&self, t: &TemplateRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO templates (id, application_id, platform_id, meta_id, name, language, category, status, model, raw, updated_at, deleted_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (platform_id, name, language) DO UPDATE SET
               meta_id = excluded.meta_id, category = excluded.category, status = excluded.status,
               model = excluded.model, raw = excluded.raw, updated_at = excluded.updated_at,
               deleted_at = excluded.deleted_at",
        )
        .bind(t.id.as_str())
        .bind(t.application_id.as_str())
        .bind(t.platform_id.as_str())
        .bind(&t.meta_id)
        .bind(t.template.name.as_str())
        .bind(t.template.language.as_str())
        .bind(json(&t.template.category)?.trim_matches('"').to_owned())
        .bind(json(&t.template.status)?.trim_matches('"').to_owned())
        .bind(json(&t.template)?)
        .bind(json(&t.raw)?)
        .bind(t.updated_at)
        .bind(t.deleted_at)
        .execute(&self.writer)
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
            "SELECT * FROM templates WHERE application_id = ? AND name = ? AND language = ? AND deleted_at IS NULL ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(app.as_str())
        .bind(name)
        .bind(language)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(template_from_row).transpose()
    }

    async fn templates(&self, app: &ApplicationId) -> Result<Vec<TemplateRecord>> {
        let rows =
            sqlx::query("SELECT * FROM templates WHERE application_id = ? ORDER BY name, language")
                .bind(app.as_str())
                .fetch_all(&self.reader)
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
        let counts = upsert_in(&mut tx, app, &upserts, now).await?;
        tx.commit().await?;
        Ok(counts.created + counts.updated)
    }

    async fn contact_by_phone(
        &self,
        app: &ApplicationId,
        phone: &str,
    ) -> Result<Option<ContactRecord>> {
        let row = sqlx::query("SELECT * FROM contacts WHERE application_id = ? AND phone = ?")
            .bind(app.as_str())
            .bind(phone)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(contact_from_row).transpose()
    }

    async fn count_contacts(&self, app: &ApplicationId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contacts WHERE application_id = ?")
            .bind(app.as_str())
            .fetch_one(&self.reader)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn record_inbound(&self, m: &InboundRecord) -> Result<bool> {
        let mut tx = self.tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO inbound_messages (wamid, application_id, phone_number_id, from_phone, kind, text, raw, received_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (wamid) DO NOTHING",
        )
        .bind(&m.wamid)
        .bind(m.application_id.as_str())
        .bind(&m.phone_number_id)
        .bind(&m.from_phone)
        .bind(&m.kind)
        .bind(&m.text)
        .bind(json(&m.raw)?)
        .bind(m.received_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let row = sqlx::query(
            "INSERT INTO contacts (id, application_id, phone, wa_id, name, tags, last_inbound_at, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, '{}', ?, ?, ?)
             ON CONFLICT (application_id, phone) DO UPDATE SET
               wa_id = excluded.wa_id,
               name = COALESCE(contacts.name, excluded.name),
               last_inbound_at = MAX(COALESCE(contacts.last_inbound_at, 0), excluded.last_inbound_at),
               updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(ContactId::new().as_str())
        .bind(m.application_id.as_str())
        .bind(&m.from_phone)
        .bind(&m.wa_id)
        .bind(&m.profile_name)
        .bind(m.received_at)
        .bind(m.received_at)
        .bind(m.received_at)
        .fetch_one(&mut *tx)
        .await?;
        let contact_id: String = row.try_get("id")?;
        sqlx::query("UPDATE inbound_messages SET contact_id = ? WHERE wamid = ?")
            .bind(contact_id)
            .bind(&m.wamid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_message(&self, m: &NewMessage) -> Result<InsertOutcome> {
        let mut tx = self.tx().await?;
        if let Some(key) = &m.idempotency_key {
            let existing = sqlx::query(
                "SELECT * FROM messages WHERE application_id = ? AND idempotency_key = ?",
            )
            .bind(m.application_id.as_str())
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                tx.rollback().await?;
                return Ok(InsertOutcome::Existing(message_from_row(&row)?));
            }
        }
        let (name, language) = match &m.content {
            MessageContent::Template { template } => (
                Some(template.name.as_str()),
                Some(template.language.as_str()),
            ),
            MessageContent::Text { .. } => (None, None),
        };
        sqlx::query(
            "INSERT INTO messages (id, application_id, phone_number_id, contact_id, to_phone, kind, template_name, template_language, content, reply_to, idempotency_key, state, next_attempt_at, queued_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
        )
        .bind(m.id.as_str())
        .bind(m.application_id.as_str())
        .bind(&m.phone_number_id)
        .bind(m.contact_id.as_ref().map(|c| c.as_str()))
        .bind(&m.to_phone)
        .bind(m.content.kind())
        .bind(name)
        .bind(language)
        .bind(json(&m.content)?)
        .bind(&m.reply_to)
        .bind(&m.idempotency_key)
        .bind(m.now)
        .bind(m.now)
        .bind(m.now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(InsertOutcome::Created)
    }

    async fn message(&self, app: &ApplicationId, id: &MessageId) -> Result<Option<MessageRecord>> {
        let row = sqlx::query("SELECT * FROM messages WHERE application_id = ? AND id = ?")
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn messages(
        &self,
        app: &ApplicationId,
        after: Option<&MessageId>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM messages WHERE application_id = ? AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(app.as_str())
        .bind(after.map(|a| a.as_str()))
        .bind(after.map(|a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    async fn claim_due_messages(
        &self,
        phone_number_id: &str,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<MessageRecord>> {
        // Read the batch as one JSON row (see `load_status_rows`), then move it to `sending`.
        let mut tx = self.tx().await?;
        let json: String = sqlx::query_scalar(
            "SELECT json_group_array(json_object('id', id, 'application_id', application_id,
               'phone_number_id', phone_number_id, 'contact_id', contact_id, 'to_phone', to_phone,
               'content', json(content), 'reply_to', reply_to, 'state', state, 'wamid', wamid,
               'error_code', error_code, 'error_message', error_message, 'attempts', attempts,
               'next_attempt_at', next_attempt_at, 'queued_at', queued_at, 'sending_at', sending_at,
               'accepted_at', accepted_at, 'sent_at', sent_at, 'delivered_at', delivered_at,
               'read_at', read_at, 'failed_at', failed_at, 'updated_at', updated_at,
               'send_window', send_window))
             FROM (SELECT * FROM messages
               WHERE phone_number_id = ? AND state = 'queued' AND next_attempt_at <= ?
                 AND (campaign_id IS NULL OR EXISTS (
                   SELECT 1 FROM campaigns c WHERE c.id = messages.campaign_id AND c.state = 'running'))
               ORDER BY next_attempt_at, id LIMIT ?)",
        )
        .bind(phone_number_id)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_one(&mut *tx)
        .await?;
        let mut out: Vec<MessageRecord> =
            serde_json::from_str(&json).map_err(|e| corrupt("claimed messages", e))?;
        if out.is_empty() {
            tx.rollback().await?;
            return Ok(out);
        }
        sqlx::query(
            "UPDATE messages SET state = 'sending', lease_until = ?, attempts = attempts + 1,
               sending_at = COALESCE(sending_at, ?), updated_at = ?
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(lease_until)
        .bind(now)
        .bind(now)
        .bind(json_strings(out.iter().map(|m| m.id.as_str())))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for m in &mut out {
            m.state = MessageState::Sending;
            m.attempts += 1;
            m.sending_at = Some(m.sending_at.unwrap_or(now));
            m.updated_at = now;
        }

        out.sort_by(|a, b| {
            a.next_attempt_at
                .cmp(&b.next_attempt_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    async fn record_acceptances(&self, accepted: &[Acceptance]) -> Result<Vec<MessageId>> {
        if accepted.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.tx().await?;
        let mut batch = Batch::default();
        let ids: Vec<&str> = accepted.iter().map(|a| a.id.as_str()).collect();
        load_status_rows(&mut tx, &mut batch, "id", &ids).await?;
        let (missing, confirms) = batch.accept_all(accepted);
        write_status_rows(&mut tx, &mut batch).await?;
        confirm_quota_rows(&mut tx, &confirms).await?;
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
            "UPDATE messages SET state = 'queued', lease_until = NULL, next_attempt_at = ?,
               error_code = ?, error_message = ?, updated_at = ?
             WHERE id = ? AND state IN ('queued', 'sending')",
        )
        .bind(next_attempt_at)
        .bind(error.map(|e| e.0))
        .bind(error.map(|e| e.1))
        .bind(now)
        .bind(id.as_str())
        .execute(&self.writer)
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
            "UPDATE messages SET state = 'failed', lease_until = NULL, error_code = ?, error_message = ?,
               failed_at = COALESCE(failed_at, ?), updated_at = ?
             WHERE id = ? AND state IN ('queued', 'sending')",
        )
        .bind(code)
        .bind(message)
        .bind(now)
        .bind(now)
        .bind(id.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn apply_status(&self, change: &StatusChange) -> Result<Option<MessageRecord>> {
        let matched = self.apply_statuses(std::slice::from_ref(change)).await?;
        let Some(Some(id)) = matched.into_iter().next() else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT * FROM messages WHERE id = ?")
            .bind(id.as_str())
            .fetch_one(&self.writer)
            .await?;
        Ok(Some(message_from_row(&row)?))
    }

    async fn apply_statuses(&self, changes: &[StatusChange]) -> Result<Vec<Option<MessageId>>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.tx().await?;
        let mut batch = Batch::default();
        load_status_rows(&mut tx, &mut batch, "id", &Batch::ids_named(changes)).await?;
        let wamids = batch.wamids_unmatched(changes);
        load_status_rows(&mut tx, &mut batch, "wamid", &wamids).await?;
        let (matched, orphans) = batch.merge_all(changes);
        let orphans: Vec<serde_json::Value> = orphans.into_iter().map(orphan_json).collect();
        write_status_rows(&mut tx, &mut batch).await?;
        if !orphans.is_empty() {
            sqlx::query(
                "INSERT INTO orphan_statuses (wamid, state, at, error_code, error_message)
                 SELECT j.value ->> 'wamid', j.value ->> 'state', j.value ->> 'at', j.value ->> 'error_code',
                   j.value ->> 'error_message'
                 FROM jsonb_each(?) AS j WHERE true
                 ON CONFLICT (wamid, state) DO NOTHING",
            )
            .bind(serde_json::Value::Array(orphans).to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        batch.matched_ids(matched)
    }

    async fn requeue_stale_sending(&self, now: Millis, grace_ms: i64) -> Result<u64> {
        // A stale row whose campaign was cancelled meanwhile is not sent any more: the sender
        // claims no message of a campaign that is not running, so requeued it would wait forever.
        sqlx::query(
            "UPDATE messages SET state = 'skipped', hold_reason = 'cancelled', lease_until = NULL,
               error_message = 'the campaign was cancelled before this message was sent', updated_at = ?
             WHERE state = 'sending' AND wamid IS NULL AND lease_until IS NOT NULL AND lease_until + ? < ?
               AND campaign_id IN (SELECT id FROM campaigns WHERE state = 'cancelled')",
        )
        .bind(now)
        .bind(grace_ms)
        .bind(now)
        .execute(&self.writer)
        .await?;
        let r = sqlx::query(
            "UPDATE messages SET state = 'queued', lease_until = NULL, next_attempt_at = ?, updated_at = ?
             WHERE state = 'sending' AND wamid IS NULL AND lease_until IS NOT NULL AND lease_until + ? < ?",
        )
        .bind(now)
        .bind(now)
        .bind(grace_ms)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected())
    }

    async fn next_due_at(&self, phone_number_id: &str) -> Result<Option<Millis>> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM messages WHERE phone_number_id = ? AND state = 'queued'
               AND (campaign_id IS NULL OR EXISTS (
                 SELECT 1 FROM campaigns c WHERE c.id = messages.campaign_id AND c.state = 'running'))",
        )
        .bind(phone_number_id)
        .fetch_one(&self.reader)
        .await?;
        Ok(v)
    }

    async fn insert_webhook_event(&self, body: &[u8], now: Millis) -> Result<i64> {
        let mut tx = self.tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_events (received_at, size) VALUES (?, ?) RETURNING id",
        )
        .bind(now)
        .bind(i64::try_from(body.len()).unwrap_or(i64::MAX))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO webhook_bodies (id, body) VALUES (?, ?)")
            .bind(id)
            .bind(body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn pending_webhook_events(&self, limit: u32) -> Result<Vec<WebhookEventRecord>> {
        // Sizes first: the batch stops where the bodies pass the budget (at least one).
        let sizes: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, size FROM webhook_events WHERE processed_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        let Some(last) = crate::within_budget(&sizes) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT e.id, e.received_at, b.body, e.attempts FROM webhook_events e
             JOIN webhook_bodies b ON b.id = e.id
             WHERE e.processed_at IS NULL AND e.id <= ? ORDER BY e.id LIMIT ?",
        )
        .bind(last)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WebhookEventRecord {
                    id: r.try_get("id")?,
                    received_at: r.try_get("received_at")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    async fn finish_webhook_events(
        &self,
        done: &[(i64, Option<String>)],
        now: Millis,
    ) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let json = serde_json::Value::Array(
            done.iter()
                .map(|(id, error)| serde_json::json!({"id": id, "error": error}))
                .collect(),
        )
        .to_string();
        sqlx::query(
            "UPDATE webhook_events SET processed_at = ?, error = j.value ->> 'error', attempts = attempts + 1
             FROM jsonb_each(?) AS j WHERE webhook_events.id = j.value ->> 'id'",
        )
        .bind(now)
        .bind(json)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn count_webhook_events(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events")
            .fetch_one(&self.reader)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
