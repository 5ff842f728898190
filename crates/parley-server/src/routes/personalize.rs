//! `POST /api/v1/personalize/preview`: dynamic content rendered for one contact, or the reason
//! the contact would be skipped.

use axum::extract::State;
use parley_domain::{Tags, VariableInput};
use parley_engine::EngineError;
use parley_engine::audience::{PreviewContact, PreviewOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{AppAuth, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// Free text with dynamic content, e.g. `Hi {{first_name|CapitalizeFirst|there}}`.
    pub text: Option<String>,
    pub template: Option<TemplateRef>,
    /// As in `POST /api/v1/messages`.
    #[schema(value_type = Object)]
    pub variables: Option<serde_json::Value>,
    /// A stored contact's phone number, or a contact given inline:
    /// `{"phone", "name", "tags": {…}}`.
    #[schema(value_type = Object)]
    pub contact: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    pub name: String,
    pub language: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineContact {
    phone: Option<String>,
    name: Option<String>,
    #[serde(default)]
    tags: Tags,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResult {
    /// The rendered free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The template with every parameter rendered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub template: Option<serde_json::Value>,
    /// Why this contact would be skipped: `{"code", "reason"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub skipped: Option<serde_json::Value>,
}

#[utoipa::path(
    post, path = "/api/v1/personalize/preview", tag = "contacts",
    request_body = PreviewRequest,
    responses(
        (status = 200, description = "Rendered, or skipped with the reason", body = PreviewResult),
        (status = 400, description = "Bad expression or contact", body = ErrorBody),
        (status = 404, description = "No such contact", body = ErrorBody),
        (status = 422, description = "`variable_too_long` (field `variables.<key>`) or `text_too_long`: the rendered value is over WhatsApp's limit; rendering stops at the limit, so the answer is never larger than a message", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn preview(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    ApiJson(body): ApiJson<PreviewRequest>,
) -> Result<ApiJson<PreviewResult>, ApiError> {
    let contact = match body.contact {
        serde_json::Value::String(phone) => PreviewContact::Phone(phone),
        other => {
            let c: InlineContact = serde_json::from_value(other).map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_contact",
                    format!(
                        "`contact` is a phone number or {{\"phone\", \"name\", \"tags\"}}: {e}"
                    ),
                )
                .field("contact")
            })?;
            PreviewContact::Inline {
                phone: c.phone,
                name: c.name,
                tags: c.tags,
            }
        }
    };
    let variables = match &body.template {
        Some(_) => VariableInput::from_json(&body.variables.unwrap_or(serde_json::Value::Null))
            .map_err(|e| {
                EngineError::bad_request(e.code(), e.to_string())
                    .field(format!("variables.{}", e.field()))
            })?,
        None => VariableInput::default(),
    };
    let template = body
        .template
        .as_ref()
        .map(|t| (t.name.as_str(), t.language.as_str(), &variables));
    let outcome = state
        .engine
        .personalize_preview(&app, contact, body.text.as_deref(), template)
        .await?;
    Ok(ApiJson(match outcome {
        PreviewOutcome::Text(t) => PreviewResult {
            text: Some(t),
            template: None,
            skipped: None,
        },
        PreviewOutcome::Template(r) => PreviewResult {
            text: None,
            template: Some(serde_json::to_value(r).unwrap_or_default()),
            skipped: None,
        },
        PreviewOutcome::Skipped(reason) => PreviewResult {
            text: None,
            template: None,
            skipped: Some(serde_json::json!({"code": reason.code(), "reason": reason.to_string()})),
        },
    }))
}
