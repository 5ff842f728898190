//! `/api/v1/stats`: the application's statistics from the counters (#16), per hour, day, week
//! or month, optionally grouped and filtered, as JSON or CSV. Bounded, not paginated: a
//! request covers at most 400 days, 1,000 buckets and 20,000 rows (400 with a stable code
//! otherwise).

use crate::error::Query;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use parley_domain::{ApplicationId, CampaignId};
use parley_engine::campaigns::campaign_id;
use parley_engine::stats::{
    BREAKDOWNS, Breakdowns, METRICS, Metrics, StatCounts, StatsParams, StatsReport, StatsRequest,
};
use parley_store::stats::CampaignOutcome;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AppAuth, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::messages::rfc3339;

#[derive(Debug, Deserialize, IntoParams)]
pub struct StatsQuery {
    /// Start, RFC 3339 or a date (UTC); rounded down to the interval. Default: 30 days before `to`.
    pub from: Option<String>,
    /// End (exclusive), RFC 3339 or a date (UTC); rounded up to the interval. Default: now.
    pub to: Option<String>,
    /// `hour`, `day` (default), `week` (ISO, from Monday) or `month`, in UTC.
    pub interval: Option<String>,
    /// `campaign`, `template`, `phone_number`, `category`, `country` or `conversation_origin`.
    pub group_by: Option<String>,
    /// Only this campaign (`cmp_…`).
    pub campaign: Option<String>,
    /// Only this template name.
    pub template: Option<String>,
    /// Only this phone number id.
    pub phone_number: Option<String>,
    /// Only this category (the pricing category Meta reported, `service` for a non-template
    /// message, '' for a template not priced yet).
    pub category: Option<String>,
    /// Only this country (ISO 3166 alpha-2 of the recipient).
    pub country: Option<String>,
    /// Only this conversation origin: `business` (a template), `customer` (a reply inside the
    /// window, or an inbound message), `free_entry_point`.
    pub conversation_origin: Option<String>,
    /// CSV only: begin with a UTF-8 byte-order mark (`true`), for spreadsheet programs.
    pub bom: Option<bool>,
}

impl StatsQuery {
    fn params(&self) -> StatsParams {
        let mut filters = Vec::new();
        for (k, v) in [
            ("campaign", &self.campaign),
            ("template", &self.template),
            ("phone_number", &self.phone_number),
            ("category", &self.category),
            ("country", &self.country),
            ("conversation_origin", &self.conversation_origin),
        ] {
            if let Some(v) = v {
                filters.push((k.to_owned(), v.clone()));
            }
        }
        StatsParams {
            from: self.from.clone(),
            to: self.to.clone(),
            interval: self.interval.clone(),
            group_by: self.group_by.clone(),
            filters,
        }
    }
}

/// The counts of a bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountsView {
    /// Every metric, zero included: `queued`, `sent`, `delivered` (once per message, even
    /// when `read` came first), `read`, `failed`, `skipped`, `held_by_meta`,
    /// `capped_by_meta`, `replied`, `reactions`, `button_clicks`, `opt_outs`, `inbound`,
    /// `conversations_by_customer` (inbound messages that open a closed service window: none
    /// from the sender in the 24 h before), `conversations_by_business` (templates Meta
    /// accepted for a contact outside its service window: what counts against the messaging
    /// limit), `unique_contacts_outside_window` (contacts that start counting against the
    /// messaging limit: reached outside their window with no such reach in the 24 h before, as
    /// Meta counts unique users in a moving 24 h; per scope in the breakdown), `charged`
    /// (messages Meta reported as billable: `pricing.type` `regular`).
    #[schema(value_type = Object)]
    pub metrics: Metrics,
    /// `failed_by_code` (Meta's error code), `skipped_by_reason`, `charged_by_category`,
    /// `inbound_by_kind`, `opt_outs_by_source`, `unique_contacts_outside_window_by_scope`
    /// (the limit scope: `bp:<business portfolio>` or `pn:<phone number id>`): detail → count.
    #[schema(value_type = Object)]
    pub breakdown: Breakdowns,
}

impl From<StatCounts> for CountsView {
    fn from(c: StatCounts) -> Self {
        CountsView {
            metrics: c.metrics,
            breakdown: c.breakdown,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BucketView {
    /// The bucket's start (UTC).
    pub start: String,
    /// The group's value when grouped ('' = none or unknown, e.g. no campaign).
    pub group: Option<String>,
    #[serde(flatten)]
    pub counts: CountsView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsView {
    pub from: String,
    pub to: String,
    pub interval: String,
    pub group_by: Option<String>,
    /// Every bucket of the period, one row per group that has counts in it (a bucket with
    /// none has one row of zeros).
    pub data: Vec<BucketView>,
    pub totals: CountsView,
    /// Spend in the period (summed by UTC day, with the filters): `reported` prices what Meta
    /// reported as charged in the statuses' `pricing` objects (`marketing_lite` as
    /// marketing), `estimated` what Parley expects under the 2026-10-01 rules (every
    /// delivered message charged, except in a free entry point), both with the application's
    /// price table (`GET /api/v1/pricing/rates`) and its volume tiers; amounts are decimal
    /// strings in `currency`; `by_category`; `unpriced_messages`.
    #[schema(value_type = Object)]
    pub cost: Option<parley_engine::pricing::SpendView>,
    /// Messaging-limit use per limit scope (`bp:<business portfolio>` or `pn:<phone number
    /// id>`): `used`, the unique contacts counted in the moving 24 h at the end of each bucket
    /// (one per bucket, in order; after now, those still counted then if nothing else is
    /// sent). Empty when a filter is given: a scope's count is not split by campaign, template,
    /// number, ….
    pub messaging_limit: Vec<LimitUseView>,
}

/// One limit scope's use over the period.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitUseView {
    pub scope: String,
    pub used: Vec<i64>,
}

impl From<StatsReport> for StatsView {
    fn from(r: StatsReport) -> Self {
        StatsView {
            from: rfc3339(r.from),
            to: rfc3339(r.to),
            interval: r.interval.as_str().to_owned(),
            group_by: r.group_by.map(|d| d.name().to_owned()),
            data: r
                .data
                .into_iter()
                .map(|b| BucketView {
                    start: rfc3339(b.start),
                    group: b.group,
                    counts: b.counts.into(),
                })
                .collect(),
            totals: r.totals.into(),
            cost: None,
            messaging_limit: r
                .messaging_limit
                .into_iter()
                .map(|s| LimitUseView {
                    scope: s.scope,
                    used: s.used,
                })
                .collect(),
        }
    }
}

async fn report(
    state: &AppState,
    app: &parley_domain::ApplicationId,
    q: &StatsQuery,
) -> Result<StatsReport, ApiError> {
    let req = StatsRequest::parse(&q.params(), state.engine.now())?;
    Ok(state.engine.stats(app, &req).await?)
}

/// The application's statistics for a period, from counters kept as events are applied
/// (duplicated or reordered webhooks never count twice).
#[utoipa::path(
    get, path = "/api/v1/stats", tag = "statistics", params(StatsQuery),
    responses(
        (status = 200, body = StatsView),
        (status = 400, description = "`invalid_time`, `invalid_range`, `range_too_large`, `invalid_interval`, `too_many_buckets`, `invalid_group_by`, `invalid_filter`, `too_many_rows`", body = ErrorBody),
        (status = 403, description = "The token lacks the `read` scope", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn get_stats(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<StatsQuery>,
) -> Result<ApiJson<StatsView>, ApiError> {
    let req = StatsRequest::parse(&q.params(), state.engine.now())?;
    // The report and the spend read different counters (the period's buckets; the days from
    // the month's start): read at once, on two connections.
    let (report, spend) = tokio::join!(
        state.engine.stats(&app, &req),
        state.engine.spend(&app, req.from, req.to, &req.filters)
    );
    let mut view: StatsView = report?.into();
    view.cost = Some(spend?);
    Ok(ApiJson(view))
}

/// The same view as CSV: one line per bucket (and group) with every metric as a column, then
/// the breakdowns as `<breakdown>:<detail>` columns.
#[utoipa::path(
    get, path = "/api/v1/stats/export", tag = "statistics", params(StatsQuery),
    responses(
        (status = 200, content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody),
        (status = 403, description = "The token lacks the `read` scope", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn export_stats(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<StatsQuery>,
) -> Result<Response, ApiError> {
    let r = report(&state, &app, &q).await?;
    Ok(csv_response(
        stats_csv(&r, q.bom.unwrap_or(false)),
        "parley-stats.csv",
    ))
}

/// The CSV of a statistics view.
pub fn stats_csv(r: &StatsReport, bom: bool) -> String {
    let mut details: Vec<(&'static str, String)> = Vec::new();
    for (name, _) in BREAKDOWNS {
        let mut seen: std::collections::BTreeSet<&str> = Default::default();
        for b in &r.data {
            if let Some(m) = b.counts.breakdown.get(name) {
                seen.extend(m.keys());
            }
        }
        details.extend(seen.into_iter().map(|d| (*name, d.to_owned())));
    }
    let mut out = String::new();
    if bom {
        out.push_str(crate::csv::BOM);
    }
    let mut header = vec!["start".to_owned()];
    if let Some(g) = r.group_by {
        header.push(g.name().to_owned());
    }
    header.extend(METRICS.iter().map(|(n, _)| (*n).to_owned()));
    header.extend(details.iter().map(|(n, d)| format!("{n}:{d}")));
    // Each limit scope's use at the end of the bucket (the same value on every group's row).
    header.extend(
        r.messaging_limit
            .iter()
            .map(|s| format!("messaging_limit_use:{}", s.scope)),
    );
    crate::csv::row(&mut out, header.iter().map(String::as_str));
    let buckets = r.data.iter().fold(Vec::new(), |mut v: Vec<i64>, b| {
        if v.last() != Some(&b.start) {
            v.push(b.start);
        }
        v
    });
    for b in &r.data {
        crate::csv::text(&mut out, &rfc3339(b.start));
        if r.group_by.is_some() {
            out.push(',');
            crate::csv::text(&mut out, b.group.as_deref().unwrap_or(""));
        }
        for (n, _) in METRICS {
            out.push(',');
            crate::csv::number(&mut out, b.counts.metrics.get(n).copied().unwrap_or(0));
        }
        for (n, d) in &details {
            out.push(',');
            let v = b
                .counts
                .breakdown
                .get(n)
                .and_then(|m| m.get(d))
                .copied()
                .unwrap_or(0);
            crate::csv::number(&mut out, v);
        }
        let i = buckets.binary_search(&b.start).unwrap_or(0);
        for s in &r.messaging_limit {
            out.push(',');
            crate::csv::number(&mut out, s.used.get(i).copied().unwrap_or(0));
        }
        out.push_str("\r\n");
    }
    out
}

pub fn csv_response(body: impl Into<axum::body::Body>, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body.into(),
    )
        .into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ExportQuery {
    /// Begin with a UTF-8 byte-order mark (`true`), for spreadsheet programs.
    pub bom: Option<bool>,
}

/// The per-recipient export's columns, in order.
pub const OUTCOME_COLUMNS: &[&str] = &[
    "message_id",
    "contact_id",
    "phone",
    "wa_id",
    "bsuid",
    "parent_bsuid",
    "username",
    "name",
    "country",
    "state",
    "meta_status",
    "template",
    "language",
    "variables",
    "wamid",
    "queued_at",
    "sending_at",
    "accepted_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "replied_at",
    "error_code",
    "error_message",
    "reason",
    "pricing_type",
    "pricing_category",
    "price",
    "currency",
];

/// The header line of the per-recipient export (after the optional BOM).
pub fn outcomes_csv_header(out: &mut String, bom: bool) {
    if bom {
        out.push_str(crate::csv::BOM);
    }
    crate::csv::row(out, OUTCOME_COLUMNS.iter().copied());
}

/// The variables a message was rendered with, as one JSON object: body parameters by name
/// (or position, from 1, for positional templates), `header`, and `button_<index>`; for a
/// non-template message, `text`. Keys in order, a repeated key's last value; written into
/// `json` (emptied first; left empty when the content does not read).
fn rendered_variables(content: &str, json: &mut Vec<u8>) {
    json.clear();
    if !plain_template_variables(content, json) {
        content_variables(content, json);
    }
}

/// [`rendered_variables`] of a [`PlainTemplate`], most rows; `false` (nothing written) for
/// any other content.
fn plain_template_variables(content: &str, json: &mut Vec<u8>) -> bool {
    let Ok(plain) = serde_json::from_str::<PlainTemplate<'_>>(content) else {
        return false;
    };
    let t = plain.template;
    let mut out = Default::default();
    template_variables(
        &mut out,
        t.header.map(|h| h.text),
        t.body.iter().map(|p| (p.parameter_name, p.text)),
        t.buttons.iter().map(|b| (b.index, b.text)),
    );
    // A map of strings always serializes.
    let _ = serde_json::to_writer(json, &out);
    true
}

/// [`rendered_variables`] of any content, read as `MessageContent`.
fn content_variables(content: &str, json: &mut Vec<u8>) {
    use parley_domain::MessageContent;
    use parley_domain::binding::RenderedHeader;
    let Ok(content) = serde_json::from_str::<MessageContent>(content) else {
        return;
    };
    let mut out: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &str> = Default::default();
    match &content {
        MessageContent::Text { body, .. } => {
            out.insert("text".into(), body);
        }
        MessageContent::Template { template } => {
            let header = match &template.header {
                Some(RenderedHeader::Text { text, .. }) => Some(text.as_str()),
                _ => None,
            };
            template_variables(
                &mut out,
                header,
                template
                    .body
                    .iter()
                    .map(|p| (p.parameter_name.as_deref(), p.text.as_str())),
                template.buttons.iter().map(|b| (b.index, b.text.as_str())),
            );
        }
        MessageContent::Media {
            media_type,
            link,
            caption,
            ..
        } => {
            out.insert("media_type".into(), media_type);
            if let Some(link) = link {
                out.insert("link".into(), link);
            }
            if let Some(caption) = caption {
                out.insert("caption".into(), caption);
            }
        }
        MessageContent::Reaction { emoji, .. } => {
            out.insert("emoji".into(), emoji);
        }
    }
    let _ = serde_json::to_writer(json, &out);
}

/// A template's variables into `out`: the text header, the body parameters by name (or
/// position, from 1), `button_<index>`; a repeated key keeps its last value.
fn template_variables<'a>(
    out: &mut std::collections::BTreeMap<std::borrow::Cow<'a, str>, &'a str>,
    header: Option<&'a str>,
    body: impl Iterator<Item = (Option<&'a str>, &'a str)>,
    buttons: impl Iterator<Item = (usize, &'a str)>,
) {
    if let Some(text) = header {
        out.insert("header".into(), text);
    }
    for (i, (name, text)) in body.enumerate() {
        let key = match name {
            Some(name) => name.into(),
            None => (i + 1).to_string().into(),
        };
        out.insert(key, text);
    }
    for (index, text) in buttons {
        out.insert(format!("button_{index}").into(), text);
    }
}

/// A stored template message in its most common form, read without copying its text: every
/// field `MessageContent` requires, no other and none twice, a text header or none, and no
/// escapes in any string (a `&str` cannot hold an unescaped one). What this refuses is read
/// as `MessageContent`; what it accepts, that read accepts with the same values.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainTemplate<'a> {
    #[serde(rename = "type")]
    _kind: PlainTag,
    #[serde(borrow)]
    template: PlainTemplateBody<'a>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum PlainTag {
    Template,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum PlainHeaderTag {
    Text,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainTemplateBody<'a> {
    #[serde(rename = "name")]
    _name: &'a str,
    #[serde(rename = "language")]
    _language: &'a str,
    #[serde(borrow)]
    header: Option<PlainHeader<'a>>,
    #[serde(borrow)]
    body: Vec<PlainParam<'a>>,
    #[serde(borrow)]
    buttons: Vec<PlainButton<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainHeader<'a> {
    #[serde(rename = "type")]
    _kind: PlainHeaderTag,
    text: &'a str,
    #[serde(rename = "parameter_name")]
    _parameter_name: Option<&'a str>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainParam<'a> {
    parameter_name: Option<&'a str>,
    text: &'a str,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainButton<'a> {
    index: usize,
    #[serde(rename = "sub_type")]
    _sub_type: parley_domain::template::ButtonSubType,
    text: &'a str,
}

/// The price of one message as Meta reported it, in the application's price table: `0` when
/// Meta reported it free (`pricing.type` other than `regular`), the list rate of its market
/// (the recipient's country) and Meta's category when `regular`; `None` before Meta priced
/// it (not delivered yet, or a status without `pricing`). Volume tiers are not applied per
/// row (the list rate is the most a message costs): `GET /api/v1/stats`'s `cost` applies
/// them over the month.
pub fn outcome_price(
    table: &parley_domain::pricing::PriceTable,
    pricing_type: Option<&str>,
    category: Option<&str>,
    country: Option<&str>,
) -> Option<parley_domain::pricing::Micros> {
    use parley_domain::pricing::{Micros, PriceCategory};
    match pricing_type? {
        "regular" => {
            let c = PriceCategory::from_meta(category?)?;
            Some(table.market_of(country.filter(|c| !c.is_empty())).rate(c))
        }
        _ => Some(Micros(0)),
    }
}

/// Meta's pricing type and category as a message's `pricing` JSON holds them (`None` where
/// the JSON does not read, is not an object, or the value is not a string).
type PricingFields = (Option<String>, Option<String>);

/// A message's pricing type, category and country, which its price depends on.
type PriceKey = (Option<String>, Option<String>, Option<String>);

fn pricing_fields(pricing: &str) -> PricingFields {
    let pricing = serde_json::from_str::<serde_json::Value>(pricing).ok();
    let field = |k: &str| {
        pricing
            .as_ref()
            .and_then(|p| p.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    (field("type"), field("category"))
}

/// How many distinct pricings and prices the export remembers: a campaign's rows repeat a
/// few (one per pricing type and category, one price per market and category).
const REMEMBERED: usize = 16;

/// The index in `list` of the entry whose key `matches`, made and added (the oldest dropped
/// when `REMEMBERED` are held) if none does.
fn remembered<K, V>(
    list: &mut Vec<(K, V)>,
    matches: impl Fn(&K) -> bool,
    make: impl FnOnce() -> (K, V),
) -> usize {
    if let Some(at) = list.iter().position(|(k, _)| matches(k)) {
        return at;
    }
    if list.len() == REMEMBERED {
        list.remove(0);
    }
    list.push(make());
    list.len() - 1
}

/// Writes the per-recipient export's lines (see [`OUTCOME_COLUMNS`]), page after page. It
/// remembers the last distinct `pricing` values and prices, which repeat across a campaign,
/// instead of reading the pricing's JSON and finding the market for every row.
pub struct OutcomesCsv {
    table: std::sync::Arc<parley_domain::pricing::PriceTable>,
    /// `pricing` as stored → its type and category.
    pricings: Vec<(String, PricingFields)>,
    /// (pricing type, category, country) → the price as written (empty: unpriced).
    prices: Vec<(PriceKey, String)>,
    /// The row's rendered variables (one buffer for every row).
    json: Vec<u8>,
}

impl OutcomesCsv {
    pub fn new(table: std::sync::Arc<parley_domain::pricing::PriceTable>) -> Self {
        OutcomesCsv {
            table,
            pricings: Vec::new(),
            prices: Vec::new(),
            json: Vec::new(),
        }
    }

    /// Appends one CSV line per outcome (prices from the table, see [`outcome_price`]).
    pub fn rows(&mut self, out: &mut String, rows: &[CampaignOutcome]) {
        let time = |out: &mut String, t: Option<i64>| {
            out.push(',');
            if let Some(t) = t {
                crate::csv::time(out, t);
            }
        };
        let opt = |out: &mut String, s: Option<&str>| {
            out.push(',');
            crate::csv::text(out, s.unwrap_or(""));
        };
        for r in rows {
            crate::csv::text(out, &r.message_id);
            opt(out, r.contact_id.as_deref());
            opt(out, Some(&*r.to_phone));
            opt(out, r.wa_id.as_deref());
            opt(out, r.bsuid.as_deref());
            opt(out, r.parent_bsuid.as_deref());
            opt(out, r.username.as_deref());
            opt(out, r.name.as_deref());
            opt(out, r.country.as_deref());
            opt(out, Some(&*r.state));
            opt(out, r.meta_status.as_deref());
            opt(out, r.template_name.as_deref());
            opt(out, r.template_language.as_deref());
            rendered_variables(&r.content, &mut self.json);
            opt(
                out,
                Some(std::str::from_utf8(&self.json).unwrap_or_default()),
            );
            opt(out, r.wamid.as_deref());
            time(out, Some(r.queued_at));
            time(out, r.sending_at);
            time(out, r.accepted_at);
            time(out, r.sent_at);
            time(out, r.delivered_at);
            time(out, r.read_at);
            time(out, r.failed_at);
            time(out, r.replied_at);
            out.push(',');
            if let Some(c) = r.error_code {
                crate::csv::number(out, c);
            }
            opt(out, r.error_message.as_deref());
            opt(out, r.hold_reason.as_deref());
            let (pricing_type, category) = match r.pricing.as_deref() {
                Some(p) => {
                    let at = remembered(
                        &mut self.pricings,
                        |k| k == p,
                        || (p.to_owned(), pricing_fields(p)),
                    );
                    let (t, c) = &self.pricings[at].1;
                    (t.as_deref(), c.as_deref())
                }
                None => (None, None),
            };
            let category = category.or(r.pricing_category.as_deref());
            opt(out, pricing_type);
            opt(out, category);
            let country = r.country.as_deref();
            let table = &self.table;
            let at = remembered(
                &mut self.prices,
                |(t, c, k)| {
                    t.as_deref() == pricing_type
                        && c.as_deref() == category
                        && k.as_deref() == country
                },
                || {
                    let price = outcome_price(table, pricing_type, category, country)
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    let key = (
                        pricing_type.map(str::to_owned),
                        category.map(str::to_owned),
                        country.map(str::to_owned),
                    );
                    (key, price)
                },
            );
            let price = &self.prices[at].1;
            opt(out, Some(price));
            opt(out, (!price.is_empty()).then_some(table.currency.as_str()));
            out.push_str("\r\n");
        }
    }
}

/// A campaign's per-recipient outcomes as CSV: one line per recipient (message) with the
/// contact, its identities, the rendered variables, every status time, Meta's error, the
/// skip or hold reason and Meta's pricing. Streamed page by page in message id order
/// (keyset), so a million rows take flat memory; a read error mid-stream ends the body
/// early (the status line has gone out), which a client sees as a truncated transfer.
#[utoipa::path(
    get, path = "/api/v1/campaigns/{id}/export", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id, `cmp_…`"), ExportQuery),
    responses(
        (status = 200, content_type = "text/csv", body = String),
        (status = 404, description = "`campaign_not_found`", body = ErrorBody),
        (status = 403, description = "The token lacks the `read` scope", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn export_campaign(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    Ok(campaign_csv_response(state.engine.clone(), app, id, q.bom.unwrap_or(false)).await?)
}

/// A page of the export: read, or being read by a task of its own.
enum ExportPage {
    Read(parley_store::stats::CampaignOutcomePage),
    Reading(
        tokio_util::task::AbortOnDropHandle<
            Result<parley_store::stats::CampaignOutcomePage, parley_engine::error::EngineError>,
        >,
    ),
}

/// The streamed per-recipient CSV of a campaign (the API's and the console's download). The
/// first page is read before answering, so another application's campaign is a 404. Each
/// next page is read by a task of its own while this one is written, so the database's work
/// and Parley's overlap (on PostgreSQL, another process: the export took the sum of both
/// before); at most two pages are in memory. A dropped download aborts the read ahead.
pub async fn campaign_csv_response(
    engine: parley_engine::Engine,
    app: ApplicationId,
    id: CampaignId,
    bom: bool,
) -> Result<Response, parley_engine::error::EngineError> {
    let first = engine.campaign_outcomes_page(&app, &id, None).await?;
    // A page that does not read fails the request while it still can.
    first.rows()?;
    let table = std::sync::Arc::new(engine.price_table(&app).await?.table);
    let mut head = String::new();
    outcomes_csv_header(&mut head, bom);
    let filename = format!("{}.csv", id.as_str());
    let csv = OutcomesCsv::new(table);
    // (the page to write, the header if not out yet, the writer); `None` once the last page
    // is out.
    let stream = futures::stream::unfold(
        Some((ExportPage::Read(first), Some(head), csv)),
        move |state| {
            let engine = engine.clone();
            let app = app.clone();
            let id = id.clone();
            async move {
                let (page, head, mut csv) = state?;
                let page = match page {
                    ExportPage::Read(page) => Ok(page),
                    ExportPage::Reading(task) => match task.await {
                        Ok(read) => read.map_err(|e| e.message),
                        Err(e) => Err(e.to_string()),
                    },
                };
                let rows = page
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|page| page.rows().map_err(|e| e.to_string()));
                let rows = match rows {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(campaign = %id.as_str(), error = %e, "campaign export ended early");
                        return Some((
                            Err(std::io::Error::other("the export could not be read")),
                            None,
                        ));
                    }
                };
                let mut out = head.unwrap_or_default();
                if rows.is_empty() && out.is_empty() {
                    return None;
                }
                // A short page is the last; otherwise the next is read while this is written.
                let next =
                    (rows.len() >= parley_engine::stats::EXPORT_PAGE as usize)
                        .then(|| rows.last())
                        .flatten()
                        .map(|last| {
                            let after = last.message_id.to_string();
                            ExportPage::Reading(tokio_util::task::AbortOnDropHandle::new(
                                tokio::spawn(async move {
                                    engine.campaign_outcomes_page(&app, &id, Some(&after)).await
                                }),
                            ))
                        });
                csv.rows(&mut out, &rows);
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(out)),
                    next.map(|next| (next, None, csv)),
                ))
            }
        },
    );
    Ok(csv_response(
        axum::body::Body::from_stream(stream),
        &filename,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_templates_have_the_variables_messagecontent_gives() {
        let template = |rest: &str| format!(r#"{{"type":"template","template":{rest}}}"#);
        // (content, whether the borrowed read takes it)
        let cases = [
            (template(r#"{"name":"welcome","language":"en","header":null,"body":[{"parameter_name":"first_name","text":"Contact 7"}],"buttons":[]}"#), true),
            (template(r#"{"name":"w","language":"en","header":{"type":"text","text":"Hi","parameter_name":"h"},"body":[{"parameter_name":null,"text":"a"},{"text":"b"},{"parameter_name":null,"text":"c"},{"parameter_name":null,"text":"d"},{"parameter_name":null,"text":"e"},{"parameter_name":null,"text":"f"},{"parameter_name":null,"text":"g"},{"parameter_name":null,"text":"h"},{"parameter_name":null,"text":"i"},{"parameter_name":null,"text":"j"}],"buttons":[{"index":1,"sub_type":"url","text":"x/1"},{"index":0,"sub_type":"quick_reply","text":"ok"}]}"#), true),
            (template(r#"{"name":"w","language":"en","body":[{"parameter_name":"header","text":"body"},{"parameter_name":"a","text":"1"},{"parameter_name":"a","text":"2"},{"parameter_name":"button_0","text":"p"}],"header":{"type":"text","text":"H","parameter_name":null},"buttons":[{"index":0,"sub_type":"copy_code","text":"b"}]}"#), true),
            (r#"{"template":{"name":"w","language":"en","header":null,"body":[],"buttons":[]},"type":"template"}"#.to_owned(), true),
            // Not taken: escapes, other headers, unknown or repeated fields, bad values.
            (template(r#"{"name":"w","language":"en","header":null,"body":[{"parameter_name":"n","text":"say \"hi\""}],"buttons":[]}"#), false),
            (template(r#"{"name":"w","language":"en","header":{"type":"media","kind":"image","link":"https://x.test/a.png","id":null},"body":[],"buttons":[]}"#), false),
            (template(r#"{"name":"w","language":"en","header":null,"body":[],"buttons":[],"extra":1}"#), false),
            (template(r#"{"name":"w","language":"en","header":null,"body":[{"parameter_name":"n","text":"1","text":"2"}],"buttons":[]}"#), false),
            (template(r#"{"name":"w","language":"en","header":null,"body":[],"buttons":[{"index":0,"sub_type":"phone","text":"x"}]}"#), false),
            (template(r#"{"name":"w","language":"en","header":null,"body":[],"buttons":[{"index":-1,"sub_type":"url","text":"x"}]}"#), false),
            (template(r#"{"name":"w","language":"en","header":null,"buttons":[]}"#), false),
            (r#"{"type":"template","type":"template","template":{"name":"w","language":"en","header":null,"body":[],"buttons":[]}}"#.to_owned(), false),
            (r#"{"type":"text","body":"hello","preview_url":false}"#.to_owned(), false),
            (r#"{"type":"reaction","message_id":"wamid.X","emoji":"x"}"#.to_owned(), false),
            ("not json".to_owned(), false),
        ];
        for (content, plain) in cases {
            let (mut fast, mut full) = (Vec::new(), Vec::new());
            content_variables(&content, &mut full);
            assert_eq!(
                plain_template_variables(&content, &mut fast),
                plain,
                "{content}"
            );
            if plain {
                assert_eq!(
                    String::from_utf8(fast),
                    String::from_utf8(full),
                    "{content}"
                );
            } else {
                assert!(fast.is_empty(), "{content}");
            }
            let mut either = Vec::new();
            rendered_variables(&content, &mut either);
            assert_eq!(either, {
                let mut f = Vec::new();
                content_variables(&content, &mut f);
                f
            });
        }
    }
}
