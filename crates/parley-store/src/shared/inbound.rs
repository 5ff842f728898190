//! `InboundStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`).

use async_trait::async_trait;
use parley_domain::{ApplicationId, ContactId, InboundKind, MediaState, PhoneNumberId, Wamid};
use serde_json::{Value, json};
use sqlx::Row;

use super::rows::{parse_id, parse_opt_id};
use super::{Backend, DbRow, json, json_col, opt_json_col, text};
use crate::inbound::{InboundMediaRecord, InboundMessageRecord, InboundStore, MediaOutcome};
use crate::{Millis, Result, corrupt};

pub(crate) const MESSAGE_COLUMNS: &str = "i.wamid, i.phone_number_id, i.contact_id, i.from_phone, i.kind, \
     i.text, i.body, i.raw, i.refers_to, i.edits, i.edited_at, i.revoked_at, i.received_at, \
     m.wamid AS m_wamid, m.application_id AS m_application_id, m.media_id AS m_media_id, \
     m.declared_mime AS m_declared_mime, m.declared_sha256 AS m_declared_sha256, \
     m.state AS m_state, m.attempts AS m_attempts, m.next_attempt_at AS m_next_attempt_at, \
     m.sha256 AS m_sha256, m.size_bytes AS m_size_bytes, m.mime_type AS m_mime_type, \
     m.error AS m_error, m.created_at AS m_created_at, m.stored_at AS m_stored_at";

const MEDIA_COLUMNS: &str = "wamid AS m_wamid, application_id AS m_application_id, \
     phone_number_id, media_id AS m_media_id, declared_mime AS m_declared_mime, \
     declared_sha256 AS m_declared_sha256, state AS m_state, attempts AS m_attempts, \
     next_attempt_at AS m_next_attempt_at, sha256 AS m_sha256, size_bytes AS m_size_bytes, \
     mime_type AS m_mime_type, error AS m_error, created_at AS m_created_at, \
     stored_at AS m_stored_at";

fn media_from_row(row: &DbRow) -> Result<InboundMediaRecord> {
    let state: String = row.try_get("m_state")?;
    Ok(InboundMediaRecord {
        wamid: parse_id(row, "m_wamid", Wamid::parse)?,
        application_id: parse_id(row, "m_application_id", ApplicationId::parse)?,
        phone_number_id: parse_id(row, "phone_number_id", PhoneNumberId::parse)?,
        media_id: row.try_get("m_media_id")?,
        declared_mime: row.try_get("m_declared_mime")?,
        declared_sha256: row.try_get("m_declared_sha256")?,
        state: MediaState::parse(&state).ok_or_else(|| corrupt("inbound_media.state", &state))?,
        attempts: row.try_get("m_attempts")?,
        next_attempt_at: row.try_get("m_next_attempt_at")?,
        sha256: row.try_get("m_sha256")?,
        size_bytes: row.try_get("m_size_bytes")?,
        mime_type: row.try_get("m_mime_type")?,
        error: row.try_get("m_error")?,
        created_at: row.try_get("m_created_at")?,
        stored_at: row.try_get("m_stored_at")?,
    })
}

pub(crate) fn message_from_row(row: &DbRow) -> Result<InboundMessageRecord> {
    let kind: String = row.try_get("kind")?;
    let media_wamid: Option<String> = row.try_get("m_wamid")?;
    let edits = match opt_json_col(row, "edits")? {
        Some(Value::Array(edits)) => edits,
        _ => Vec::new(),
    };
    Ok(InboundMessageRecord {
        wamid: parse_id(row, "wamid", Wamid::parse)?,
        phone_number_id: parse_id(row, "phone_number_id", PhoneNumberId::parse)?,
        contact_id: parse_opt_id(row, "contact_id", ContactId::parse)?,
        from: row.try_get("from_phone")?,
        kind: InboundKind::from_stored(&kind),
        text: row.try_get("text")?,
        body: opt_json_col(row, "body")?,
        raw: json_col(row, "raw")?,
        refers_to: row.try_get("refers_to")?,
        edits,
        edited_at: row.try_get("edited_at")?,
        revoked_at: row.try_get("revoked_at")?,
        received_at: row.try_get("received_at")?,
        media: match media_wamid {
            Some(_) => Some(media_from_row(row)?),
            None => None,
        },
    })
}

/// The new version of a body: the new content's fields, with the original's reply context,
/// referral and group kept (an edit changes what was said, not where).
fn edited_body(old: Option<&Value>, content: &Value) -> Value {
    let mut new = content.clone();
    if let (Some(old), Some(obj)) = (old.and_then(Value::as_object), new.as_object_mut()) {
        for key in ["context", "referral", "group_id"] {
            if let Some(v) = old.get(key) {
                obj.insert(key.to_owned(), v.clone());
            }
        }
    }
    new
}

#[async_trait]
impl InboundStore for Backend {
    async fn contact_inbound(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        before: Option<(Millis, &str)>,
        limit: u32,
    ) -> Result<Vec<InboundMessageRecord>> {
        let (at, wamid) = before.unwrap_or((Millis::MAX, ""));
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM inbound_messages i
               LEFT JOIN inbound_media m ON m.wamid = i.wamid
             WHERE i.application_id = $1 AND i.contact_id = $2
               AND (i.received_at < $3 OR (i.received_at = $3 AND i.wamid < $4) OR $5)
             ORDER BY i.received_at DESC, i.wamid DESC LIMIT $6"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_str())
            .bind(contact.as_str())
            .bind(at)
            .bind(text(wamid))
            .bind(before.is_none())
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(message_from_row).collect()
    }

    async fn inbound_message(
        &self,
        app: &ApplicationId,
        wamid: &str,
    ) -> Result<Option<InboundMessageRecord>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM inbound_messages i
               LEFT JOIN inbound_media m ON m.wamid = i.wamid
             WHERE i.application_id = $1 AND i.wamid = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_str())
            .bind(text(wamid))
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn inbound_changes_of(
        &self,
        app: &ApplicationId,
        original: &str,
    ) -> Result<Vec<InboundMessageRecord>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM inbound_messages i
               LEFT JOIN inbound_media m ON m.wamid = i.wamid
             WHERE i.refers_to = $2 AND i.application_id = $1 AND i.kind IN ('edit', 'revoke')
             ORDER BY i.received_at, i.wamid"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_str())
            .bind(text(original))
            .fetch_all(self.writer())
            .await?;
        rows.iter().map(message_from_row).collect()
    }

    async fn apply_inbound_edit(
        &self,
        app: &ApplicationId,
        original: &str,
        edit: &str,
        new_text: Option<&str>,
        content: &Value,
        at: Millis,
    ) -> Result<bool> {
        let mut tx = self.tx().await?;
        let row = sqlx::query(
            "SELECT text, body, edits FROM inbound_messages WHERE application_id = $1 AND wamid = $2",
        )
        .bind(app.as_str())
        .bind(text(original))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let old_text: Option<String> = row.try_get("text")?;
        let old_body = opt_json_col(&row, "body")?;
        let mut edits = match opt_json_col(&row, "edits")? {
            Some(Value::Array(e)) => e,
            _ => Vec::new(),
        };
        if edits
            .iter()
            .any(|e| e.get("edit_wamid").and_then(Value::as_str) == Some(edit))
        {
            tx.rollback().await?;
            return Ok(false);
        }
        edits.push(json!({
            "text": old_text,
            "body": old_body,
            "edited_at": at,
            "edit_wamid": edit,
        }));
        let body = edited_body(old_body.as_ref(), content);
        sqlx::query(
            "UPDATE inbound_messages SET text = $1, body = $2, edits = $3,
               edited_at = CASE WHEN COALESCE(edited_at, 0) > $4 THEN edited_at ELSE $4 END
             WHERE application_id = $5 AND wamid = $6",
        )
        .bind(new_text.map(text))
        .bind(json(&body)?)
        .bind(json(&Value::Array(edits))?)
        .bind(at)
        .bind(app.as_str())
        .bind(text(original))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn apply_inbound_revoke(
        &self,
        app: &ApplicationId,
        original: &str,
        at: Millis,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE inbound_messages SET revoked_at = COALESCE(revoked_at, $1)
             WHERE application_id = $2 AND wamid = $3",
        )
        .bind(at)
        .bind(app.as_str())
        .bind(text(original))
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn claim_inbound_media(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
        node: Option<&str>,
    ) -> Result<Vec<InboundMediaRecord>> {
        // Due: its time has come, or the node that claimed it is gone (its `node:` lease
        // lapsed or was released), so the fetch it began will never finish.
        let sql = format!(
            "SELECT {MEDIA_COLUMNS} FROM inbound_media
             WHERE state = 'pending' AND (next_attempt_at <= $1
               OR (claimed_by IS NOT NULL AND NOT EXISTS (SELECT 1 FROM leases
                     WHERE leases.resource = 'node:' || inbound_media.claimed_by
                       AND leases.expires_at > {now})))
             ORDER BY next_attempt_at LIMIT $2",
            now = db_now_ms!()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(self.writer())
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut media = media_from_row(row)?;
            // Compare and set: another node that claimed it first moved `next_attempt_at`.
            let n = sqlx::query(
                "UPDATE inbound_media SET next_attempt_at = $1, attempts = attempts + 1, claimed_by = $4
                 WHERE wamid = $2 AND state = 'pending' AND next_attempt_at = $3",
            )
            .bind(lease_until)
            .bind(text(media.wamid.as_str()))
            .bind(media.next_attempt_at)
            .bind(node.map(text))
            .execute(self.writer())
            .await?
            .rows_affected();
            if n == 1 {
                media.attempts += 1;
                media.next_attempt_at = lease_until;
                claimed.push(media);
            }
        }
        Ok(claimed)
    }

    async fn finish_inbound_media(
        &self,
        wamid: &Wamid,
        outcome: &MediaOutcome,
        now: Millis,
    ) -> Result<()> {
        let (state, sha, size, mime, error, next, stored_at) = match outcome {
            MediaOutcome::Stored {
                sha256,
                size_bytes,
                mime_type,
            } => (
                MediaState::Stored,
                Some(sha256.as_str()),
                Some(*size_bytes),
                Some(mime_type.as_str()),
                None,
                now,
                Some(now),
            ),
            MediaOutcome::Refused(e) => (MediaState::Refused, None, None, None, Some(e), now, None),
            MediaOutcome::Failed(e) => (MediaState::Failed, None, None, None, Some(e), now, None),
            MediaOutcome::Retry {
                error,
                next_attempt_at,
            } => (
                MediaState::Pending,
                None,
                None,
                None,
                Some(error),
                *next_attempt_at,
                None,
            ),
        };
        sqlx::query(
            "UPDATE inbound_media SET state = $1, sha256 = $2, size_bytes = $3, mime_type = $4,
               error = $5, next_attempt_at = $6, stored_at = $7, claimed_by = NULL
             WHERE wamid = $8",
        )
        .bind(state.as_str())
        .bind(sha)
        .bind(size)
        .bind(mime.map(text))
        .bind(error.map(|e| text(e)))
        .bind(next)
        .bind(stored_at)
        .bind(text(wamid.as_str()))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn expire_inbound_media(&self, before: Millis) -> Result<Vec<String>> {
        let mut tx = self.tx().await?;
        let hashes: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT sha256 FROM inbound_media
             WHERE state = 'stored' AND stored_at < $1 AND sha256 IS NOT NULL",
        )
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE inbound_media SET state = 'expired', error = 'removed by the media retention setting'
             WHERE state = 'stored' AND stored_at < $1",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let mut unused = Vec::new();
        for sha in hashes {
            let used: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM inbound_media WHERE sha256 = $1 AND state = 'stored'",
            )
            .bind(&sha)
            .fetch_one(&mut *tx)
            .await?;
            if used == 0 {
                unused.push(sha);
            }
        }
        tx.commit().await?;
        Ok(unused)
    }

    async fn media_hash_in_use(&self, sha256: &str) -> Result<bool> {
        let used: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM inbound_media WHERE sha256 = $1 AND state = 'stored'",
        )
        .bind(sha256)
        .fetch_one(self.reader())
        .await?;
        Ok(used > 0)
    }
}
