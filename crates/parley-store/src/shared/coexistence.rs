//! `CoexistenceStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`).

use async_trait::async_trait;
use parley_domain::{ApplicationId, PhoneNumberId, PlatformId};
use sqlx::Row;

use super::{Backend, DbRow, json, json_col, opt_text, parse_id, text};
use crate::coexistence::{AppMessageRecord, CoexistenceRecord, CoexistenceStore};
use crate::{Millis, Result};

const COLUMNS: &str = "phone_number_id, application_id, platform_id, onboarded_at, contacts_sync, \
     contacts_request_id, history_sync, history_request_id, history_progress, sync_error, \
     offboarded_at, disconnection_reason, updated_at";

const MESSAGE_COLUMNS: &str = "wamid, application_id, phone_number_id, contact_id, contact_phone, \
     direction, source, kind, text, history_status, raw, sent_at, created_at";

fn record_from_row(row: &DbRow) -> Result<CoexistenceRecord> {
    Ok(CoexistenceRecord {
        phone_number_id: parse_id(row, "phone_number_id", PhoneNumberId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        platform_id: parse_id(row, "platform_id", PlatformId::parse)?,
        onboarded_at: row.try_get("onboarded_at")?,
        contacts_sync: row.try_get("contacts_sync")?,
        contacts_request_id: row.try_get("contacts_request_id")?,
        history_sync: row.try_get("history_sync")?,
        history_request_id: row.try_get("history_request_id")?,
        history_progress: row.try_get("history_progress")?,
        sync_error: row.try_get("sync_error")?,
        offboarded_at: row.try_get("offboarded_at")?,
        disconnection_reason: row.try_get("disconnection_reason")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn message_from_row(row: &DbRow) -> Result<AppMessageRecord> {
    Ok(AppMessageRecord {
        wamid: row.try_get("wamid")?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        phone_number_id: parse_id(row, "phone_number_id", PhoneNumberId::parse)?,
        contact_id: row.try_get("contact_id")?,
        contact_phone: row.try_get("contact_phone")?,
        direction: row.try_get("direction")?,
        source: row.try_get("source")?,
        kind: row.try_get("kind")?,
        text: row.try_get("text")?,
        history_status: row.try_get("history_status")?,
        raw: json_col(row, "raw")?,
        sent_at: row.try_get("sent_at")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl CoexistenceStore for Backend {
    async fn upsert_coexistence_number(
        &self,
        phone: &PhoneNumberId,
        app: &ApplicationId,
        platform: &PlatformId,
        now: Millis,
    ) -> Result<CoexistenceRecord> {
        sqlx::query(
            "INSERT INTO coexistence_numbers (phone_number_id, application_id, platform_id, onboarded_at, \
               contacts_sync, history_sync, history_progress, updated_at) \
             VALUES ($1, $2, $3, $4, 'pending', 'pending', 0, $4) \
             ON CONFLICT (phone_number_id) DO UPDATE SET application_id = excluded.application_id, \
               platform_id = excluded.platform_id, onboarded_at = excluded.onboarded_at, \
               contacts_sync = 'pending', contacts_request_id = NULL, history_sync = 'pending', \
               history_request_id = NULL, history_progress = 0, sync_error = NULL, \
               offboarded_at = NULL, disconnection_reason = NULL, updated_at = excluded.updated_at \
             WHERE coexistence_numbers.platform_id <> excluded.platform_id",
        )
        .bind(phone.as_str())
        .bind(app.as_str())
        .bind(platform.as_str())
        .bind(now)
        .execute(self.writer())
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM coexistence_numbers WHERE phone_number_id = $1"
        )))
        .bind(phone.as_str())
        .fetch_one(self.writer())
        .await?;
        record_from_row(&row)
    }

    async fn coexistence_number(&self, phone: &PhoneNumberId) -> Result<Option<CoexistenceRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM coexistence_numbers WHERE phone_number_id = $1"
        )))
        .bind(phone.as_str())
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn platform_coexistence(&self, platform: &PlatformId) -> Result<Vec<CoexistenceRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM coexistence_numbers WHERE platform_id = $1 ORDER BY phone_number_id"
        )))
        .bind(platform.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn save_coexistence(&self, r: &CoexistenceRecord) -> Result<()> {
        sqlx::query(
            "UPDATE coexistence_numbers SET contacts_sync = $1, contacts_request_id = $2, \
               history_sync = $3, history_request_id = $4, history_progress = $5, sync_error = $6, \
               offboarded_at = $7, disconnection_reason = $8, updated_at = $9, platform_id = $10 \
             WHERE phone_number_id = $11",
        )
        .bind(text(&r.contacts_sync))
        .bind(opt_text(r.contacts_request_id.as_deref()))
        .bind(text(&r.history_sync))
        .bind(opt_text(r.history_request_id.as_deref()))
        .bind(r.history_progress)
        .bind(opt_text(r.sync_error.as_deref()))
        .bind(r.offboarded_at)
        .bind(opt_text(r.disconnection_reason.as_deref()))
        .bind(r.updated_at)
        .bind(r.platform_id.as_str())
        .bind(r.phone_number_id.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn offboarded_numbers(&self) -> Result<Vec<PhoneNumberId>> {
        let rows = sqlx::query(
            "SELECT phone_number_id FROM coexistence_numbers WHERE offboarded_at IS NOT NULL",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| parse_id(row, "phone_number_id", PhoneNumberId::parse))
            .collect()
    }

    async fn insert_app_messages(&self, messages: &[AppMessageRecord]) -> Result<u64> {
        let mut written = 0;
        let mut tx = self.tx().await?;
        for m in messages {
            let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO app_messages ({MESSAGE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (wamid) DO UPDATE SET kind = excluded.kind, text = excluded.text, raw = excluded.raw \
                 WHERE app_messages.kind = 'media_placeholder' AND excluded.kind <> 'media_placeholder'"
            )))
            .bind(text(&m.wamid))
            .bind(m.application_id.as_str())
            .bind(m.phone_number_id.as_str())
            .bind(opt_text(m.contact_id.as_deref()))
            .bind(text(&m.contact_phone))
            .bind(text(&m.direction))
            .bind(text(&m.source))
            .bind(text(&m.kind))
            .bind(opt_text(m.text.as_deref()))
            .bind(opt_text(m.history_status.as_deref()))
            .bind(json(&m.raw)?)
            .bind(m.sent_at)
            .bind(m.created_at)
            .execute(&mut *tx)
            .await?;
            written += done.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn contact_app_messages(
        &self,
        app: &ApplicationId,
        phone: &str,
        limit: u32,
    ) -> Result<Vec<AppMessageRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM app_messages WHERE application_id = $1 AND contact_phone = $2 \
             ORDER BY sent_at DESC, wamid DESC LIMIT $3"
        )))
        .bind(app.as_str())
        .bind(text(phone))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(message_from_row).collect()
    }
}
