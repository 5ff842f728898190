//! Statistics counters (migration 0026): kept by triggers as rows change, equal to a recount
//! of the raw rows whatever the order and duplicates of the statuses, and read per hour or day.

use parley_domain::{MessageState, Subscription, Wamid};
use parley_store::audience::{ContactUpsert, SubscriptionChange};
use parley_store::consent::PricingUpdate;
use parley_store::stats::{StatDimension, StatQuery, StatSpan};
use parley_store::{ContactIdentity, InboundRecord, StatusChange, StatusPricing};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;

use crate::backend::Backend;
use crate::fixtures::{T0, Tenant, accepted, tenant, wm};

crate::contract!(
    rust_contributions_equal_the_sql_recount,
    two_nodes_merging_the_same_statuses_keep_the_counters,
    counters_equal_the_recount_after_chaos,
    recount_finds_and_fixes_a_drift,
    pending_deltas_fold_without_a_read,
    folds_side_by_side_move_every_delta_once,
    stat_rows_sum_into_buckets_and_groups,
    cost_rows_read_the_day_or_the_hour_of_a_charge,
    spend_counts_equal_the_two_cost_row_reads
);

const HOUR: i64 = 3_600_000;

fn inbound(t: &Tenant, wamid: &str, kind: &str, at: i64) -> InboundRecord {
    InboundRecord {
        wamid: Wamid::parse(wamid).unwrap(),
        application_id: t.app.clone(),
        phone_number_id: t.number.clone(),
        from_phone: "+4915100000001".into(),
        from: ContactIdentity {
            phone: Some("+4915100000001".into()),
            ..Default::default()
        },
        kind: parley_domain::InboundKind::from_meta(kind),
        text: None,
        body: json!({}),
        refers_to: None,
        raw: json!({}),
        received_at: at,
        media: None,
    }
}

async fn totals(b: &Backend, t: &Tenant) -> BTreeMap<(String, String), i64> {
    let rows = b
        .stat_rows(&StatQuery {
            application: t.app.clone(),
            span: StatSpan::Day,
            from: 0,
            to: T0 * 2,
            group_by: None,
            filters: vec![],
            starts: vec![],
        })
        .await
        .expect("stats")
        .to_rows();
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry((r.metric, r.detail)).or_insert(0) += r.n;
    }
    out
}

/// Rows through every branch of what a message contributes (failed with and without an
/// error code, skipped with and without a reason, held before and after its acceptance,
/// capped, charged regular with and without a category, free entry point, a pricing `LIKE`
/// only matches case-insensitively or through its `_` wildcards, template and text, priced
/// and not, read without delivered, replied, with a campaign and a country): the Rust the
/// status merge counts with (`message_stats.rs`) gives the SQL recount's counters, row by
/// row; then statuses merged into every one of them (counted in Rust, triggers off) leave
/// the counters equal to the recount.
async fn rust_contributions_equal_the_sql_recount(b: &Backend) {
    use MessageState::*;
    let t = tenant(&**b, 1).await;
    for i in 1..=16 {
        accepted(&**b, &t, &format!("wamid.rc.{i}"), T0 + i * 1000).await;
    }
    // Written behind the store's back: the triggers count these changes.
    for sql in [
        "UPDATE messages SET state = 'failed', error_code = 131026, failed_at = queued_at + 50 WHERE wamid = 'wamid.rc.1'",
        "UPDATE messages SET state = 'failed', error_code = NULL, failed_at = NULL, updated_at = queued_at + 7200000 WHERE wamid = 'wamid.rc.2'",
        "UPDATE messages SET state = 'skipped', hold_reason = 'cancelled' WHERE wamid = 'wamid.rc.3'",
        "UPDATE messages SET state = 'skipped', hold_reason = NULL WHERE wamid = 'wamid.rc.4'",
        "UPDATE messages SET meta_status = 'held_for_quality_assessment', accepted_at = NULL WHERE wamid = 'wamid.rc.5'",
        "UPDATE messages SET meta_status = 'held_for_quality_assessment', accepted_at = queued_at + 3600000 WHERE wamid = 'wamid.rc.6'",
        "UPDATE messages SET capped_times = 2 WHERE wamid = 'wamid.rc.7'",
        "UPDATE messages SET pricing = '{\"type\":\"regular\",\"category\":\"utility\"}', pricing_category = 'utility', sent_at = queued_at + 10 WHERE wamid = 'wamid.rc.8'",
        "UPDATE messages SET pricing = '{\"type\":\"free_entry_point\",\"category\":\"service\"}', pricing_category = 'service' WHERE wamid = 'wamid.rc.9'",
        "UPDATE messages SET pricing = '{\"type\":\"regular\"}', pricing_category = NULL WHERE wamid = 'wamid.rc.10'",
        "UPDATE messages SET pricing = '{\"type\":\"REGULAR\",\"x\":\"free-entry-point\"}', pricing_category = 'marketing' WHERE wamid = 'wamid.rc.11'",
        "UPDATE messages SET kind = 'text', template_name = NULL WHERE wamid = 'wamid.rc.12'",
        "UPDATE messages SET kind = 'text', template_name = NULL, pricing = '{\"type\":\"regular\"}', pricing_category = 'service' WHERE wamid = 'wamid.rc.13'",
        "UPDATE messages SET state = 'read', read_at = queued_at + 90000000 WHERE wamid = 'wamid.rc.14'",
        "UPDATE messages SET state = 'delivered', delivered_at = queued_at + 20, replied_at = queued_at + 4000000 WHERE wamid = 'wamid.rc.15'",
        "UPDATE messages SET campaign_id = 'cmp_0123456789abcdef0123456789abcdef', country = 'DE' WHERE wamid = 'wamid.rc.16'",
    ] {
        b.raw_execute(sql).await;
    }
    let diff = b.stat_check_message_contributions().await.expect("check");
    assert!(diff.is_empty(), "Rust and SQL differ: {diff:#?}");
    assert!(
        b.stat_recount(false).await.expect("recount").is_empty(),
        "the triggers kept the counters"
    );

    // Statuses into every row, in two batches (counted in Rust).
    let status = |i: i64, state: MessageState, at: i64, priced: Option<&str>| StatusChange {
        wamid: wm(&format!("wamid.rc.{i}")),
        message_id: None,
        state,
        at: T0 + at,
        error: (state == Failed).then(|| (131049, "capped".to_owned())),
        pricing: priced.map(|c| StatusPricing {
            pricing: json!({"type": "regular", "category": c}).to_string(),
            category: Some(c.to_owned()),
        }),
    };
    let mut changes = Vec::new();
    for i in 1..=16 {
        changes.push(status(
            i,
            Sent,
            3 * HOUR + i,
            (i % 3 == 0).then_some("marketing"),
        ));
        changes.push(status(
            i,
            [Delivered, Read, Failed][i as usize % 3],
            26 * HOUR,
            None,
        ));
    }
    changes.push(status(2, Failed, 5 * HOUR, None));
    changes.push(status(14, Delivered, 30 * HOUR, Some("authentication")));
    b.apply_statuses(&changes[..17]).await.expect("statuses");
    b.apply_statuses(&changes[17..]).await.expect("statuses");
    let diff = b.stat_check_message_contributions().await.expect("check");
    assert!(
        diff.is_empty(),
        "Rust and SQL differ after the merge: {diff:#?}"
    );
    let diff = b.stat_recount(false).await.expect("recount");
    assert!(
        diff.is_empty(),
        "counters differ from the recount: {diff:#?}"
    );
    let got = totals(b, &t).await;
    assert!(
        got.get(&("charged".into(), "marketing".into()))
            .copied()
            .unwrap_or(0)
            >= 5,
        "{got:?}"
    );
}

/// Two nodes merge the same statuses (duplicated, in different orders, in concurrent
/// batches): each counts its own merges from the rows it locked, so the counters still equal
/// the recount.
async fn two_nodes_merging_the_same_statuses_keep_the_counters(b: &Backend) {
    use MessageState::*;
    let t = tenant(&**b, 1).await;
    let other = b.another_node(None).await;
    let mut changes = Vec::new();
    for i in 0..40 {
        let wamid = format!("wamid.two.{i}");
        let id = accepted(&**b, &t, &wamid, T0 + i).await;
        for (state, at) in [
            (Sent, 10),
            (Delivered, HOUR + i),
            (Read, 2 * HOUR),
            (Failed, 30),
        ] {
            changes.push(StatusChange {
                wamid: wm(&wamid),
                message_id: (i % 2 == 0).then(|| id.clone()),
                state,
                at: T0 + at,
                error: (state == Failed).then(|| (131026, "undeliverable".to_owned())),
                pricing: (state == Sent).then(|| StatusPricing {
                    pricing: json!({"type": "regular", "category": "utility"}).to_string(),
                    category: Some("utility".into()),
                }),
            });
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let (mut a, mut c) = (changes.clone(), changes);
    a.shuffle(&mut rng);
    c.shuffle(&mut rng);
    let one = async {
        for chunk in a.chunks(7) {
            b.apply_statuses(chunk).await.expect("node one");
        }
    };
    let two = async {
        for chunk in c.chunks(5) {
            other.apply_statuses(chunk).await.expect("node two");
        }
    };
    tokio::join!(one, two);
    let diff = b.stat_recount(false).await.expect("recount");
    assert!(
        diff.is_empty(),
        "counters differ from the recount: {diff:#?}"
    );
    let got = totals(b, &t).await;
    assert_eq!(got.get(&("delivered".into(), String::new())), Some(&40));
    assert_eq!(got.get(&("charged".into(), "utility".into())), Some(&40));
}

async fn counters_equal_the_recount_after_chaos(b: &Backend) {
    use MessageState::*;
    let t = tenant(&**b, 1).await;
    let sets: [&[(MessageState, i64)]; 4] = [
        &[(Sent, 10), (Delivered, 20), (Read, 30)],
        &[(Sent, 10), (Failed, 15)],
        &[(Sent, 10), (Failed, 15), (Delivered, HOUR + 20)],
        &[(Read, 2 * HOUR), (Sent, 12), (Delivered, 3 * HOUR)],
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let mut n = 0;
    for set in sets {
        for _ in 0..3 {
            let mut order: Vec<(MessageState, i64)> = set.to_vec();
            order.extend_from_slice(set);
            order.shuffle(&mut rng);
            n += 1;
            let wamid = format!("wamid.stats.{n}");
            let id = accepted(&**b, &t, &wamid, T0).await;
            // Half the messages get their pricing with the statuses that carry it (`sent`
            // and `delivered`, written in the status's own `UPDATE`), in batches of one to
            // three statuses; the other half through `record_pricing`, after them.
            let with_status = n % 2 == 1;
            let pricing = json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"});
            let changes: Vec<StatusChange> = order
                .iter()
                .map(|(state, at)| StatusChange {
                    wamid: wm(&wamid),
                    message_id: Some(id.clone()),
                    state: *state,
                    at: T0 + at,
                    error: (*state == Failed).then(|| (131026, "undeliverable".to_owned())),
                    pricing: (with_status && matches!(state, Sent | Delivered)).then(|| {
                        StatusPricing {
                            pricing: pricing.to_string(),
                            category: Some("utility".into()),
                        }
                    }),
                })
                .collect();
            let mut rest = &changes[..];
            while !rest.is_empty() {
                let k = rng.random_range(1..=3).min(rest.len());
                b.apply_statuses(&rest[..k]).await.expect("status");
                rest = &rest[k..];
            }
            if !with_status {
                // The pricing object comes twice (with sent and with delivered).
                for _ in 0..2 {
                    b.record_pricing(&[PricingUpdate {
                        wamid: wm(&wamid),
                        message_id: None,
                        pricing: pricing.clone(),
                        category: Some("utility".into()),
                    }])
                    .await
                    .expect("pricing");
                }
            }
        }
    }
    // Inbound: the later message stored first, a duplicate, a reaction, a button.
    for (w, kind, at) in [
        ("wamid.in.2", "text", T0 + 5 * HOUR),
        ("wamid.in.1", "text", T0 + 4 * HOUR),
        ("wamid.in.1", "text", T0 + 4 * HOUR),
        ("wamid.in.3", "reaction", T0 + 6 * HOUR),
        ("wamid.in.5", "text", T0 + 40 * HOUR),
        ("wamid.in.4", "button", T0 + 40 * HOUR),
    ] {
        b.record_inbound(&inbound(&t, w, kind, at))
            .await
            .expect("inbound");
    }
    b.upsert_audience(
        &t.app,
        &[ContactUpsert {
            phone: "+4915100000001".into(),
            subscription: Some(SubscriptionChange {
                state: Subscription::OptedOut,
                source: "keyword".into(),
                note: None,
            }),
            ..Default::default()
        }],
        T0 + 7 * HOUR,
    )
    .await
    .expect("opt out");

    let diff = b.stat_recount(false).await.expect("recount");
    assert!(
        diff.is_empty(),
        "counters differ from the recount: {diff:#?}"
    );

    let got = totals(b, &t).await;
    let get = |m: &str, d: &str| got.get(&(m.into(), d.into())).copied().unwrap_or(0);
    assert_eq!(get("queued", ""), 12);
    assert_eq!(get("sent", ""), 12);
    // Delivered once per message, even when read came first.
    assert_eq!(get("delivered", ""), 9);
    assert_eq!(get("read", ""), 6);
    assert_eq!(get("failed", "131026"), 3, "{got:?}");
    assert_eq!(get("charged", "utility"), 12);
    assert_eq!(get("inbound", "text"), 3);
    assert_eq!(get("inbound", "reaction"), 1);
    assert_eq!(get("reaction", ""), 1);
    assert_eq!(get("button", ""), 1);
    // wamid.in.1 opened a conversation, wamid.in.2 (stored first) no longer does; of in.4
    // and in.5 (the same millisecond, in.5 stored first) the smaller wamid does.
    assert_eq!(get("conversation_customer", ""), 2, "{got:?}");
    assert_eq!(get("opt_out", "keyword"), 1);
    // The first inbound answered the latest message delivered in the 24 h before it.
    assert_eq!(get("replied", ""), 1, "{got:?}");

    // What the spend is priced from counts each message once too: charged once per message
    // although its pricing came with two statuses, twice over, or after them; delivered once.
    for filters in [
        vec![],
        vec![(StatDimension::Template, "order_update".to_owned())],
    ] {
        let spend = b
            .spend_counts(&t.app, 0, T0 * 2, &filters, &[])
            .await
            .expect("spend counts");
        let sum = |metric: &str| -> (i64, i64) {
            spend
                .iter()
                .filter(|r| r.metric == metric)
                .fold((0, 0), |(a, c), r| (a + r.all, c + r.chosen))
        };
        assert_eq!(sum("charged"), (12, 12), "{spend:?}");
        assert_eq!(sum("delivered"), (9, 9), "{spend:?}");
        assert!(
            spend
                .iter()
                .all(|r| r.metric != "charged" || r.category == "utility"),
            "{spend:?}"
        );
    }

    // Hours sum to the days.
    let hours = b
        .stat_rows(&StatQuery {
            application: t.app.clone(),
            span: StatSpan::Hour,
            from: 0,
            to: T0 * 2,
            group_by: Some(StatDimension::Country),
            filters: vec![(StatDimension::Template, "order_update".into())],
            starts: vec![],
        })
        .await
        .expect("hours")
        .to_rows();
    let delivered: i64 = hours
        .iter()
        .filter(|r| r.metric == "delivered")
        .map(|r| r.n)
        .sum();
    assert_eq!(delivered, 9);
    assert!(
        hours
            .iter()
            .filter(|r| r.metric == "queued")
            .all(|r| r.group == "DE"),
        "{hours:?}"
    );
    // The inbound rows have no template: the filter leaves them out.
    assert!(hours.iter().all(|r| r.metric != "inbound"));
}

async fn recount_finds_and_fixes_a_drift(b: &Backend) {
    let t = tenant(&**b, 2).await;
    accepted(&**b, &t, "wamid.drift.1", T0).await;
    assert!(b.stat_recount(false).await.expect("recount").is_empty());
    b.raw_execute("UPDATE stat_counters SET n = n + 5 WHERE metric = 'queued'")
        .await;
    let diff = b.stat_recount(true).await.expect("recount");
    assert_eq!(diff.len(), 2, "the hour and the day: {diff:?}");
    assert!(diff.iter().all(|d| d.counted == d.recounted + 5));
    assert!(b.stat_recount(false).await.expect("recount").is_empty());
}

/// `fold_statistics` (the fold worker's call) moves what the triggers appended into the
/// counters without a read: on PostgreSQL the deltas are gone and the counters hold them; on
/// SQLite the counters were already kept in place.
async fn pending_deltas_fold_without_a_read(b: &Backend) {
    let t = tenant(&**b, 7).await;
    accepted(&**b, &t, "wamid.fold.1", T0).await;
    accepted(&**b, &t, "wamid.fold.2", T0 + HOUR).await;
    const PENDING: &str = "SELECT CAST(COUNT(*) AS bigint) FROM stat_deltas";
    const QUEUED: &str =
        "SELECT CAST(COALESCE(SUM(n), 0) AS bigint) FROM stat_counters WHERE metric = 'queued'";
    match b.kind {
        crate::backend::Kind::Postgres => {
            assert!(b.raw_i64(PENDING).await > 0, "the triggers appended deltas");
            assert_eq!(b.raw_i64(QUEUED).await, 0, "nothing folded yet");
        }
        crate::backend::Kind::Sqlite => assert_eq!(b.raw_i64(QUEUED).await, 4),
    }
    b.fold_statistics().await.expect("fold");
    assert_eq!(b.raw_i64(PENDING).await, 0);
    // Two messages, each counted in its hour and its day.
    assert_eq!(b.raw_i64(QUEUED).await, 4);
    assert!(b.stat_recount(false).await.expect("recount").is_empty());
}

/// Every worker node folds every few seconds, and every read folds first: folds running at the
/// same moment over the same deltas neither deadlock nor count a delta twice or lose one.
async fn folds_side_by_side_move_every_delta_once(b: &Backend) {
    let t = tenant(&**b, 8).await;
    for i in 0..60 {
        accepted(&**b, &t, &format!("wamid.folds.{i}"), T0 + (i % 5) * HOUR).await;
    }
    let (x, y, z) = tokio::join!(
        b.fold_statistics(),
        b.fold_statistics(),
        b.fold_statistics()
    );
    x.and(y).and(z).expect("three folds at once");
    assert_eq!(
        b.raw_i64("SELECT CAST(COUNT(*) AS bigint) FROM stat_deltas")
            .await,
        0
    );
    assert_eq!(
        b.raw_i64(
            "SELECT CAST(COALESCE(SUM(n), 0) AS bigint) FROM stat_counters WHERE metric = 'queued'"
        )
        .await,
        120,
        "60 messages, each in its hour and its day"
    );
    assert!(b.stat_recount(false).await.expect("recount").is_empty());
}

/// `stat_rows` sums the counters per bucket (a week's days into the week's start), group,
/// metric and detail, leaves out what sums to zero, keeps text with JSON escapes as it is and
/// answers in order.
async fn stat_rows_sum_into_buckets_and_groups(b: &Backend) {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    const DAY: i64 = 86_400_000;
    let t = tenant(&**b, 3).await;
    let app = t.app.as_str();
    // Counters' buckets are starts of UTC days (PostgreSQL refuses others, migration 0045).
    let day0 = T0 - T0 % DAY;
    // (day, template, metric, detail, n); two weeks starting at day 0 and day 7.
    let odd = "tpl \"quoted\" \\ ü\n";
    let counters: [(i64, &str, &str, &str, i64); 7] = [
        (0, "a", "sent", "", 2),
        (3, "a", "sent", "", 5),
        (3, "a", "failed", "131026", 1),
        (8, odd, "sent", "", 4),
        (9, odd, "sent", "", 1),
        (9, "b", "sent", "", 0),
        (10, "a", "read", "", 3),
    ];
    for (i, (day, template, metric, detail, n)) in counters.iter().enumerate() {
        b.raw_execute(leak(format!(
            "INSERT INTO stat_counters (application_id, span, bucket, metric, campaign_id, template, \
             phone_number_id, category, country, origin, detail, n) VALUES ('{app}', 'd', {}, '{metric}', \
             'c{i}', '{}', 'pn', '', '', 'business', '{detail}', {n})",
            day0 + day * DAY,
            template.replace('\'', "''"),
        )))
        .await;
    }
    // A counter that cancels out within its week.
    b.raw_execute(leak(format!(
        "INSERT INTO stat_counters (application_id, span, bucket, metric, campaign_id, template, \
         phone_number_id, category, country, origin, detail, n) VALUES ('{app}', 'd', {}, 'read', \
         'c9', 'a', 'pn', '', '', 'business', '', -3)",
        day0 + 12 * DAY
    )))
    .await;
    let rows = b
        .stat_rows(&StatQuery {
            application: t.app.clone(),
            span: StatSpan::Day,
            from: day0,
            to: day0 + 14 * DAY,
            group_by: Some(StatDimension::Template),
            filters: vec![],
            starts: vec![day0, day0 + 7 * DAY],
        })
        .await
        .expect("stats")
        .to_rows();
    let got: Vec<(i64, String, String, String, i64)> = rows
        .into_iter()
        .map(|r| ((r.bucket - day0) / DAY, r.group, r.metric, r.detail, r.n))
        .collect();
    let row = |d: i64, g: &str, m: &str, det: &str, n: i64| {
        (d, g.to_owned(), m.to_owned(), det.to_owned(), n)
    };
    assert_eq!(
        got,
        vec![
            row(0, "a", "failed", "131026", 1),
            row(0, "a", "sent", "", 7),
            row(7, odd, "sent", "", 5),
        ]
    );
}

/// The cost counters (`PricingStore::cost_rows`) per UTC day, or per hour for the days a
/// month's start in the WABA's time zone cuts (docs/COST.md): a utility message delivered
/// and charged three hours after `T0` is in its day's row and its hour's row, and in no
/// other hour.
async fn cost_rows_read_the_day_or_the_hour_of_a_charge(b: &Backend) {
    const DAY: i64 = 86_400_000;
    let t = tenant(&**b, 4).await;
    let id = accepted(&**b, &t, "wamid.cost.1", T0).await;
    let at = T0 + 3 * HOUR;
    let pricing =
        json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"});
    let changes: Vec<StatusChange> = [MessageState::Sent, MessageState::Delivered]
        .into_iter()
        .map(|state| StatusChange {
            wamid: wm("wamid.cost.1"),
            message_id: Some(id.clone()),
            state,
            at,
            error: None,
            pricing: Some(StatusPricing {
                pricing: pricing.to_string(),
                category: Some("utility".into()),
            }),
        })
        .collect();
    b.apply_statuses(&changes).await.expect("statuses");
    let day = at.div_euclid(DAY) * DAY;
    let hour = at.div_euclid(HOUR) * HOUR;
    let app = &t.app;
    let read = |hourly: bool, from: i64, to: i64| async move {
        let rows = b
            .cost_rows(app, from, to, &[], hourly)
            .await
            .expect("cost rows");
        rows.into_iter()
            .map(|r| (r.day, r.metric, r.category, r.country, r.n))
            .collect::<Vec<_>>()
    };
    let expect = |bucket: i64| {
        vec![
            (
                bucket,
                "charged".to_owned(),
                "utility".to_owned(),
                "DE".to_owned(),
                1,
            ),
            (
                bucket,
                "delivered".to_owned(),
                "utility".to_owned(),
                "DE".to_owned(),
                1,
            ),
        ]
    };
    assert_eq!(read(false, day, day + DAY).await, expect(day));
    assert_eq!(read(true, day, day + DAY).await, expect(hour));
    assert_eq!(read(true, day, hour).await, vec![]);
    assert_eq!(read(true, hour + HOUR, day + DAY).await, vec![]);
}

/// A spend counter's key: day, country, metric, category, origin.
type SpendKey = (i64, String, String, String, String);

/// `spend_counts` (the spend's one read, both sums at once) equals what the spend read before
/// it, `cost_rows` without and with the filters, on varied counters: days in and out of the
/// period, every dimension filtered alone and together, other metrics, hour rows and another
/// application's counters left out, counters cancelling out, text with quotes; and with days
/// read by their hours (`hourly_days`), the other days' day rows and those days' hour rows
/// in the period.
async fn spend_counts_equal_the_two_cost_row_reads(b: &Backend) {
    use parley_store::pricing::SpendCount;
    const DAY: i64 = 86_400_000;
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let t = tenant(&**b, 4).await;
    let other = tenant(&**b, 5).await;
    let day0 = T0 - T0 % DAY;
    let mut rng = rand::rngs::StdRng::seed_from_u64(45);
    let metrics = ["delivered", "charged", "sent", "read"];
    let campaigns = ["", "cmp_a", "cmp_b"];
    let templates = ["", "order_update", "it's \"odd\""];
    let numbers = ["p1", "p2"];
    let categories = [
        "",
        "marketing",
        "utility",
        "authentication",
        "service",
        "referral_conversion",
    ];
    let countries = ["", "DE", "IN", "BR"];
    let origins = ["business", "customer", "free_entry_point"];
    let pick =
        |rng: &mut rand::rngs::StdRng, from: &[&'static str]| from[rng.random_range(0..from.len())];
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..1500 {
        let metric = pick(&mut rng, &metrics);
        let span = if rng.random_bool(0.8) { "d" } else { "h" };
        let day = day0 + rng.random_range(0..16) * DAY;
        keys.insert((
            if rng.random_bool(0.9) {
                t.app.as_str().to_owned()
            } else {
                other.app.as_str().to_owned()
            },
            span,
            if span == "h" {
                day + rng.random_range(0..24) * HOUR
            } else {
                day
            },
            metric,
            pick(&mut rng, &campaigns),
            pick(&mut rng, &templates),
            pick(&mut rng, &numbers),
            pick(&mut rng, &categories),
            pick(&mut rng, &countries),
            pick(&mut rng, &origins),
            if metric == "charged" {
                pick(&mut rng, &categories)
            } else {
                ""
            },
        ));
    }
    let values: Vec<String> = keys
        .iter()
        .map(|(app, span, bucket, metric, campaign, template, number, category, country, origin, detail)| {
            format!(
                "('{app}', '{span}', {bucket}, '{metric}', '{campaign}', '{}', '{number}', '{category}', \
                 '{country}', '{origin}', '{detail}', {})",
                template.replace('\'', "''"),
                if rng.random_bool(0.1) { 0 } else { rng.random_range(-2..30) },
            )
        })
        .collect();
    b.raw_execute(leak(format!(
        "INSERT INTO stat_counters (application_id, span, bucket, metric, campaign_id, template, \
         phone_number_id, category, country, origin, detail, n) VALUES {}",
        values.join(", ")
    )))
    .await;
    let (from, to) = (day0 + 3 * DAY, day0 + 12 * DAY);
    let filter_sets: Vec<Vec<(StatDimension, &str)>> = vec![
        vec![],
        vec![(StatDimension::Campaign, "cmp_a")],
        vec![(StatDimension::Campaign, "")],
        vec![(StatDimension::Template, "it's \"odd\"")],
        vec![(StatDimension::PhoneNumber, "p2")],
        vec![(StatDimension::Category, "utility")],
        vec![(StatDimension::Country, "DE")],
        vec![(StatDimension::ConversationOrigin, "free_entry_point")],
        vec![
            (StatDimension::Campaign, "cmp_b"),
            (StatDimension::Country, "IN"),
        ],
        vec![(StatDimension::Campaign, "nobody")],
    ];
    // Days read by their hours (a month's start in the WABA's zone cuts them): inside the
    // period, on its first day, and before it (left out like its day row).
    let hourly_sets: [Vec<i64>; 2] = [
        vec![],
        vec![day0 + 2 * DAY, from, day0 + 7 * DAY, day0 + 11 * DAY],
    ];
    let (mut partial, mut chosen, mut hours) = (0, 0, 0);
    for (filters, hourly_days) in filter_sets
        .into_iter()
        .flat_map(|f| hourly_sets.iter().map(move |h| (f.clone(), h)))
    {
        let filters: Vec<(StatDimension, String)> = filters
            .into_iter()
            .map(|(d, v)| (d, v.to_owned()))
            .collect();
        let got = b
            .spend_counts(&t.app, from, to, &filters, hourly_days)
            .await
            .expect("spend counts");
        let mut want: BTreeMap<SpendKey, (i64, i64)> = BTreeMap::new();
        // The day rows of the other days, and the hour rows of those days in the period.
        let mut reads = Vec::new();
        for (f, chosen) in [(&[][..], false), (&filters[..], true)] {
            let mut days = b.cost_rows(&t.app, from, to, f, false).await.expect("days");
            days.retain(|r| !hourly_days.contains(&r.day));
            reads.push((days, chosen));
            for d in hourly_days {
                let (f_, t_) = ((*d).max(from), (d + DAY).min(to));
                reads.push((
                    b.cost_rows(&t.app, f_, t_, f, true).await.expect("hours"),
                    chosen,
                ));
            }
        }
        for (rows, chosen) in reads {
            for r in rows {
                let e = want
                    .entry((r.day, r.country, r.metric, r.category, r.origin))
                    .or_default();
                if chosen {
                    e.1 += r.n;
                } else {
                    e.0 += r.n;
                }
            }
        }
        let want: Vec<SpendCount> = want
            .into_iter()
            .map(
                |((day, country, metric, category, origin), (all, chosen))| SpendCount {
                    day,
                    country,
                    metric,
                    category,
                    origin,
                    all,
                    chosen,
                },
            )
            .collect();
        assert_eq!(got, want, "filters {filters:?}, hourly {hourly_days:?}");
        hours += got.iter().filter(|r| r.day % DAY != 0).count();
        partial += got
            .iter()
            .filter(|r| r.chosen != 0 && r.chosen != r.all)
            .count();
        chosen += got.iter().filter(|r| r.chosen != 0).count();
    }
    // The cases compared chose whole counters and parts of them, and read hours.
    assert!(partial > 10 && chosen > partial, "{partial} of {chosen}");
    assert!(hours > 10, "{hours} hour rows");
}
