//! The Graph API client. One `reqwest::Client` (connection pool) per process; the base URL is
//! `https://graph.facebook.com` in production and the sandbox's address everywhere else.

use std::collections::HashMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorEnvelope, GraphError};

#[derive(Clone)]
pub struct GraphClient {
    pub(crate) http: reqwest::Client,
    base_url: String,
    version: String,
    /// `…/{phone-number-id}/messages`, parsed once per number: a send is the hot path, and
    /// parsing the address took about as long as serializing the message.
    send_urls: std::sync::Arc<std::sync::Mutex<HashMap<String, reqwest::Url>>>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.base_url)
            .field("version", &self.version)
            .finish()
    }
}

/// Answer to a successful send.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SendResponse {
    #[serde(default)]
    pub contacts: Vec<SendContact>,
    #[serde(default)]
    pub messages: Vec<SentMessage>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SendContact {
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub wa_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SentMessage {
    pub id: String,
    #[serde(default)]
    pub message_status: Option<String>,
}

impl SendResponse {
    pub fn wamid(&self) -> Option<&str> {
        self.messages.first().map(|m| m.id.as_str())
    }
}

/// One page of a Graph list with its `after` cursor when more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub after: Option<String>,
}

#[derive(Deserialize)]
struct RawPage<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    cursors: Option<Cursors>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Cursors {
    #[serde(default)]
    after: Option<String>,
}

/// The fields of a business phone number that Parley shows and acts on.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct PhoneNumberInfo {
    pub id: String,
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub verified_name: Option<String>,
    #[serde(default)]
    pub quality_rating: Option<String>,
    #[serde(default)]
    pub name_status: Option<String>,
    #[serde(default)]
    pub code_verification_status: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub throughput: Option<Throughput>,
    /// The portfolio's messaging limit as a tier string (`TIER_2K`), whatever form Meta gave
    /// it in: a tier string, `UNLIMITED`, a number of users (`2000`) or `-1` (unlimited).
    #[serde(default, deserialize_with = "limit_text")]
    pub whatsapp_business_manager_messaging_limit: Option<String>,
    /// True for a WhatsApp Business app number on the Cloud API (coexistence).
    #[serde(default)]
    pub is_on_biz_app: Option<bool>,
    #[serde(default)]
    pub platform_type: Option<String>,
}

/// A messaging limit read like the webhooks' (`LimitTier`), kept as its tier string.
fn limit_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(crate::webhook::limit_tier(d)?.map(|tier| tier.as_str().to_owned()))
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct Throughput {
    #[serde(default)]
    pub level: Option<String>,
}

pub const PHONE_NUMBER_FIELDS: &str = "id,display_phone_number,verified_name,quality_rating,name_status,code_verification_status,status,throughput,whatsapp_business_manager_messaging_limit,is_on_biz_app,platform_type";

/// The fields of a WhatsApp Business Account that Parley shows.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct WabaInfo {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub timezone_id: Option<String>,
    #[serde(default)]
    pub message_template_namespace: Option<String>,
    #[serde(default)]
    pub account_review_status: Option<String>,
    #[serde(default)]
    pub business_verification_status: Option<String>,
}

/// A WABA's Marketing Messages API state (META_2026 §7).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WabaMarketingStatus {
    /// `ELIGIBLE`, `ONBOARDED`, … (absent: Meta did not say).
    #[serde(default)]
    pub marketing_messages_onboarding_status: Option<String>,
    /// Marketing templates are refused on the Cloud API `/messages` (131063).
    #[serde(default)]
    pub disable_marketing_messages_on_cloud_api: Option<bool>,
}

impl WabaMarketingStatus {
    /// Onboarded: the terms of service are signed, marketing sends may use the API.
    pub fn onboarded(&self) -> bool {
        self.marketing_messages_onboarding_status.as_deref() == Some("ONBOARDED")
    }
}

/// `GET /{media-id}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MediaInfo {
    pub url: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// A string in Meta's examples; a number is taken too.
    #[serde(default, deserialize_with = "crate::webhook::string_or_number")]
    pub file_size: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

/// A downloaded media.
#[derive(Debug, Clone)]
pub enum Download {
    Bytes {
        bytes: Vec<u8>,
        content_type: Option<String>,
    },
    /// Larger than the limit (declared or read): not read further.
    TooLarge,
}

pub const WABA_FIELDS: &str = "id,name,currency,timezone_id,message_template_namespace,account_review_status,business_verification_status";

/// The header carrying a send's fencing token (see `GraphClient::send_message_fenced`).
pub const FENCE_HEADER: &str = "X-Parley-Fence";

impl GraphClient {
    /// `base_url` without trailing slash, e.g. `https://graph.facebook.com`.
    pub fn new(base_url: impl Into<String>, version: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        GraphClient {
            http,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            version: version.into(),
            send_urls: Default::default(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base_url, self.version, path)
    }

    /// `POST /{phone-number-id}/messages`.
    pub async fn send_message(
        &self,
        token: &str,
        phone_number_id: &str,
        body: &impl Serialize,
    ) -> Result<SendResponse, GraphError> {
        self.post_message(token, phone_number_id, body, None).await
    }

    /// `send_message` with the sender's fencing token in `X-Parley-Fence`: Meta ignores the
    /// header; the sandbox records it, so a test can show that no send went under a token
    /// older than one already seen for the number.
    pub async fn send_message_fenced(
        &self,
        token: &str,
        phone_number_id: &str,
        body: &impl Serialize,
        fence: i64,
    ) -> Result<SendResponse, GraphError> {
        self.post_message(token, phone_number_id, body, Some(fence))
            .await
    }

    async fn post_message(
        &self,
        token: &str,
        phone_number_id: &str,
        body: &impl Serialize,
        fence: Option<i64>,
    ) -> Result<SendResponse, GraphError> {
        let mut req =
            self.http
                .post(self.send_url(phone_number_id).map_err(|e| {
                    GraphError::Transport(format!("invalid Graph API address: {e}"))
                })?)
                .bearer_auth(token)
                .json(body);
        if let Some(fence) = fence {
            req = req.header(FENCE_HEADER, fence.to_string());
        }
        self.execute(req).await
    }

    fn send_url(&self, phone_number_id: &str) -> Result<reqwest::Url, String> {
        let mut urls = self
            .send_urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(url) = urls.get(phone_number_id) {
            return Ok(url.clone());
        }
        let url = reqwest::Url::parse(&self.url(&format!("{phone_number_id}/messages")))
            .map_err(|e| e.to_string())?;
        if urls.len() >= 10_000 {
            urls.clear();
        }
        urls.insert(phone_number_id.to_owned(), url.clone());
        Ok(url)
    }

    /// `POST /{phone-number-id}/messages` with a read receipt (and typing indicator) body
    /// (`outbound::mark_read_body`, `outbound::typing_indicator_body`): `{"success": true}`.
    pub async fn mark_read(
        &self,
        token: &str,
        phone_number_id: &str,
        body: &serde_json::Value,
    ) -> Result<(), GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{phone_number_id}/messages")))
            .bearer_auth(token)
            .json(body);
        let _: serde_json::Value = self.execute(req).await?;
        Ok(())
    }

    /// `POST /{phone-number-id}/media` (multipart: `messaging_product=whatsapp`, `type`, and
    /// the `file` with its type) → Meta's media id, for sending by `id`.
    pub async fn upload_media(
        &self,
        token: &str,
        phone_number_id: &str,
        bytes: &[u8],
        mime_type: &str,
        filename: &str,
    ) -> Result<String, GraphError> {
        #[derive(serde::Deserialize)]
        struct Uploaded {
            id: String,
        }
        // The file's own hash: a boundary that cannot be a prefix of its bytes by chance.
        let boundary = {
            use sha2::Digest;
            format!("parley-{}", hex::encode(&sha2::Sha256::digest(bytes)[..12]))
        };
        let (content_type, body) = multipart_body(&boundary, bytes, mime_type, filename);
        let req = self
            .http
            .post(self.url(&format!("{phone_number_id}/media")))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        let uploaded: Uploaded = self.execute(req).await?;
        Ok(uploaded.id)
    }

    /// `GET /{waba-id}/message_templates`, one page; templates stay raw Meta JSON.
    pub async fn list_templates(
        &self,
        token: &str,
        waba_id: &str,
        after: Option<&str>,
    ) -> Result<Page<Value>, GraphError> {
        let mut query = vec![
            ("limit", "100".to_owned()),
            (
                "fields",
                "id,name,language,category,status,parameter_format,components,quality_score,rejected_reason".to_owned(),
            ),
        ];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        let req = self
            .http
            .get(self.url(&format!("{waba_id}/message_templates")))
            .bearer_auth(token)
            .query(&query);
        self.page(req).await
    }

    /// Every template of a WABA, following the cursors.
    pub async fn all_templates(
        &self,
        token: &str,
        waba_id: &str,
    ) -> Result<Vec<Value>, GraphError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .list_templates(token, waba_id, after.as_deref())
                .await?;
            out.extend(page.data);
            match page.after {
                Some(a) if Some(&a) != after.as_ref() => after = Some(a),
                _ => return Ok(out),
            }
        }
    }

    /// `GET /{waba-id}/phone_numbers` (all pages).
    pub async fn list_phone_numbers(
        &self,
        token: &str,
        waba_id: &str,
    ) -> Result<Vec<PhoneNumberInfo>, GraphError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("fields", PHONE_NUMBER_FIELDS.to_owned())];
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let req = self
                .http
                .get(self.url(&format!("{waba_id}/phone_numbers")))
                .bearer_auth(token)
                .query(&query);
            let page: Page<PhoneNumberInfo> = self.page(req).await?;
            out.extend(page.data);
            match page.after {
                Some(a) if Some(&a) != after.as_ref() => after = Some(a),
                _ => return Ok(out),
            }
        }
    }

    /// `GET /{phone-number-id}`.
    pub async fn get_phone_number(
        &self,
        token: &str,
        phone_number_id: &str,
    ) -> Result<PhoneNumberInfo, GraphError> {
        let req = self
            .http
            .get(self.url(phone_number_id))
            .bearer_auth(token)
            .query(&[("fields", PHONE_NUMBER_FIELDS)]);
        self.execute(req).await
    }

    /// `POST /{phone-number-id}/marketing_messages` (the Marketing Messages API, META_2026
    /// §7): marketing templates only; the body as for `/messages` plus `product_policy` and
    /// the template's `message_send_ttl_seconds` (see `outbound::marketing_message_body`).
    pub async fn send_marketing_message(
        &self,
        token: &str,
        phone_number_id: &str,
        body: &impl Serialize,
        fence: Option<i64>,
    ) -> Result<SendResponse, GraphError> {
        let mut req = self
            .http
            .post(self.url(&format!("{phone_number_id}/marketing_messages")))
            .bearer_auth(token)
            .json(body);
        if let Some(fence) = fence {
            req = req.header(FENCE_HEADER, fence.to_string());
        }
        self.execute(req).await
    }

    /// `GET /{waba-id}?fields=marketing_messages_onboarding_status,disable_marketing_messages_on_cloud_api`
    /// (META_2026 §7): whether the WABA may send through the Marketing Messages API.
    pub async fn waba_marketing_status(
        &self,
        token: &str,
        waba_id: &str,
    ) -> Result<WabaMarketingStatus, GraphError> {
        let req = self
            .http
            .get(self.url(waba_id))
            .bearer_auth(token)
            .query(&[(
                "fields",
                "id,marketing_messages_onboarding_status,disable_marketing_messages_on_cloud_api",
            )]);
        self.execute(req).await
    }

    /// `GET /{waba-id}`.
    pub async fn get_waba(&self, token: &str, waba_id: &str) -> Result<WabaInfo, GraphError> {
        let req = self
            .http
            .get(self.url(waba_id))
            .bearer_auth(token)
            .query(&[("fields", WABA_FIELDS)]);
        self.execute(req).await
    }

    /// `GET /{media-id}?phone_number_id=`: where to download an inbound media (the URL lives
    /// five minutes and needs the same token).
    pub async fn get_media(
        &self,
        token: &str,
        media_id: &str,
        phone_number_id: &str,
    ) -> Result<MediaInfo, GraphError> {
        let req = self
            .http
            .get(self.url(media_id))
            .bearer_auth(token)
            .query(&[("phone_number_id", phone_number_id)]);
        self.execute(req).await
    }

    /// Downloads a media URL with the token, reading at most `max_bytes`.
    pub async fn download_media(
        &self,
        token: &str,
        url: &str,
        max_bytes: u64,
    ) -> Result<Download, GraphError> {
        let mut resp = self
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| GraphError::Transport(redact(e)))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let bytes = resp.bytes().await.unwrap_or_default();
            return match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
                Ok(env) => Err(GraphError::Api {
                    http_status: status,
                    error: env.error,
                }),
                Err(_) => Err(GraphError::Decode {
                    http_status: status,
                    detail: snippet(&bytes),
                }),
            };
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp.content_length().is_some_and(|n| n > max_bytes) {
            return Ok(Download::TooLarge);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| GraphError::Transport(redact(e)))?
        {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Ok(Download::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Download::Bytes {
            bytes,
            content_type,
        })
    }

    async fn page<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Page<T>, GraphError> {
        let raw: RawPage<T> = self.execute(req).await?;
        let after = raw.paging.and_then(|p| {
            // Meta omits `next` on the last page while still giving cursors.
            p.next.as_ref()?;
            p.cursors.and_then(|c| c.after)
        });
        Ok(Page {
            data: raw.data,
            after,
        })
    }

    pub(crate) async fn execute<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, GraphError> {
        let resp = req
            .send()
            .await
            .map_err(|e| GraphError::Transport(redact(e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| GraphError::Transport(redact(e)))?;
        if (200..300).contains(&status) {
            serde_json::from_slice(&bytes).map_err(|e| GraphError::Decode {
                http_status: status,
                detail: format!("{e}: {}", snippet(&bytes)),
            })
        } else {
            match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
                Ok(env) => Err(GraphError::Api {
                    http_status: status,
                    error: env.error,
                }),
                Err(_) => Err(GraphError::Decode {
                    http_status: status,
                    detail: snippet(&bytes),
                }),
            }
        }
    }
}

/// reqwest errors may carry the URL; URLs here never hold tokens (bearer header), but strip
/// query strings anyway so nothing secret reaches a log.
fn redact(e: reqwest::Error) -> String {
    let timeout = if e.is_timeout() { " (timed out)" } else { "" };
    format!("{}{timeout}", e.without_url())
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.chars().take(300).collect()
}

/// A `multipart/form-data` body for `POST /{phone-number-id}/media`: its content type and bytes.
/// Quotes and line breaks in the file name are replaced (they would end the header).
pub fn multipart_body(
    boundary: &str,
    bytes: &[u8],
    mime_type: &str,
    filename: &str,
) -> (String, Vec<u8>) {
    let safe: String = filename
        .chars()
        .map(|c| {
            if matches!(c, '"' | '\r' | '\n' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mime: String = mime_type.chars().filter(|c| !c.is_control()).collect();
    let mut body = Vec::with_capacity(bytes.len() + 512);
    for (name, value) in [("messaging_product", "whatsapp"), ("type", mime.as_str())] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
