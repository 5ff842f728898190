//! Meta's error object, built in one place.
//!
//! Clients must classify failures by `code` and `error_data.details`, exactly as against Meta,
//! so every failure of the sandbox — Graph or control API, bad JSON included — leaves through
//! [`GraphError`] with the HTTP status of Meta's error table (META_API.md §4.7).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};

/// One error as Meta would return it.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    pub code: u32,
    pub message: String,
    pub details: Option<String>,
    pub kind: &'static str,
    pub subcode: Option<u32>,
}

impl GraphError {
    /// An error whose message is `(#CODE) <Meta's title>`.
    pub fn new(code: u32, details: impl Into<String>) -> Self {
        GraphError {
            code,
            message: format!("(#{code}) {}", title(code)),
            details: Some(details.into()),
            kind: "OAuthException",
            subcode: None,
        }
    }

    /// Invalid parameter (100) with Meta's usual specific message, e.g.
    /// `(#100) The parameter to is required.`
    pub fn invalid_param(message: impl Into<String>) -> Self {
        let message = message.into();
        GraphError {
            code: 100,
            message: format!("(#100) {message}"),
            details: Some(message),
            kind: "OAuthException",
            subcode: None,
        }
    }

    /// Unknown object id or unsupported operation on it.
    pub fn unsupported(method: &str, id: &str) -> Self {
        GraphError {
            code: 100,
            message: format!(
                "Unsupported {} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
                method.to_ascii_lowercase()
            ),
            details: None,
            kind: "GraphMethodException",
            subcode: Some(33),
        }
    }

    pub fn invalid_token() -> Self {
        GraphError {
            code: 190,
            message: "Invalid OAuth access token - Cannot parse access token".to_owned(),
            details: None,
            kind: "OAuthException",
            subcode: None,
        }
    }

    pub fn missing_token() -> Self {
        GraphError {
            code: 104,
            message: "An access token is required to request this resource.".to_owned(),
            details: None,
            kind: "OAuthException",
            subcode: None,
        }
    }

    pub fn nonexisting_field(field: &str, node_type: &str) -> Self {
        GraphError::invalid_param(format!(
            "Tried accessing nonexisting field ({field}) on node type ({node_type})"
        ))
    }

    pub fn http_status(&self) -> StatusCode {
        http_status(self.code)
    }

    /// The JSON body, with a fresh `fbtrace_id`.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": fbtrace_id(),
        });
        if let Some(details) = &self.details {
            error["error_data"] = json!({"messaging_product": "whatsapp", "details": details});
        }
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GraphError {}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        (self.http_status(), axum::Json(self.body())).into_response()
    }
}

/// Meta's title for a code, used in messages and in asynchronous `errors[]` entries.
pub fn title(code: u32) -> &'static str {
    match code {
        0 => "AuthException",
        1 => "API Unknown",
        2 => "API Service",
        3 => "API Method",
        4 => "API Too Many Calls",
        10 => "Permission Denied",
        33 => "Parameter value is not valid",
        100 => "Invalid parameter",
        190 => "Access token has expired",
        200..=299 => "API Permission",
        368 => "Temporarily blocked for policies violations",
        80007 => "Rate limit issues",
        130429 => "Rate limit hit",
        130472 => "User's number is part of an experiment",
        130497 => "Business account is restricted from messaging users in this country",
        131000 => "Something went wrong",
        131005 => "Access denied",
        131008 => "Required parameter is missing",
        131009 => "Parameter value is not valid",
        131016 => "Service unavailable",
        131021 => "Recipient cannot be sender",
        131026 => "Message undeliverable",
        131062 => "Business-scoped User ID (BSUID) recipients are not supported for this message.",
        131031 => "Business Account locked",
        131042 => "Business eligibility payment issue",
        131045 => "Incorrect certificate",
        131047 => "Re-engagement message",
        131048 => "Spam rate limit hit",
        131049 => "This message was not delivered to maintain healthy ecosystem engagement.",
        131050 => {
            "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business"
        }
        131051 => "Unsupported message type",
        131052 => "Media download error",
        131053 => "Media upload error",
        131056 => "(Business Account, Consumer Account) pair rate limit hit",
        131057 => "Account in maintenance mode",
        131063 => "Marketing templates disabled for Cloud API",
        131064 => "Messaging limit reached",
        132000 => "Number of parameters does not match the expected number of params",
        132001 => "Template name does not exist in the translation",
        132005 => "Translated text too long",
        132007 => "Format character policy violated",
        132012 => "Parameter format does not match format in the created template",
        132015 => "Template is Paused",
        132016 => "Template is Disabled",
        132018 => "There was an issue with the parameters in your template",
        132068 => "Flow is in blocked state",
        132069 => "Flow is in throttled state",
        133000 => "Incomplete deregistration",
        133004 => "Server Temporarily Unavailable",
        133005 => "Two step verification PIN Mismatch",
        133006 => "Phone number re-verification needed",
        133008 => "Too many two step verification PIN guesses for this phone number",
        133009 => "Two step verification PIN was entered too quickly",
        133010 => "Phone number Not Registered on the Whatsapp Business Platform",
        133015 => {
            "The phone number you are attempting to register was recently deleted, and deletion has not yet completed"
        }
        133016 => "Account register deregister rate limit exceeded",
        135000 => "Generic user error",
        136024 => "Request code error",
        136025 => "Verify code error",
        _ => "Unknown error",
    }
}

/// HTTP status per Meta's error table (META_API.md §4.7); unknown codes answer 400.
pub fn http_status(code: u32) -> StatusCode {
    match code {
        0 | 190 => StatusCode::UNAUTHORIZED,
        2 | 133004 => StatusCode::SERVICE_UNAVAILABLE,
        3 | 131000 | 131016 | 131045 | 131057 | 133000 => StatusCode::INTERNAL_SERVER_ERROR,
        10 | 200..=299 | 368 | 130497 | 131005 | 131031 => StatusCode::FORBIDDEN,
        132001 => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn fbtrace_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut rng = rand::rng();
    (0..23)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_meta_table() {
        assert_eq!(http_status(190), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(132001), StatusCode::NOT_FOUND);
        assert_eq!(http_status(131000), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(http_status(131056), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(131005), StatusCode::FORBIDDEN);
    }

    #[test]
    fn body_has_meta_shape() {
        let body = GraphError::new(131047, "window closed").body();
        assert_eq!(body["error"]["code"], 131047);
        assert_eq!(body["error"]["type"], "OAuthException");
        assert_eq!(body["error"]["message"], "(#131047) Re-engagement message");
        assert_eq!(body["error"]["error_data"]["messaging_product"], "whatsapp");
        assert!(body["error"]["fbtrace_id"].as_str().is_some());
    }
}
