//! `Authorization: Bearer <token>` → the application the token belongs to, if the token may do
//! what the route needs. The scope is part of the extractor's type (`AppAuth<Reads>`,
//! `AppAuth<Sends>`, `AppAuth<Manages>`), so a handler cannot take a token without saying
//! which scope it needs; `tests/api/access.rs` walks every route of the OpenAPI document with
//! tokens lacking each scope to hold the document's `security` scopes and the code together.
//!
//! After authentication each token is rate limited (GCRA, keyed by token id: only tokens that
//! exist get a slot, so the limiter's map stays as small as the token table).

use std::marker::PhantomData;
use std::num::NonZeroU32;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use parley_domain::{ApplicationId, Scope, Scopes, TokenId};
use parley_engine::access::TokenCheck;
use parley_store::access::ActorKind;

use crate::AppState;
use crate::audit::{Actor, ActorSlot};
use crate::error::ApiError;

/// The scope a route needs, as a type.
pub trait RequiredScope: Send + Sync + 'static {
    const SCOPE: Scope;
}

/// Reading anything: lists, lookups, statistics, previews, the audit log needs `manage`.
pub struct Reads;
/// Sending messages.
pub struct Sends;
/// Changing configuration, audience, campaigns, templates, platforms and tokens.
pub struct Manages;

impl RequiredScope for Reads {
    const SCOPE: Scope = Scope::Read;
}
impl RequiredScope for Sends {
    const SCOPE: Scope = Scope::Send;
}
impl RequiredScope for Manages {
    const SCOPE: Scope = Scope::Manage;
}

/// The authenticated application of an API request whose token has scope `S`.
pub struct AppAuth<S: RequiredScope>(pub ApplicationId, pub PhantomData<S>);

/// Requests per second and burst allowed to each API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: NonZeroU32::new(50).expect("non-zero"),
            burst: NonZeroU32::new(100).expect("non-zero"),
        }
    }
}

/// One GCRA limiter keyed by token id.
pub struct TokenLimiter {
    limiter: RateLimiter<TokenId, HashMapStateStore<TokenId>, DefaultClock>,
    clock: DefaultClock,
    checks: std::sync::atomic::AtomicU64,
}

/// Every this many checks the limiter forgets the tokens whose state is back to full (a token
/// created, used and revoked kept its entry for the life of the process).
const PRUNE_EVERY: u64 = 4_096;

impl TokenLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        TokenLimiter {
            limiter: RateLimiter::hashmap(quota),
            clock: DefaultClock::default(),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Err(seconds)` to wait when the token is over its rate.
    fn check(&self, token: &TokenId) -> Result<(), u64> {
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(token).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

impl<S: RequiredScope> FromRequestParts<AppState> for AppAuth<S> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let unauthorized = |code: &'static str, msg: &str| {
            ApiError::new(StatusCode::UNAUTHORIZED, code, msg.to_owned()).into_response()
        };
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthorized(
                "unauthorized",
                "missing API token: send the header `Authorization: Bearer <token>`",
            )
        })?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unauthorized(
                    "unauthorized",
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        let token = match state
            .engine
            .check_api_token(secret)
            .await
            .map_err(|e| ApiError::from(e).into_response())?
        {
            TokenCheck::Valid(token) => token,
            TokenCheck::Unknown => {
                return Err(unauthorized(
                    "unauthorized",
                    "the API token is not valid; create one with `parley token create`",
                ));
            }
            TokenCheck::Expired => {
                return Err(unauthorized(
                    "token_expired",
                    "this API token has expired; create a new one with `parley token create`",
                ));
            }
            TokenCheck::Revoked => {
                return Err(unauthorized(
                    "token_revoked",
                    "this API token was revoked; create a new one with `parley token create`",
                ));
            }
        };
        if let Err(seconds) = state.limiter.check(&token.id) {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this API token made more requests than its rate allows; retry in {seconds} s"
                ),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            return Err(resp);
        }
        require(token.scopes, S::SCOPE).map_err(IntoResponse::into_response)?;
        ActorSlot::fill(
            parts,
            Actor {
                kind: ActorKind::Token,
                id: token.id.to_string(),
                label: token.label,
                application: token.application_id.clone(),
            },
        );
        Ok(AppAuth(token.application_id, PhantomData))
    }
}

/// 403 `insufficient_scope` naming the scope when `scopes` lacks it.
fn require(scopes: Scopes, needed: Scope) -> Result<(), ApiError> {
    if scopes.contains(needed) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        format!(
            "this API token lacks the `{needed}` scope this endpoint needs (it has: {scopes}); create a token with `--scope {needed}`"
        ),
    ))
}
