//! Console sessions are kept on the server (`sessions` table, see
//! `parley_engine::identity`): the cookie carries a random 256-bit token, the database only its
//! SHA-256, so any node can check it and logout, password changes and "end this session"
//! take effect everywhere at once. This module holds the cookies' names and attributes.

use axum::http::HeaderValue;

/// The session cookie.
pub const COOKIE: &str = "parley_session";
/// Between a right password and the TOTP code: the pending sign-in's token.
pub const PENDING_COOKIE: &str = "parley_pending";

/// The key `PARLEY_SESSION_KEY` / `<data_dir>/session.key` holds. Sessions no longer need it
/// (they are server-side since issue #12); it is still loaded, so a deployment's
/// configuration stays valid, and is kept for signing what may need it later.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub fn new(key: [u8; 32]) -> Self {
        SessionKey(key)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, `Secure` over HTTPS; `max_age` 0 clears it.
pub fn cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}
