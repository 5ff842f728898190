//! People (issue #12): the first owner of a fresh database (setup link or CLI), users' roles
//! per application, invites, passwords, the optional TOTP second factor, server-side console
//! sessions, and the sign-in throttle. The rules are written out in `docs/SECURITY.md`.
//!
//! Every Argon2 hash and check runs on [`HashingPool`] (a few at a time). Tokens in cookies
//! and links are 256-bit random strings; the store keeps only their SHA-256.

use parley_domain::{AccountId, ApplicationId, Role, UserId};
use parley_store::identity::{
    InviteCaps, InviteRecord, InviteRefused, Invitee, LinkKind, MemberRecord, NewOwner, NewSession,
    SessionRecord, SessionView, ThrottleRecord, new_invite_id, new_session_id,
};
use parley_store::{ApplicationRecord, UserRecord};

use crate::auth::{HashingPool, generate_password, hash_api_token, hash_password, verify_password};
use crate::{Engine, EngineError, ErrorKind};

/// A console session lasts 12 hours from sign-in.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Between a right password and the TOTP code: 5 minutes.
pub const SECOND_FACTOR_TTL_MS: i64 = 5 * 60 * 1000;
/// A setup link printed at start is valid for 24 hours (a new one is printed at each start
/// while no user exists).
pub const SETUP_TTL_MS: i64 = 24 * 3600 * 1000;
/// An invite link is valid for 7 days.
pub const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Invites an application has open at most (not yet used nor expired): the users page lists
/// them all, and each is a live link. One more is 409 `invite_limit_reached`; they expire
/// after [`INVITE_TTL_MS`] or are withdrawn from the list.
pub const MAX_PENDING_INVITES: usize = 100;

/// Users and open invites an application has at most together (one more invite is 409
/// `member_limit_reached`): the users page lists them all.
pub const MAX_PEOPLE: usize = 1_000;

/// Applications an account holds at most (one more is 409 `application_limit_reached`).
/// Each is a business's own setup; Twilio's default cap on subaccounts is the same 1,000.
pub const MAX_APPLICATIONS: usize = 1_000;

/// Passwords: at least 10 characters, at most 1,024 bytes (Argon2 reads all of it).
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// How sign-in attempts are throttled per key: the first `free` attempts within `window_ms`
/// run at once; after that each waits twice as long as the one before (from `base_ms`, up to
/// `max_ms`). The count is forgotten after `window_ms` without an attempt, and a successful
/// sign-in clears the email's count (and takes its own attempt off the address's).
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub free: i64,
    pub base_ms: i64,
    pub max_ms: i64,
    pub window_ms: i64,
}

/// Per email (known or not): 5 attempts, then 1 s, 2 s, 4 s … up to 15 minutes.
pub const EMAIL_THROTTLE: ThrottlePolicy = ThrottlePolicy {
    free: 5,
    base_ms: 1_000,
    max_ms: 15 * 60 * 1000,
    window_ms: 15 * 60 * 1000,
};
/// Per client address: 20 attempts, then the same backoff.
pub const ADDRESS_THROTTLE: ThrottlePolicy = ThrottlePolicy {
    free: 20,
    base_ms: 1_000,
    max_ms: 15 * 60 * 1000,
    window_ms: 15 * 60 * 1000,
};

impl ThrottlePolicy {
    /// How long after its `attempts`-th attempt the key must wait.
    pub fn delay_after(&self, attempts: i64) -> i64 {
        if attempts < self.free {
            return 0;
        }
        let doublings = u32::try_from((attempts - self.free).min(30)).unwrap_or(30);
        self.base_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_ms)
    }
}

/// Who acts in the console: a signed-in user in their current application.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: UserId,
    pub account: AccountId,
    pub app: ApplicationId,
    pub role: Role,
}

/// Where a sign-in comes from (for the throttle and the user's list of sessions).
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// A session just issued: the cookie's token (shown once) and the record.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub token: String,
    pub session: SessionRecord,
}

/// The answer to a sign-in.
#[derive(Debug)]
pub enum SignIn {
    Done(IssuedSession),
    /// The password was right; the TOTP code is due (the token is a `second_factor` session).
    SecondFactor(IssuedSession),
    /// Wrong or unknown credentials: the same answer for both.
    Refused,
    /// Too many attempts: try again in this many milliseconds (no password was checked).
    Throttled {
        retry_after_ms: i64,
    },
}

/// What a visitor of an invite link is asked for.
#[derive(Debug, Clone)]
pub enum InviteView {
    /// A new user: choose a password.
    NewUser {
        email: String,
        role: Role,
        application: String,
    },
    /// The email already has a login in this account: accepting adds the role.
    ExistingUser {
        email: String,
        role: Role,
        application: String,
    },
}

/// An invite just created, with its link's token (shown once).
#[derive(Debug, Clone)]
pub struct NewInvite {
    pub invite: InviteRecord,
    pub token: String,
}

/// TOTP enrolment: the secret to type in (base32) and the `otpauth://` URI for an app.
#[derive(Debug, Clone)]
pub struct TotpEnrolment {
    pub secret: String,
    pub uri: String,
}

/// A random 256-bit token, URL-safe (43 characters).
fn random_token() -> String {
    use base64_url::encode;
    let bytes: [u8; 32] = rand::random();
    encode(&bytes)
}

mod base64_url {
    /// Unpadded base64url without a dependency: 32 bytes → 43 characters.
    pub fn encode(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}

/// What the store keeps of a session, setup or invite token.
pub fn hash_token(token: &str) -> String {
    hash_api_token(token)
}

/// A normalised email, or the error to show.
pub fn parse_email(raw: &str) -> Result<String, EngineError> {
    let email = raw.trim().to_lowercase();
    let ok = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(EngineError::unprocessable(
            "invalid_email",
            "Enter an email address like ana@example.com.",
        )
        .field("email"))
    }
}

fn check_password_rules(password: &str) -> Result<(), EngineError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(EngineError::unprocessable(
            "weak_password",
            format!("Choose a password of at least {MIN_PASSWORD_CHARS} characters."),
        )
        .field("password"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(EngineError::unprocessable(
            "password_too_long",
            format!("A password may have at most {MAX_PASSWORD_BYTES} bytes."),
        )
        .field("password"));
    }
    Ok(())
}

fn check_name(name: &str, field: &str) -> Result<String, EngineError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(EngineError::unprocessable(
            "invalid_name",
            "Give a name of 1 to 100 characters.",
        )
        .field(field));
    }
    Ok(name.to_owned())
}

fn forbidden(message: impl Into<String>) -> EngineError {
    EngineError::new(ErrorKind::Forbidden, "insufficient_role", message)
}

async fn hash_in_pool(password: String) -> Result<String, EngineError> {
    HashingPool::global()
        .run(move || hash_password(&password))
        .await
        .ok_or_else(|| EngineError::internal("password hashing panicked"))?
        .map_err(EngineError::internal)
}

async fn verify_in_pool(password: String, hash: String) -> bool {
    HashingPool::global()
        .run(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

/// An Argon2id hash of a random string, made once: what an unknown email is checked against,
/// so it costs what a wrong password costs.
async fn dummy_hash() -> String {
    static HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    HASH.get_or_init(|| async { hash_in_pool(generate_password()).await.unwrap_or_default() })
        .await
        .clone()
}

fn totp_for(secret_b32: &str, email: &str) -> Option<totp_rs::Totp> {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).ok()?;
    totp_rs::Builder::new()
        .with_secret(secret)
        .with_issuer(Some("Parley"))
        .with_account_name(email.replace(':', ""))
        .build()
        .ok()
}

/// The TOTP code of a base32 secret at a time (unix ms): what an authenticator app shows.
pub fn totp_code(secret_b32: &str, at_ms: i64) -> Option<String> {
    let t = totp_for(secret_b32, "x")?;
    Some(t.generate(u64::try_from(at_ms / 1000).ok()?).to_string())
}

fn totp_ok(secret_b32: &str, code: &str, at_ms: i64) -> bool {
    totp_step(secret_b32, code, at_ms).is_some()
}

/// The time step a right code belongs to (within one step of skew); `None` for a wrong code.
fn totp_step(secret_b32: &str, code: &str, at_ms: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let t = totp_for(secret_b32, "x")?;
    let step = t.check(&code, u64::try_from(at_ms / 1000).ok()?)?;
    i64::try_from(step).ok()
}

fn bad_code() -> EngineError {
    EngineError::unprocessable(
        "wrong_code",
        "That code is not right: type the 6 digits your authenticator app shows now.",
    )
    .field("code")
}

impl Engine {
    // --- first run ------------------------------------------------------------------------

    /// Whether no user exists yet (a fresh database needs its setup link).
    pub async fn needs_setup(&self) -> Result<bool, EngineError> {
        Ok(self.store.count_users().await? == 0)
    }

    /// On a database without users: a fresh one-time setup token (the link is
    /// `/setup/<token>`), valid for [`SETUP_TTL_MS`] or until used; earlier unused links stop
    /// working. `None` once a user exists.
    pub async fn issue_setup_link(&self) -> Result<Option<String>, EngineError> {
        if !self.needs_setup().await? {
            return Ok(None);
        }
        self.store.delete_unused_setup_links().await?;
        self.prune_identity().await;
        let token = random_token();
        let now = self.now();
        self.store
            .create_link(
                &InviteRecord {
                    id: new_invite_id(),
                    kind: LinkKind::Setup,
                    application_id: None,
                    email: None,
                    role: None,
                    invited_by: None,
                    created_at: now,
                    expires_at: now + SETUP_TTL_MS,
                    used_at: None,
                },
                &hash_token(&token),
            )
            .await?;
        Ok(Some(token))
    }

    /// Drops expired sessions and invites and idle throttle rows (at start and now and then
    /// at sign-in, so the tables stay the size of what is live).
    pub async fn prune_identity(&self) {
        let now = self.now();
        let idle = now - EMAIL_THROTTLE.window_ms.max(ADDRESS_THROTTLE.window_ms);
        if let Err(e) = self.store.prune_identity(now, idle).await {
            tracing::warn!(error = %e, "pruning sessions, invites and the sign-in throttle failed");
        }
    }

    /// Whether a setup token can still be used.
    pub async fn setup_link_valid(&self, token: &str) -> bool {
        let link = self.store.link_by_token_hash(&hash_token(token)).await;
        matches!(link, Ok(Some(l)) if l.kind == LinkKind::Setup && l.used_at.is_none() && l.expires_at > self.now())
            && self.needs_setup().await.unwrap_or(false)
    }

    /// The setup page's form: creates the account, its first application and its owner, uses
    /// the link, and signs the owner in.
    pub async fn complete_setup(
        &self,
        token: &str,
        email: &str,
        password: String,
        account_name: &str,
        application_name: &str,
        client: &Client,
    ) -> Result<IssuedSession, EngineError> {
        // A link that cannot work costs no password hash.
        if !self.setup_link_valid(token).await {
            return Err(setup_used());
        }
        let email = parse_email(email)?;
        check_password_rules(&password)?;
        let account_name = check_name(account_name, "account")?;
        let application_name = check_name(application_name, "application")?;
        let hash = hash_in_pool(password).await?;
        let owner = NewOwner {
            account_id: AccountId::new(),
            account_name,
            application_id: ApplicationId::new(),
            application_name,
            user_id: UserId::new(),
            email,
            password_hash: hash,
            now: self.now(),
        };
        if !self
            .store
            .create_owner(&owner, Some(&hash_token(token)))
            .await?
        {
            return Err(setup_used());
        }
        tracing::info!(user = %owner.user_id, "first owner created through the setup link");
        self.open_session(&owner.user_id, Some(owner.application_id), false, client)
            .await
    }

    /// `parley admin create-owner`: a new account with its first application and its owner,
    /// whose generated password comes back (shown once).
    pub async fn create_owner(
        &self,
        email: &str,
        account_name: &str,
        application_name: &str,
    ) -> Result<(UserId, ApplicationId, String), EngineError> {
        let email = parse_email(email)?;
        if self.store.user_by_email(&email).await?.is_some() {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "email_taken",
                format!("{email} already has a login; reset its password with `parley admin reset-password`."),
            )
            .field("email"));
        }
        let password = generate_password();
        let owner = NewOwner {
            account_id: AccountId::new(),
            account_name: check_name(account_name, "account")?,
            application_id: ApplicationId::new(),
            application_name: check_name(application_name, "application")?,
            user_id: UserId::new(),
            email,
            password_hash: hash_in_pool(password.clone()).await?,
            now: self.now(),
        };
        self.store.create_owner(&owner, None).await?;
        Ok((owner.user_id, owner.application_id, password))
    }

    /// `parley admin reset-password`: a new generated password (returned, shown once); all the
    /// user's sessions end and their sign-in throttle is cleared.
    pub async fn reset_password(&self, email: &str) -> Result<String, EngineError> {
        let email = parse_email(email)?;
        let user = self.store.user_by_email(&email).await?.ok_or_else(|| {
            EngineError::new(
                ErrorKind::NotFound,
                "user_not_found",
                format!("No user has the email {email}."),
            )
        })?;
        let password = generate_password();
        let hash = hash_in_pool(password.clone()).await?;
        self.store.set_password(&user.id, &hash, None).await?;
        self.store.clear_throttle(&format!("email:{email}")).await?;
        Ok(password)
    }

    // --- sign-in and sessions -------------------------------------------------------------

    /// Takes an attempt under `key`: `Err(retry_after_ms)` while the key must wait.
    async fn take_attempt(&self, key: &str, policy: ThrottlePolicy) -> Result<(), i64> {
        for _ in 0..8 {
            let now = self.now();
            let Ok(row) = self.store.throttle(key).await else {
                return Err(1_000);
            };
            let (failures, next_at) = match row {
                Some(r) if now - r.updated_at < policy.window_ms => (r.failures, r.next_at),
                _ => (0, 0),
            };
            if now < next_at {
                return Err(next_at - now);
            }
            let attempts = failures + 1;
            let new = ThrottleRecord {
                failures: attempts,
                next_at: now + policy.delay_after(attempts),
                updated_at: now,
            };
            match self.store.swap_throttle(key, row.as_ref(), &new).await {
                Ok(true) => return Ok(()),
                Ok(false) => continue,
                Err(_) => return Err(1_000),
            }
        }
        Err(1_000)
    }

    /// Gives back an attempt that succeeded: the email's count is cleared, the address's
    /// count loses this attempt.
    async fn attempt_succeeded(&self, email_key: &str, address_key: Option<&str>) {
        let _ = self.store.clear_throttle(email_key).await;
        if let Some(key) = address_key {
            for _ in 0..8 {
                let Ok(Some(row)) = self.store.throttle(key).await else {
                    return;
                };
                let new = ThrottleRecord {
                    failures: (row.failures - 1).max(0),
                    ..row
                };
                if !matches!(
                    self.store.swap_throttle(key, Some(&row), &new).await,
                    Ok(false)
                ) {
                    return;
                }
            }
        }
    }

    /// A console sign-in. Throttled per email (known or not) and per client address before
    /// any password is checked; an unknown email is checked against a dummy hash, so it gets
    /// the same answer in about the same time as a wrong password.
    pub async fn sign_in(&self, email: &str, password: String, client: &Client) -> SignIn {
        if rand::random::<u8>() < 4 {
            self.prune_identity().await;
        }
        let email = email.trim().to_lowercase();
        // Keys are bounded: an email longer than any real one is throttled as its prefix.
        let email_key = format!("email:{}", email.chars().take(254).collect::<String>());
        let address_key = client.address.as_ref().map(|a| format!("addr:{a}"));
        let mut wait = 0;
        if let Some(key) = &address_key
            && let Err(ms) = self.take_attempt(key, ADDRESS_THROTTLE).await
        {
            wait = ms;
        }
        if wait == 0
            && let Err(ms) = self.take_attempt(&email_key, EMAIL_THROTTLE).await
        {
            wait = ms;
        }
        if wait > 0 {
            return SignIn::Throttled {
                retry_after_ms: wait,
            };
        }
        let password = if password.len() > MAX_PASSWORD_BYTES {
            String::new()
        } else {
            password
        };
        let user = self.store.user_by_email(&email).await.ok().flatten();
        let hash = match &user {
            Some(u) => u.password_hash.clone(),
            None => dummy_hash().await,
        };
        let ok = verify_in_pool(password, hash).await;
        let Some(user) = user.filter(|_| ok) else {
            return SignIn::Refused;
        };
        self.attempt_succeeded(&email_key, address_key.as_deref())
            .await;
        let app = self
            .store
            .memberships(&user.id, None, 1)
            .await
            .ok()
            .and_then(|m| m.into_iter().next().map(|(a, _)| a.id));
        match self
            .open_session(&user.id, app, user.totp_enabled, client)
            .await
        {
            Ok(s) if user.totp_enabled => SignIn::SecondFactor(s),
            Ok(s) => SignIn::Done(s),
            Err(_) => SignIn::Refused,
        }
    }

    async fn open_session(
        &self,
        user: &UserId,
        app: Option<ApplicationId>,
        second_factor: bool,
        client: &Client,
    ) -> Result<IssuedSession, EngineError> {
        let now = self.now();
        let token = random_token();
        let trim = |s: &Option<String>| s.as_ref().map(|s| s.chars().take(200).collect());
        let session = SessionRecord {
            id: new_session_id(),
            user_id: user.clone(),
            application_id: app,
            second_factor,
            created_at: now,
            last_seen_at: now,
            expires_at: now
                + if second_factor {
                    SECOND_FACTOR_TTL_MS
                } else {
                    SESSION_TTL_MS
                },
            user_agent: trim(&client.user_agent),
            address: trim(&client.address),
        };
        self.store
            .create_session(&NewSession {
                record: session.clone(),
                token_hash: hash_token(&token),
            })
            .await?;
        Ok(IssuedSession { token, session })
    }

    /// The TOTP code after a right password: the pending session becomes a full one with a
    /// new token. Wrong codes count against the email's throttle.
    pub async fn complete_second_factor(
        &self,
        pending_token: &str,
        code: &str,
    ) -> Result<IssuedSession, EngineError> {
        let expired = || {
            EngineError::new(
                ErrorKind::NotFound,
                "sign_in_again",
                "This sign-in has expired; sign in again.",
            )
        };
        let view = self
            .store
            .session_by_token_hash(&hash_token(pending_token), self.now())
            .await?
            .filter(|v| v.session.second_factor)
            .ok_or_else(expired)?;
        let email_key = format!("email:{}", view.email);
        if let Err(ms) = self.take_attempt(&email_key, EMAIL_THROTTLE).await {
            let secs = (ms + 999) / 1000;
            let mut e = EngineError::new(
                ErrorKind::TooManyRequests,
                "too_many_attempts",
                format!("Too many attempts; try again in {secs} seconds."),
            );
            e.retry_after_secs = u64::try_from(secs).ok();
            return Err(e);
        }
        let (secret, _) = self.store.totp(&view.session.user_id).await?;
        let secret = secret.ok_or_else(expired)?;
        // A code is accepted once: its step must be newer than the last accepted one
        // (RFC 6238 §5.2); a replay gets the same answer as a wrong code.
        let Some(step) = totp_step(&secret, code, self.now()) else {
            return Err(bad_code());
        };
        if !self
            .store
            .accept_totp_step(&view.session.user_id, step)
            .await?
        {
            return Err(bad_code());
        }
        let _ = self.store.clear_throttle(&email_key).await;
        let token = random_token();
        let expires = self.now() + SESSION_TTL_MS;
        if !self
            .store
            .complete_second_factor(&view.session.id, &hash_token(&token), expires)
            .await?
        {
            return Err(expired());
        }
        let mut session = view.session;
        session.second_factor = false;
        session.expires_at = expires;
        Ok(IssuedSession { token, session })
    }

    /// The live session behind a cookie's token (a `second_factor` one included: callers
    /// check). Marks it used.
    pub async fn session(&self, token: &str) -> Option<SessionView> {
        let now = self.now();
        let view = self
            .store
            .session_by_token_hash(&hash_token(token), now)
            .await
            .ok()
            .flatten()?;
        if now - view.session.last_seen_at > 60_000 {
            let _ = self.store.touch_session(&view.session.id, now).await;
        }
        Some(view)
    }

    /// Logout: the session ends on the server, whichever node it was issued by.
    pub async fn end_session_by_token(&self, token: &str) -> Result<(), EngineError> {
        Ok(self
            .store
            .delete_session_by_token_hash(&hash_token(token))
            .await?)
    }

    pub async fn user_sessions(&self, user: &UserId) -> Result<Vec<SessionRecord>, EngineError> {
        Ok(self.store.user_sessions(user, self.now()).await?)
    }

    /// Ends one of the user's own sessions.
    pub async fn end_user_session(&self, user: &UserId, id: &str) -> Result<(), EngineError> {
        if self.store.end_session(user, id).await? {
            Ok(())
        } else {
            Err(EngineError::new(
                ErrorKind::NotFound,
                "session_not_found",
                "You have no session with this id (it may have ended already).",
            ))
        }
    }

    /// A page of the applications a user has a role in, with the role, oldest first (by id):
    /// those after `after`, at most `limit`.
    pub async fn user_applications(
        &self,
        user: &UserId,
        after: Option<&ApplicationId>,
        limit: u32,
    ) -> Result<Vec<(ApplicationRecord, Role)>, EngineError> {
        Ok(self.store.memberships(user, after, limit).await?)
    }

    /// The application `app` with the user's role there; `None` when they have none.
    pub async fn user_application(
        &self,
        user: &UserId,
        app: &ApplicationId,
    ) -> Result<Option<(ApplicationRecord, Role)>, EngineError> {
        Ok(self.store.membership(user, app).await?)
    }

    /// Makes `app` the session's application, if the user has a role there.
    pub async fn switch_application(
        &self,
        session_id: &str,
        user: &UserId,
        app: &ApplicationId,
    ) -> Result<Role, EngineError> {
        let role = self.store.role(user, app).await?.ok_or_else(|| {
            EngineError::new(
                ErrorKind::NotFound,
                "application_not_found",
                "You have no role in this application.",
            )
        })?;
        self.store.set_session_application(session_id, app).await?;
        Ok(role)
    }

    pub async fn user(&self, user: &UserId) -> Result<Option<UserRecord>, EngineError> {
        Ok(self.store.user(user).await?)
    }

    // --- applications and users -----------------------------------------------------------

    /// A new application in the actor's account (admins and owners). Every owner of one of
    /// the account's applications owns the new one; an admin who creates it is its admin.
    pub async fn create_application(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<ApplicationRecord, EngineError> {
        if !actor.role.allows(Role::Admin) {
            return Err(forbidden("Only admins and owners create applications."));
        }
        self.create_application_in(
            &actor.account,
            name,
            Some((actor.user.clone(), actor.role.min(Role::Admin))),
        )
        .await
    }

    /// Creates an application in `account`: every owner of one of its applications owns the
    /// new one; `creator` (if not an owner) gets the role given.
    async fn create_application_in(
        &self,
        account: &AccountId,
        name: &str,
        creator: Option<(UserId, Role)>,
    ) -> Result<ApplicationRecord, EngineError> {
        let name = check_name(name, "name")?;
        let mut members: Vec<(UserId, Role)> = self
            .store
            .account_owners(account)
            .await?
            .into_iter()
            .map(|u| (u, Role::Owner))
            .collect();
        if let Some((user, role)) = creator
            && !members.iter().any(|(u, _)| u == &user)
        {
            members.push((user, role));
        }
        let id = ApplicationId::new();
        let now = self.now();
        if !self
            .store
            .create_application_with_members(
                &id,
                account,
                &name,
                &members,
                MAX_APPLICATIONS as u64,
                now,
            )
            .await?
        {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "application_limit_reached",
                format!(
                    "An account has at most {MAX_APPLICATIONS} applications; this one has them all already."
                ),
            ));
        }
        Ok(ApplicationRecord {
            id,
            account_id: account.clone(),
            name,
            created_at: now,
        })
    }

    /// A page of the applications of the account `app` belongs to, oldest first, after the
    /// application `after` (its id: the API's cursor), at most `limit`. A cursor naming no
    /// application of that account is 400 `invalid_cursor`.
    pub async fn sibling_applications_page(
        &self,
        app: &ApplicationId,
        after: Option<&ApplicationId>,
        limit: u32,
    ) -> Result<Vec<ApplicationRecord>, EngineError> {
        let account = self.account_of(app).await?;
        let after_key = match after {
            None => None,
            Some(id) => {
                let cursor = self
                    .store
                    .application(id)
                    .await?
                    .filter(|a| a.account_id == account)
                    .ok_or_else(|| {
                        EngineError::bad_request(
                            "invalid_cursor",
                            "`after` names no application of this account; start again without it",
                        )
                        .field("after")
                    })?;
                Some((cursor.created_at, cursor.id))
            }
        };
        Ok(self
            .store
            .account_applications_after(
                &account,
                after_key.as_ref().map(|(at, id)| (*at, id)),
                limit,
            )
            .await?)
    }

    /// The account `app` belongs to: one lookup by the application's primary key.
    async fn account_of(&self, app: &ApplicationId) -> Result<AccountId, EngineError> {
        self.store
            .application(app)
            .await?
            .map(|a| a.account_id)
            .ok_or_else(|| {
                EngineError::new(
                    ErrorKind::NotFound,
                    "application_not_found",
                    "No such application.",
                )
            })
    }

    /// A new application in the account of `app` (through the API): the account's owners own
    /// it.
    pub async fn create_sibling_application(
        &self,
        app: &ApplicationId,
        name: &str,
    ) -> Result<ApplicationRecord, EngineError> {
        let account = self.account_of(app).await?;
        self.create_application_in(&account, name, None).await
    }

    /// Every user with a role in the application (at most `MAX_PEOPLE`), by email.
    pub async fn members(&self, app: &ApplicationId) -> Result<Vec<MemberRecord>, EngineError> {
        self.members_page(app, None, MAX_PEOPLE as u32).await
    }

    /// A page of the application's users by email: at most `limit`, after the email `after`.
    pub async fn members_page(
        &self,
        app: &ApplicationId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MemberRecord>, EngineError> {
        Ok(self.store.members(app, after, limit).await?)
    }

    pub async fn pending_invites(
        &self,
        app: &ApplicationId,
    ) -> Result<Vec<InviteRecord>, EngineError> {
        Ok(self.store.pending_invites(app, self.now()).await?)
    }

    /// Invites an email to the actor's application with a role; the link's token comes back
    /// (shown once). An admin cannot invite owners.
    pub async fn invite(
        &self,
        actor: &Actor,
        email: &str,
        role: Role,
    ) -> Result<NewInvite, EngineError> {
        let email = parse_email(email)?;
        if !actor.role.may_manage(None, Some(role)) {
            return Err(forbidden(format!(
                "As {} you cannot invite someone as {role}.",
                actor.role
            )));
        }
        if let Some(user) = self.store.user_by_email(&email).await? {
            if user.account_id != actor.account {
                return Err(EngineError::new(
                    ErrorKind::Conflict,
                    "email_taken",
                    "This email already has a login in another account.",
                )
                .field("email"));
            }
            if self.store.role(&user.id, &actor.app).await?.is_some() {
                return Err(EngineError::new(
                    ErrorKind::Conflict,
                    "already_member",
                    "This user already has a role in this application: change it in the list instead.",
                )
                .field("email"));
            }
        }
        let now = self.now();
        let token = random_token();
        let invite = InviteRecord {
            id: new_invite_id(),
            kind: LinkKind::Invite,
            application_id: Some(actor.app.clone()),
            email: Some(email),
            role: Some(role),
            invited_by: Some(actor.user.clone()),
            created_at: now,
            expires_at: now + INVITE_TTL_MS,
            used_at: None,
        };
        let caps = InviteCaps {
            open: MAX_PENDING_INVITES as u64,
            people: MAX_PEOPLE as u64,
        };
        match self
            .store
            .create_invite(&invite, &hash_token(&token), caps, now)
            .await?
        {
            None => {}
            Some(InviteRefused::OpenInvites) => {
                return Err(EngineError::new(
                    ErrorKind::Conflict,
                    "invite_limit_reached",
                    format!(
                        "This application has {MAX_PENDING_INVITES} open invites: withdraw some, or wait until they expire, before inviting more."
                    ),
                ));
            }
            Some(InviteRefused::People) => {
                return Err(EngineError::new(
                    ErrorKind::Conflict,
                    "member_limit_reached",
                    format!(
                        "An application has at most {MAX_PEOPLE} users and open invites together: remove users or withdraw invites before inviting more."
                    ),
                ));
            }
        }
        Ok(NewInvite { invite, token })
    }

    pub async fn revoke_invite(&self, actor: &Actor, id: &str) -> Result<(), EngineError> {
        if self.store.revoke_invite(&actor.app, id).await? {
            Ok(())
        } else {
            Err(invite_gone())
        }
    }

    async fn live_invite(&self, token: &str) -> Result<InviteRecord, EngineError> {
        self.store
            .link_by_token_hash(&hash_token(token))
            .await?
            .filter(|l| {
                l.kind == LinkKind::Invite && l.used_at.is_none() && l.expires_at > self.now()
            })
            .ok_or_else(invite_gone)
    }

    /// What an invite link asks of its visitor.
    pub async fn invite_view(&self, token: &str) -> Result<InviteView, EngineError> {
        let invite = self.live_invite(token).await?;
        let (Some(email), Some(role), Some(app)) = (
            invite.email.clone(),
            invite.role,
            invite.application_id.clone(),
        ) else {
            return Err(invite_gone());
        };
        let application = self
            .store
            .application(&app)
            .await?
            .map(|a| a.name)
            .unwrap_or_default();
        Ok(match self.store.user_by_email(&email).await? {
            Some(_) => InviteView::ExistingUser {
                email,
                role,
                application,
            },
            None => InviteView::NewUser {
                email,
                role,
                application,
            },
        })
    }

    /// Accepts an invite. A new user chooses a password and is signed in (`Some`); a user the
    /// account already has gets the role and signs in as usual (`None`).
    pub async fn accept_invite(
        &self,
        token: &str,
        password: Option<String>,
        client: &Client,
    ) -> Result<Option<IssuedSession>, EngineError> {
        let invite = self.live_invite(token).await?;
        let (Some(email), Some(app)) = (invite.email.clone(), invite.application_id.clone()) else {
            return Err(invite_gone());
        };
        let account = self
            .store
            .application(&app)
            .await?
            .map(|a| a.account_id)
            .ok_or_else(invite_gone)?;
        let now = self.now();
        match self.store.user_by_email(&email).await? {
            Some(user) if user.account_id == account => {
                if !self
                    .store
                    .accept_invite(&hash_token(token), &Invitee::Existing(user.id), now)
                    .await?
                {
                    return Err(invite_gone());
                }
                Ok(None)
            }
            Some(_) => Err(EngineError::new(
                ErrorKind::Conflict,
                "email_taken",
                "This email already has a login in another account.",
            )),
            None => {
                let password = password.unwrap_or_default();
                check_password_rules(&password)?;
                let user_id = UserId::new();
                let invitee = Invitee::New {
                    user_id: user_id.clone(),
                    account_id: account,
                    email,
                    password_hash: hash_in_pool(password).await?,
                };
                if !self
                    .store
                    .accept_invite(&hash_token(token), &invitee, now)
                    .await?
                {
                    return Err(invite_gone());
                }
                Ok(Some(
                    self.open_session(&user_id, Some(app), false, client)
                        .await?,
                ))
            }
        }
    }

    /// Owners of the application other than `except`.
    async fn other_owners(
        &self,
        app: &ApplicationId,
        except: &UserId,
    ) -> Result<usize, EngineError> {
        Ok(self
            .members(app)
            .await?
            .iter()
            .filter(|m| m.role == Role::Owner && &m.user_id != except)
            .count())
    }

    /// Changes a user's role in the actor's application (admins: not to or from owner; an
    /// application keeps at least one owner).
    pub async fn change_role(
        &self,
        actor: &Actor,
        user: &UserId,
        role: Role,
    ) -> Result<(), EngineError> {
        let current = self
            .store
            .role(user, &actor.app)
            .await?
            .ok_or_else(member_gone)?;
        if !actor.role.may_manage(Some(current), Some(role)) {
            return Err(forbidden(format!(
                "As {} you cannot change a role from {current} to {role}.",
                actor.role
            )));
        }
        if current == Role::Owner
            && role != Role::Owner
            && self.other_owners(&actor.app, user).await? == 0
        {
            return Err(last_owner());
        }
        self.store
            .set_role(user, &actor.app, role, self.now())
            .await?;
        Ok(())
    }

    /// Takes a user's role in the actor's application away; their sessions there stop
    /// opening its pages at once.
    pub async fn remove_member(&self, actor: &Actor, user: &UserId) -> Result<(), EngineError> {
        let current = self
            .store
            .role(user, &actor.app)
            .await?
            .ok_or_else(member_gone)?;
        if !actor.role.may_manage(Some(current), None) {
            return Err(forbidden(format!(
                "As {} you cannot remove an {current}.",
                actor.role
            )));
        }
        if current == Role::Owner && self.other_owners(&actor.app, user).await? == 0 {
            return Err(last_owner());
        }
        self.store.remove_role(user, &actor.app).await?;
        Ok(())
    }

    // --- my account -----------------------------------------------------------------------

    /// Changes the user's password after checking the current one; every other session of
    /// theirs ends (`keep` is the session making the change).
    pub async fn change_password(
        &self,
        user: &UserId,
        keep: &str,
        current: String,
        new: String,
    ) -> Result<(), EngineError> {
        let record = self.store.user(user).await?.ok_or_else(member_gone)?;
        if current.len() > MAX_PASSWORD_BYTES
            || !verify_in_pool(current, record.password_hash).await
        {
            return Err(EngineError::unprocessable(
                "wrong_password",
                "Your current password is not right.",
            )
            .field("current"));
        }
        check_password_rules(&new)?;
        let hash = hash_in_pool(new).await?;
        self.store.set_password(user, &hash, Some(keep)).await?;
        Ok(())
    }

    /// Starts TOTP enrolment: a new secret (kept encrypted, pending until confirmed).
    pub async fn begin_totp(&self, user: &UserId) -> Result<TotpEnrolment, EngineError> {
        let record = self.store.user(user).await?.ok_or_else(member_gone)?;
        let bytes: [u8; 20] = rand::random();
        let secret = totp_rs::Secret::from(bytes).to_base32();
        self.store.set_totp_pending(user, Some(&secret)).await?;
        self.totp_enrolment(&secret, &record.email)
    }

    /// The pending enrolment, if one was started and not confirmed.
    pub async fn pending_totp(&self, user: &UserId) -> Result<Option<TotpEnrolment>, EngineError> {
        let record = self.store.user(user).await?.ok_or_else(member_gone)?;
        let (_, pending) = self.store.totp(user).await?;
        pending
            .map(|s| self.totp_enrolment(&s, &record.email))
            .transpose()
    }

    fn totp_enrolment(&self, secret: &str, email: &str) -> Result<TotpEnrolment, EngineError> {
        let uri = totp_for(secret, email)
            .and_then(|t| t.to_url().ok())
            .ok_or_else(|| EngineError::internal("TOTP URI"))?;
        Ok(TotpEnrolment {
            secret: secret.to_owned(),
            uri,
        })
    }

    /// Confirms the pending secret with a current code: sign-in asks for codes from now on.
    pub async fn confirm_totp(&self, user: &UserId, code: &str) -> Result<(), EngineError> {
        let (_, pending) = self.store.totp(user).await?;
        let pending = pending.ok_or_else(|| {
            EngineError::new(
                ErrorKind::Conflict,
                "no_enrolment",
                "Start the enrolment first.",
            )
        })?;
        if !totp_ok(&pending, code, self.now()) {
            return Err(bad_code());
        }
        self.store.confirm_totp(user).await?;
        Ok(())
    }

    /// Turns the second factor off, with a current code.
    pub async fn disable_totp(&self, user: &UserId, code: &str) -> Result<(), EngineError> {
        let (secret, _) = self.store.totp(user).await?;
        let Some(secret) = secret else {
            return Ok(());
        };
        if !totp_ok(&secret, code, self.now()) {
            return Err(bad_code());
        }
        self.store.remove_totp(user).await?;
        Ok(())
    }
}

fn setup_used() -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "setup_link_used",
        "This setup link was used already or has expired. Restart `parley serve` for a new one, or use `parley admin create-owner`.",
    )
}

fn invite_gone() -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "invite_expired",
        "This invite link was used already, was withdrawn or has expired: ask for a new one.",
    )
}

fn member_gone() -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "user_not_found",
        "This user has no role in this application.",
    )
}

fn last_owner() -> EngineError {
    EngineError::new(
        ErrorKind::Conflict,
        "last_owner",
        "An application keeps at least one owner: make someone else owner first.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_after_the_free_attempts() {
        let p = EMAIL_THROTTLE;
        assert_eq!(p.delay_after(4), 0);
        assert_eq!(p.delay_after(5), 1_000);
        assert_eq!(p.delay_after(6), 2_000);
        assert_eq!(p.delay_after(8), 8_000);
        assert_eq!(p.delay_after(1_000), p.max_ms);
    }

    #[test]
    fn tokens_are_long_and_url_safe() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(t, random_token());
    }

    #[test]
    fn totp_codes_check_at_their_time() {
        let secret = totp_rs::Secret::from([7u8; 20]).to_base32();
        let at = 1_700_000_000_000;
        let code = totp_code(&secret, at).expect("code");
        assert_eq!(code.len(), 6);
        assert!(totp_ok(&secret, &code, at));
        assert!(totp_ok(&secret, &code, at + 30_000), "one step of skew");
        assert!(!totp_ok(&secret, &code, at + 120_000));
        assert!(!totp_ok(&secret, "000000x", at));
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            parse_email(" Ana@Example.COM ").expect("ok"),
            "ana@example.com"
        );
        assert!(parse_email("nope").is_err());
        assert!(parse_email("a b@c.d").is_err());
    }
}
