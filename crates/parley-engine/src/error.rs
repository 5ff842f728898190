//! The engine's one error: a kind, a stable code, the field at fault and a message that says
//! how to fix it. It knows nothing of HTTP: `parley-server`'s `error::status_of` maps the kind
//! to a status, in that one place.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed input (400).
    BadRequest,
    /// Well-formed but refused by a rule (422).
    Unprocessable,
    NotFound,
    /// The account is not set up for this yet (409).
    Conflict,
    /// The user's role does not allow this (403).
    Forbidden,
    /// Too many attempts; try again later (429).
    TooManyRequests,
    /// Meta refused to answer or could not be reached (502): retry later.
    Upstream,
    /// Storage or another internal fault (500/503).
    Internal,
    /// Too busy to take this now; try again after `retry_after_secs` (503).
    Unavailable,
}

#[derive(Debug, Clone)]
pub struct EngineError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// For a refusal to retry later (429): after how many seconds (`Retry-After`).
    pub retry_after_secs: Option<u64>,
}

impl EngineError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        EngineError {
            kind,
            code,
            message: message.into(),
            field: None,
            retry_after_secs: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, code, message)
    }

    /// No number of the application has this id; also what a `phone_number_id` that is not
    /// Meta's digits gets at the edge, so both read the same.
    pub fn phone_number_not_found(id: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "phone_number_not_found",
            format!(
                "this application has no WhatsApp number with id `{id}`; list yours with GET /api/v1/phone-numbers"
            ),
        )
        .field("phone_number_id")
    }

    pub fn internal(err: impl fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            ErrorKind::Internal,
            "internal_error",
            "Parley could not complete the request because of an internal error; it was logged. Try again.",
        )
    }
}

/// A refused send window, as the API reports it (422 with the field at fault).
impl From<parley_domain::SendWindowError> for EngineError {
    fn from(e: parley_domain::SendWindowError) -> Self {
        EngineError::unprocessable(e.code, e.message).field(e.field)
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for EngineError {}

impl From<parley_store::StoreError> for EngineError {
    fn from(e: parley_store::StoreError) -> Self {
        match e {
            parley_store::StoreError::TooExpensive => EngineError::too_expensive(),
            parley_store::StoreError::WabaTaken(waba) => EngineError::new(
                ErrorKind::Conflict,
                "waba_taken",
                format!(
                    "WhatsApp Business Account {waba} is connected to another application in this Parley. \
                     Disconnect it there first (Settings › Configure platforms › Disconnect), then sign up again here."
                ),
            ),
            e => EngineError::internal(e),
        }
    }
}

impl EngineError {
    /// A filter stopped at its time budget.
    pub fn too_expensive() -> EngineError {
        EngineError::unprocessable(
            "filter_too_expensive",
            "the filter took too long to run over your contacts and was stopped: make it simpler (fewer conditions, fewer `contains`), or narrow it with an exact condition first, e.g. city = \"Berlin\" and …",
        )
        .field("filter")
    }
}
