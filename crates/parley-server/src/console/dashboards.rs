//! Dashboards (#16 item 3): the overview's activity and `/dashboards` for all messages, one
//! campaign, one template or one number, over the last 24 h, 7 days, 30 days or a picked
//! date range. Every number comes from `Engine::stats`, the function behind
//! `GET /api/v1/stats`, with the same parsed request: the page shows the API query it
//! answered (`data-api-query`) and each chart carries its exact values (`data-value`).
//!
//! Bounded work: a view draws at most `charts::MAX_POINTS` buckets. A range too long for its
//! interval is coarsened (hour → day → week → month, said on the page); a range over the
//! API's 400 days is refused with the API's code.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use parley_domain::ApplicationId;
use parley_engine::limit_use::LimitUse;
use parley_engine::stats::{Interval, StatsParams, StatsReport, StatsRequest};
use serde::Deserialize;

use super::charts::{self, Bar, Series, TimeChart};
use super::{SignedIn, query_value, render};
use crate::AppState;
use crate::routes::messages::rfc3339;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// What a dashboard is asked for: a preset range or dates, an interval, and at most one
/// subject (campaign, template or number).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct DashQuery {
    /// `24h`, `7d` (default) or `30d`; ignored when `from` is given.
    pub range: Option<String>,
    /// First day (YYYY-MM-DD, UTC) or an RFC 3339 time.
    pub from: Option<String>,
    /// Last day, included (YYYY-MM-DD), or an RFC 3339 end (excluded).
    pub to: Option<String>,
    pub interval: Option<String>,
    pub campaign: Option<String>,
    pub template: Option<String>,
    pub phone_number: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The view's request, after presets, defaults and coarsening.
#[derive(Debug)]
pub struct Resolved {
    pub params: StatsParams,
    pub request: Result<StatsRequest, parley_engine::EngineError>,
    /// `24h`, `7d`, `30d` or `custom`.
    pub range: String,
    /// Why the interval is not the one asked for.
    pub note: Option<String>,
}

fn date_only(s: &str) -> bool {
    s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-'
}

/// The API's `to` for a picked last day: the next midnight (the API's `to` is excluded).
fn end_of_day(s: &str) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(s, &fmt).ok().and_then(|d| d.next_day()) {
        Some(d) => d.format(&fmt).unwrap_or_else(|_| s.to_owned()),
        None => s.to_owned(),
    }
}

const COARSER: [Interval; 4] = [
    Interval::Hour,
    Interval::Day,
    Interval::Week,
    Interval::Month,
];

/// Resolves a dashboard query at `now` into the API's parameters and the engine's request.
pub fn resolve(q: &DashQuery, now: i64) -> Resolved {
    let mut filters = Vec::new();
    for (k, v) in [
        ("campaign", &q.campaign),
        ("template", &q.template),
        ("phone_number", &q.phone_number),
    ] {
        if let Some(v) = nonempty(v) {
            filters.push((k.to_owned(), v.to_owned()));
        }
    }
    let (range, from, to, auto) = match nonempty(&q.from) {
        Some(from) => {
            let to = match nonempty(&q.to) {
                Some(t) if date_only(t) => end_of_day(t),
                Some(t) => t.to_owned(),
                None => rfc3339(now),
            };
            ("custom".to_owned(), from.to_owned(), to, None)
        }
        None => {
            let (range, span, interval) = match nonempty(&q.range) {
                Some("24h") => ("24h", DAY, Interval::Hour),
                Some("30d") => ("30d", 30 * DAY, Interval::Day),
                _ => ("7d", 7 * DAY, Interval::Hour),
            };
            (
                range.to_owned(),
                rfc3339(now - span),
                rfc3339(now),
                Some(interval),
            )
        }
    };
    let asked = nonempty(&q.interval).map(str::to_owned);
    let first = match (&asked, auto) {
        (Some(a), _) => a.clone(),
        (None, Some(i)) => i.as_str().to_owned(),
        (None, None) => {
            // A picked range: the finest interval that fits the chart.
            "hour".to_owned()
        }
    };
    let mut params = StatsParams {
        from: Some(from),
        to: Some(to),
        interval: Some(first.clone()),
        group_by: None,
        filters,
    };
    let mut request = StatsRequest::parse(&params, now);
    let mut note = None;
    // Coarsen while the chart would have too many points (or the API too many buckets).
    let start = COARSER
        .iter()
        .position(|i| i.as_str() == first)
        .unwrap_or(0);
    for next in &COARSER[start + 1..] {
        let too_many = match &request {
            Ok(r) => r.buckets().len() > charts::MAX_POINTS,
            Err(e) => e.code == "too_many_buckets",
        };
        if !too_many {
            break;
        }
        params.interval = Some(next.as_str().to_owned());
        request = StatsRequest::parse(&params, now);
        if asked.is_some() {
            note = Some(format!(
                "Shown per {} : per {first} this range has more than {} points.",
                next.as_str(),
                charts::MAX_POINTS
            ));
        }
    }
    Resolved {
        params,
        request,
        range,
        note,
    }
}

/// The API query answering the same view (for people and tests to compare).
fn api_query(r: &StatsRequest, params: &StatsParams) -> String {
    let mut q = format!(
        "from={}&to={}&interval={}",
        query_value(&rfc3339(r.from)),
        query_value(&rfc3339(r.to)),
        r.interval.as_str()
    );
    for (k, v) in &params.filters {
        q.push('&');
        q.push_str(k);
        q.push('=');
        q.push_str(&query_value(v));
    }
    q
}

/// A bucket's short label on the x axis.
fn short_label(start: i64, interval: Interval) -> String {
    let t = parley_engine::clock::to_datetime(start);
    match interval {
        Interval::Hour => format!("{:02}-{:02} {:02}h", u8::from(t.month()), t.day(), t.hour()),
        Interval::Day | Interval::Week => format!("{:02}-{:02}", u8::from(t.month()), t.day()),
        Interval::Month => format!("{}-{:02}", t.year(), u8::from(t.month())),
    }
}

fn metric(c: &parley_engine::stats::StatCounts, name: &str) -> i64 {
    c.metrics.get(name).copied().unwrap_or(0)
}

fn breakdown(c: &parley_engine::stats::StatCounts, name: &str, prefix: &str) -> Vec<Bar> {
    c.breakdown
        .get(name)
        .map(|m| {
            m.iter()
                .map(|(detail, n)| Bar {
                    label: if detail.is_empty() {
                        format!("{prefix}(none)")
                    } else {
                        format!("{prefix}{detail}")
                    },
                    key: format!("{name}:{detail}"),
                    value: *n,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn time_chart(
    id: &str,
    title: &str,
    report: &StatsReport,
    metrics: &[(&str, &str)],
    area: bool,
) -> String {
    let x = report
        .data
        .iter()
        .map(|b| (rfc3339(b.start), short_label(b.start, report.interval)))
        .collect();
    let series = metrics
        .iter()
        .map(|(key, label)| Series {
            label: (*label).to_owned(),
            key: (*key).to_owned(),
            values: report.data.iter().map(|b| metric(&b.counts, key)).collect(),
        })
        .collect();
    charts::time_chart(&TimeChart {
        id: id.to_owned(),
        title: title.to_owned(),
        x,
        series,
        area,
        threshold: None,
    })
}

/// A figure shown beside the charts.
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub value: String,
    pub raw: i64,
}

/// A link to a range preset.
pub struct RangeLink {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// An option of a subject picker.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// Everything the dashboard panel shows (`dashboard_panel.html`).
#[derive(Default)]
pub struct DashboardView {
    /// The page the range links and the form go to (`/` or `/dashboards`).
    pub action: String,
    pub subject: String,
    pub ranges: Vec<RangeLink>,
    pub from_date: String,
    pub to_date: String,
    pub interval: String,
    pub note: Option<String>,
    pub error: Option<(String, String)>,
    pub api_query: String,
    pub figures: Vec<Figure>,
    /// SVG charts, already escaped by the chart module.
    pub charts: Vec<String>,
    pub campaigns: Vec<Choice>,
    pub templates: Vec<Choice>,
    pub numbers: Vec<Choice>,
    pub hidden: Vec<(String, String)>,
    /// A number's quality, tier and throughput changes (number dashboards only).
    pub history: Option<Vec<HistoryRow>>,
}

/// One change of a number's quality, tier or throughput.
pub struct HistoryRow {
    pub at: String,
    pub quality: String,
    pub tier: String,
    pub throughput: String,
    /// Before the period (the state it starts in).
    pub before: bool,
}

fn change(was: &Option<String>, now: &Option<String>) -> String {
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    if was == now {
        show(now)
    } else {
        format!("{} → {}", show(was), show(now))
    }
}

fn date_of(millis: i64) -> String {
    rfc3339(millis).chars().take(10).collect()
}

/// Builds the dashboard of `q` for the application: one call to `Engine::stats` (the API's
/// function), plus the messaging-limit use of the numbers the view covers.
pub async fn dashboard(
    state: &AppState,
    app: &ApplicationId,
    q: &DashQuery,
    action: &str,
    pickers: bool,
) -> DashboardView {
    let engine = &state.engine;
    let now = engine.now();
    let resolved = resolve(q, now);
    let mut v = DashboardView {
        action: action.to_owned(),
        subject: "All messages".into(),
        note: resolved.note.clone(),
        ..DashboardView::default()
    };
    let keep: Vec<(String, String)> = resolved.params.filters.clone();
    let preset_href = |r: &str| {
        let mut h = format!("{action}?range={r}");
        for (k, val) in &keep {
            h.push_str(&format!("&{k}={}", query_value(val)));
        }
        h
    };
    v.ranges = [("24h", "Last 24 h"), ("7d", "7 days"), ("30d", "30 days")]
        .into_iter()
        .map(|(r, label)| RangeLink {
            label,
            href: preset_href(r),
            current: resolved.range == r,
        })
        .collect();
    v.hidden = if pickers { Vec::new() } else { keep.clone() };
    let numbers = engine.phone_numbers(app).await.unwrap_or_default();
    if pickers {
        let campaigns = engine.campaigns(app, None, 100).await.unwrap_or_default();
        v.campaigns = campaigns
            .iter()
            .map(|c| Choice {
                selected: q.campaign.as_deref() == Some(c.id.as_str()),
                value: c.id.to_string(),
                label: c.name.clone(),
            })
            .collect();
        let mut names: Vec<String> = engine
            .templates(app)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.template.name.as_str().to_owned())
            .collect();
        names.sort();
        names.dedup();
        v.templates = names
            .into_iter()
            .map(|n| Choice {
                selected: q.template.as_deref() == Some(n.as_str()),
                label: n.clone(),
                value: n,
            })
            .collect();
        v.numbers = numbers
            .iter()
            .map(|n| Choice {
                selected: q.phone_number.as_deref() == Some(n.phone_number_id.as_str()),
                value: n.phone_number_id.to_string(),
                label: n.display_phone_number.clone(),
            })
            .collect();
    }
    let mut subject = Vec::new();
    if let Some(c) = nonempty(&q.campaign) {
        let name = match parley_engine::campaigns::campaign_id(c) {
            Ok(id) => engine.campaign(app, &id).await.ok().map(|c| c.name),
            Err(_) => None,
        };
        subject.push(format!("Campaign {}", name.unwrap_or_else(|| c.to_owned())));
    }
    if let Some(t) = nonempty(&q.template) {
        subject.push(format!("Template {t}"));
    }
    let number = nonempty(&q.phone_number)
        .and_then(|p| numbers.iter().find(|n| n.phone_number_id.as_str() == p));
    if let Some(p) = nonempty(&q.phone_number) {
        subject.push(format!(
            "Number {}",
            number.map_or(p, |n| n.display_phone_number.as_str())
        ));
    }
    if !subject.is_empty() {
        v.subject = subject.join(" · ");
    }
    let req = match resolved.request {
        Ok(r) => r,
        Err(e) => {
            v.error = Some((e.code.to_owned(), e.message.clone()));
            v.from_date = nonempty(&q.from)
                .unwrap_or_default()
                .chars()
                .take(10)
                .collect();
            v.to_date = nonempty(&q.to)
                .unwrap_or_default()
                .chars()
                .take(10)
                .collect();
            return v;
        }
    };
    v.from_date = date_of(req.from);
    v.to_date = date_of(req.to - 1);
    v.interval = req.interval.as_str().to_owned();
    v.api_query = api_query(&req, &resolved.params);
    let report = match engine.stats(app, &req).await {
        Ok(r) => r,
        Err(e) => {
            v.error = Some((e.code.to_owned(), e.message.clone()));
            return v;
        }
    };
    let t = &report.totals;
    for (key, label) in [
        ("sent", "Sent"),
        ("delivered", "Delivered"),
        ("read", "Read"),
        ("replied", "Replied"),
        ("failed", "Failed"),
        ("button_clicks", "Button clicks"),
        ("opt_outs", "Opt-outs"),
        ("charged", "Billable (Meta)"),
    ] {
        v.figures.push(Figure {
            key,
            label,
            value: charts::group_digits(metric(t, key)),
            raw: metric(t, key),
        });
    }
    let funnel: Vec<Bar> = [
        ("sent", "Sent"),
        ("delivered", "Delivered"),
        ("read", "Read"),
        ("replied", "Replied"),
    ]
    .into_iter()
    .map(|(k, l)| Bar {
        label: l.into(),
        key: k.into(),
        value: metric(t, k),
    })
    .collect();
    v.charts.push(charts::funnel(
        "chart-funnel",
        "Funnel: sent → delivered → read → replied",
        &funnel,
    ));
    v.charts.push(time_chart(
        "chart-timeline",
        &format!("Messages per {}", req.interval.as_str()),
        &report,
        &[
            ("sent", "Sent"),
            ("delivered", "Delivered"),
            ("read", "Read"),
            ("failed", "Failed"),
        ],
        false,
    ));
    v.charts.push(time_chart(
        "chart-engagement",
        &format!("Replies and button clicks per {}", req.interval.as_str()),
        &report,
        &[
            ("replied", "Replied"),
            ("button_clicks", "Button clicks"),
            ("opt_outs", "Opt-outs"),
        ],
        true,
    ));
    let mut failures = breakdown(t, "failed_by_code", "error ");
    failures.extend(breakdown(t, "skipped_by_reason", "skipped: "));
    v.charts.push(charts::bar_chart(
        "chart-failures",
        "Failures by Meta error code, and skips by reason",
        &failures,
    ));
    v.charts.push(charts::bar_chart(
        "chart-spend",
        "Spend: billable messages Meta reported, by pricing category",
        &breakdown(t, "charged_by_category", ""),
    ));
    // Spend in money, Meta's reported beside Parley's estimate, for the same filters (a
    // campaign's dashboard shows the campaign's cost).
    if let Ok(spend) = engine.spend(app, req.from, req.to, &req.filters).await {
        for (key, label, amount) in [
            ("spend_reported", "Spend reported by Meta", spend.reported),
            ("spend_estimated", "Spend estimated", spend.estimated),
        ] {
            v.figures.push(Figure {
                key,
                label,
                value: format!("{} {amount}", spend.currency),
                raw: amount.0,
            });
        }
    }
    // Messaging-limit use: the numbers the view covers (all, or the one asked for).
    if nonempty(&q.campaign).is_none() && nonempty(&q.template).is_none() {
        let uses = engine.messaging_limit_use(app).await.unwrap_or_default();
        // Over the period, against the limit in force then: a scope's count is not split by
        // number, so a number's view reads the unfiltered series of its scope.
        let history = if req.filters.is_empty() {
            Some(report.messaging_limit.clone())
        } else {
            let all = StatsRequest {
                filters: Vec::new(),
                ..req.clone()
            };
            engine
                .stats(app, &all)
                .await
                .ok()
                .map(|r| r.messaging_limit)
        };
        let mut drawn = std::collections::BTreeSet::new();
        for u in uses
            .iter()
            .filter(|u| nonempty(&q.phone_number).is_none_or(|p| p == u.phone_number_id))
        {
            let Some(series) = history.iter().flatten().find(|s| s.scope == u.scope_key) else {
                continue;
            };
            if !drawn.insert(u.scope_key.clone()) {
                continue;
            }
            let changes = match parley_domain::PhoneNumberId::parse(&u.phone_number_id) {
                Ok(pn) => engine
                    .number_history(app, &pn, req.from, req.to)
                    .await
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            v.charts
                .push(limit_history_chart(u, series, &report, &changes));
        }
        let mut seen_scopes = std::collections::BTreeSet::new();
        for u in uses
            .iter()
            .filter(|u| nonempty(&q.phone_number).is_none_or(|p| p == u.phone_number_id))
        {
            // Numbers of one portfolio share one count: draw it once.
            if u.scope == "business_portfolio" && !seen_scopes.insert((u.frees_at.clone(), u.limit))
            {
                continue;
            }
            v.charts.push(limit_chart(u));
        }
    }
    if let Some(n) = number {
        let changes = engine
            .number_history(app, &n.phone_number_id, req.from, req.to)
            .await
            .unwrap_or_default();
        v.history = Some(
            changes
                .iter()
                .map(|c| HistoryRow {
                    at: rfc3339(c.at),
                    quality: change(&c.was_quality_rating, &c.quality_rating),
                    tier: change(&c.was_messaging_limit, &c.messaging_limit),
                    throughput: if c.was_throughput_mps == c.throughput_mps {
                        format!("{} msg/s", c.throughput_mps)
                    } else {
                        format!("{} → {} msg/s", c.was_throughput_mps, c.throughput_mps)
                    },
                    before: c.at < req.from,
                })
                .collect(),
        );
        v.figures.push(Figure {
            key: "quality",
            label: "Quality now",
            value: n.quality_rating.clone().unwrap_or_else(|| "unknown".into()),
            raw: 0,
        });
        v.figures.push(Figure {
            key: "throughput",
            label: "Throughput limit",
            value: format!("{} msg/s", n.throughput_mps),
            raw: i64::from(n.throughput_mps),
        });
        let peak = report
            .data
            .iter()
            .map(|b| metric(&b.counts, "sent"))
            .max()
            .unwrap_or(0);
        let seconds = match req.interval {
            Interval::Hour => 3600,
            Interval::Day => 86_400,
            Interval::Week => 7 * 86_400,
            Interval::Month => 30 * 86_400,
        };
        v.figures.push(Figure {
            key: "peak",
            label: "Busiest bucket",
            value: format!(
                "{} sent ({:.2} msg/s on average)",
                charts::group_digits(peak),
                peak as f64 / f64::from(seconds)
            ),
            raw: peak,
        });
    }
    v
}

/// The limit's use now and over the next 24 h if nothing else is sent (the ledger's last
/// reaches + 24 h), against the limit.
fn limit_chart(u: &LimitUse) -> String {
    let x: Vec<(String, String)> = (0..=24)
        .map(|h| {
            let t = u.now + h * HOUR;
            (
                rfc3339(t),
                if h == 0 {
                    "now".to_owned()
                } else {
                    format!("+{h}h")
                },
            )
        })
        .collect();
    let values = (0..=24)
        .map(|h| u.used_at(u.now + h * HOUR) as i64)
        .collect();
    let tier = if u.tier.is_empty() {
        "default".to_owned()
    } else {
        u.tier.clone()
    };
    let limit_label = match u.limit {
        Some(l) => format!("limit {} ({tier})", charts::group_digits(l as i64)),
        None => "unlimited".to_owned(),
    };
    charts::time_chart(&TimeChart {
        id: format!("chart-limit-{}", u.phone_number_id),
        title: format!(
            "Messaging limit, {} ({}): {} unique contacts counted in the moving 24 h, {}; when they free up",
            u.display_phone_number,
            u.scope.replace('_', " "),
            u.used,
            limit_label
        ),
        x,
        series: vec![Series {
            label: "Contacts counted".into(),
            key: "limit_use".into(),
            values,
        }],
        area: true,
        threshold: u.limit.map(|l| (l as i64, limit_label.clone())),
    })
}

/// The messaging limit in force at `t`: the tier of the number's last change before `t`,
/// else the tier before its first change, else its tier now. `None`: unlimited.
fn limit_at(
    u: &LimitUse,
    changes: &[parley_store::platforms::NumberChange],
    t: i64,
) -> Option<u64> {
    let tier = match changes.iter().rev().find(|c| c.at < t) {
        Some(c) => c.messaging_limit.clone(),
        None => match changes.first() {
            Some(c) => c.was_messaging_limit.clone(),
            None => Some(u.tier.clone()).filter(|t| !t.is_empty()),
        },
    };
    parley_domain::quota::MessagingLimit::from_stored(tier.as_deref()).per_day()
}

/// The unique contacts counted in the moving 24 h at the end of each bucket of the period
/// (the API's `messaging_limit` series of the scope), against the limit in force then (from
/// the number's tier history).
fn limit_history_chart(
    u: &LimitUse,
    series: &parley_engine::stats::LimitUseSeries,
    report: &StatsReport,
    changes: &[parley_store::platforms::NumberChange],
) -> String {
    let x = report
        .data
        .iter()
        .map(|b| b.start)
        .fold(Vec::new(), |mut v: Vec<i64>, s| {
            if v.last() != Some(&s) {
                v.push(s);
            }
            v
        });
    let limits: Vec<Option<u64>> = x
        .iter()
        .map(|s| limit_at(u, changes, report.interval.next(*s)))
        .collect();
    let mut lines = vec![Series {
        label: "Contacts counted".into(),
        key: "limit_use".into(),
        values: series.used.clone(),
    }];
    if limits.iter().all(Option::is_some) {
        lines.push(Series {
            label: "Limit (tier)".into(),
            key: "limit".into(),
            values: limits.iter().map(|l| l.unwrap_or(0) as i64).collect(),
        });
    }
    let id: String = u
        .scope_key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    charts::time_chart(&TimeChart {
        id: format!("chart-limituse-{id}"),
        title: format!(
            "Messaging-limit use, {} ({}): unique contacts counted in the moving 24 h at the end of each {}, against the limit then",
            u.display_phone_number,
            u.scope.replace('_', " "),
            report.interval.as_str()
        ),
        x: x.iter()
            .map(|s| (rfc3339(*s), short_label(*s, report.interval)))
            .collect(),
        series: lines,
        area: false,
        threshold: None,
    })
}

#[derive(Template)]
#[template(path = "dashboards.html")]
struct DashboardsPage {
    active: &'static str,
    email: String,
    d: DashboardView,
}

/// `GET /dashboards`: the dashboard of all messages, a campaign, a template or a number.
pub async fn page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<DashQuery>,
) -> Response {
    let d = dashboard(&state, &app.id, &q, "/dashboards", true).await;
    render(&DashboardsPage {
        active: "dashboards",
        email,
        d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-06 13:11 UTC.
    const NOW: i64 = 1_796_562_660_000;

    fn q(from: &str, to: &str, interval: &str) -> DashQuery {
        DashQuery {
            from: Some(from.into()),
            to: Some(to.into()),
            interval: Some(interval.into()),
            ..DashQuery::default()
        }
    }

    #[test]
    fn presets_pick_their_interval() {
        let r = resolve(&DashQuery::default(), NOW);
        assert_eq!(r.range, "7d");
        let req = r.request.unwrap();
        assert_eq!(req.interval, Interval::Hour);
        assert!(req.buckets().len() <= charts::MAX_POINTS);
        let r = resolve(
            &DashQuery {
                range: Some("30d".into()),
                ..DashQuery::default()
            },
            NOW,
        );
        assert_eq!(r.request.unwrap().interval, Interval::Day);
    }

    #[test]
    fn a_range_too_long_for_its_interval_is_coarsened_and_said() {
        let r = resolve(&q("2026-01-01", "2026-03-31", "hour"), NOW);
        let req = r.request.unwrap();
        assert_eq!(req.interval, Interval::Day);
        assert!(r.note.unwrap().contains("per day"));
        // The last day is included.
        assert_eq!(rfc3339(req.to), "2026-04-01T00:00:00Z");
        // A picked range without an interval takes the finest that fits, silently.
        let r = resolve(&q("2026-11-01", "2026-11-10", ""), NOW);
        assert_eq!(r.request.unwrap().interval, Interval::Hour);
        let r = resolve(&q("2026-01-01", "2026-12-01", ""), NOW);
        assert_eq!(r.request.unwrap().interval, Interval::Day);
        assert!(r.note.is_none());
    }

    #[test]
    fn a_range_over_the_apis_limit_is_refused_with_its_code() {
        let r = resolve(&q("2020-01-01", "2026-01-01", "month"), NOW);
        assert_eq!(r.request.unwrap_err().code, "range_too_large");
        let r = resolve(&q("yesterday", "2026-01-01", "day"), NOW);
        assert_eq!(r.request.unwrap_err().code, "invalid_time");
    }

    #[test]
    fn the_api_query_names_the_same_request() {
        let mut d = q("2026-11-01", "2026-11-30", "day");
        d.campaign = Some("cmp_x y".into());
        let r = resolve(&d, NOW);
        let req = r.request.as_ref().unwrap();
        assert_eq!(
            api_query(req, &r.params),
            "from=2026-11-01T00%3A00%3A00Z&to=2026-12-01T00%3A00%3A00Z&interval=day&campaign=cmp_x%20y"
        );
    }
}
