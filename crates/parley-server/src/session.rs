//! Console sessions: a cookie holding who signed in and until when, signed with HMAC-SHA256
//! under a key kept outside the database (shared by every node of a deployment). Stateless, so
//! any node can check it; logging out clears the cookie.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use parley_domain::{AccountId, UserId};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const COOKIE: &str = "parley_session";
/// Sessions last 12 hours.
pub const TTL_MS: i64 = 12 * 3600 * 1000;

#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub user: UserId,
    pub account: AccountId,
    pub email: String,
    /// Unix millis.
    pub expires: i64,
}

impl SessionKey {
    pub fn new(key: [u8; 32]) -> Self {
        SessionKey(key)
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        mac
    }

    pub fn issue(&self, session: &Session) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(session).unwrap_or_default());
        let tag = hex::encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The session in `cookie` if its signature holds and it has not expired at `now`.
    pub fn verify(&self, cookie: &str, now: i64) -> Option<Session> {
        let (payload, tag) = cookie.split_once('.')?;
        let tag = hex::decode(tag).ok()?;
        self.mac(payload).verify_slice(&tag).ok()?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let session: Session = serde_json::from_slice(&bytes).ok()?;
        (session.expires > now).then_some(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires: i64) -> Session {
        Session {
            user: UserId::new(),
            account: AccountId::new(),
            email: "a@b.c".into(),
            expires,
        }
    }

    #[test]
    fn round_trip_expiry_and_forgery() {
        let key = SessionKey::new([1; 32]);
        let s = session(1_000);
        let c = key.issue(&s);
        assert_eq!(key.verify(&c, 999), Some(s.clone()));
        assert_eq!(key.verify(&c, 1_000), None, "expired");
        assert_eq!(SessionKey::new([2; 32]).verify(&c, 0), None, "other key");
        let (payload, tag) = c.split_once('.').expect("dot");
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&session(i64::MAX)).expect("json"));
        assert_eq!(key.verify(&format!("{forged}.{tag}"), 0), None);
        assert_eq!(key.verify(payload, 0), None);
        assert_eq!(key.verify("garbage", 0), None);
    }
}
