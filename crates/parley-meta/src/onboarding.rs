//! The Graph calls of onboarding after Embedded Signup (META_API.md §1.3): exchanging the
//! dialog's code for the business token (no `redirect_uri`), `debug_token` with the app token,
//! subscribing the app to the WABA's webhooks, registering the number, and reading the
//! portfolio and the business profile. Tokens, the app secret and PINs never reach a log:
//! they travel in headers, bodies or query strings that errors strip.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::GraphClient;
use crate::error::GraphError;

/// The business token the code was exchanged for. Debug never shows it.
#[derive(Clone, Deserialize)]
pub struct TokenExchange {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// `GET /debug_token` → `data`.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct TokenInfo {
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub is_valid: bool,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub granular_scopes: Vec<GranularScope>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct GranularScope {
    pub scope: String,
    #[serde(default)]
    pub target_ids: Vec<String>,
}

impl TokenInfo {
    /// The WABAs the token may manage; Meta lists the most recently onboarded first.
    pub fn waba_ids(&self) -> Vec<String> {
        self.granular_scopes
            .iter()
            .find(|s| s.scope == "whatsapp_business_management")
            .map(|s| s.target_ids.clone())
            .unwrap_or_default()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
            || self.granular_scopes.iter().any(|s| s.scope == scope)
    }
}

#[derive(Deserialize)]
struct DebugEnvelope {
    data: TokenInfo,
}

#[derive(Deserialize)]
struct Success {
    #[serde(default)]
    success: bool,
}

/// A business portfolio (`GET /{business-id}`).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct BusinessInfo {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub verification_status: Option<String>,
}

pub const BUSINESS_FIELDS: &str = "id,name,verification_status";

impl GraphClient {
    /// `GET /oauth/access_token?client_id&client_secret&code`. The code lives 30 s.
    pub async fn exchange_code(
        &self,
        app_id: &str,
        app_secret: &str,
        code: &str,
    ) -> Result<TokenExchange, GraphError> {
        let req = self.http.get(self.url("oauth/access_token")).query(&[
            ("client_id", app_id),
            ("client_secret", app_secret),
            ("code", code),
        ]);
        self.execute(req).await
    }

    /// `GET /debug_token?input_token=…` with the app token `APP_ID|APP_SECRET`.
    pub async fn debug_token(
        &self,
        app_id: &str,
        app_secret: &str,
        input_token: &str,
    ) -> Result<TokenInfo, GraphError> {
        let app_token = format!("{app_id}|{app_secret}");
        let req = self
            .http
            .get(self.url("debug_token"))
            .query(&[("input_token", input_token)])
            .bearer_auth(app_token);
        let env: DebugEnvelope = self.execute(req).await?;
        Ok(env.data)
    }

    /// `POST /{waba-id}/subscribed_apps`: Meta sends this WABA's webhooks to the app.
    pub async fn subscribe_app(&self, token: &str, waba_id: &str) -> Result<(), GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{waba_id}/subscribed_apps")))
            .bearer_auth(token)
            .json(&json!({}));
        self.expect_success(req).await
    }

    /// `DELETE /{waba-id}/subscribed_apps`.
    pub async fn unsubscribe_app(&self, token: &str, waba_id: &str) -> Result<(), GraphError> {
        let req = self
            .http
            .delete(self.url(&format!("{waba_id}/subscribed_apps")))
            .bearer_auth(token);
        self.expect_success(req).await
    }

    /// `POST /{phone-number-id}/register` with a 6-digit PIN (two-step verification).
    pub async fn register_phone(
        &self,
        token: &str,
        phone_number_id: &str,
        pin: &str,
    ) -> Result<(), GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{phone_number_id}/register")))
            .bearer_auth(token)
            .json(&json!({"messaging_product": "whatsapp", "pin": pin}));
        self.expect_success(req).await
    }

    /// `POST /{phone-number-id}/deregister`.
    pub async fn deregister_phone(
        &self,
        token: &str,
        phone_number_id: &str,
    ) -> Result<(), GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{phone_number_id}/deregister")))
            .bearer_auth(token)
            .json(&json!({}));
        self.expect_success(req).await
    }

    /// `GET /{business-id}`: the portfolio's name.
    pub async fn get_business(
        &self,
        token: &str,
        business_id: &str,
    ) -> Result<BusinessInfo, GraphError> {
        let req = self
            .http
            .get(self.url(business_id))
            .bearer_auth(token)
            .query(&[("fields", BUSINESS_FIELDS)]);
        self.execute(req).await
    }

    /// `GET /{phone-number-id}/whatsapp_business_profile`: the profile object (Meta's spec
    /// wraps it in `business_profile`; other sources put the fields straight in `data[0]`).
    pub async fn get_business_profile(
        &self,
        token: &str,
        phone_number_id: &str,
    ) -> Result<Value, GraphError> {
        let req = self
            .http
            .get(self.url(&format!("{phone_number_id}/whatsapp_business_profile")))
            .bearer_auth(token)
            .query(&[(
                "fields",
                "about,address,description,email,profile_picture_url,websites,vertical",
            )]);
        let v: Value = self.execute(req).await?;
        let first = v
            .get("data")
            .and_then(|d| d.get(0))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(first.get("business_profile").cloned().unwrap_or(first))
    }

    /// `POST /{waba-id}/phone_numbers` `{"cc","phone_number","verified_name"}`: adds a number
    /// to the WABA (not verified, not registered); returns its id.
    pub async fn add_phone_number(
        &self,
        token: &str,
        waba_id: &str,
        cc: &str,
        phone_number: &str,
        verified_name: &str,
    ) -> Result<String, GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{waba_id}/phone_numbers")))
            .bearer_auth(token)
            .json(&json!({"cc": cc, "phone_number": phone_number, "verified_name": verified_name}));
        let created: Created = self.execute(req).await?;
        Ok(created.id)
    }

    /// `POST /{phone-number-id}/request_code` `{"code_method": "SMS"|"VOICE", "language"}`:
    /// Meta texts or calls the number with a verification code.
    pub async fn request_code(
        &self,
        token: &str,
        phone_number_id: &str,
        code_method: &str,
        language: &str,
    ) -> Result<(), GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{phone_number_id}/request_code")))
            .bearer_auth(token)
            .json(&json!({"code_method": code_method, "language": language}));
        self.expect_success(req).await
    }

    /// `POST /{phone-number-id}/verify_code` `{"code"}`: the number becomes verified.
    pub async fn verify_code(
        &self,
        token: &str,
        phone_number_id: &str,
        code: &str,
    ) -> Result<(), GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{phone_number_id}/verify_code")))
            .bearer_auth(token)
            .json(&json!({"code": code}));
        self.expect_success(req).await
    }

    async fn expect_success(&self, req: reqwest::RequestBuilder) -> Result<(), GraphError> {
        let answer: Success = self.execute(req).await?;
        if answer.success {
            Ok(())
        } else {
            Err(GraphError::Decode {
                http_status: 200,
                detail: "Meta answered without `success: true`".into(),
            })
        }
    }
}

/// `{"id": "…"}`: what a create answers.
#[derive(Deserialize)]
struct Created {
    id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_info_finds_the_newest_waba_and_redacts_tokens() {
        let info: TokenInfo = serde_json::from_value(json!({
            "app_id": "670843887433847", "is_valid": true, "type": "USER",
            "scopes": ["whatsapp_business_management", "whatsapp_business_messaging"],
            "granular_scopes": [
                {"scope": "whatsapp_business_management", "target_ids": ["102289599326934", "101569239400667"]},
                {"scope": "whatsapp_business_messaging", "target_ids": ["102289599326934"]}
            ]
        }))
        .expect("parses");
        assert_eq!(info.waba_ids()[0], "102289599326934");
        assert!(info.has_scope("whatsapp_business_messaging"));
        let t: TokenExchange =
            serde_json::from_value(json!({"access_token": "EAAsecret", "token_type": "bearer"}))
                .expect("parses");
        assert!(!format!("{t:?}").contains("EAAsecret"));
    }
}
