//! `ConversationStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`). The conversation rows themselves are written by `record_inbound` and
//! `insert_message` (`shared/core.rs`, `upsert_conversation_in`).

use async_trait::async_trait;
use parley_domain::{ApplicationId, ContactId, UserId};
use sqlx::Row;

use super::inbound::{MESSAGE_COLUMNS, message_from_row as inbound_from_row};
use super::rows::{contact_from_row, message_from_row, overlay_pending, parse_opt_id};
use super::{Backend, DbRow, Tx, opt_text, text};
use crate::conversations::{
    ConversationQuery, ConversationRecord, ConversationStore, ThreadCursor, ThreadOutbound,
};
use crate::inbound::InboundMessageRecord;
use crate::{MessageRecord, Millis, Result};

/// Inbound kinds that are not messages of their own in the thread or the unread count.
const NOT_THREAD_KINDS: &str = "('reaction', 'edit', 'revoke')";

const CONVERSATION_COLUMNS: &str = "k.*, v.last_activity_at AS v_last_activity_at, \
     v.last_direction AS v_last_direction, v.last_kind AS v_last_kind, v.last_text AS v_last_text, \
     v.last_inbound_wamid AS v_last_inbound_wamid, v.last_inbound_at AS v_last_inbound_at, \
     COALESCE(v.read_until, 0) AS v_read_until, v.assignee_id AS v_assignee_id, u.email AS v_assignee_email, \
     v.entry_point_at AS v_entry_point_at, v.entry_point_phone_number_id AS v_entry_point_number, \
     (SELECT l.phone_number_id FROM inbound_messages l WHERE l.wamid = v.last_inbound_wamid) \
        AS v_last_inbound_number, \
     (SELECT COUNT(*) FROM inbound_messages i WHERE i.contact_id = k.id \
        AND i.application_id = k.application_id AND i.received_at > COALESCE(v.read_until, 0) \
        AND i.kind NOT IN ('reaction', 'edit', 'revoke', 'system')) AS v_unread";

fn conversation_from_row(row: &DbRow) -> Result<ConversationRecord> {
    let assignee = parse_opt_id(row, "v_assignee_id", UserId::parse)?;
    let email: Option<String> = row.try_get("v_assignee_email")?;
    Ok(ConversationRecord {
        contact: contact_from_row(row)?,
        last_activity_at: row.try_get("v_last_activity_at")?,
        last_direction: row.try_get("v_last_direction")?,
        last_kind: row.try_get("v_last_kind")?,
        last_text: row.try_get("v_last_text")?,
        last_inbound_wamid: row.try_get("v_last_inbound_wamid")?,
        last_inbound_at: row.try_get("v_last_inbound_at")?,
        read_until: row.try_get("v_read_until")?,
        assignee: assignee.map(|a| (a, email.unwrap_or_default())),
        unread: row.try_get("v_unread")?,
        entry_point_at: row.try_get("v_entry_point_at")?,
        entry_point_phone_number_id: row.try_get("v_entry_point_number")?,
        last_inbound_phone_number_id: row.try_get("v_last_inbound_number")?,
    })
}

/// Records activity in a conversation inside the caller's transaction: creates it, or moves
/// its last message forward (an older message leaves the last one as it is).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upsert_conversation_in(
    tx: &mut Tx,
    app: &ApplicationId,
    contact: &str,
    at: Millis,
    direction: &str,
    kind: &str,
    text_shown: Option<&str>,
    inbound_wamid: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO conversations (application_id, contact_id, last_activity_at, last_direction,
           last_kind, last_text, last_inbound_wamid, last_inbound_at, read_until, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $7 IS NULL THEN NULL ELSE $3 END, 0, $3)
         ON CONFLICT (application_id, contact_id) DO UPDATE SET
           last_direction = CASE WHEN excluded.last_activity_at >= conversations.last_activity_at
             THEN excluded.last_direction ELSE conversations.last_direction END,
           last_kind = CASE WHEN excluded.last_activity_at >= conversations.last_activity_at
             THEN excluded.last_kind ELSE conversations.last_kind END,
           last_text = CASE WHEN excluded.last_activity_at >= conversations.last_activity_at
             THEN excluded.last_text ELSE conversations.last_text END,
           last_inbound_wamid = CASE WHEN excluded.last_inbound_wamid IS NOT NULL
               AND excluded.last_activity_at >= COALESCE(conversations.last_inbound_at, 0)
             THEN excluded.last_inbound_wamid ELSE conversations.last_inbound_wamid END,
           last_inbound_at = CASE WHEN excluded.last_inbound_wamid IS NOT NULL
               AND excluded.last_activity_at >= COALESCE(conversations.last_inbound_at, 0)
             THEN excluded.last_activity_at ELSE conversations.last_inbound_at END,
           last_activity_at = CASE WHEN excluded.last_activity_at >= conversations.last_activity_at
             THEN excluded.last_activity_at ELSE conversations.last_activity_at END,
           updated_at = excluded.updated_at",
    )
    .bind(app.as_str())
    .bind(contact)
    .bind(at)
    .bind(direction)
    .bind(kind)
    .bind(opt_text(text_shown))
    .bind(opt_text(inbound_wamid))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Notes a free entry point (an inbound message with a click-to-WhatsApp or Page `referral`)
/// on the conversation the caller just recorded the message in; a late message does not move
/// a later entry point back.
pub(crate) async fn note_entry_point_in(
    tx: &mut Tx,
    app: &ApplicationId,
    contact: &str,
    at: Millis,
    phone_number_id: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE conversations SET
           entry_point_phone_number_id = CASE WHEN COALESCE(entry_point_at, 0) > $3
             THEN entry_point_phone_number_id ELSE $4 END,
           entry_point_at = CASE WHEN COALESCE(entry_point_at, 0) > $3
             THEN entry_point_at ELSE $3 END
         WHERE application_id = $1 AND contact_id = $2",
    )
    .bind(app.as_str())
    .bind(contact)
    .bind(at)
    .bind(text(phone_number_id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The cursor condition on `(at_col, id_col)`: after `$a, $b` in the given direction, or all
/// when `$all`.
fn after_clause(at: &str, id: &str, ascending: bool, a: u8, b: u8, all: u8) -> String {
    let op = if ascending { ">" } else { "<" };
    format!("({at} {op} ${a} OR ({at} = ${a} AND {id} {op} ${b}) OR ${all})")
}

fn order(at: &str, id: &str, ascending: bool) -> String {
    let dir = if ascending { "ASC" } else { "DESC" };
    format!("ORDER BY {at} {dir}, {id} {dir}")
}

#[async_trait]
impl ConversationStore for Backend {
    async fn conversations(
        &self,
        app: &ApplicationId,
        query: &ConversationQuery,
        after: Option<(Millis, &str)>,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>> {
        let (at, id) = after.unwrap_or((0, ""));
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations v
               JOIN contacts k ON k.id = v.contact_id AND k.application_id = v.application_id
               LEFT JOIN users u ON u.id = v.assignee_id
             WHERE v.application_id = $1
               AND ($2 OR v.assignee_id IS NULL)
               AND ($3 IS NULL OR v.assignee_id = $3)
               AND ($4 IS NULL OR k.last_inbound_at > $4)
               AND ($5 OR v.last_inbound_at > v.read_until)
               AND ($6 IS NULL OR LOWER(COALESCE(k.name, '')) LIKE $6 ESCAPE '\\'
                    OR LOWER(k.phone) LIKE $6 ESCAPE '\\'
                    OR LOWER(COALESCE(k.username, '')) LIKE $6 ESCAPE '\\'
                    OR LOWER(COALESCE(v.last_text, '')) LIKE $6 ESCAPE '\\')
               AND {}
             {} LIMIT $10",
            after_clause("v.last_activity_at", "v.contact_id", false, 7, 8, 9),
            order("v.last_activity_at", "v.contact_id", false),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_str())
            .bind(!query.unassigned)
            .bind(query.assignee.as_ref().map(|u| u.as_str().to_owned()))
            .bind(query.inbound_after)
            .bind(!query.unread)
            .bind(query.pattern.clone())
            .bind(at)
            .bind(text(id))
            .bind(after.is_none())
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(conversation_from_row).collect()
    }

    async fn conversation(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
    ) -> Result<Option<ConversationRecord>> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM contacts k
               LEFT JOIN conversations v ON v.contact_id = k.id AND v.application_id = k.application_id
               LEFT JOIN users u ON u.id = v.assignee_id
             WHERE k.application_id = $1 AND k.id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_str())
            .bind(contact.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(conversation_from_row).transpose()
    }

    async fn thread_inbound(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        after: ThreadCursor<'_>,
        ascending: bool,
        limit: u32,
    ) -> Result<Vec<InboundMessageRecord>> {
        let (at, id) = after.unwrap_or((0, ""));
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM inbound_messages i
               LEFT JOIN inbound_media m ON m.wamid = i.wamid
             WHERE i.application_id = $1 AND i.contact_id = $2 AND i.kind NOT IN {NOT_THREAD_KINDS}
               AND {} {} LIMIT $6",
            after_clause("i.received_at", "i.wamid", ascending, 3, 4, 5),
            order("i.received_at", "i.wamid", ascending),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_str())
            .bind(contact.as_str())
            .bind(at)
            .bind(text(id))
            .bind(after.is_none())
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(inbound_from_row).collect()
    }

    async fn thread_outbound(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        after: ThreadCursor<'_>,
        ascending: bool,
        limit: u32,
    ) -> Result<Vec<ThreadOutbound>> {
        let (at, id) = after.unwrap_or((0, ""));
        let sql = format!(
            "SELECT * FROM messages
             WHERE application_id = $1 AND contact_id = $2 AND kind <> 'reaction'
               AND {} {} LIMIT $6",
            after_clause("queued_at", "id", ascending, 3, 4, 5),
            order("queued_at", "id", ascending),
        );
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_str())
            .bind(contact.as_str())
            .bind(at)
            .bind(text(id))
            .bind(after.is_none())
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut outbound = rows
            .iter()
            .map(|row| {
                Ok(ThreadOutbound {
                    message: message_from_row(row)?,
                    campaign_id: row.try_get("campaign_id")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        overlay_pending(&mut tx, outbound.iter_mut().map(|o| &mut o.message)).await?;
        Ok(outbound)
    }

    async fn thread_reactions(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        since: Millis,
        limit: u32,
    ) -> Result<(Vec<InboundMessageRecord>, Vec<MessageRecord>)> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM inbound_messages i
               LEFT JOIN inbound_media m ON m.wamid = i.wamid
             WHERE i.application_id = $1 AND i.contact_id = $2 AND i.kind = 'reaction'
               AND i.received_at >= $3
             ORDER BY i.received_at, i.wamid LIMIT $4"
        );
        let mut tx = self.read_tx().await?;
        let inbound = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_str())
            .bind(contact.as_str())
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let outbound = sqlx::query(
            "SELECT * FROM messages
             WHERE application_id = $1 AND contact_id = $2 AND kind = 'reaction' AND queued_at >= $3
             ORDER BY queued_at, id LIMIT $4",
        )
        .bind(app.as_str())
        .bind(contact.as_str())
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut outbound = outbound
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>>>()?;
        overlay_pending(&mut tx, &mut outbound).await?;
        Ok((
            inbound
                .iter()
                .map(inbound_from_row)
                .collect::<Result<_>>()?,
            outbound,
        ))
    }

    async fn mark_conversation_read(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        until: Millis,
        now: Millis,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE conversations SET
               read_until = CASE WHEN read_until > $3 THEN read_until ELSE $3 END, updated_at = $4
             WHERE application_id = $1 AND contact_id = $2",
        )
        .bind(app.as_str())
        .bind(contact.as_str())
        .bind(until)
        .bind(now)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn assign_conversation(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        user: Option<&UserId>,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO conversations (application_id, contact_id, last_activity_at, last_direction,
               last_kind, read_until, assignee_id, updated_at)
             VALUES ($1, $2, $3, 'outbound', 'none', 0, $4, $3)
             ON CONFLICT (application_id, contact_id) DO UPDATE SET
               assignee_id = excluded.assignee_id, updated_at = excluded.updated_at",
        )
        .bind(app.as_str())
        .bind(contact.as_str())
        .bind(now)
        .bind(user.map(|u| u.as_str().to_owned()))
        .execute(self.writer())
        .await?;
        Ok(())
    }
}
