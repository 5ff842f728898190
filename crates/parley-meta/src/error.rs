//! Meta's error object and the client's error type. Logic keys on `code` (+ `error_data.details`),
//! never on titles or HTTP status: `error_subcode` is gone since v16.

use serde::{Deserialize, Serialize};

/// `{"error": {...}}` as Meta returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_transient: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl ApiError {
    /// The most helpful human text Meta gave: details, else the message.
    pub fn description(&self) -> String {
        match self.error_data.as_ref().and_then(|d| d.details.as_deref()) {
            Some(details) if !details.is_empty() => format!("{} ({details})", self.message),
            _ => self.message.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub error: ApiError,
}

/// Why a Graph call failed.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Meta answered with its error object.
    #[error("Meta error {} (HTTP {http_status}): {}", .error.code, .error.description())]
    Api { http_status: u16, error: ApiError },
    /// No answer: connection refused, timeout, TLS. Whether Meta acted is unknown.
    #[error("could not reach the Graph API: {0}")]
    Transport(String),
    /// An answer that is not what Meta documents.
    #[error("unexpected answer from the Graph API (HTTP {http_status}): {detail}")]
    Decode { http_status: u16, detail: String },
}

impl GraphError {
    /// Meta's error code, when Meta gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            GraphError::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }
}
