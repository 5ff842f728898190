//! `GET /dashboards/meta`: Meta's own numbers beside Parley's (#16 item 5), the table of
//! `GET /api/v1/stats/meta` with its flags, for a picked period and platform.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{SignedIn, render};
use crate::AppState;
use crate::routes::meta_stats::{MetaStatsQuery, MetaStatsView};

#[derive(Debug, Default, Deserialize)]
pub struct MetaDashQuery {
    /// First day (YYYY-MM-DD, UTC).
    pub from: Option<String>,
    /// Last day, included (YYYY-MM-DD).
    pub to: Option<String>,
    pub platform: Option<String>,
    pub tolerance_pct: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The API's `to` for a picked last day: the next midnight.
fn end_of_day(s: &str) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(s, &fmt).ok().and_then(|d| d.next_day()) {
        Some(d) => d.format(&fmt).unwrap_or_else(|_| s.to_owned()),
        None => s.to_owned(),
    }
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "dashboard_meta.html")]
struct MetaPage {
    active: &'static str,
    email: String,
    from: String,
    to: String,
    tolerance: String,
    api_query: String,
    view: Option<MetaStatsView>,
    error: Option<(String, String)>,
}

/// `GET /dashboards/meta`.
pub async fn page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<MetaDashQuery>,
) -> Response {
    let api = MetaStatsQuery {
        from: nonempty(&q.from),
        to: nonempty(&q.to).map(|t| end_of_day(&t)),
        platform: nonempty(&q.platform),
        tolerance_pct: nonempty(&q.tolerance_pct),
    };
    let mut api_query: Vec<String> = Vec::new();
    for (k, v) in [
        ("from", &api.from),
        ("to", &api.to),
        ("platform", &api.platform),
        ("tolerance_pct", &api.tolerance_pct),
    ] {
        if let Some(v) = v {
            api_query.push(format!("{k}={}", enc(v)));
        }
    }
    let (view, error) = match state.engine.compare_with_meta(&app.id, &api.params()).await {
        Ok(c) => (Some(MetaStatsView::from(c)), None),
        Err(e) => (None, Some((e.code.to_owned(), e.message))),
    };
    render(&MetaPage {
        active: "dashboards",
        email,
        from: nonempty(&q.from).unwrap_or_default(),
        to: nonempty(&q.to).unwrap_or_default(),
        tolerance: nonempty(&q.tolerance_pct).unwrap_or_default(),
        api_query: api_query.join("&"),
        view,
        error,
    })
}
