//! Coexistence (WhatsApp Business app numbers on the Cloud API, META_2026.md §2): the two
//! sync calls (`POST /{phone}/smb_app_data`, each once per onboarding, within 24 h) and the
//! app's webhook field subscriptions (`/{app-id}/subscriptions`), which must include
//! `history`, `smb_app_state_sync` and `smb_message_echoes` before the syncs are asked for.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{GraphClient, GraphError};

/// The webhook fields a coexistence number needs, besides `messages`.
pub const COEXISTENCE_FIELDS: [&str; 3] = ["history", "smb_app_state_sync", "smb_message_echoes"];

/// `sync_type` of `smb_app_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncType {
    /// The app's contacts (`smb_app_state_sync` webhooks).
    Contacts,
    /// Up to 180 days of 1:1 chats (`history` webhooks).
    History,
}

impl SyncType {
    pub const fn as_str(self) -> &'static str {
        match self {
            SyncType::Contacts => "smb_app_state_sync",
            SyncType::History => "history",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SyncAccepted {
    /// Meta's id of the accepted request; says nothing about whether history was shared.
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct AppSubscriptions {
    #[serde(default)]
    data: Vec<AppSubscription>,
}

#[derive(Debug, Deserialize, Default)]
struct AppSubscription {
    #[serde(default)]
    object: String,
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    fields: Vec<SubscribedField>,
}

#[derive(Debug, Deserialize, Default)]
struct SubscribedField {
    #[serde(default)]
    name: String,
}

impl GraphClient {
    /// `POST /{phone-number-id}/smb_app_data` with `sync_type`. Single-shot at Meta.
    pub async fn smb_app_data(
        &self,
        token: &str,
        phone_number_id: &str,
        sync: SyncType,
    ) -> Result<SyncAccepted, GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{phone_number_id}/smb_app_data")))
            .bearer_auth(token)
            .json(&json!({"messaging_product": "whatsapp", "sync_type": sync.as_str()}));
        self.execute(req).await
    }

    /// Makes sure the app's `whatsapp_business_account` subscription has `fields` (app
    /// token): reads `GET /{app-id}/subscriptions` and, when some are missing, posts the
    /// union to the same callback. Returns the fields it added.
    pub async fn ensure_app_fields(
        &self,
        app_id: &str,
        app_secret: &str,
        fields: &[&str],
    ) -> Result<Vec<String>, GraphError> {
        let app_token = format!("{app_id}|{app_secret}");
        let req = self
            .http
            .get(self.url(&format!("{app_id}/subscriptions")))
            .bearer_auth(&app_token);
        let current: AppSubscriptions = self.execute(req).await?;
        let waba = current
            .data
            .into_iter()
            .find(|s| s.object == "whatsapp_business_account")
            .unwrap_or_default();
        let mut all: Vec<String> = waba.fields.into_iter().map(|f| f.name).collect();
        let missing: Vec<String> = fields
            .iter()
            .filter(|f| !all.iter().any(|have| have == *f))
            .map(|f| (*f).to_owned())
            .collect();
        if missing.is_empty() {
            return Ok(missing);
        }
        all.extend(missing.iter().cloned());
        if !all.iter().any(|f| f == "messages") {
            all.push("messages".into());
        }
        let mut body = json!({"object": "whatsapp_business_account", "fields": all.join(",")});
        if let Some(url) = waba.callback_url {
            body["callback_url"] = Value::String(url);
        }
        let req = self
            .http
            .post(self.url(&format!("{app_id}/subscriptions")))
            .bearer_auth(&app_token)
            .json(&body);
        let _: Value = self.execute(req).await?;
        Ok(missing)
    }
}
