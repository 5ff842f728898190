//! Audience: contacts with typed tags (partial updates, ASCII-case-insensitive names),
//! subscription history, segment queries (the SQL compilers against `Segment::matches` on
//! random contacts and random filters), pagination, erasure, saved segments and import jobs.

use std::collections::BTreeSet;

use parley_domain::{
    CompareOp, Expr, ImportId, ImportState, RelativeUnit, Segment, SegmentId, Subscription,
    TagValue, Tags, Value,
};
use parley_store::audience::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use time::OffsetDateTime;
use time::macros::{date, datetime};

use crate::backend::Backend;
use crate::fixtures::{T0, new_message, tenant};

crate::contract!(
    audience_upsert_merges_and_removes_tags,
    audience_subscription_changes_are_recorded_once,
    audience_lists_by_segment_with_keyset_pages,
    audience_erase_keeps_anonymous_messages,
    audience_segments_and_import_jobs,
    audience_import_chunks_commit_with_their_progress_and_interrupted_jobs_resume,
    audience_sql_agrees_with_memory_on_random_contacts_and_filters,
    audience_long_chains_compile,
    audience_bounded_filters_stop_at_their_budget,
    audience_a_contact_holds_a_bounded_number_of_tags,
    audience_imports_past_their_retention_go_with_their_rejected_rows,
);

const NOW: OffsetDateTime = datetime!(2025-06-15 12:00:00 UTC);

fn patch(pairs: &[(&str, Option<TagValue>)]) -> TagPatch {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A CSV import just started, its counts at zero.
fn running_job(app: &parley_domain::ApplicationId) -> ImportJobRecord {
    ImportJobRecord {
        id: ImportId::new(),
        application_id: app.clone(),
        format: "csv".into(),
        state: ImportState::Running,
        rows_read: 0,
        created: 0,
        updated: 0,
        rejected: 0,
        error: None,
        created_at: T0,
        updated_at: T0,
        finished_at: None,
        options: None,
        committed_bytes: 0,
        committed_sha256: None,
    }
}

fn upsert(phone: &str, tags: TagPatch) -> ContactUpsert {
    ContactUpsert {
        phone: phone.into(),
        tags,
        ..ContactUpsert::default()
    }
}

async fn audience_upsert_merges_and_removes_tags(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let first = ContactUpsert {
        name: Some("Ann".into()),
        locale: Some("de_DE".into()),
        ..upsert(
            "+4915100000001",
            patch(&[
                ("City", Some("Berlin".into())),
                ("visits", Some(TagValue::Integer(3))),
                (
                    "langs",
                    Some(TagValue::List(vec!["de".into(), "en".into()])),
                ),
            ]),
        )
    };
    let counts = b.upsert_audience(&t.app, &[first], T0).await.unwrap();
    assert_eq!(
        counts,
        UpsertCounts {
            created: 1,
            updated: 0,
            refused: 0
        }
    );
    let second = upsert(
        "+4915100000001",
        patch(&[
            ("city", Some("Köln".into())),
            ("langs", None),
            ("vip", Some(TagValue::Boolean(true))),
        ]),
    );
    let again = upsert("+4915100000002", patch(&[]));
    let counts = b
        .upsert_audience(&t.app, &[second, again.clone(), again], T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        counts,
        UpsertCounts {
            created: 1,
            updated: 2,
            refused: 0
        }
    );
    let c = b
        .audience_contact(&t.app, "+4915100000001")
        .await
        .unwrap()
        .unwrap();
    let keys: Vec<&str> = c.contact.tags.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["city", "vip", "visits"],
        "City replaced by city, langs removed"
    );
    assert_eq!(c.contact.tags["city"], TagValue::String("Köln".into()));
    assert_eq!(
        c.contact.name.as_deref(),
        Some("Ann"),
        "name kept when absent"
    );
    assert_eq!(c.locale.as_deref(), Some("de_DE"));
    assert_eq!(c.subscription, Subscription::Unknown);
    assert_eq!(c.contact.created_at, T0);
    assert_eq!(c.contact.updated_at, T0 + 1);
    let n = b
        .count_segment(&t.app, &Segment::parse("CITY = \"KÖLN\"").unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(n, 1, "the index follows the merged tags");
    // Another tenant sees nothing.
    let other = tenant(&**b, 2).await;
    assert!(
        b.audience_contact(&other.app, "+4915100000001")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        b.count_segment(&other.app, &Segment::all(), NOW)
            .await
            .unwrap(),
        0
    );
}

async fn audience_subscription_changes_are_recorded_once(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let change = |state, source: &str| ContactUpsert {
        subscription: Some(SubscriptionChange {
            state,
            source: source.into(),
            note: None,
        }),
        ..upsert("+4915100000001", patch(&[]))
    };
    b.upsert_audience(&t.app, &[change(Subscription::OptedIn, "api")], T0)
        .await
        .unwrap();
    b.upsert_audience(&t.app, &[change(Subscription::OptedIn, "api")], T0 + 1)
        .await
        .unwrap();
    b.upsert_audience(&t.app, &[change(Subscription::OptedOut, "keyword")], T0 + 2)
        .await
        .unwrap();
    let c = b
        .audience_contact(&t.app, "+4915100000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.subscription, Subscription::OptedOut);
    assert_eq!(c.subscription_source.as_deref(), Some("keyword"));
    assert_eq!(c.subscription_at, Some(T0 + 2));
    let history = b.subscription_history(&c.contact.id).await.unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|e| (e.state, e.source.as_str(), e.at))
        .collect();
    assert_eq!(
        seen,
        [
            (Subscription::OptedIn, "api", T0),
            (Subscription::OptedOut, "keyword", T0 + 2)
        ]
    );
    // A plain tag update keeps the subscription.
    b.upsert_audience(
        &t.app,
        &[upsert("+4915100000001", patch(&[("a", Some(1i64.into()))]))],
        T0 + 3,
    )
    .await
    .unwrap();
    let c = b
        .audience_contact(&t.app, "+4915100000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.subscription, Subscription::OptedOut);
    // Flipped back and forth past what is shown: the newest `HISTORY_SHOWN`, oldest first.
    let flips = HISTORY_SHOWN + 10;
    for i in 0..flips {
        let state = if i % 2 == 0 {
            Subscription::OptedIn
        } else {
            Subscription::OptedOut
        };
        b.upsert_audience(&t.app, &[change(state, "api")], T0 + 10 + i)
            .await
            .unwrap();
    }
    let history = b.subscription_history(&c.contact.id).await.unwrap();
    let times: Vec<i64> = history.iter().map(|e| e.at).collect();
    let newest = T0 + 10 + flips - 1;
    assert_eq!(
        times,
        ((newest - HISTORY_SHOWN + 1)..=newest).collect::<Vec<_>>()
    );
}

async fn audience_lists_by_segment_with_keyset_pages(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let contacts: Vec<_> = (0..25)
        .map(|i| ContactUpsert {
            name: Some(if i % 2 == 0 { "Ängela" } else { "Bob" }.into()),
            ..upsert(
                &format!("+49151000000{i:02}"),
                patch(&[("n", Some(TagValue::Integer(i)))]),
            )
        })
        .collect();
    b.upsert_audience(&t.app, &contacts, T0).await.unwrap();
    let seg = Segment::parse("n >= 5").unwrap();
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let page = b
            .list_audience(
                &t.app,
                &ContactQuery {
                    segment: &seg,
                    search: None,
                    after: after.as_deref(),
                    limit: 7,
                    now: NOW,
                },
            )
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|c| c.contact.phone.clone());
        seen.extend(page.into_iter().map(|c| c.contact.phone));
    }
    let expected: Vec<String> = (5..25).map(|i| format!("+49151000000{i:02}")).collect();
    assert_eq!(seen, expected);
    let found = b
        .list_audience(
            &t.app,
            &ContactQuery {
                segment: &Segment::all(),
                search: Some("NGEL"),
                after: None,
                limit: 100,
                now: NOW,
            },
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 13, "search by name ignores ASCII case");
    let by_phone = b
        .list_audience(
            &t.app,
            &ContactQuery {
                segment: &Segment::all(),
                search: Some("0000024"),
                after: None,
                limit: 100,
                now: NOW,
            },
        )
        .await
        .unwrap();
    assert_eq!(by_phone.len(), 1);

    // Recipient pages: the same contacts, same order, same tags, in fewer columns.
    let mut after: Option<String> = None;
    let mut recipients = Vec::new();
    loop {
        let page = b
            .recipients_page(&t.app, &seg, after.as_deref(), 6, NOW)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.phone.clone());
        recipients.extend(page);
    }
    assert_eq!(
        recipients
            .iter()
            .map(|r| r.phone.clone())
            .collect::<Vec<_>>(),
        expected
    );
    let full = b
        .audience_contact(&t.app, &expected[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recipients[0].tags, full.contact.tags);
    assert_eq!(recipients[0].id, full.contact.id);
    assert_eq!(recipients[0].name.as_deref(), Some("Bob"));
    assert_eq!(recipients[0].subscription, full.subscription);
}

async fn audience_erase_keeps_anonymous_messages(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let phone = "+4915100000001";
    b.upsert_audience(
        &t.app,
        &[ContactUpsert {
            name: Some("Ann".into()),
            subscription: Some(SubscriptionChange {
                state: Subscription::OptedIn,
                source: "api".into(),
                note: None,
            }),
            ..upsert(phone, patch(&[("city", Some("Berlin".into()))]))
        }],
        T0,
    )
    .await
    .unwrap();
    let contact = b.audience_contact(&t.app, phone).await.unwrap().unwrap();
    let mut m = new_message(&t, T0, None);
    m.to_phone = phone.into();
    m.contact_id = Some(contact.contact.id.clone());
    b.insert_message(&m).await.unwrap();
    let other = new_message(&t, T0, None);
    let mut other = other;
    other.to_phone = "+4915100000009".into();
    b.insert_message(&other).await.unwrap();
    assert_eq!(b.messages_to(&t.app, phone, 10).await.unwrap().len(), 1);

    let report = b.erase_contact(&t.app, phone).await.unwrap();
    assert_eq!(report.contacts, 1);
    assert_eq!(report.messages, 1);
    assert!(b.audience_contact(&t.app, phone).await.unwrap().is_none());
    assert!(
        b.subscription_history(&contact.contact.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(b.messages_to(&t.app, phone, 10).await.unwrap().is_empty());
    let kept = b
        .message(&t.app, &m.id)
        .await
        .unwrap()
        .expect("message kept");
    assert_eq!(kept.to_phone, "erased");
    assert_eq!(kept.contact_id, None);
    assert_eq!(
        kept.state.as_str(),
        "skipped",
        "a queued message to an erased contact never goes"
    );
    let text = serde_json::to_string(&kept.content).unwrap();
    assert!(!text.contains("Ann"), "{text}");
    let all = b.messages(&t.app, None, 10).await.unwrap();
    assert_eq!(all.len(), 2, "message counts stay");
    let untouched = b.message(&t.app, &other.id).await.unwrap().unwrap();
    assert_eq!(untouched.to_phone, "+4915100000009");
    let again = b.erase_contact(&t.app, phone).await.unwrap();
    assert_eq!(again, EraseReport::default());
}

async fn audience_segments_and_import_jobs(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let seg = SegmentRecord {
        id: SegmentId::new(),
        application_id: t.app.clone(),
        name: "Berliners".into(),
        filter: "city = \"Berlin\"".into(),
        created_at: T0,
        updated_at: T0,
    };
    assert!(b.create_segment(&seg, 2).await.unwrap());
    assert!(
        b.create_segment(
            &SegmentRecord {
                id: SegmentId::new(),
                ..seg.clone()
            },
            2
        )
        .await
        .is_err()
    );
    // At the cap nothing is written.
    let over = SegmentRecord {
        id: SegmentId::new(),
        name: "Over the cap".into(),
        ..seg.clone()
    };
    assert!(!b.create_segment(&over, 1).await.unwrap());
    assert_eq!(b.segments(&t.app).await.unwrap(), vec![seg.clone()]);
    assert_eq!(b.segment(&t.app, &seg.id).await.unwrap(), Some(seg.clone()));
    assert_eq!(
        b.segment_by_name(&t.app, "Berliners").await.unwrap(),
        Some(seg.clone())
    );
    let other = tenant(&**b, 2).await;
    assert_eq!(b.segment(&other.app, &seg.id).await.unwrap(), None);

    let mut job = ImportJobRecord {
        options: Some(r#"{"format":"csv"}"#.into()),
        ..running_job(&t.app)
    };
    b.create_import_job(&job).await.unwrap();
    let rejects: Vec<_> = (0..5)
        .map(|i| RejectedRow {
            line: 2 + i * 3,
            reason: format!("bad phone {i}"),
            raw: "x,\u{0}y".into(),
        })
        .collect();
    b.add_import_rejects(&job.id, &rejects).await.unwrap();
    job.rows_read = 10;
    job.created = 4;
    job.updated = 1;
    job.rejected = 5;
    job.state = ImportState::Done;
    job.finished_at = Some(T0 + 5);
    job.updated_at = T0 + 5;
    b.update_import_job(&job).await.unwrap();
    assert_eq!(
        b.import_job(&t.app, &job.id).await.unwrap(),
        Some(job.clone())
    );
    assert_eq!(b.import_job(&other.app, &job.id).await.unwrap(), None);
    let page = b.import_rejects(&t.app, &job.id, 5, 2).await.unwrap();
    let lines: Vec<u64> = page.iter().map(|r| r.line).collect();
    assert_eq!(lines, [8, 11]);
    assert!(
        b.import_rejects(&other.app, &job.id, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn audience_long_chains_compile(b: &Backend) {
    let t = tenant(&**b, 1).await;
    b.upsert_audience(
        &t.app,
        &[upsert(
            "+4915100000001",
            patch(&[("t700", Some(1i64.into()))]),
        )],
        T0,
    )
    .await
    .unwrap();
    // As many conditions as a filter may hold (`MAX_SEGMENT_CONDITIONS`), t700 among them.
    let or: Vec<String> = (0..parley_domain::MAX_SEGMENT_CONDITIONS)
        .map(|i| format!("t{}=1", i * 5))
        .collect();
    let seg = Segment::parse(&or.join(" or ")).unwrap();
    assert_eq!(b.count_segment(&t.app, &seg, NOW).await.unwrap(), 1);
    let and: Vec<String> = (0..parley_domain::MAX_SEGMENT_CONDITIONS)
        .map(|i| format!("t{}!=2", i * 5))
        .collect();
    let seg = Segment::parse(&format!("not ({})", and.join(" and "))).unwrap();
    assert_eq!(
        b.count_segment(&t.app, &seg, NOW).await.unwrap(),
        1,
        "!= on a missing tag is false"
    );
    let many: Vec<String> = (0..999).map(|i| format!("\"v{i}\"")).collect();
    let seg = Segment::parse(&format!("t700 not in [{}, 1]", many.join(", "))).unwrap();
    assert_eq!(b.count_segment(&t.app, &seg, NOW).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// SQL against memory

const NAMES: &[&str] = &[
    "city",
    "City",
    "visits",
    "score",
    "vip",
    "since",
    "langs",
    "Straße",
    "odd \"name\"",
];
const FILTER_NAMES: &[&str] = &[
    "city",
    "CITY",
    "visits",
    "score",
    "vip",
    "since",
    "langs",
    "straße",
    "STRAßE",
    "odd \"name\"",
    "missing",
];
const STRINGS: &[&str] = &[
    "Berlin",
    "berlin",
    "BERLIN",
    "Köln",
    "KÖLN",
    "köln",
    "İstanbul",
    "i̇stanbul",
    "ß",
    "SS",
    "ǅ",
    "ǆ",
    "",
    " ",
    "3",
    "2025-06-01",
    "2025-06-15",
    "2025-06-15T11:00:00Z",
    "2025-06-15T23:30:00-02:00",
    "2025-02-30",
    "a%b_c",
    "Ω",
    "ω",
    "\u{0}x",
    "zz",
    "A",
    "a",
];

fn tag_value() -> impl Strategy<Value = TagValue> {
    prop_oneof![
        proptest::sample::select(STRINGS).prop_map(|s| TagValue::String(s.into())),
        "[a-zA-ZäÄöÖ0-9 İßΩ]{0,6}".prop_map(TagValue::String),
        prop_oneof![
            -5i64..5,
            Just(9_007_199_254_740_993),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(TagValue::Integer),
        prop_oneof![
            (-20i32..20).prop_map(|i| f64::from(i) / 4.0),
            Just(9_007_199_254_740_992.0),
            Just(1e300),
            Just(-0.0),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 1000.0),
        ]
        .prop_map(TagValue::Float),
        any::<bool>().prop_map(TagValue::Boolean),
        (-40i64..40).prop_map(|d| TagValue::Date(date!(2025 - 06 - 15) + time::Duration::days(d))),
        (-3_000i64..3_000).prop_map(|m| TagValue::DateTime(
            datetime!(2025-06-15 12:00 +02:00) + time::Duration::minutes(m * 7)
        )),
        proptest::collection::vec(
            proptest::sample::select(STRINGS).prop_map(String::from),
            0..4
        )
        .prop_map(TagValue::List),
    ]
}

fn contact_tags() -> impl Strategy<Value = Tags> {
    proptest::collection::btree_map(
        proptest::sample::select(NAMES).prop_map(String::from),
        tag_value(),
        0..6,
    )
}

/// Filter strings. PostgreSQL text cannot hold U+0000: stored tags have U+FFFD in its place,
/// and so must values (the API takes filters as JSON text, where it would be rare anyway).
fn filter_string() -> impl Strategy<Value = String> {
    proptest::sample::select(STRINGS).prop_map(|s| s.replace('\0', "\u{FFFD}"))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        filter_string().prop_map(Value::String),
        prop_oneof![
            -5i64..5,
            Just(9_007_199_254_740_992),
            Just(i64::MAX),
            Just(i64::MIN)
        ]
        .prop_map(Value::Integer),
        prop_oneof![
            (-20i32..20).prop_map(|i| f64::from(i) / 4.0),
            Just(9_007_199_254_740_992.0),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 1000.0),
        ]
        .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        (-40i64..40).prop_map(|d| Value::Date(date!(2025 - 06 - 15) + time::Duration::days(d))),
        (
            -60i64..60,
            proptest::sample::select(vec![
                RelativeUnit::Minute,
                RelativeUnit::Hour,
                RelativeUnit::Day,
                RelativeUnit::Week
            ])
        )
            .prop_map(|(amount, unit)| Value::Relative { amount, unit }),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    let tag = || proptest::sample::select(FILTER_NAMES).prop_map(String::from);
    let op = proptest::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ]);
    prop_oneof![
        3 => (tag(), op, value()).prop_map(|(tag, op, value)| Expr::Compare { tag, op, value }),
        1 => (tag(), proptest::collection::vec(value(), 1..4), any::<bool>())
            .prop_map(|(tag, values, negated)| Expr::In { tag, values, negated }),
        1 => (tag(), filter_string())
            .prop_map(|(tag, s)| Expr::Contains { tag, value: Value::String(s) }),
        1 => tag().prop_map(|tag| Expr::Exists { tag }),
        1 => Just(Expr::All),
    ]
}

fn filter() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 16, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

async fn audience_sql_agrees_with_memory_on_random_contacts_and_filters(b: &Backend) {
    let mut runner = TestRunner::new(Config {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed),
        ..Config::default()
    });
    for round in 0..4u32 {
        let t = tenant(&**b, 10 + round).await;
        let population: Vec<Tags> = (0..60)
            .map(|_| contact_tags().new_tree(&mut runner).unwrap().current())
            .collect();
        let upserts: Vec<_> = population
            .iter()
            .enumerate()
            .map(|(i, tags)| {
                upsert(
                    &format!("+491510000{i:04}"),
                    tags.iter()
                        .map(|(k, v)| (k.clone(), Some(v.clone())))
                        .collect(),
                )
            })
            .collect();
        b.upsert_audience(&t.app, &upserts, T0).await.unwrap();
        // Judge by the tags as stored (what a campaign would evaluate).
        let stored = b
            .list_audience(
                &t.app,
                &ContactQuery {
                    segment: &Segment::all(),
                    search: None,
                    after: None,
                    limit: 1_000,
                    now: NOW,
                },
            )
            .await
            .unwrap();
        assert_eq!(stored.len(), population.len());
        for _ in 0..120 {
            let expr = filter().new_tree(&mut runner).unwrap().current();
            let text = expr.to_string();
            let seg = Segment::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let expected: BTreeSet<&str> = stored
                .iter()
                .filter(|c| seg.matches(&c.contact.tags, NOW))
                .map(|c| c.contact.phone.as_str())
                .collect();
            let got = b
                .list_audience(
                    &t.app,
                    &ContactQuery {
                        segment: &seg,
                        search: None,
                        after: None,
                        limit: 1_000,
                        now: NOW,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {text}: {e}", b.name()));
            let got: BTreeSet<&str> = got
                .iter()
                .map(|c| c.contact.phone.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|p| {
                    stored
                        .iter()
                        .find(|c| c.contact.phone == p)
                        .unwrap()
                        .contact
                        .phone
                        .as_str()
                })
                .collect();
            if got != expected {
                let diff: Vec<_> = got.symmetric_difference(&expected).collect();
                let tags: Vec<_> = diff
                    .iter()
                    .map(|p| {
                        &stored
                            .iter()
                            .find(|c| c.contact.phone == ***p)
                            .unwrap()
                            .contact
                            .tags
                    })
                    .collect();
                panic!(
                    "{}: `{text}` differs (SQL has {} vs memory {}) on {tags:?}",
                    b.name(),
                    got.len(),
                    expected.len()
                );
            }
            let n = b.count_segment(&t.app, &seg, NOW).await.unwrap();
            assert_eq!(
                n as usize,
                expected.len(),
                "{}: count of `{text}`",
                b.name()
            );
        }
    }
}

async fn audience_import_chunks_commit_with_their_progress_and_interrupted_jobs_resume(
    b: &Backend,
) {
    let t = tenant(&**b, 1).await;
    let other = tenant(&**b, 2).await;
    let mut job = running_job(&t.app);
    b.create_import_job(&job).await.unwrap();
    let rows: Vec<ContactUpsert> = ["+4915112340001", "+4915112340002", "+4915112340001"]
        .iter()
        .map(|p| ContactUpsert {
            phone: (*p).into(),
            ..ContactUpsert::default()
        })
        .collect();
    job.rows_read = 4;
    job.rejected = 1;
    job.committed_bytes = 120;
    job.committed_sha256 = Some("ab".repeat(32));
    let reject = RejectedRow {
        line: 3,
        reason: "bad phone".into(),
        raw: "x".into(),
    };
    let counts = b
        .commit_import_chunk(&job, &rows, &[2, 4, 5], &[reject], T0 + 1)
        .await
        .unwrap();
    assert_eq!((counts.created, counts.updated), (2, 1));
    let stored = b.import_job(&t.app, &job.id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.rows_read,
            stored.created,
            stored.updated,
            stored.rejected
        ),
        (4, 2, 1, 1)
    );
    assert_eq!(stored.committed_bytes, 120);
    assert_eq!(stored.committed_sha256, job.committed_sha256);
    assert_eq!(
        b.import_rejects(&t.app, &job.id, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Parley restarts: a job last written before the start is interrupted, a newer one not.
    assert_eq!(b.interrupt_stale_imports(T0 + 1, T0 + 5).await.unwrap(), 0);
    assert_eq!(b.interrupt_stale_imports(T0 + 2, T0 + 5).await.unwrap(), 1);
    let stored = b.import_job(&t.app, &job.id).await.unwrap().unwrap();
    assert_eq!(stored.state, ImportState::Interrupted);
    assert_eq!((stored.created, stored.committed_bytes), (2, 120));
    assert!(stored.error.is_some());

    // Resumed once, by its own application only.
    assert_eq!(
        b.resume_import_job(&other.app, &job.id, T0 + 6)
            .await
            .unwrap(),
        None
    );
    let resumed = b
        .resume_import_job(&t.app, &job.id, T0 + 6)
        .await
        .unwrap()
        .expect("resumed");
    assert_eq!(resumed.state, ImportState::Running);
    assert_eq!((resumed.created, resumed.committed_bytes), (2, 120));
    assert_eq!(resumed.error, None);
    assert_eq!(
        b.resume_import_job(&t.app, &job.id, T0 + 7).await.unwrap(),
        None,
        "a running import is not resumed twice"
    );
}

/// Counts and pages on the filter connections stop at their budget (`TooExpensive`), leave
/// the connections usable, and answer as the unbounded ones do within it.
async fn audience_bounded_filters_stop_at_their_budget(b: &Backend) {
    use std::time::Duration;
    let t = tenant(&**b, 1).await;
    let bio = "a".repeat(1000);
    for chunk in 0..5 {
        let batch: Vec<ContactUpsert> = (0..1000)
            .map(|i| {
                upsert(
                    &format!("+4915100{:06}", chunk * 1000 + i),
                    patch(&[("bio", Some(TagValue::String(bio.clone())))]),
                )
            })
            .collect();
        b.upsert_audience(&t.app, &batch, T0).await.unwrap();
    }
    // As many `contains` as a filter may hold, none matching: work on every contact.
    let expensive: Vec<String> = (0..parley_domain::MAX_SEGMENT_CONDITIONS)
        .map(|i| format!("bio contains \"{}b{i}\"", "a".repeat(24)))
        .collect();
    let expensive = Segment::parse(&expensive.join(" or ")).unwrap();
    let short = Duration::from_millis(50);
    let e = b
        .count_segment_bounded(&t.app, &expensive, NOW, short)
        .await
        .unwrap_err();
    assert!(matches!(e, parley_store::StoreError::TooExpensive), "{e:?}");
    let query = ContactQuery {
        segment: &expensive,
        search: None,
        after: None,
        limit: 10,
        now: NOW,
    };
    let e = b
        .list_audience_bounded(&t.app, &query, short)
        .await
        .unwrap_err();
    assert!(matches!(e, parley_store::StoreError::TooExpensive), "{e:?}");
    assert_eq!(b.filter_queries_running(), 0);
    // The same connections answer a cheap filter, as the unbounded count does.
    let cheap = Segment::parse("bio contains \"aaa\"").unwrap();
    let long = Duration::from_secs(60);
    for _ in 0..parley_store::audience::FILTER_CONNECTIONS + 1 {
        assert_eq!(
            b.count_segment_bounded(&t.app, &cheap, NOW, long)
                .await
                .unwrap(),
            5_000
        );
    }
    assert_eq!(b.count_segment(&t.app, &cheap, NOW).await.unwrap(), 5_000);
    let query = ContactQuery {
        segment: &cheap,
        search: None,
        after: None,
        limit: 3,
        now: NOW,
    };
    let page = b.list_audience_bounded(&t.app, &query, long).await.unwrap();
    assert_eq!(page.len(), 3);
    let phones = |p: &[AudienceContact]| -> Vec<String> {
        p.iter().map(|c| c.contact.phone.clone()).collect()
    };
    assert_eq!(
        phones(&page),
        phones(&b.list_audience(&t.app, &query).await.unwrap())
    );
}

/// A write that would take a contact past `MAX_CONTACT_TAGS` (or `MAX_CONTACT_TAG_BYTES`) is
/// refused whole and counted: before, each write merged its new names in without a bound.
/// Writes that do not grow a contact (new values, removals) still go; an imported row
/// refused for its tags becomes a rejected row of its line.
async fn audience_a_contact_holds_a_bounded_number_of_tags(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let phone = "+4915100000042";
    let full: TagPatch = (0..MAX_CONTACT_TAGS)
        .map(|i| (format!("t{i:03}"), Some(TagValue::Integer(i as i64))))
        .collect();
    let counts = b
        .upsert_audience(&t.app, &[upsert(phone, full)], T0)
        .await
        .unwrap();
    assert_eq!((counts.created, counts.refused), (1, 0));
    // One more name: refused, nothing of the write kept (not even its name).
    let mut more = upsert(phone, patch(&[("one_more", Some("x".into()))]));
    more.name = Some("Renamed".into());
    let counts = b.upsert_audience(&t.app, &[more], T0 + 1).await.unwrap();
    assert_eq!((counts.updated, counts.refused), (0, 1));
    let c = b.audience_contact(&t.app, phone).await.unwrap().unwrap();
    assert_eq!(c.contact.tags.len(), MAX_CONTACT_TAGS);
    assert!(!c.contact.tags.contains_key("one_more"));
    assert_ne!(c.contact.name.as_deref(), Some("Renamed"));
    // A new value for a name it has, and a removal with an addition, go.
    let counts = b
        .upsert_audience(
            &t.app,
            &[upsert(
                phone,
                patch(&[
                    ("t000", Some("changed".into())),
                    ("t001", None),
                    ("one_more", Some("x".into())),
                ]),
            )],
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!((counts.updated, counts.refused), (1, 0));
    // Bytes count too: a few long values past 64 KiB are refused.
    let long: TagPatch = (0..70)
        .map(|i| {
            (
                format!("long{i}"),
                Some(TagValue::String("é".repeat(1_000))),
            )
        })
        .collect();
    let other = "+4915100000043";
    let counts = b
        .upsert_audience(&t.app, &[upsert(other, long)], T0 + 3)
        .await
        .unwrap();
    assert_eq!((counts.created, counts.refused), (0, 1));
    assert!(b.audience_contact(&t.app, other).await.unwrap().is_none());
    // In an import: the refused row is a rejected row of its line, counted in the job.
    let mut job = running_job(&t.app);
    b.create_import_job(&job).await.unwrap();
    job.rows_read = 2;
    let rows = [
        upsert(phone, patch(&[("again_more", Some("y".into()))])),
        upsert("+4915100000044", patch(&[("city", Some("Berlin".into()))])),
    ];
    let counts = b
        .commit_import_chunk(&job, &rows, &[7, 8], &[], T0 + 4)
        .await
        .unwrap();
    assert_eq!((counts.created, counts.refused), (1, 1));
    let stored = b.import_job(&t.app, &job.id).await.unwrap().unwrap();
    assert_eq!((stored.created, stored.rejected), (1, 1));
    let rejects = b.import_rejects(&t.app, &job.id, 0, 10).await.unwrap();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0].line, 7);
    assert_eq!(rejects[0].reason, TAGS_OVER_CAP);
}

/// The retention sweep deletes imports last written before its cutoff that are not running
/// (done, failed, interrupted and never resumed), each with all its rejected rows (more than a
/// delete chunk of them), a step of `limit` imports at a time; a running import, however old,
/// and one written after the cutoff stay with their rows; another tenant's imports are swept
/// by the same rule.
async fn audience_imports_past_their_retention_go_with_their_rejected_rows(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let other = tenant(&**b, 2).await;
    let cutoff = T0 + 1_000;
    let job = |app: &parley_domain::ApplicationId, state: ImportState, at: i64| ImportJobRecord {
        state,
        updated_at: at,
        finished_at: (state != ImportState::Running).then_some(at),
        ..running_job(app)
    };
    let old_done = job(&t.app, ImportState::Done, T0 + 10);
    let old_failed = job(&other.app, ImportState::Failed, T0 + 20);
    let old_interrupted = job(&t.app, ImportState::Interrupted, T0 + 30);
    let old_running = job(&t.app, ImportState::Running, T0 + 40);
    let recent_done = job(&t.app, ImportState::Done, cutoff + 1);
    let rejects = |n: u64| -> Vec<RejectedRow> {
        (0..n)
            .map(|i| RejectedRow {
                line: i + 2,
                reason: "bad phone".into(),
                raw: format!("row {i}"),
            })
            .collect()
    };
    for (j, n) in [
        (&old_done, 12_000),
        (&old_failed, 3),
        (&old_interrupted, 0),
        (&old_running, 4),
        (&recent_done, 5),
    ] {
        b.create_import_job(j).await.unwrap();
        b.update_import_job(j).await.unwrap();
        b.add_import_rejects(&j.id, &rejects(n)).await.unwrap();
    }
    assert_eq!(rejected_rows(b, &old_done).await, 12_000);
    // Two steps of two: the oldest first.
    assert_eq!(b.prune_import_jobs(cutoff, 2).await.unwrap(), 2);
    assert_eq!(b.import_job(&t.app, &old_done.id).await.unwrap(), None);
    assert_eq!(rejected_rows(b, &old_done).await, 0);
    assert_eq!(
        b.import_job(&other.app, &old_failed.id).await.unwrap(),
        None
    );
    assert!(
        b.import_job(&t.app, &old_interrupted.id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(b.prune_import_jobs(cutoff, 2).await.unwrap(), 1);
    assert_eq!(
        b.import_job(&t.app, &old_interrupted.id).await.unwrap(),
        None
    );
    assert_eq!(b.prune_import_jobs(cutoff, 2).await.unwrap(), 0);
    for kept in [&old_running, &recent_done] {
        assert_eq!(
            b.import_job(&t.app, &kept.id).await.unwrap().as_ref(),
            Some(kept)
        );
    }
    assert_eq!(rejected_rows(b, &old_running).await, 4);
    assert_eq!(rejected_rows(b, &recent_done).await, 5);
}

/// How many rejected rows of `j` are kept.
async fn rejected_rows(b: &Backend, j: &ImportJobRecord) -> usize {
    b.import_rejects(&j.application_id, &j.id, 0, 20_000)
        .await
        .unwrap()
        .len()
}
