//! `PlatformStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`, whose `Backend`, `DbRow` and bind helpers it uses).

use async_trait::async_trait;
use parley_domain::{ApplicationId, BusinessId, PhoneNumberId, PlatformId, WabaId};
use sqlx::Row;

use super::{Backend, DbRow, opt_text, parse_id, parse_opt_id, phone_from_row, platform_from_row};
use crate::platforms::*;
use crate::{Millis, PlatformRecord, Result, corrupt};

fn session_from_row(row: &DbRow, steps: Vec<OnboardingStep>) -> Result<OnboardingRecord> {
    Ok(OnboardingRecord {
        id: row.try_get("id")?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        platform_id: parse_opt_id(row, "platform_id", PlatformId::parse)?,
        event: row.try_get("event")?,
        business_id: parse_opt_id(row, "business_id", BusinessId::parse)?,
        waba_id: parse_opt_id(row, "waba_id", WabaId::parse)?,
        phone_number_id: parse_opt_id(row, "phone_number_id", PhoneNumberId::parse)?,
        state: row.try_get("state")?,
        failed_step: row.try_get("failed_step")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        steps,
    })
}

fn setup_from_row(row: &DbRow) -> Result<PlatformSetupRecord> {
    Ok(PlatformSetupRecord {
        platform: platform_from_row(row)?,
        status_reason: row.try_get("status_reason")?,
        company_name: row.try_get("company_name")?,
        connected_at: row.try_get("connected_at")?,
        disconnected_at: row.try_get("disconnected_at")?,
    })
}

impl Backend {
    async fn steps_of(&self, session_id: &str) -> Result<Vec<OnboardingStep>> {
        let rows = sqlx::query(
            "SELECT * FROM onboarding_steps WHERE session_id = $1 ORDER BY position, at",
        )
        .bind(session_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OnboardingStep {
                    step: r.try_get("step")?,
                    state: r.try_get("state")?,
                    error_code: r.try_get("error_code")?,
                    error_message: r.try_get("error_message")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    fn decrypt_opt(&self, blob: Option<Vec<u8>>, what: &str) -> Result<Option<String>> {
        blob.map(|b| {
            let plain = self.cipher.decrypt(&b)?;
            String::from_utf8(plain).map_err(|e| corrupt(what, e))
        })
        .transpose()
    }
}

/// Steps sort in the order onboarding runs them, whatever order they were recorded in.
fn position(step: &str) -> i64 {
    match step {
        // Tens, so steps added later fit between (sessions recorded before keep 1-8).
        "exchange_code" => 10,
        "debug_token" => 20,
        "subscribe_app" => 30,
        "find_number" => 34,
        "verify_number" => 36,
        "register_phone" => 40,
        "read_business" => 32,
        "read_waba" => 60,
        "read_phone_numbers" => 70,
        "sync_contacts" => 72,
        "sync_history" => 74,
        "read_profile" => 80,
        _ => 90,
    }
}

#[async_trait]
impl PlatformStore for Backend {
    async fn save_onboarding(&self, s: &OnboardingRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO onboarding_sessions (id, application_id, platform_id, event, business_id, waba_id, phone_number_id, state, failed_step, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (id) DO UPDATE SET
               platform_id = excluded.platform_id, event = excluded.event, business_id = excluded.business_id,
               waba_id = excluded.waba_id, phone_number_id = excluded.phone_number_id, state = excluded.state,
               failed_step = excluded.failed_step, updated_at = excluded.updated_at",
        )
        .bind(&s.id)
        .bind(s.application_id.as_str())
        .bind(s.platform_id.as_ref().map(|p| p.as_str()))
        .bind(&s.event)
        .bind(s.business_id.as_ref().map(|b| b.as_str()))
        .bind(s.waba_id.as_ref().map(|w| w.as_str()))
        .bind(s.phone_number_id.as_ref().map(|p| p.as_str()))
        .bind(&s.state)
        .bind(&s.failed_step)
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn record_onboarding_step(&self, session_id: &str, step: &OnboardingStep) -> Result<()> {
        sqlx::query(
            "INSERT INTO onboarding_steps (session_id, step, position, state, error_code, error_message, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (session_id, step) DO UPDATE SET
               state = excluded.state, error_code = excluded.error_code,
               error_message = excluded.error_message, at = excluded.at",
        )
        .bind(session_id)
        .bind(&step.step)
        .bind(position(&step.step))
        .bind(&step.state)
        .bind(step.error_code)
        .bind(opt_text(step.error_message.as_deref()))
        .bind(step.at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn onboarding(&self, session_id: &str) -> Result<Option<OnboardingRecord>> {
        let row = sqlx::query("SELECT * FROM onboarding_sessions WHERE id = $1")
            .bind(session_id)
            .fetch_optional(self.reader())
            .await?;
        match row {
            Some(row) => {
                let steps = self.steps_of(session_id).await?;
                Ok(Some(session_from_row(&row, steps)?))
            }
            None => Ok(None),
        }
    }

    async fn latest_onboarding(&self, platform: &PlatformId) -> Result<Option<OnboardingRecord>> {
        let row = sqlx::query(
            "SELECT * FROM onboarding_sessions WHERE platform_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(platform.as_str())
        .fetch_optional(self.reader())
        .await?;
        match row {
            Some(row) => {
                let id: String = row.try_get("id")?;
                let steps = self.steps_of(&id).await?;
                Ok(Some(session_from_row(&row, steps)?))
            }
            None => Ok(None),
        }
    }

    async fn set_onboarding_secrets(
        &self,
        session_id: &str,
        access_token: Option<&str>,
        pin: Option<&str>,
    ) -> Result<()> {
        let token = access_token.map(|t| self.cipher.encrypt(t.as_bytes()));
        let pin = pin.map(|p| self.cipher.encrypt(p.as_bytes()));
        sqlx::query(
            "UPDATE onboarding_sessions SET access_token = COALESCE($1, access_token), pin = COALESCE($2, pin) WHERE id = $3",
        )
        .bind(token)
        .bind(pin)
        .bind(session_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn onboarding_secrets(&self, session_id: &str) -> Result<OnboardingSecrets> {
        let row = sqlx::query("SELECT access_token, pin FROM onboarding_sessions WHERE id = $1")
            .bind(session_id)
            .fetch_optional(self.reader())
            .await?;
        let Some(row) = row else {
            return Ok(OnboardingSecrets::default());
        };
        Ok(OnboardingSecrets {
            access_token: self.decrypt_opt(row.try_get("access_token")?, "access_token")?,
            pin: self.decrypt_opt(row.try_get("pin")?, "pin")?,
        })
    }

    async fn set_platform_status(
        &self,
        platform: &PlatformId,
        status: &str,
        reason: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.tx().await?;
        let before = sqlx::query("SELECT application_id, status FROM platforms WHERE id = $1")
            .bind(platform.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE platforms SET status = $1, status_reason = $2, updated_at = $3,
               disconnected_at = CASE WHEN $4 = 'disconnected' THEN COALESCE(disconnected_at, $5) ELSE NULL END
             WHERE id = $6",
        )
        .bind(status)
        .bind(opt_text(reason))
        .bind(now)
        .bind(status)
        .bind(now)
        .bind(platform.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::waba_taken(e, platform.as_str()))?;
        // `platform.status` for the business's systems, committed with the change.
        if let Some(row) = before {
            let app = parse_id(&row, "application_id", ApplicationId::parse)?;
            let old: String = row.try_get("status")?;
            let events =
                crate::events::platform_status_event(&app, platform, &old, status, reason, now);
            super::insert_events_tx(&mut tx, &events).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_platform_connected(
        &self,
        platform: &PlatformId,
        company_name: Option<&str>,
        connected_at: Option<Millis>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE platforms SET company_name = COALESCE($1, company_name),
               connected_at = COALESCE(connected_at, $2)
             WHERE id = $3",
        )
        .bind(company_name)
        .bind(connected_at)
        .bind(platform.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn platform_setup(&self, platform: &PlatformId) -> Result<Option<PlatformSetupRecord>> {
        let row = sqlx::query("SELECT * FROM platforms WHERE id = $1")
            .bind(platform.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(setup_from_row).transpose()
    }

    async fn platform_setups(
        &self,
        app: &ApplicationId,
        after: Option<&PlatformId>,
        limit: u32,
    ) -> Result<Vec<PlatformSetupRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM platforms WHERE application_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(app.as_str())
        .bind(after.map_or("", |a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(setup_from_row).collect()
    }

    async fn has_live_platform(&self, app: &ApplicationId) -> Result<bool> {
        let row = sqlx::query(
            "SELECT id FROM platforms WHERE application_id = $1 AND status <> 'disconnected' LIMIT 1",
        )
        .bind(app.as_str())
        .fetch_optional(self.reader())
        .await?;
        Ok(row.is_some())
    }

    async fn platforms_after(
        &self,
        after: Option<&PlatformId>,
        limit: u32,
    ) -> Result<Vec<PlatformRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM platforms WHERE ($1 IS NULL OR id > $2) ORDER BY id LIMIT $3",
        )
        .bind(after.map(PlatformId::as_str))
        .bind(after.map(PlatformId::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(platform_from_row).collect()
    }

    async fn platforms_by_waba(&self, waba_id: &WabaId) -> Result<Vec<PlatformRecord>> {
        let rows = sqlx::query("SELECT * FROM platforms WHERE waba_id = $1 ORDER BY id")
            .bind(waba_id.as_str())
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(platform_from_row).collect()
    }

    async fn platform_numbers(&self, platform: &PlatformId) -> Result<Vec<NumberSetupRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM phone_numbers WHERE platform_id = $1 ORDER BY phone_number_id",
        )
        .bind(platform.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NumberSetupRecord {
                    number: phone_from_row(r)?,
                    name_status: r.try_get("name_status")?,
                    messaging_limit_scope: r.try_get("messaging_limit_scope")?,
                    throughput_level: r.try_get("throughput_level")?,
                })
            })
            .collect()
    }

    async fn patch_phone_number(
        &self,
        phone_number_id: &PhoneNumberId,
        p: &NumberPatch,
        now: Millis,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE phone_numbers SET
               verified_name = COALESCE($1, verified_name), name_status = COALESCE($2, name_status),
               quality_rating = COALESCE($3, quality_rating), messaging_limit = COALESCE($4, messaging_limit),
               messaging_limit_scope = COALESCE($5, messaging_limit_scope),
               throughput_level = COALESCE($6, throughput_level), throughput_mps = COALESCE($7, throughput_mps),
               updated_at = $8
             WHERE phone_number_id = $9",
        )
        .bind(&p.verified_name)
        .bind(&p.name_status)
        .bind(&p.quality_rating)
        .bind(&p.messaging_limit)
        .bind(&p.messaging_limit_scope)
        .bind(&p.throughput_level)
        .bind(p.throughput_mps.map(i64::from))
        .bind(now)
        .bind(phone_number_id.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn number_history(
        &self,
        app: &ApplicationId,
        phone_number_id: &PhoneNumberId,
        from: Millis,
        to: Millis,
        limit: u32,
    ) -> Result<Vec<NumberChange>> {
        // The last change before the period, then the period's (both by the primary key).
        let rows = sqlx::query(
            "SELECT * FROM (SELECT at, quality_rating, messaging_limit, throughput_mps, was_quality_rating, was_messaging_limit, was_throughput_mps
                 FROM phone_number_history WHERE phone_number_id = $1 AND application_id = $2 AND at < $3
                 ORDER BY at DESC LIMIT 1) AS before
             UNION ALL
             SELECT * FROM (SELECT at, quality_rating, messaging_limit, throughput_mps, was_quality_rating, was_messaging_limit, was_throughput_mps
                 FROM phone_number_history WHERE phone_number_id = $1 AND application_id = $2 AND at >= $3 AND at < $4
                 ORDER BY at LIMIT $5) AS period
             ORDER BY at",
        )
        .bind(phone_number_id.as_str())
        .bind(app.as_str())
        .bind(from)
        .bind(to)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NumberChange {
                    at: r.try_get("at")?,
                    quality_rating: r.try_get("quality_rating")?,
                    messaging_limit: r.try_get("messaging_limit")?,
                    throughput_mps: r.try_get("throughput_mps")?,
                    was_quality_rating: r.try_get("was_quality_rating")?,
                    was_messaging_limit: r.try_get("was_messaging_limit")?,
                    was_throughput_mps: r.try_get("was_throughput_mps")?,
                })
            })
            .collect()
    }

    async fn disconnect_platform(
        &self,
        platform: &PlatformId,
        reason: &str,
        now: Millis,
    ) -> Result<()> {
        // The token column is NOT NULL: an encrypted empty string stands for "no token".
        let empty = self.cipher.encrypt(b"");
        let mut tx = self.tx().await?;
        sqlx::query(
            "UPDATE platforms SET status = 'disconnected', status_reason = $1, access_token = $2,
               connected_at = NULL, disconnected_at = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(reason)
        .bind(empty)
        .bind(now)
        .bind(now)
        .bind(platform.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM phone_numbers WHERE platform_id = $1")
            .bind(platform.as_str())
            .execute(&mut *tx)
            .await?;
        // A WhatsApp Business app number connected again later is a new onboarding at Meta,
        // with its own 24 h window and syncs (the imported messages stay).
        sqlx::query("DELETE FROM coexistence_numbers WHERE platform_id = $1")
            .bind(platform.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE onboarding_sessions SET access_token = NULL WHERE platform_id = $1")
            .bind(platform.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
