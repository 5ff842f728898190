//! What a message row contributes to the statistics counters, computed in Rust: a port of
//! `message_dims`/`message_metrics` in `gen/stats_sql.py` (the triggers' and the recount's
//! definition), for writers that count their own changes (the status merge, `lattice.rs`).
//!
//! Such a writer knows each row before and after its change, takes off what the row
//! contributed before and adds what it contributes after (`delta`), sums the batch per
//! counter and span, and writes the sums in the same transaction with the triggers switched
//! off for that transaction (migration 0042). The store test
//! `rust_contributions_equal_the_sql_recount` compares this function with the SQL recount over
//! rows covering every branch, on both backends.

use std::borrow::Cow;
use std::collections::BTreeMap;

use parley_domain::MessageState;

use crate::Millis;
use crate::stats::StatKey;

const HOUR: Millis = 3_600_000;
const DAY: Millis = 86_400_000;

/// The columns of a message row the statistics read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageView<'a> {
    pub application_id: &'a str,
    pub campaign_id: Option<&'a str>,
    pub template_name: Option<&'a str>,
    pub phone_number_id: &'a str,
    pub kind: &'a str,
    pub country: Option<&'a str>,
    pub pricing: Option<&'a str>,
    pub pricing_category: Option<&'a str>,
    pub state: MessageState,
    pub error_code: Option<i64>,
    pub hold_reason: Option<&'a str>,
    pub meta_status: Option<&'a str>,
    pub capped_times: i64,
    pub queued_at: Millis,
    pub sending_at: Option<Millis>,
    pub accepted_at: Option<Millis>,
    pub sent_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub read_at: Option<Millis>,
    pub failed_at: Option<Millis>,
    pub updated_at: Millis,
    pub replied_at: Option<Millis>,
}

/// SQL's `hay LIKE '%needle%'` for a needle without `%` or `\`: `_` matches any one
/// character; `ignore_case` is SQLite's default (ASCII letters only), PostgreSQL's `LIKE`
/// tells case apart.
pub(crate) fn like_contains(hay: &str, needle: &str, ignore_case: bool) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle.is_ascii() {
        // One byte is one character: compare bytes.
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        return h.len() >= n.len()
            && h.windows(n.len()).any(|w| {
                w.iter().zip(n).all(|(&a, &b)| {
                    b == b'_' || a == b || (ignore_case && a.eq_ignore_ascii_case(&b))
                })
            });
    }
    let same = |a: char, b: char| {
        b == '_' || a == b || (ignore_case && a.is_ascii() && a.eq_ignore_ascii_case(&b))
    };
    // Every character of `hay` as a start, without copying either string: this runs for
    // every row a status merge writes, before and after (origin and `charged`).
    hay.char_indices().any(|(i, _)| {
        let mut h = hay[i..].chars();
        needle.chars().all(|b| h.next().is_some_and(|a| same(a, b)))
    })
}

/// The dimensions of a row: campaign, template, number, category, country, origin.
struct Dims<'a> {
    campaign_id: &'a str,
    template: &'a str,
    category: &'a str,
    country: &'a str,
    origin: &'static str,
}

fn dims<'a>(m: &MessageView<'a>, ignore_case: bool) -> Dims<'a> {
    let template = m.kind == "template";
    Dims {
        campaign_id: m.campaign_id.unwrap_or(""),
        template: m.template_name.unwrap_or(""),
        category: m
            .pricing_category
            .unwrap_or(if template { "" } else { "service" }),
        country: m.country.unwrap_or(""),
        origin: if m
            .pricing
            .is_some_and(|p| like_contains(p, "\"free_entry_point\"", ignore_case))
        {
            "free_entry_point"
        } else if template {
            "business"
        } else {
            "customer"
        },
    }
}

/// The metrics in the generator's order.
pub(crate) const METRICS: [&str; 10] = [
    "queued",
    "sent",
    "delivered",
    "read",
    "failed",
    "skipped",
    "held",
    "capped",
    "charged",
    "replied",
];

/// `(time, detail)` of metric `i` for the row, `None` when the metric does not count it.
fn metric<'a>(m: &MessageView<'a>, i: usize, ignore_case: bool) -> Option<(Millis, Cow<'a, str>)> {
    let plain = |t: Option<Millis>| t.map(|t| (t, Cow::Borrowed("")));
    match METRICS[i] {
        "queued" => plain(Some(m.queued_at)),
        "sent" => plain(m.sent_at.or(m.delivered_at).or(m.read_at)),
        "delivered" => plain(m.delivered_at.or(m.read_at)),
        "read" => plain(m.read_at),
        "failed" => (m.state == MessageState::Failed).then(|| {
            (
                m.failed_at.unwrap_or(m.updated_at),
                m.error_code
                    .map_or(Cow::Borrowed("unknown"), |c| Cow::Owned(c.to_string())),
            )
        }),
        "skipped" => (m.state == MessageState::Skipped).then(|| {
            (
                m.updated_at,
                Cow::Borrowed(m.hold_reason.unwrap_or("unknown")),
            )
        }),
        "held" => (m.meta_status == Some("held_for_quality_assessment")).then(|| {
            (
                m.accepted_at.or(m.sending_at).unwrap_or(m.queued_at),
                Cow::Borrowed(""),
            )
        }),
        "capped" => (m.capped_times > 0).then_some((m.queued_at, Cow::Borrowed(""))),
        "charged" => m
            .pricing
            .is_some_and(|p| like_contains(p, "\"type\":\"regular\"", ignore_case))
            .then(|| {
                (
                    m.delivered_at
                        .or(m.read_at)
                        .or(m.sent_at)
                        .unwrap_or(m.updated_at),
                    Cow::Borrowed(m.pricing_category.unwrap_or("unknown")),
                )
            }),
        "replied" => plain(m.replied_at),
        _ => None,
    }
}

/// The dimensions of a counter key, borrowed from the rows of a batch; a batch's rows share a
/// few, each numbered once (`Deltas::dims_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DimsKey<'a> {
    application_id: &'a str,
    campaign_id: &'a str,
    template: &'a str,
    phone_number_id: &'a str,
    category: &'a str,
    country: &'a str,
    origin: &'static str,
}

/// A counter key: its dimensions by number, the span (index in `SPANS`), bucket, metric
/// (index in `METRICS`) and detail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key<'a> {
    dims: u32,
    span: u8,
    bucket: Millis,
    metric: u8,
    detail: Cow<'a, str>,
}

const SPANS: [(&str, Millis); 2] = [("h", HOUR), ("d", DAY)];

/// Sums of contributions over a batch of rows. A row's dimensions are looked up once per
/// side of its change and the sums keyed by their number: an ordered map of full keys compared
/// the keys' strings (the application id first, the same in every key) at every step, and a
/// hash map of them every string of the key on every hit, ~3.5–4.5 µs a row (`perf`, the
/// webhook bench). `into_counters` orders the few sums.
#[derive(Debug, Default)]
pub(crate) struct Deltas<'a> {
    dims: foldhash::HashMap<DimsKey<'a>, u32>,
    dims_list: Vec<DimsKey<'a>>,
    sums: foldhash::HashMap<Key<'a>, i64>,
}

impl<'a> Deltas<'a> {
    /// The number of the row's dimensions `d`.
    fn dims_id(&mut self, m: &MessageView<'a>, d: &Dims<'a>) -> u32 {
        let key = DimsKey {
            application_id: m.application_id,
            campaign_id: d.campaign_id,
            template: d.template,
            phone_number_id: m.phone_number_id,
            category: d.category,
            country: d.country,
            origin: d.origin,
        };
        let next = self.dims_list.len() as u32;
        let id = *self.dims.entry(key).or_insert(next);
        if id == next {
            self.dims_list.push(key);
        }
        id
    }

    fn add(&mut self, dims: u32, i: usize, t: Millis, detail: Cow<'a, str>, n: i64) {
        for (span, (_, len)) in SPANS.iter().enumerate() {
            let key = Key {
                dims,
                span: span as u8,
                bucket: t - t % len,
                metric: i as u8,
                detail: detail.clone(),
            };
            *self.sums.entry(key).or_insert(0) += n;
        }
    }

    /// Adds what `m` contributes, times `n` (1 or −1).
    pub fn contribute(&mut self, m: &MessageView<'a>, n: i64, ignore_case: bool) {
        let d = dims(m, ignore_case);
        let id = self.dims_id(m, &d);
        for i in 0..METRICS.len() {
            if let Some((t, detail)) = metric(m, i, ignore_case) {
                self.add(id, i, t, detail, n);
            }
        }
    }

    /// Takes off what `old` contributed and adds what `new` contributes, metric by metric,
    /// skipping the metrics whose contribution (time, detail, dimensions) is the same.
    pub fn change(&mut self, old: &MessageView<'a>, new: &MessageView<'a>, ignore_case: bool) {
        let (d_old, d_new) = (dims(old, ignore_case), dims(new, ignore_case));
        let same_dims = old.application_id == new.application_id
            && old.phone_number_id == new.phone_number_id
            && d_old.campaign_id == d_new.campaign_id
            && d_old.template == d_new.template
            && d_old.category == d_new.category
            && d_old.country == d_new.country
            && d_old.origin == d_new.origin;
        let mut ids = None;
        for i in 0..METRICS.len() {
            let (a, b) = (metric(old, i, ignore_case), metric(new, i, ignore_case));
            if a == b && (a.is_none() || same_dims) {
                continue;
            }
            let (id_old, id_new) =
                *ids.get_or_insert_with(|| (self.dims_id(old, &d_old), self.dims_id(new, &d_new)));
            if let Some((t, detail)) = a {
                self.add(id_old, i, t, detail, -1);
            }
            if let Some((t, detail)) = b {
                self.add(id_new, i, t, detail, 1);
            }
        }
    }

    /// The non-zero sums, as counter keys.
    pub fn into_counters(self) -> BTreeMap<StatKey, i64> {
        self.sums
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .map(|(k, n)| {
                let d = &self.dims_list[k.dims as usize];
                (
                    StatKey {
                        application_id: d.application_id.to_owned(),
                        span: SPANS[usize::from(k.span)].0.to_owned(),
                        bucket: k.bucket,
                        metric: METRICS[usize::from(k.metric)].to_owned(),
                        campaign_id: d.campaign_id.to_owned(),
                        template: d.template.to_owned(),
                        phone_number_id: d.phone_number_id.to_owned(),
                        category: d.category.to_owned(),
                        country: d.country.to_owned(),
                        origin: d.origin.to_owned(),
                        detail: k.detail.into_owned(),
                    },
                    n,
                )
            })
            .collect()
    }
}

/// What the planner's new rows of campaign `campaign` contribute (as `commit_planner_chunk`
/// inserts them on both backends: queued, or skipped with its reason, or held for its
/// window), summed per counter: the planner writes these with its `INSERT`s, whose trigger it
/// switches off (migration 0042).
pub(crate) fn planned_counters(
    campaign: &str,
    messages: &[crate::campaigns::PlannedMessage],
) -> BTreeMap<StatKey, i64> {
    let facts: Vec<(Option<String>, Option<&str>, Option<&str>)> = messages
        .iter()
        .map(|p| {
            let m = &p.message;
            let name = match &m.content {
                parley_domain::MessageContent::Template { template } => {
                    Some(template.name.as_str())
                }
                _ => None,
            };
            let window_hold = p.window_opens_at.filter(|_| p.skip.is_none());
            let hold = p
                .skip
                .as_ref()
                .map(|s| s.0.as_str())
                .or(window_hold.map(|_| "window"));
            (parley_domain::phone::country_of(&m.to_phone), name, hold)
        })
        .collect();
    let mut deltas = Deltas::default();
    for (p, (country, name, hold)) in messages.iter().zip(&facts) {
        let m = &p.message;
        let view = MessageView {
            application_id: m.application_id.as_str(),
            campaign_id: Some(campaign),
            template_name: *name,
            phone_number_id: m.phone_number_id.as_str(),
            kind: m.content.kind(),
            country: country.as_deref(),
            pricing: None,
            pricing_category: None,
            state: if p.skip.is_some() {
                MessageState::Skipped
            } else {
                MessageState::Queued
            },
            error_code: None,
            hold_reason: *hold,
            meta_status: None,
            capped_times: 0,
            queued_at: m.now,
            sending_at: None,
            accepted_at: None,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            failed_at: None,
            updated_at: m.now,
            replied_at: None,
        };
        // No pricing: `LIKE` is not read.
        deltas.contribute(&view, 1, false);
    }
    deltas.into_counters()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_is_a_substring_with_one_character_wildcards() {
        assert!(like_contains(
            r#"{"type":"regular"}"#,
            r#""type":"regular""#,
            false
        ));
        assert!(!like_contains(
            r#"{"type":"REGULAR"}"#,
            r#""type":"regular""#,
            false
        ));
        assert!(like_contains(
            r#"{"type":"REGULAR"}"#,
            r#""type":"regular""#,
            true
        ));
        assert!(like_contains(
            r#""free-entry-point""#,
            r#""free_entry_point""#,
            false
        ));
        assert!(!like_contains("", "x", true));
        assert!(like_contains("abc", "", false));
        assert!(like_contains("", "", false));
        // `_` is one character, however many bytes it takes.
        assert!(like_contains("xaéb", "a_b", false));
        assert!(!like_contains("aéb", "a__b", false));
        assert!(like_contains("ÉaB", "ab", true));
        assert!(!like_contains("ab", "abc", true));
    }
}
