//! Parley's HTTP face: the REST API under `/api/v1`, Meta's webhook intake, health and
//! metrics, and the OpenAPI document. Handlers are thin: parse, call the engine, render.

pub mod audit;
pub mod auth;
pub mod console;
pub mod csv;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod session;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parley_engine::Engine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

/// Largest API request body (a message with its variables is a few KiB).
pub const API_BODY_LIMIT: usize = 256 * 1024;
/// A template's media example: Meta takes documents up to 100 MB.
pub const MEDIA_BODY_LIMIT: usize = 100 * 1024 * 1024;
/// A campaign with an uploaded list: 100,000 E.164 numbers in JSON are under 2 MB.
pub const CAMPAIGN_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Meta's webhook payloads are at most 3 MB.
pub const WEBHOOK_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Console forms and the page's JSON calls (an import preview posts the file's first 64 KiB).
/// The console's campaign form takes `CAMPAIGN_BODY_LIMIT` (it may carry a list of numbers).
pub const CONSOLE_BODY_LIMIT: usize = 256 * 1024;
// Contact imports (`POST /api/v1/contacts/import`, the console's `/import/upload`) have no
// total limit: the body streams into the import in constant memory, and each row is at most
// `parley_engine::audience::MAX_ROW_BYTES`. An `.xlsx` upload is read whole, so the engine
// stops it at `parley_engine::import_file::MAX_XLSX_BYTES` (and at what it unpacks to).

/// What the HTTP layer needs to know of Meta's app. Debug hides the secret.
#[derive(Clone)]
pub struct ServerConfig {
    /// Signs Meta's webhooks; checked on every POST to `/webhooks/whatsapp`.
    pub app_secret: String,
    /// Echoed back in Meta's verification handshake.
    pub verify_token: String,
    /// Signs console session cookies; the same on every node.
    pub session_key: session::SessionKey,
    /// Mark cookies `Secure` (set when the console is served over HTTPS).
    pub secure_cookies: bool,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// Requests per second and burst each API token may make.
    pub rate_limit: auth::RateLimit,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("app_secret", &"<redacted>")
            .field("verify_token", &"<redacted>")
            .finish()
    }
}

/// What every handler reaches through `State`: cloned for each request by each layer that
/// holds it, so it is one shared allocation (a clone is one reference count).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub engine: Engine,
    pub config: Arc<ServerConfig>,
    pub metrics: PrometheusHandle,
    /// Per-token API rate limits.
    pub limiter: Arc<auth::TokenLimiter>,
    /// The console's open live-progress streams (`console::campaigns::events`).
    pub live: console::campaigns::LiveStreams,
    /// Media uploads this node is reading or passing on to Meta at once (`UploadSlot`).
    pub uploads: Arc<tokio::sync::Semaphore>,
}

/// Media uploads (inbox files, API replies with `upload_base64`, template media examples) one
/// node handles at once: each holds its whole file in memory (up to `REPLY_BODY_LIMIT` while
/// it is read, then the file and its multipart copy for Meta; a template example, up to
/// `MEDIA_BODY_LIMIT`, is passed on without a copy), so this bounds the memory a burst of
/// uploads can take to about `MAX_UPLOADS` × 100 MiB. Beyond it: 429 `too_many_uploads` with `Retry-After`, before
/// any of the body is read. Nothing is written to disk on the way.
pub const MAX_UPLOADS: usize = 4;
/// Bodies up to this size (a text reply, a reaction) never wait for an upload slot.
pub const SMALL_BODY: u64 = 64 * 1024;

/// One of the node's upload slots, held by a handler for its whole request: a body declared
/// over `MAX` bytes is refused with 413 `body_too_large` before it is read; a body over
/// `SMALL_BODY` (or of unknown length) needs one of the node's `MAX_UPLOADS` slots, else 429
/// `too_many_uploads` with `Retry-After`. An extractor, placed after the handler's sign-in or
/// token check: only an authenticated request can hold a slot (as a middleware it ran before
/// them, and four slow uploads from anyone held a node's uploads).
pub struct UploadSlot<const MAX: usize>(
    #[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>,
);

impl<const MAX: usize> axum::extract::FromRequestParts<AppState> for UploadSlot<MAX> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        use axum::http::{StatusCode, Version, header};
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX as u64) {
            return Err(error::ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "this upload takes at most {} MiB; send larger documents by link",
                    MAX / (1024 * 1024)
                ),
            )
            .into_response());
        }
        // Without a length: on HTTP/1.1 (all `serve` speaks) no body unless chunked; on
        // HTTP/2, were it enabled, any length.
        let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
        let small = match declared {
            Some(n) => n <= SMALL_BODY,
            None => !chunked && parts.version < Version::HTTP_2,
        };
        if small {
            return Ok(UploadSlot(None));
        }
        match state.uploads.clone().try_acquire_owned() {
            Ok(slot) => Ok(UploadSlot(Some(slot))),
            Err(_) => {
                let mut resp = error::ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_uploads",
                    format!(
                        "this node is handling {MAX_UPLOADS} uploads already; try again in a moment"
                    ),
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                Err(resp)
            }
        }
    }
}

/// The process-wide Prometheus recorder (a process has one; tests start many servers).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then ours
            // renders empty, which is still valid output.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/api/v1/messages",
            get(routes::messages::list_messages).post(routes::messages::send_message),
        )
        .route("/api/v1/messages/{id}", get(routes::messages::get_message))
        .route(
            "/api/v1/campaigns",
            get(routes::campaigns::list_campaigns)
                .post(routes::campaigns::create_campaign)
                .layer(DefaultBodyLimit::max(CAMPAIGN_BODY_LIMIT)),
        )
        .route(
            "/api/v1/campaigns/{id}",
            get(routes::campaigns::get_campaign),
        )
        .route(
            "/api/v1/campaigns/{id}/plan",
            get(routes::campaigns::plan_campaign),
        )
        .route(
            "/api/v1/campaigns/{id}/stats",
            get(routes::campaigns::campaign_stats),
        )
        .route(
            "/api/v1/campaigns/{id}/start",
            axum::routing::post(routes::campaigns::start_campaign),
        )
        .route(
            "/api/v1/campaigns/{id}/pause",
            axum::routing::post(routes::campaigns::pause_campaign),
        )
        .route(
            "/api/v1/campaigns/{id}/resume",
            axum::routing::post(routes::campaigns::resume_campaign),
        )
        .route(
            "/api/v1/campaigns/{id}/cancel",
            axum::routing::post(routes::campaigns::cancel_campaign),
        )
        .route(
            "/api/v1/conversations",
            get(routes::conversations::list_conversations),
        )
        .route(
            "/api/v1/conversations/{contact}",
            get(routes::conversations::get_conversation),
        )
        .route(
            "/api/v1/conversations/{contact}/messages",
            get(routes::conversations::thread)
                .post(routes::conversations::reply)
                .layer(DefaultBodyLimit::max(
                    routes::conversations::REPLY_BODY_LIMIT,
                )),
        )
        .route(
            "/api/v1/conversations/{contact}/read",
            post(routes::conversations::mark_read),
        )
        .route(
            "/api/v1/conversations/{contact}/typing",
            post(routes::conversations::typing),
        )
        .route(
            "/api/v1/conversations/{contact}/assignee",
            axum::routing::put(routes::conversations::put_assignee),
        )
        .route("/api/v1/contacts", get(routes::contacts::list_contacts))
        .route(
            "/api/v1/contacts/{phone}",
            get(routes::contacts::get_contact)
                .put(routes::contacts::put_contact)
                .delete(routes::contacts::delete_contact),
        )
        .route(
            "/api/v1/contacts/{phone}/messages",
            get(routes::contacts::contact_messages),
        )
        .route(
            "/api/v1/contacts/import/{job}",
            get(routes::contacts::get_import),
        )
        .route(
            "/api/v1/contacts/import/{job}/rejected",
            get(routes::contacts::rejected_rows),
        )
        .route(
            "/api/v1/segments",
            get(routes::segments::list_segments).post(routes::segments::create_segment),
        )
        .route(
            "/api/v1/segments/{id}",
            get(routes::segments::get_segment).delete(routes::segments::delete_segment),
        )
        .route(
            "/api/v1/segments/preview",
            axum::routing::post(routes::segments::preview_segment),
        )
        .route(
            "/api/v1/personalize/preview",
            axum::routing::post(routes::personalize::preview),
        )
        .route(
            "/api/v1/templates",
            get(routes::templates::list_templates)
                .post(routes::templates::create_template)
                .delete(routes::templates::delete_templates_by_name),
        )
        .route(
            "/api/v1/templates/{id}",
            get(routes::templates::get_template)
                .patch(routes::templates::edit_template)
                .delete(routes::templates::delete_template),
        )
        .route(
            "/api/v1/templates/sync",
            axum::routing::post(routes::templates::sync_templates),
        )
        .route(
            "/api/v1/phone-numbers",
            get(routes::phone_numbers::list_phone_numbers),
        )
        .route(
            "/api/v1/settings/opt-out",
            get(routes::consent::get_opt_out).put(routes::consent::put_opt_out),
        )
        .route(
            "/api/v1/applications",
            get(routes::applications::list_applications)
                .post(routes::applications::create_application),
        )
        .route("/api/v1/platforms", get(routes::platforms::list_platforms))
        .route(
            "/api/v1/platforms/whatsapp/signup",
            axum::routing::post(routes::platforms::signup),
        )
        .route(
            "/api/v1/platforms/{id}",
            get(routes::platforms::get_platform)
                .delete(routes::platforms::disconnect_platform)
                .patch(routes::platforms::update_platform),
        )
        .route(
            "/api/v1/platforms/{id}/refresh",
            axum::routing::post(routes::platforms::refresh_platform),
        )
        .route(
            "/api/v1/platforms/{id}/retry",
            axum::routing::post(routes::platforms::retry_platform),
        )
        .route(
            "/api/v1/platforms/{id}/request_code",
            axum::routing::post(routes::platforms::request_code),
        )
        .route(
            "/api/v1/platforms/{id}/verify_code",
            axum::routing::post(routes::platforms::verify_code),
        )
        .route(
            "/api/v1/platforms/{id}/phone_numbers",
            axum::routing::post(routes::platforms::add_phone_number),
        )
        .route(
            "/api/v1/tokens",
            get(routes::tokens::list_tokens).post(routes::tokens::create_token),
        )
        .route(
            "/api/v1/tokens/{id}/revoke",
            post(routes::tokens::revoke_token),
        )
        .route("/api/v1/audit", get(routes::audit::list_audit))
        .route("/api/v1/stats", get(routes::stats::get_stats))
        .route(
            "/api/v1/pricing/rates",
            get(routes::pricing::get_rates)
                .put(routes::pricing::put_rates)
                .delete(routes::pricing::reset_rates),
        )
        .route("/api/v1/stats/export", get(routes::stats::export_stats))
        .route(
            "/api/v1/stats/meta",
            get(routes::meta_stats::get_meta_stats),
        )
        .route(
            "/api/v1/campaigns/{id}/export",
            get(routes::stats::export_campaign),
        )
        .route(
            "/api/v1/event-endpoints",
            get(routes::event_endpoints::list_endpoints)
                .post(routes::event_endpoints::create_endpoint),
        )
        .route(
            "/api/v1/event-endpoints/{id}",
            get(routes::event_endpoints::get_endpoint)
                .patch(routes::event_endpoints::update_endpoint)
                .delete(routes::event_endpoints::delete_endpoint),
        )
        .route(
            "/api/v1/event-endpoints/{id}/rotate-secret",
            post(routes::event_endpoints::rotate_secret),
        )
        .route(
            "/api/v1/event-endpoints/{id}/deliveries",
            get(routes::event_endpoints::list_deliveries),
        )
        .route(
            "/api/v1/event-endpoints/{id}/deliveries/{delivery}/replay",
            post(routes::event_endpoints::replay_delivery),
        )
        .route(
            "/api/v1/event-endpoints/{id}/replay",
            post(routes::event_endpoints::replay_range),
        )
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    let webhooks = Router::new()
        .route(
            "/webhooks/whatsapp",
            get(routes::webhooks::verify).post(routes::webhooks::receive),
        )
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
    let media = Router::new()
        .route(
            "/api/v1/media/uploads",
            axum::routing::post(routes::templates::upload_media),
        )
        .route(
            "/templates/uploads",
            axum::routing::post(console::templates::upload),
        )
        // A template's media example (a PDF up to 100 MiB) is held whole while it goes to
        // Meta: these share the node's upload slots with the inbox's files (`UploadSlot`).
        .layer(DefaultBodyLimit::max(MEDIA_BODY_LIMIT))
        // An inbox file is at most Meta's largest upload for a reply (16 MiB).
        .route(
            "/inbox/{contact}/media",
            axum::routing::post(console::inbox::reply_media).layer(DefaultBodyLimit::max(
                parley_engine::conversations::MAX_UPLOAD_BYTES,
            )),
        );
    let console = {
        use console::{access, audience, campaigns, people, platforms, templates};
        Router::new()
            .route("/", get(console::overview))
            .route("/login", get(people::login_page).post(people::login))
            .route("/login/code", get(people::code_page).post(people::code))
            .route("/logout", post(people::logout))
            .route(
                "/setup/{token}",
                get(people::setup_page).post(people::setup),
            )
            .route(
                "/invite/{token}",
                get(people::invite_page).post(people::accept_invite),
            )
            .route("/session/application", post(people::switch_application))
            .route(
                "/settings/applications",
                get(people::applications_page).post(people::create_application),
            )
            .route("/settings/users", get(people::users_page))
            .route("/settings/users/invite", post(people::invite_user))
            .route("/settings/users/{user}/role", post(people::change_role))
            .route("/settings/users/{user}/remove", post(people::remove_user))
            .route(
                "/settings/users/invites/{id}/revoke",
                post(people::revoke_invite),
            )
            .route("/account", get(people::account_page))
            .route("/account/password", post(people::change_password))
            .route("/account/totp/start", post(people::totp_start))
            .route("/account/totp/confirm", post(people::totp_confirm))
            .route("/account/totp/disable", post(people::totp_disable))
            .route("/account/sessions/{id}/end", post(people::end_session))
            .route("/dashboards", get(console::dashboards::page))
            .route("/dashboards/meta", get(console::meta_compare::page))
            .route("/messages", get(console::messages))
            .route("/inbox", get(console::inbox::inbox_page))
            .route("/inbox/list", get(console::inbox::list_fragment))
            .route("/inbox/events", get(console::inbox::events))
            .route("/inbox/{contact}", get(console::inbox::thread_page))
            .route("/inbox/{contact}/live", get(console::inbox::live_fragment))
            .route("/inbox/{contact}/reply", post(console::inbox::reply))
            .route("/inbox/{contact}/read", post(console::inbox::read))
            .route("/inbox/{contact}/typing", post(console::inbox::typing))
            .route("/inbox/{contact}/assign", post(console::inbox::assign))
            .route("/contacts", get(audience::contacts_page))
            .route("/contacts/count", post(audience::count))
            .route("/contacts/{phone}", get(audience::contact_page))
            .route("/media/inbound/{wamid}", get(console::inbound_media))
            .route(
                "/segments",
                get(audience::segments_page).post(audience::create_segment),
            )
            .route("/segments/{id}/delete", post(audience::delete_segment))
            .route("/import", get(audience::import_page))
            .route("/import/preview", post(audience::import_preview))
            // A workbook is previewed whole (its directory is at its end), as large as an
            // `.xlsx` import takes.
            .route(
                "/import/preview/workbook",
                post(audience::import_preview).layer(DefaultBodyLimit::max(
                    parley_engine::import_file::MAX_XLSX_BYTES,
                )),
            )
            // The file streams into the import (constant memory), so no size limit applies.
            .route(
                "/import/upload",
                post(audience::import_upload).layer(DefaultBodyLimit::disable()),
            )
            .route("/import/{id}/progress", get(audience::import_progress))
            .route(
                "/import/{id}/resume",
                post(audience::import_resume).layer(DefaultBodyLimit::disable()),
            )
            .route("/import/{id}/rejected.csv", get(audience::import_rejected))
            .route("/templates", get(templates::list).post(templates::create))
            .route("/templates/new", get(templates::new_form))
            .route("/templates/sync", post(templates::sync))
            .route("/templates/{id}", get(templates::detail))
            .route("/templates/{id}/delete", post(templates::delete))
            .route("/settings/platforms", get(platforms::platforms_page))
            .route("/settings/platforms/list", get(platforms::platforms_list))
            .route(
                "/settings/platforms/whatsapp/signup",
                post(platforms::signup),
            )
            .route("/settings/platforms/{id}/{action}", post(platforms::action))
            .route("/campaigns/whatsapp", get(platforms::campaigns_page))
            .route(
                "/campaigns/whatsapp/new",
                get(campaigns::new_form)
                    .post(campaigns::create)
                    .layer(DefaultBodyLimit::max(CAMPAIGN_BODY_LIMIT)),
            )
            .route("/campaigns/whatsapp/preview", post(campaigns::preview))
            .route("/campaigns/whatsapp/{id}", get(campaigns::detail))
            .route("/campaigns/whatsapp/{id}/stats", get(campaigns::stats))
            .route(
                "/campaigns/whatsapp/{id}/export.csv",
                get(campaigns::export),
            )
            .route("/campaigns/whatsapp/{id}/events", get(campaigns::events))
            .route("/campaigns/whatsapp/{id}/{action}", post(campaigns::action))
            .route(
                "/settings/tokens",
                get(access::tokens_page).post(access::create_token),
            )
            .route("/settings/tokens/{id}/revoke", post(access::revoke_token))
            .route("/settings/audit", get(access::audit_page))
            .route(
                "/settings/opt-out",
                get(console::consent::opt_out_page).post(console::consent::save_opt_out),
            )
            .route(
                "/settings/pricing",
                get(console::pricing::pricing_page).post(console::pricing::save_pricing),
            )
            .route(
                "/settings/events",
                get(console::events::list).post(console::events::create),
            )
            .route("/settings/events/{id}", get(console::events::detail))
            .route(
                "/settings/events/{id}/deliveries/{delivery}/replay",
                post(console::events::replay_delivery),
            )
            .route(
                "/settings/events/{id}/{action}",
                post(console::events::action),
            )
            .route("/console.css", get(console::stylesheet))
            .route("/console/templates.css", get(console::templates_stylesheet))
            .route("/console/templates.js", get(console::templates_script))
            .route("/console/campaigns.js", get(console::campaigns_script))
            .route("/console/platforms.js", get(console::platforms_script))
            .route("/console/audience.js", get(console::audience_script))
            .route("/console/inbox.js", get(console::inbox_script))
            .layer(DefaultBodyLimit::max(CONSOLE_BODY_LIMIT))
    };
    Router::new()
        .merge(api)
        .merge(webhooks)
        .merge(media)
        .merge(console)
        // Imports stream their body (constant memory), so no size limit applies.
        .route(
            "/api/v1/contacts/import",
            axum::routing::post(routes::contacts::start_import)
                .layer(DefaultBodyLimit::disable())
                .get(routes::contacts::list_imports),
        )
        .route(
            "/api/v1/contacts/import/{job}/resume",
            axum::routing::post(routes::contacts::resume_import).layer(DefaultBodyLimit::disable()),
        )
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/docs", get(api_docs))
        .route(
            "/api/docs.js",
            get(|| async { console::asset(console::JS, include_str!("api_docs.js")) }),
        )
        .route(
            "/api/docs.css",
            get(|| async { console::asset(console::CSS, include_str!("api_docs.css")) }),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(console::nav_scope))
        .layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .layer(middleware::from_fn(track_requests))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

async fn openapi_json() -> Response {
    axum::Json(openapi::ApiDoc::openapi()).into_response()
}

async fn api_docs() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("api_docs.html"))
}

async fn not_found() -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "route_not_found",
        "no such endpoint; the API is described at /api/openapi.json",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error::ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "Parley hit an internal error; it was logged. Try again.",
    )
    .into_response()
}

/// Put on a response (as an extension) by the pages that show Log in with Facebook: their
/// Content-Security-Policy also allows Meta's SDK (or the sandbox's stand-in) from the
/// configured origin.
#[derive(Clone, Copy, Debug)]
pub struct LoadsMetaSdk;

/// Every page, asset and API answer: only Parley's own scripts, styles, images and fetches;
/// no framing; no MIME sniffing; no referrer to other sites.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-src 'none'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The signup pages' policy: the default one plus the SDK's origin (its script, its calls) and
/// the dialog's origins (Meta's SDK frames and calls facebook.com; the sandbox's stand-in
/// calls its own origin). Meta's SDK injects its own `<style>` elements, so inline styles (not
/// scripts) are allowed on these pages only.
pub fn signup_content_security_policy(meta: &parley_engine::MetaApp) -> String {
    let sdk = source_origin(&meta.sdk_url);
    let dialog = if meta.message_origin.contains("://") {
        source_origin(&meta.message_origin)
    } else {
        let domain = meta.message_origin.trim_matches('.');
        let ok = !domain.is_empty()
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        if ok {
            format!("https://{domain} https://*.{domain}")
        } else {
            String::new()
        }
    };
    let foreign = [sdk.as_str(), dialog.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let frames = if foreign.is_empty() {
        "'none'"
    } else {
        foreign.as_str()
    };
    format!(
        "default-src 'self'; script-src 'self' {sdk}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: {foreign}; connect-src 'self' {foreign}; frame-src {frames}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// `scheme://host[:port]` of a URL, as a CSP source; empty when it is not an http(s) URL
/// (or would break the header).
fn source_origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let ok = matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        format!("{scheme}://{authority}")
    } else {
        String::new()
    }
}

async fn security_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    use axum::http::{HeaderValue, header};
    let mut resp = next.run(req).await;
    let csp = if resp.extensions().get::<LoadsMetaSdk>().is_some() {
        HeaderValue::from_str(&signup_content_security_policy(
            &state.engine.config.meta_app,
        ))
        .unwrap_or(HeaderValue::from_static(CONTENT_SECURITY_POLICY))
    } else {
        HeaderValue::from_static(CONTENT_SECURITY_POLICY)
    };
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

async fn track_requests(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("parley_http_requests_total", "method" => method.clone(), "path" => path.clone(), "status" => status).increment(1);
    metrics::histogram!("parley_http_request_seconds", "method" => method, "path" => path)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    router: Router,
    /// Ended at shutdown: open event streams must not hold the graceful stop.
    live: console::campaigns::LiveStreams,
}

impl Server {
    pub fn new(listener: TcpListener, engine: Engine, config: ServerConfig) -> Self {
        let live = console::campaigns::LiveStreams::new();
        let state = AppState(Arc::new(AppStateInner {
            engine,
            limiter: Arc::new(auth::TokenLimiter::new(config.rate_limit)),
            config: Arc::new(config),
            metrics: metrics_handle(),
            live: live.clone(),
            uploads: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
        }));
        Server {
            listener,
            router: router(state),
            live,
        }
    }

    /// A worker node's server (`parley serve --role worker`): `/healthz`, `/readyz` and
    /// `/metrics` only; everything else is 404 `route_not_found`.
    pub fn health_only(listener: TcpListener, engine: Engine, config: ServerConfig) -> Self {
        let live = console::campaigns::LiveStreams::new();
        let state = AppState(Arc::new(AppStateInner {
            engine,
            limiter: Arc::new(auth::TokenLimiter::new(config.rate_limit)),
            config: Arc::new(config),
            metrics: metrics_handle(),
            live: live.clone(),
            uploads: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
        }));
        let router = Router::new()
            .route("/healthz", get(routes::health::healthz))
            .route("/readyz", get(routes::health::readyz))
            .route("/metrics", get(routes::health::metrics))
            .fallback(not_found)
            .layer(middleware::from_fn(track_requests))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                security_headers,
            ))
            .with_state(state);
        Server {
            listener,
            router,
            live,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then lets in-flight requests finish (up to 10 s).
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let grace = shutdown.clone();
        let live = self.live.clone();
        let closing = shutdown.clone();
        tokio::spawn(async move {
            closing.cancelled().await;
            live.close();
        });
        // The peer address reaches handlers (the sign-in throttle counts per address).
        let app = self
            .router
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { grace.cancelled().await });
        tokio::select! {
            r = serve => r,
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            } => Ok(()),
        }
    }
}
