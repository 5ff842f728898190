//! `EventStore`, written once for both backends (compiled into `sqlite.rs` and `postgres.rs`).
//!
//! Claims need no per-backend statement: the outer `UPDATE` repeats the lease condition, so
//! on PostgreSQL a row another node leased between the inner `SELECT` and the update is
//! re-checked and skipped (READ COMMITTED re-evaluates the outer `WHERE` on the new row
//! version); SQLite's single writer makes it moot.

use async_trait::async_trait;
use parley_domain::{ApplicationId, DeliveryId, EventEndpointId, EventId};
use sqlx::Row;

use super::{Backend, DbRow, Tx, json, json_col, opt_text, parse_id, text};
use crate::events::*;
use crate::{Millis, Result};

fn endpoint_from_row(row: &DbRow) -> Result<EndpointRecord> {
    Ok(EndpointRecord {
        id: parse_id(row, "id", EventEndpointId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: json_col(row, "event_types")?,
        failing_since: row.try_get("failing_since")?,
        disabled_at: row.try_get("disabled_at")?,
        disabled_reason: row.try_get("disabled_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const ENDPOINT_COLUMNS: &str = "id, application_id, url, description, event_types, failing_since, \
     disabled_at, disabled_reason, created_at, updated_at";

/// Writes events inside a caller's transaction (the change they report commits with them).
pub(crate) async fn insert_events_tx(tx: &mut Tx, events: &[NewEvent]) -> Result<u64> {
    let mut n = 0;
    for e in events {
        n += sqlx::query(
            "INSERT INTO events (id, application_id, type, ordering_key, dedup_key, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (application_id, dedup_key) DO NOTHING",
        )
        .bind(e.id.as_str())
        .bind(e.application_id.as_str())
        .bind(e.kind.as_str())
        .bind(opt_text(e.ordering_key.as_deref()))
        .bind(text(&e.dedup_key))
        .bind(json(&e.payload)?)
        .bind(e.created_at)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(n)
}

async fn endpoint_in(
    tx: &mut Tx,
    app: &ApplicationId,
    id: &EventEndpointId,
) -> Result<Option<EndpointRecord>> {
    let q = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE application_id = $1 AND id = $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(app.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(endpoint_from_row).transpose()
}

/// The newest [`ATTEMPTS_SHOWN`] attempts of each of these deliveries, oldest first, in one
/// statement: the list read them one query per delivery, every attempt of each.
async fn attempt_logs(
    store: &Backend,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Vec<AttemptRecord>>> {
    let mut logs: std::collections::HashMap<String, Vec<AttemptRecord>> =
        std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(logs);
    }
    let mut q = sqlx::QueryBuilder::new(
        "SELECT delivery_id, attempt, at, duration_ms, status_code, response, error FROM (
           SELECT a.*, ROW_NUMBER() OVER (PARTITION BY delivery_id ORDER BY attempt DESC) AS newest
           FROM event_attempts a WHERE delivery_id IN (",
    );
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.as_str());
    }
    q.push(") ) t WHERE newest <= ")
        .push_bind(ATTEMPTS_SHOWN)
        .push(" ORDER BY delivery_id, attempt");
    for a in q.build().fetch_all(store.reader()).await? {
        logs.entry(a.try_get("delivery_id")?)
            .or_default()
            .push(AttemptRecord {
                attempt: a.try_get("attempt")?,
                at: a.try_get("at")?,
                duration_ms: a.try_get("duration_ms")?,
                status_code: a.try_get("status_code")?,
                response: a.try_get("response")?,
                error: a.try_get("error")?,
            });
    }
    Ok(logs)
}

/// Deliveries a replay queues again per transaction.
const REPLAY_CHUNK: usize = 500;

/// Makes the endpoint's delivery of event `seq` once, or puts an existing one back to pending.
async fn pend_delivery(
    tx: &mut Tx,
    endpoint: &EventEndpointId,
    seq: i64,
    ordering_key: Option<&str>,
    now: Millis,
) -> Result<u64> {
    // From the event's row: an event the retention sweep deleted meanwhile makes nothing
    // (instead of breaking the foreign key).
    let made = sqlx::query(
        "INSERT INTO event_deliveries (id, endpoint_id, event_seq, ordering_key, state, attempts,
           next_attempt_at, retry_from, created_at)
         SELECT $1, $2, seq, $4, 'pending', 0, $5, $5, $5 FROM events WHERE seq = $3
         ON CONFLICT (endpoint_id, event_seq) DO UPDATE SET state = 'pending',
           next_attempt_at = excluded.next_attempt_at, retry_from = excluded.retry_from,
           lease_until = NULL",
    )
    .bind(DeliveryId::new().as_str())
    .bind(endpoint.as_str())
    .bind(seq)
    .bind(opt_text(ordering_key))
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(made)
}

#[async_trait]
impl EventStore for Backend {
    async fn insert_event_endpoint(&self, e: &NewEndpoint, cap: u64) -> Result<bool> {
        let secret = self.cipher.encrypt(e.secret.as_bytes());
        let mut tx = self.tx().await?;
        if !super::caps::below_cap(
            &mut tx,
            "event_endpoints",
            e.application_id.as_str(),
            cap,
            "SELECT COUNT(*) FROM event_endpoints WHERE application_id = $1",
            None,
        )
        .await?
        {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO event_endpoints (id, application_id, url, description, event_types, secret,
               created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(e.id.as_str())
        .bind(e.application_id.as_str())
        .bind(text(&e.url))
        .bind(text(&e.description))
        .bind(json(&e.event_types)?)
        .bind(secret)
        .bind(e.now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn event_endpoints(
        &self,
        app: &ApplicationId,
        after: Option<&EventEndpointId>,
        limit: u32,
    ) -> Result<Vec<EndpointRecord>> {
        let q = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM event_endpoints
             WHERE application_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(app.as_str())
            .bind(after.map_or("", |a| a.as_str()))
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn event_endpoint(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
    ) -> Result<Option<EndpointRecord>> {
        let q = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM event_endpoints WHERE application_id = $1 AND id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    async fn update_event_endpoint(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
        c: &EndpointChange,
        now: Millis,
    ) -> Result<Option<EndpointRecord>> {
        let mut tx = self.tx().await?;
        if endpoint_in(&mut tx, app, id).await?.is_none() {
            return Ok(None);
        }
        let types = c.event_types.as_ref().map(json).transpose()?;
        sqlx::query(
            "UPDATE event_endpoints SET url = COALESCE($1, url), description = COALESCE($2, description),
               event_types = COALESCE($3, event_types), updated_at = $4
             WHERE id = $5",
        )
        .bind(opt_text(c.url.as_deref()))
        .bind(opt_text(c.description.as_deref()))
        .bind(types)
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        match c.enabled {
            Some(true) => {
                sqlx::query(
                    "UPDATE event_endpoints SET disabled_at = NULL, disabled_reason = NULL,
                       failing_since = NULL WHERE id = $1",
                )
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            }
            Some(false) => {
                sqlx::query(
                    "UPDATE event_endpoints SET disabled_at = COALESCE(disabled_at, $1),
                       disabled_reason = $2 WHERE id = $3",
                )
                .bind(now)
                .bind(opt_text(c.disabled_reason.as_deref()))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            }
            None => {}
        }
        let out = endpoint_in(&mut tx, app, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn delete_event_endpoint(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
    ) -> Result<bool> {
        let mut tx = self.tx().await?;
        if endpoint_in(&mut tx, app, id).await?.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "DELETE FROM event_attempts WHERE delivery_id IN
               (SELECT id FROM event_deliveries WHERE endpoint_id = $1)",
        )
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM event_deliveries WHERE endpoint_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM event_endpoints WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_event_endpoint_secret(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
        secret: &str,
        now: Millis,
    ) -> Result<bool> {
        let blob = self.cipher.encrypt(secret.as_bytes());
        let n = sqlx::query(
            "UPDATE event_endpoints SET secret = $1, updated_at = $2 WHERE application_id = $3 AND id = $4",
        )
        .bind(blob)
        .bind(now)
        .bind(app.as_str())
        .bind(id.as_str())
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn event_subscriptions(&self) -> Result<Vec<(ApplicationId, Vec<String>)>> {
        let rows = sqlx::query(
            "SELECT application_id, event_types FROM event_endpoints WHERE disabled_at IS NULL",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id(r, "application_id", ApplicationId::parse)?,
                    json_col(r, "event_types")?,
                ))
            })
            .collect()
    }

    async fn insert_events(&self, events: &[NewEvent]) -> Result<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut tx = self.tx().await?;
        let n = insert_events_tx(&mut tx, events).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn fan_out_events(&self, limit: u32, now: Millis) -> Result<u64> {
        let mut tx = self.tx().await?;
        let events = sqlx::query(
            "SELECT seq, application_id, type, ordering_key, created_at FROM events
             WHERE fanned_out_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let endpoints = sqlx::query(
            "SELECT id, application_id, event_types, created_at FROM event_endpoints
             WHERE disabled_at IS NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        let endpoints = endpoints
            .iter()
            .map(|r| {
                Ok((
                    parse_id(r, "id", EventEndpointId::parse)?,
                    r.try_get::<String, _>("application_id")?,
                    json_col::<Vec<String>>(r, "event_types")?,
                    r.try_get::<i64, _>("created_at")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        for ev in &events {
            let seq: i64 = ev.try_get("seq")?;
            let app: String = ev.try_get("application_id")?;
            let kind: String = ev.try_get("type")?;
            let key: Option<String> = ev.try_get("ordering_key")?;
            let created_at: i64 = ev.try_get("created_at")?;
            for (id, ep_app, types, ep_created) in &endpoints {
                if *ep_app == app && *ep_created <= created_at && types.contains(&kind) {
                    sqlx::query(
                        "INSERT INTO event_deliveries (id, endpoint_id, event_seq, ordering_key, state,
                           attempts, next_attempt_at, retry_from, created_at)
                         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)
                         ON CONFLICT (endpoint_id, event_seq) DO NOTHING",
                    )
                    .bind(DeliveryId::new().as_str())
                    .bind(id.as_str())
                    .bind(seq)
                    .bind(opt_text(key.as_deref()))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query("UPDATE events SET fanned_out_at = $1 WHERE seq = $2")
                .bind(now)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(events.len() as u64)
    }

    async fn claim_event_deliveries(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<DeliveryJob>> {
        let mut tx = self.tx().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE event_deliveries SET lease_until = $2
             WHERE id IN (
               SELECT d.id FROM event_deliveries d JOIN event_endpoints e ON e.id = d.endpoint_id
               WHERE d.state = 'pending' AND d.next_attempt_at <= $1
                 AND (d.lease_until IS NULL OR d.lease_until <= $1)
                 AND e.disabled_at IS NULL
                 AND NOT EXISTS (
                   SELECT 1 FROM event_deliveries p
                   WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
                     AND p.state = 'pending' AND p.event_seq < d.event_seq)
               ORDER BY d.next_attempt_at, d.event_seq LIMIT $3)
             AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $1)
             RETURNING id",
        )
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in &ids {
            let row = sqlx::query(
                "SELECT d.id, d.endpoint_id, d.attempts, d.retry_from, e.url, e.secret,
                   v.id AS event_id, v.payload
                 FROM event_deliveries d
                 JOIN event_endpoints e ON e.id = d.endpoint_id
                 JOIN events v ON v.seq = d.event_seq
                 WHERE d.id = $1",
            )
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let blob: Vec<u8> = row.try_get("secret")?;
            let secret = String::from_utf8(self.cipher.decrypt(&blob)?)
                .map_err(|e| crate::corrupt("event endpoint secret", e))?;
            let payload: serde_json::Value = json_col(&row, "payload")?;
            jobs.push(DeliveryJob {
                id: parse_id(&row, "id", DeliveryId::parse)?,
                endpoint_id: parse_id(&row, "endpoint_id", EventEndpointId::parse)?,
                url: row.try_get("url")?,
                secret,
                event_id: parse_id(&row, "event_id", EventId::parse)?,
                payload: payload.to_string(),
                attempts: row.try_get("attempts")?,
                retry_from: row.try_get("retry_from")?,
            });
        }
        tx.commit().await?;
        Ok(jobs)
    }

    async fn record_event_attempt(&self, o: &AttemptOutcome) -> Result<bool> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "INSERT INTO event_attempts (delivery_id, attempt, at, duration_ms, status_code, response, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id, attempt) DO NOTHING",
        )
        .bind(o.delivery_id.as_str())
        .bind(o.attempt)
        .bind(o.at)
        .bind(o.duration_ms)
        .bind(o.status_code)
        .bind(opt_text(o.response.as_deref()))
        .bind(opt_text(o.error.as_deref()))
        .execute(&mut *tx)
        .await?;
        // A delivery keeps its newest attempts only: retries and replays add them without end.
        sqlx::query("DELETE FROM event_attempts WHERE delivery_id = $1 AND attempt <= $2")
            .bind(o.delivery_id.as_str())
            .bind(o.attempt - ATTEMPTS_KEPT)
            .execute(&mut *tx)
            .await?;
        let (state, next, delivered_at) = match (o.delivered, o.next_attempt_at) {
            (true, _) => ("delivered", o.at, Some(o.at)),
            (false, Some(next)) => ("pending", next, None),
            (false, None) => ("failed", o.at, None),
        };
        sqlx::query(
            "UPDATE event_deliveries SET state = $1, attempts = $2, next_attempt_at = $3,
               last_attempt_at = $4, delivered_at = COALESCE($5, delivered_at), lease_until = NULL
             WHERE id = $6",
        )
        .bind(state)
        .bind(o.attempt)
        .bind(next)
        .bind(o.at)
        .bind(delivered_at)
        .bind(o.delivery_id.as_str())
        .execute(&mut *tx)
        .await?;
        let mut disabled = false;
        if o.delivered {
            sqlx::query("UPDATE event_endpoints SET failing_since = NULL WHERE id = $1")
                .bind(o.endpoint_id.as_str())
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "UPDATE event_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2",
            )
            .bind(o.at)
            .bind(o.endpoint_id.as_str())
            .execute(&mut *tx)
            .await?;
            disabled = sqlx::query(
                "UPDATE event_endpoints SET disabled_at = $1, disabled_reason = $2
                 WHERE id = $3 AND disabled_at IS NULL AND failing_since <= $4",
            )
            .bind(o.at)
            .bind(text(&o.disable_reason))
            .bind(o.endpoint_id.as_str())
            .bind(o.at - o.disable_after_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
        }
        tx.commit().await?;
        Ok(disabled)
    }

    async fn event_deliveries(
        &self,
        app: &ApplicationId,
        endpoint: &EventEndpointId,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>> {
        let rows = sqlx::query(
            "SELECT d.id, d.endpoint_id, d.state, d.attempts, d.next_attempt_at, d.last_attempt_at,
               d.delivered_at, d.created_at, v.id AS event_id, v.type AS event_type,
               v.created_at AS event_created_at, v.payload
             FROM event_deliveries d
             JOIN event_endpoints e ON e.id = d.endpoint_id
             JOIN events v ON v.seq = d.event_seq
             WHERE e.application_id = $1 AND d.endpoint_id = $2 AND ($3 = '' OR d.id < $3)
             ORDER BY d.id DESC LIMIT $4",
        )
        .bind(app.as_str())
        .bind(endpoint.as_str())
        .bind(after.map_or("", |a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
        let mut logs = attempt_logs(self, &ids).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = parse_id(r, "id", DeliveryId::parse)?;
            let attempt_log = logs.remove(id.as_str()).unwrap_or_default();
            let state: String = r.try_get("state")?;
            let next: i64 = r.try_get("next_attempt_at")?;
            out.push(DeliveryRecord {
                id,
                endpoint_id: parse_id(r, "endpoint_id", EventEndpointId::parse)?,
                event_id: parse_id(r, "event_id", EventId::parse)?,
                event_type: r.try_get("event_type")?,
                event_created_at: r.try_get("event_created_at")?,
                payload: json_col(r, "payload")?,
                next_attempt_at: (state == "pending").then_some(next),
                state,
                attempts: r.try_get("attempts")?,
                last_attempt_at: r.try_get("last_attempt_at")?,
                delivered_at: r.try_get("delivered_at")?,
                created_at: r.try_get("created_at")?,
                attempt_log,
            });
        }
        Ok(out)
    }

    async fn replay_event_delivery(
        &self,
        app: &ApplicationId,
        endpoint: &EventEndpointId,
        delivery: &DeliveryId,
        now: Millis,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE event_deliveries SET state = 'pending', next_attempt_at = $1, retry_from = $1,
               lease_until = NULL
             WHERE id = $2 AND endpoint_id = $3
               AND endpoint_id IN (SELECT id FROM event_endpoints WHERE application_id = $4)",
        )
        .bind(now)
        .bind(delivery.as_str())
        .bind(endpoint.as_str())
        .bind(app.as_str())
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn replay_event_range(
        &self,
        app: &ApplicationId,
        endpoint: &EventEndpointId,
        r: ReplayRange,
        now: Millis,
    ) -> Result<Option<ReplayPage>> {
        let (after_at, after_seq) = r.after.unwrap_or((r.since, i64::MIN));
        // The index range starts at the cursor's time (not at `since`): a page does not read
        // again the events the pages before it went through.
        let from = after_at.max(r.since);
        let events = sqlx::query(
            "SELECT seq, type, ordering_key, created_at FROM events
             WHERE application_id = $1 AND created_at >= $2 AND created_at < $3
               AND (created_at > $4 OR (created_at = $5 AND seq > $6))
             ORDER BY created_at, seq LIMIT $7",
        )
        .bind(app.as_str())
        .bind(from)
        .bind(r.until)
        .bind(after_at)
        .bind(after_at)
        .bind(after_seq)
        .bind(i64::from(r.limit) + 1)
        .fetch_all(self.reader())
        .await?;
        let more = events.len() > r.limit as usize;
        let events = &events[..events.len().min(r.limit as usize)];
        let mut replayed = 0;
        // A transaction per chunk: the writer (SQLite's one) is never held for a whole page.
        for chunk in events.chunks(REPLAY_CHUNK) {
            let mut tx = self.tx().await?;
            let Some(ep) = endpoint_in(&mut tx, app, endpoint).await? else {
                return Ok(None);
            };
            for ev in chunk {
                let kind: String = ev.try_get("type")?;
                if !ep.event_types.contains(&kind) {
                    continue;
                }
                let key: Option<String> = ev.try_get("ordering_key")?;
                replayed +=
                    pend_delivery(&mut tx, endpoint, ev.try_get("seq")?, key.as_deref(), now)
                        .await?;
            }
            tx.commit().await?;
        }
        let next = match events.last() {
            Some(last) if more => Some((last.try_get("created_at")?, last.try_get("seq")?)),
            _ => None,
        };
        Ok(Some(ReplayPage { replayed, next }))
    }

    async fn prune_events(&self, before: Millis, after: i64, limit: u32) -> Result<crate::Pruned> {
        let rows = sqlx::query(
            "SELECT e.seq, e.created_at,
               (e.fanned_out_at IS NOT NULL AND NOT EXISTS (
                  SELECT 1 FROM event_deliveries d WHERE d.event_seq = e.seq AND d.state = 'pending'))
                 AS done
             FROM events e WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let (old, next) =
            super::old_rows(&rows, ("seq", "created_at"), before, (after, limit), |r| {
                Ok(r.try_get::<bool, _>("done")?)
            })?;
        let mut deleted = 0;
        for chunk in old.chunks(super::PRUNE_CHUNK) {
            let mut tx = self.tx().await?;
            // A delivery that went back to pending meanwhile (a replay) keeps its event.
            super::execute_in(
                &mut tx,
                // `state <> 'pending'` on the row itself: PostgreSQL checks it again on a row a
                // replay changed meanwhile (the subquery keeps the statement's snapshot).
                "DELETE FROM event_deliveries WHERE state <> 'pending' AND NOT EXISTS (
                   SELECT 1 FROM event_deliveries p
                   WHERE p.event_seq = event_deliveries.event_seq AND p.state = 'pending')
                 AND event_seq IN (",
                chunk,
            )
            .await?;
            deleted += super::execute_in(
                &mut tx,
                "DELETE FROM events WHERE NOT EXISTS (
                   SELECT 1 FROM event_deliveries d WHERE d.event_seq = events.seq)
                 AND seq IN (",
                chunk,
            )
            .await?;
            tx.commit().await?;
        }
        Ok(crate::Pruned { deleted, next })
    }
}
