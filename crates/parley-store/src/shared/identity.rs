//! People, written once for both backends: roles per application, sessions, setup and invite
//! links, the sign-in throttle, TOTP secrets (encrypted here with the store's cipher).

use async_trait::async_trait;
use parley_domain::{AccountId, ApplicationId, Role, UserId};
use sqlx::Row;

use super::{Backend, DbRow, opt_text, parse_id, parse_opt_id, text};
use crate::identity::*;
use crate::{ApplicationRecord, Millis, Result, UserRecord, corrupt};

/// An application's open invites (`$1` the application, `$2` now): not used, not expired.
/// The list, its cap and the people cap count the same ones. A literal, for `concat!`.
macro_rules! open_invites {
    () => {
        "application_id = $1 AND kind = 'invite' AND used_at IS NULL AND expires_at > $2"
    };
}

fn role_of(row: &DbRow, col: &str) -> Result<Role> {
    let s: String = row.try_get(col)?;
    Role::parse(&s).map_err(|e| corrupt(col, e))
}

fn app_from_row(row: &DbRow) -> Result<ApplicationRecord> {
    Ok(ApplicationRecord {
        id: parse_id(row, "app_id", ApplicationId::parse)?,
        account_id: parse_id(row, "app_account_id", AccountId::parse)?,
        name: row.try_get("app_name")?,
        created_at: row.try_get("app_created_at")?,
    })
}

const APP_COLUMNS: &str = "a.id AS app_id, a.account_id AS app_account_id, a.name AS app_name, a.created_at AS app_created_at";

fn session_from_row(row: &DbRow) -> Result<SessionRecord> {
    let second: i64 = row.try_get("second_factor")?;
    Ok(SessionRecord {
        id: row.try_get("id")?,
        user_id: parse_id(row, "user_id", UserId::parse)?,
        application_id: parse_opt_id(row, "application_id", ApplicationId::parse)?,
        second_factor: second != 0,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
        user_agent: row.try_get("user_agent")?,
        address: row.try_get("address")?,
    })
}

fn invite_from_row(row: &DbRow) -> Result<InviteRecord> {
    let kind: String = row.try_get("kind")?;
    let role: Option<String> = row.try_get("role")?;
    Ok(InviteRecord {
        id: row.try_get("id")?,
        kind: match kind.as_str() {
            "setup" => LinkKind::Setup,
            "invite" => LinkKind::Invite,
            other => return Err(corrupt("kind", other)),
        },
        application_id: parse_opt_id(row, "application_id", ApplicationId::parse)?,
        email: row.try_get("email")?,
        role: role
            .map(|r| Role::parse(&r).map_err(|e| corrupt("role", e)))
            .transpose()?,
        invited_by: parse_opt_id(row, "invited_by", UserId::parse)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
    })
}

fn identity_user_from_row(row: &DbRow) -> Result<UserRecord> {
    let totp: Option<Vec<u8>> = row.try_get("totp_secret")?;
    Ok(UserRecord {
        id: parse_id(row, "id", UserId::parse)?,
        account_id: parse_id(row, "account_id", AccountId::parse)?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        totp_enabled: totp.is_some(),
    })
}

impl Backend {
    fn decrypt_text(&self, blob: Option<Vec<u8>>) -> Result<Option<String>> {
        blob.map(|b| {
            let plain = self.cipher.decrypt(&b)?;
            String::from_utf8(plain).map_err(|e| corrupt("totp secret", e))
        })
        .transpose()
    }
}

#[async_trait]
impl IdentityStore for Backend {
    async fn count_users(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.reader())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(identity_user_from_row).transpose()
    }

    async fn create_owner(&self, o: &NewOwner, setup_token_hash: Option<&str>) -> Result<bool> {
        let mut tx = self.tx().await?;
        if let Some(hash) = setup_token_hash {
            let used = sqlx::query(
                "UPDATE invites SET used_at = $2 WHERE token_hash = $1 AND kind = 'setup' AND used_at IS NULL AND expires_at > $2",
            )
            .bind(text(hash))
            .bind(o.now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(&mut *tx)
                .await?;
            if used != 1 || users != 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(o.account_id.as_str())
            .bind(text(&o.account_name))
            .bind(o.now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO applications (id, account_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(o.application_id.as_str())
        .bind(o.account_id.as_str())
        .bind(text(&o.application_name))
        .bind(o.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO users (id, account_id, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(o.user_id.as_str())
        .bind(o.account_id.as_str())
        .bind(text(&o.email))
        .bind(text(&o.password_hash))
        .bind(o.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO memberships (user_id, application_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(o.user_id.as_str())
        .bind(o.application_id.as_str())
        .bind(o.now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn account_applications(&self, account: &AccountId) -> Result<Vec<ApplicationRecord>> {
        let rows = sqlx::query(
            "SELECT a.id AS app_id, a.account_id AS app_account_id, a.name AS app_name, a.created_at AS app_created_at
             FROM applications a WHERE a.account_id = $1 ORDER BY a.created_at, a.id",
        )
        .bind(account.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(app_from_row).collect()
    }

    async fn account_applications_after(
        &self,
        account: &AccountId,
        after: Option<(Millis, &ApplicationId)>,
        limit: u32,
    ) -> Result<Vec<ApplicationRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS} FROM applications a WHERE a.account_id = $1
               AND ($2 IS NULL OR a.created_at > $3 OR (a.created_at = $4 AND a.id > $5))
             ORDER BY a.created_at, a.id LIMIT $6"
        )))
        .bind(account.as_str())
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id.as_str()))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(app_from_row).collect()
    }

    async fn memberships(
        &self,
        user: &UserId,
        after: Option<&ApplicationId>,
        limit: u32,
    ) -> Result<Vec<(ApplicationRecord, Role)>> {
        // Keyset on the membership's primary key (user, application).
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS}, m.role FROM memberships m JOIN applications a ON a.id = m.application_id
             WHERE m.user_id = $1 AND ($2 IS NULL OR m.application_id > $3)
             ORDER BY m.application_id LIMIT $4"
        )))
        .bind(user.as_str())
        .bind(after.map(ApplicationId::as_str))
        .bind(after.map(ApplicationId::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((app_from_row(r)?, role_of(r, "role")?)))
            .collect()
    }

    async fn membership(
        &self,
        user: &UserId,
        app: &ApplicationId,
    ) -> Result<Option<(ApplicationRecord, Role)>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APP_COLUMNS}, m.role FROM memberships m JOIN applications a ON a.id = m.application_id
             WHERE m.user_id = $1 AND m.application_id = $2"
        )))
        .bind(user.as_str())
        .bind(app.as_str())
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| Ok((app_from_row(&r)?, role_of(&r, "role")?)))
            .transpose()
    }

    async fn role(&self, user: &UserId, app: &ApplicationId) -> Result<Option<Role>> {
        let row =
            sqlx::query("SELECT role FROM memberships WHERE user_id = $1 AND application_id = $2")
                .bind(user.as_str())
                .bind(app.as_str())
                .fetch_optional(self.reader())
                .await?;
        row.map(|r| role_of(&r, "role")).transpose()
    }

    async fn members(
        &self,
        app: &ApplicationId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MemberRecord>> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, CASE WHEN u.totp_secret IS NULL THEN 0 ELSE 1 END AS totp, m.role, m.created_at
             FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.application_id = $1 AND ($2 IS NULL OR u.email > $3)
             ORDER BY u.email LIMIT $4",
        )
        .bind(app.as_str())
        .bind(after)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MemberRecord {
                    user_id: parse_id(r, "id", UserId::parse)?,
                    email: r.try_get("email")?,
                    role: role_of(r, "role")?,
                    totp_enabled: r.try_get::<i32, _>("totp")? != 0,
                    since: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn create_application_with_members(
        &self,
        app: &ApplicationId,
        account: &AccountId,
        name: &str,
        members: &[(UserId, Role)],
        cap: u64,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.tx().await?;
        if !super::caps::below_cap(
            &mut tx,
            "applications",
            account.as_str(),
            cap,
            "SELECT COUNT(*) FROM applications WHERE account_id = $1",
            None,
        )
        .await?
        {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO applications (id, account_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(app.as_str())
        .bind(account.as_str())
        .bind(text(name))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (user, role) in members {
            sqlx::query(
                "INSERT INTO memberships (user_id, application_id, role, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(user.as_str())
            .bind(app.as_str())
            .bind(role.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn account_owners(&self, account: &AccountId) -> Result<Vec<UserId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT m.user_id FROM memberships m
             JOIN applications a ON a.id = m.application_id
             WHERE a.account_id = $1 AND m.role = 'owner' ORDER BY m.user_id",
        )
        .bind(account.as_str())
        .fetch_all(self.reader())
        .await?;
        ids.iter()
            .map(|id| UserId::parse(id).map_err(|e| corrupt("memberships.user_id", e)))
            .collect()
    }

    async fn set_role(
        &self,
        user: &UserId,
        app: &ApplicationId,
        role: Role,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO memberships (user_id, application_id, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, application_id) DO UPDATE SET role = excluded.role",
        )
        .bind(user.as_str())
        .bind(app.as_str())
        .bind(role.as_str())
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn remove_role(&self, user: &UserId, app: &ApplicationId) -> Result<bool> {
        let n = sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND application_id = $2")
            .bind(user.as_str())
            .bind(app.as_str())
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn set_password(&self, user: &UserId, hash: &str, keep: Option<&str>) -> Result<()> {
        let mut tx = self.tx().await?;
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user.as_str())
            .bind(text(hash))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
            .bind(user.as_str())
            .bind(text(keep.unwrap_or("")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn totp(&self, user: &UserId) -> Result<(Option<String>, Option<String>)> {
        let row = sqlx::query("SELECT totp_secret, totp_pending FROM users WHERE id = $1")
            .bind(user.as_str())
            .fetch_optional(self.reader())
            .await?;
        let Some(row) = row else {
            return Ok((None, None));
        };
        Ok((
            self.decrypt_text(row.try_get("totp_secret")?)?,
            self.decrypt_text(row.try_get("totp_pending")?)?,
        ))
    }

    async fn set_totp_pending(&self, user: &UserId, secret: Option<&str>) -> Result<()> {
        let blob = secret.map(|s| self.cipher.encrypt(s.as_bytes()));
        sqlx::query("UPDATE users SET totp_pending = $2 WHERE id = $1")
            .bind(user.as_str())
            .bind(blob)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn confirm_totp(&self, user: &UserId) -> Result<()> {
        sqlx::query(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = NULL WHERE id = $1 AND totp_pending IS NOT NULL",
        )
        .bind(user.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn remove_totp(&self, user: &UserId) -> Result<()> {
        sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL WHERE id = $1",
        )
        .bind(user.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn accept_totp_step(&self, user: &UserId, step: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(user.as_str())
        .bind(step)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_session(&self, s: &NewSession) -> Result<()> {
        let r = &s.record;
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_id, application_id, second_factor, created_at, last_seen_at, expires_at, user_agent, address)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(text(&r.id))
        .bind(text(&s.token_hash))
        .bind(r.user_id.as_str())
        .bind(r.application_id.as_ref().map(|a| a.as_str()))
        .bind(i64::from(r.second_factor))
        .bind(r.created_at)
        .bind(r.last_seen_at)
        .bind(r.expires_at)
        .bind(opt_text(r.user_agent.as_deref()))
        .bind(opt_text(r.address.as_deref()))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<SessionView>> {
        let row = sqlx::query(
            "SELECT s.*, u.email, u.account_id, m.role FROM sessions s
             JOIN users u ON u.id = s.user_id
             LEFT JOIN memberships m ON m.user_id = s.user_id AND m.application_id = s.application_id
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(text(token_hash))
        .bind(now)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let role: Option<String> = row.try_get("role")?;
        Ok(Some(SessionView {
            session: session_from_row(&row)?,
            email: row.try_get("email")?,
            account_id: parse_id(&row, "account_id", AccountId::parse)?,
            role: role
                .map(|r| Role::parse(&r).map_err(|e| corrupt("role", e)))
                .transpose()?,
        }))
    }

    async fn touch_session(&self, id: &str, now: Millis) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $3")
            .bind(text(id))
            .bind(now)
            .bind(now - 60_000)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn set_session_application(&self, id: &str, app: &ApplicationId) -> Result<()> {
        sqlx::query("UPDATE sessions SET application_id = $2 WHERE id = $1")
            .bind(text(id))
            .bind(app.as_str())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn complete_second_factor(
        &self,
        id: &str,
        new_token_hash: &str,
        expires_at: Millis,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE sessions SET token_hash = $2, second_factor = 0, expires_at = $3 WHERE id = $1 AND second_factor = 1",
        )
        .bind(text(id))
        .bind(text(new_token_hash))
        .bind(expires_at)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn delete_session_by_token_hash(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(text(token_hash))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn end_session(&self, user: &UserId, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id = $2")
            .bind(user.as_str())
            .bind(text(id))
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn end_user_sessions(&self, user: &UserId) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.as_str())
            .execute(self.writer())
            .await?
            .rows_affected())
    }

    async fn user_sessions(&self, user: &UserId, now: Millis) -> Result<Vec<SessionRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM sessions WHERE user_id = $1 AND expires_at > $2 AND second_factor = 0
             ORDER BY last_seen_at DESC, id LIMIT 100",
        )
        .bind(user.as_str())
        .bind(now)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn create_link(&self, l: &InviteRecord, token_hash: &str) -> Result<()> {
        insert_link(self.writer(), l, token_hash).await
    }

    async fn create_invite(
        &self,
        l: &InviteRecord,
        token_hash: &str,
        caps: InviteCaps,
        now: Millis,
    ) -> Result<Option<InviteRefused>> {
        let Some(app) = &l.application_id else {
            return Err(corrupt(
                "invites.application_id",
                "an invite names its application",
            ));
        };
        let mut tx = self.tx().await?;
        if !super::caps::below_cap(
            &mut tx,
            "invites",
            app.as_str(),
            caps.open,
            concat!("SELECT COUNT(*) FROM invites WHERE ", open_invites!()),
            Some(now),
        )
        .await?
        {
            return Ok(Some(InviteRefused::OpenInvites));
        }
        if !super::caps::below_cap(
            &mut tx,
            "people",
            app.as_str(),
            caps.people,
            concat!(
                "SELECT (SELECT COUNT(*) FROM memberships WHERE application_id = $1)
                   + (SELECT COUNT(*) FROM invites WHERE ",
                open_invites!(),
                ")"
            ),
            Some(now),
        )
        .await?
        {
            return Ok(Some(InviteRefused::People));
        }
        insert_link(&mut *tx, l, token_hash).await?;
        tx.commit().await?;
        Ok(None)
    }

    async fn delete_unused_setup_links(&self) -> Result<()> {
        sqlx::query("DELETE FROM invites WHERE kind = 'setup' AND used_at IS NULL")
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn link_by_token_hash(&self, token_hash: &str) -> Result<Option<InviteRecord>> {
        let row = sqlx::query("SELECT * FROM invites WHERE token_hash = $1")
            .bind(text(token_hash))
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(invite_from_row).transpose()
    }

    async fn accept_invite(
        &self,
        token_hash: &str,
        invitee: &Invitee,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.tx().await?;
        let row = sqlx::query(
            "UPDATE invites SET used_at = $2 WHERE token_hash = $1 AND kind = 'invite' AND used_at IS NULL AND expires_at > $2
             RETURNING application_id, role",
        )
        .bind(text(token_hash))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let app = parse_id(&row, "application_id", ApplicationId::parse)?;
        let role = role_of(&row, "role")?;
        let user = match invitee {
            Invitee::New {
                user_id,
                account_id,
                email,
                password_hash,
            } => {
                sqlx::query(
                    "INSERT INTO users (id, account_id, email, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(user_id.as_str())
                .bind(account_id.as_str())
                .bind(text(email))
                .bind(text(password_hash))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                user_id
            }
            Invitee::Existing(user_id) => user_id,
        };
        sqlx::query(
            "INSERT INTO memberships (user_id, application_id, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, application_id) DO UPDATE SET role = excluded.role",
        )
        .bind(user.as_str())
        .bind(app.as_str())
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn pending_invites(&self, app: &ApplicationId, now: Millis) -> Result<Vec<InviteRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT * FROM invites WHERE ",
            open_invites!(),
            " ORDER BY created_at DESC, id LIMIT 200"
        ))
        .bind(app.as_str())
        .bind(now)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(invite_from_row).collect()
    }

    async fn revoke_invite(&self, app: &ApplicationId, id: &str) -> Result<bool> {
        let n = sqlx::query(
            "DELETE FROM invites WHERE application_id = $1 AND id = $2 AND kind = 'invite' AND used_at IS NULL",
        )
        .bind(app.as_str())
        .bind(text(id))
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn throttle(&self, key: &str) -> Result<Option<ThrottleRecord>> {
        let row =
            sqlx::query("SELECT failures, next_at, updated_at FROM login_throttle WHERE key = $1")
                .bind(text(key))
                .fetch_optional(self.writer())
                .await?;
        row.map(|r| {
            Ok(ThrottleRecord {
                failures: r.try_get("failures")?,
                next_at: r.try_get("next_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    async fn swap_throttle(
        &self,
        key: &str,
        old: Option<&ThrottleRecord>,
        new: &ThrottleRecord,
    ) -> Result<bool> {
        let n = match old {
            None => sqlx::query(
                "INSERT INTO login_throttle (key, failures, next_at, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(text(key))
            .bind(new.failures)
            .bind(new.next_at)
            .bind(new.updated_at)
            .execute(self.writer())
            .await?
            .rows_affected(),
            Some(old) => sqlx::query(
                "UPDATE login_throttle SET failures = $2, next_at = $3, updated_at = $4
                 WHERE key = $1 AND failures = $5 AND next_at = $6 AND updated_at = $7",
            )
            .bind(text(key))
            .bind(new.failures)
            .bind(new.next_at)
            .bind(new.updated_at)
            .bind(old.failures)
            .bind(old.next_at)
            .bind(old.updated_at)
            .execute(self.writer())
            .await?
            .rows_affected(),
        };
        Ok(n == 1)
    }

    async fn clear_throttle(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_throttle WHERE key = $1")
            .bind(text(key))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn prune_identity(&self, now: Millis, idle_before: Millis) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.writer())
            .await?;
        sqlx::query("DELETE FROM invites WHERE used_at IS NULL AND expires_at <= $1")
            .bind(now)
            .execute(self.writer())
            .await?;
        sqlx::query("DELETE FROM login_throttle WHERE updated_at < $1 AND next_at <= $2")
            .bind(idle_before)
            .bind(now)
            .execute(self.writer())
            .await?;
        Ok(())
    }
}

/// Inserts a setup or invite link (`Store::create_link`, `Store::create_invite`).
async fn insert_link<'c>(
    db: impl sqlx::Executor<'c, Database = <DbRow as Row>::Database>,
    l: &InviteRecord,
    token_hash: &str,
) -> Result<()> {
    sqlx::query(
            "INSERT INTO invites (id, token_hash, kind, application_id, email, role, invited_by, created_at, expires_at, used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(text(&l.id))
        .bind(text(token_hash))
        .bind(l.kind.as_str())
        .bind(l.application_id.as_ref().map(|a| a.as_str()))
        .bind(opt_text(l.email.as_deref()))
        .bind(l.role.map(Role::as_str))
        .bind(l.invited_by.as_ref().map(|u| u.as_str()))
        .bind(l.created_at)
        .bind(l.expires_at)
        .bind(l.used_at)
        .execute(db)
        .await?;
    Ok(())
}
