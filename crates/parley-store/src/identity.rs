//! People (issue #12): users' roles per application, console sessions kept in the database
//! (so any node can check them), one-time setup and invite links, the sign-in throttle and the
//! TOTP second factor (its secret encrypted with the store's `SecretCipher`).
//!
//! Tokens (session cookies, setup and invite links) are random; only their SHA-256 is stored,
//! hashed by the engine.

use async_trait::async_trait;
use parley_domain::{AccountId, ApplicationId, Role, UserId};

use crate::{ApplicationRecord, Millis, Result, UserRecord};

/// A fresh public session handle, `ses_` + a UUID v7.
pub fn new_session_id() -> String {
    format!("ses_{}", uuid::Uuid::now_v7().simple())
}

/// A fresh invite id, `inv_` + a UUID v7.
pub fn new_invite_id() -> String {
    format!("inv_{}", uuid::Uuid::now_v7().simple())
}

/// A user of an application with their role there.
#[derive(Debug, Clone)]
pub struct MemberRecord {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub totp_enabled: bool,
    pub since: Millis,
}

/// The first owner of an account: the account, its first application and the user.
#[derive(Debug, Clone)]
pub struct NewOwner {
    pub account_id: AccountId,
    pub account_name: String,
    pub application_id: ApplicationId,
    pub application_name: String,
    pub user_id: UserId,
    /// Lower-cased.
    pub email: String,
    pub password_hash: String,
    pub now: Millis,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// `ses_…`: the handle shown in the user's list of sessions (never the cookie's token).
    pub id: String,
    pub user_id: UserId,
    /// The application the console works on; `None` for a user without one.
    pub application_id: Option<ApplicationId>,
    /// The password was right and the TOTP code is still due: such a session opens no page.
    pub second_factor: bool,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
    pub user_agent: Option<String>,
    pub address: Option<String>,
}

/// A live session with what every console request needs of its user.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub session: SessionRecord,
    pub email: String,
    pub account_id: AccountId,
    /// The user's role in the session's application; `None` when they have none there (any
    /// more).
    pub role: Option<Role>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub record: SessionRecord,
    pub token_hash: String,
}

/// `setup` (creates the first owner of a fresh database) or `invite` (an email, a role, an
/// application).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Setup,
    Invite,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Setup => "setup",
            LinkKind::Invite => "invite",
        }
    }
}

#[derive(Debug, Clone)]
pub struct InviteRecord {
    /// `inv_…`.
    pub id: String,
    pub kind: LinkKind,
    pub application_id: Option<ApplicationId>,
    /// Lower-cased.
    pub email: Option<String>,
    pub role: Option<Role>,
    pub invited_by: Option<UserId>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
}

/// Who accepts an invite: a new user of the inviting account, or one it already has.
#[derive(Debug, Clone)]
pub enum Invitee {
    New {
        user_id: UserId,
        account_id: AccountId,
        email: String,
        password_hash: String,
    },
    Existing(UserId),
}

/// Sign-in attempts counted against one key (`email:…` or `addr:…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRecord {
    pub failures: i64,
    /// No attempt under this key runs before this time.
    pub next_at: Millis,
    pub updated_at: Millis,
}

/// The bounds an invite is made within (`IdentityStore::create_invite`).
#[derive(Debug, Clone, Copy)]
pub struct InviteCaps {
    /// Open invites (not used, not expired) of the application.
    pub open: u64,
    /// The application's users and open invites together.
    pub people: u64,
}

/// Why an invite was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteRefused {
    OpenInvites,
    People,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    // --- users and roles -------------------------------------------------------------------
    async fn count_users(&self) -> Result<u64>;
    async fn user(&self, id: &UserId) -> Result<Option<UserRecord>>;
    /// Creates the account, its first application, the user and their owner role in one
    /// transaction. With `setup_token_hash`, only while that setup link is unused and
    /// unexpired and no user exists yet (else nothing is written and `false` comes back).
    async fn create_owner(&self, owner: &NewOwner, setup_token_hash: Option<&str>) -> Result<bool>;
    async fn account_applications(&self, account: &AccountId) -> Result<Vec<ApplicationRecord>>;
    /// A page of the account's applications, oldest first: those after `after` (the
    /// `created_at` and id of the previous page's last), at most `limit`.
    async fn account_applications_after(
        &self,
        account: &AccountId,
        after: Option<(Millis, &ApplicationId)>,
        limit: u32,
    ) -> Result<Vec<ApplicationRecord>>;
    /// A page of the applications a user has a role in, with the role, by application id
    /// (ids grow with time, so oldest first): those after `after`, at most `limit`.
    async fn memberships(
        &self,
        user: &UserId,
        after: Option<&ApplicationId>,
        limit: u32,
    ) -> Result<Vec<(ApplicationRecord, Role)>>;
    /// The application `app` with the user's role there; `None` when they have none.
    async fn membership(
        &self,
        user: &UserId,
        app: &ApplicationId,
    ) -> Result<Option<(ApplicationRecord, Role)>>;
    async fn role(&self, user: &UserId, app: &ApplicationId) -> Result<Option<Role>>;
    /// The users with a role in the application, by email: at most `limit`, after the email
    /// `after` (a page's keyset).
    async fn members(
        &self,
        app: &ApplicationId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MemberRecord>>;
    /// Creates an application of `account` and gives each of `members` their role in it,
    /// unless the account has `cap` applications already (false then); concurrent creates
    /// stop exactly at the cap.
    async fn create_application_with_members(
        &self,
        app: &ApplicationId,
        account: &AccountId,
        name: &str,
        members: &[(UserId, Role)],
        cap: u64,
        now: Millis,
    ) -> Result<bool>;
    /// The users who own at least one of the account's applications, in one statement.
    async fn account_owners(&self, account: &AccountId) -> Result<Vec<UserId>>;
    async fn set_role(
        &self,
        user: &UserId,
        app: &ApplicationId,
        role: Role,
        now: Millis,
    ) -> Result<()>;
    /// Takes the user's role in the application away; `false` if they had none.
    async fn remove_role(&self, user: &UserId, app: &ApplicationId) -> Result<bool>;
    /// Sets a new password hash and ends the user's sessions except `keep` (a session id).
    async fn set_password(&self, user: &UserId, hash: &str, keep: Option<&str>) -> Result<()>;

    // --- second factor ---------------------------------------------------------------------
    /// The confirmed secret and the one awaiting confirmation, decrypted.
    async fn totp(&self, user: &UserId) -> Result<(Option<String>, Option<String>)>;
    async fn set_totp_pending(&self, user: &UserId, secret: Option<&str>) -> Result<()>;
    /// Makes the pending secret the user's second factor.
    async fn confirm_totp(&self, user: &UserId) -> Result<()>;
    async fn remove_totp(&self, user: &UserId) -> Result<()>;
    /// Records `step` (a TOTP time step) as the user's last accepted one, only if it is newer
    /// than the last: `false` means the code was already used (RFC 6238 §5.2). Atomic.
    async fn accept_totp_step(&self, user: &UserId, step: i64) -> Result<bool>;

    // --- sessions --------------------------------------------------------------------------
    async fn create_session(&self, session: &NewSession) -> Result<()>;
    /// The unexpired session with this token.
    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<SessionView>>;
    /// Records that the session was used (at most about once a minute is written).
    async fn touch_session(&self, id: &str, now: Millis) -> Result<()>;
    async fn set_session_application(&self, id: &str, app: &ApplicationId) -> Result<()>;
    /// The second factor was given: the session gets a new token and opens pages.
    async fn complete_second_factor(
        &self,
        id: &str,
        new_token_hash: &str,
        expires_at: Millis,
    ) -> Result<bool>;
    async fn delete_session_by_token_hash(&self, token_hash: &str) -> Result<()>;
    /// Ends one of the user's sessions; `false` when they have none with that id.
    async fn end_session(&self, user: &UserId, id: &str) -> Result<bool>;
    async fn end_user_sessions(&self, user: &UserId) -> Result<u64>;
    /// The user's unexpired sessions, the most recently used first.
    async fn user_sessions(&self, user: &UserId, now: Millis) -> Result<Vec<SessionRecord>>;

    // --- setup and invite links ------------------------------------------------------------
    async fn create_link(&self, link: &InviteRecord, token_hash: &str) -> Result<()>;
    /// Creates an invite link (its `application_id` set) unless the application has `caps.open`
    /// open invites at `now` already, or `caps.people` users and open invites together (the
    /// reason is answered then); concurrent invites stop exactly at the caps.
    async fn create_invite(
        &self,
        link: &InviteRecord,
        token_hash: &str,
        caps: InviteCaps,
        now: Millis,
    ) -> Result<Option<InviteRefused>>;
    /// Drops setup links nobody used (a new one is printed at each start of a fresh database).
    async fn delete_unused_setup_links(&self) -> Result<()>;
    async fn link_by_token_hash(&self, token_hash: &str) -> Result<Option<InviteRecord>>;
    /// Uses the invite (unused, unexpired at `now`) and gives the invitee its role, in one
    /// transaction; `false` (nothing written) when the link is used, expired or unknown.
    async fn accept_invite(&self, token_hash: &str, invitee: &Invitee, now: Millis)
    -> Result<bool>;
    /// The application's invites not used yet and not expired at `now`, newest first.
    async fn pending_invites(&self, app: &ApplicationId, now: Millis) -> Result<Vec<InviteRecord>>;
    async fn revoke_invite(&self, app: &ApplicationId, id: &str) -> Result<bool>;

    // --- sign-in throttle ------------------------------------------------------------------
    async fn throttle(&self, key: &str) -> Result<Option<ThrottleRecord>>;
    /// Replaces `old` (as read; `None`: no row) with `new`; `false` when someone else changed
    /// the row in between (read again and retry).
    async fn swap_throttle(
        &self,
        key: &str,
        old: Option<&ThrottleRecord>,
        new: &ThrottleRecord,
    ) -> Result<bool>;
    async fn clear_throttle(&self, key: &str) -> Result<()>;

    /// Drops what can no longer matter: sessions expired at `now`, invites expired unused,
    /// throttle rows without an attempt since `idle_before` whose wait is over.
    async fn prune_identity(&self, now: Millis, idle_before: Millis) -> Result<()>;
}
