//! The batch writes the sender and the webhook processor use: one transaction for a round of
//! sends or a webhook's statuses must end exactly as the same calls one at a time.

use parley_domain::quota::{Gate, MessagingLimit, QUOTA_WINDOW_MS, Reach};
use parley_domain::{MessageId, MessageState};
use parley_store::campaigns::{QuotaBatch, QuotaItem, QuotaRequest};
use parley_store::{Acceptance, InboundRecord, MessageRecord, QuotaConfirm};
use serde_json::json;

use crate::backend::Backend;
use crate::fixtures::{T0, accepted, get, queued, status, tenant};

crate::contract!(
    a_batch_of_statuses_ends_as_one_at_a_time,
    a_status_naming_only_a_wamid_recorded_in_the_same_batch_applies,
    acceptances_record_wamids_and_quota_and_report_unknown_ids,
    a_contact_confirmed_twice_in_one_batch_keeps_its_latest_reach,
    a_quota_batch_answers_as_one_request_at_a_time,
    webhook_events_finish_in_one_batch,
    pending_events_stop_at_the_body_budget,
    a_round_of_pricing_ends_as_one_at_a_time,
);

/// What the lattice decides of a message, and its wamid.
fn outcome(m: &MessageRecord) -> impl PartialEq + std::fmt::Debug + use<> {
    (crate::fixtures::outcome(m), m.wamid.clone())
}

async fn a_batch_of_statuses_ends_as_one_at_a_time(b: &Backend) {
    use MessageState::*;
    let t = tenant(&**b, 1).await;
    // The same statuses for two sets of three messages: one at a time (set a), one batch (b).
    let mut ids = Vec::new();
    for set in ["a", "b"] {
        let mut row = Vec::new();
        for n in 0..3 {
            let wamid = format!("wamid.{set}{n}");
            row.push((wamid.clone(), accepted(&**b, &t, &wamid, T0).await));
        }
        ids.push(row);
    }
    let changes = |set: usize| {
        let m = &ids[set];
        vec![
            status(&m[0].0, Some(&m[0].1), Sent, T0 + 10),
            status(&m[0].0, None, Delivered, T0 + 20),
            status(&m[1].0, None, Failed, T0 + 15),
            status(&m[1].0, Some(&m[1].1), Sent, T0 + 12),
            status(&m[2].0, None, Read, T0 + 30),
            status(&m[2].0, None, Sent, T0 + 9),
            status(&m[0].0, None, Sent, T0 + 8),
            // Not ours (yet): kept as an orphan either way.
            status(&format!("wamid.unknown.{set}"), None, Delivered, T0 + 40),
        ]
    };
    let mut one_by_one = Vec::new();
    for c in changes(0) {
        one_by_one.push(b.apply_status(&c).await.expect("apply").map(|m| m.id));
    }
    let facts = b.apply_statuses(&changes(1)).await.expect("apply batch");
    // What the merge read of each matched message, as merged: no second read needed.
    for f in facts.iter().flatten() {
        let m = get(&**b, &t, &f.id).await;
        assert_eq!(f.application_id, t.app);
        assert_eq!(f.to_phone, m.to_phone);
        assert_eq!(f.contact_id, m.contact_id);
        assert_eq!(f.wamid.as_deref(), m.wamid.as_ref().map(|w| w.as_str()));
        assert_eq!(
            (f.error_code, f.error_message.as_deref()),
            (m.error_code, m.error_message.as_deref())
        );
    }
    let batched: Vec<Option<MessageId>> = facts.into_iter().map(|f| f.map(|f| f.id)).collect();
    let expect: Vec<Option<MessageId>> = changes(1).iter().map(|c| c.message_id.clone()).collect();
    assert_eq!(batched.len(), 8);
    for (n, got) in batched.iter().enumerate() {
        let want = ids[1]
            .iter()
            .find(|(w, _)| w.as_str() == changes(1)[n].wamid.as_str())
            .map(|(_, id)| id);
        assert_eq!(got.as_ref(), want, "change {n}");
        assert_eq!(got.is_some(), one_by_one[n].is_some(), "change {n}");
        if let Some(e) = &expect[n] {
            assert_eq!(got.as_ref(), Some(e));
        }
    }
    for (n, (a, bm)) in ids[0].iter().zip(&ids[1]).enumerate() {
        let a = get(&**b, &t, &a.1).await;
        let bm = get(&**b, &t, &bm.1).await;
        let mut oa = format!("{:?}", outcome(&a));
        let ob = format!("{:?}", outcome(&bm));
        oa = oa.replace("wamid.a", "wamid.b");
        assert_eq!(oa, ob, "message {n}");
    }
    assert_eq!(get(&**b, &t, &ids[1][0].1).await.state, Delivered);
    assert_eq!(get(&**b, &t, &ids[1][1].1).await.state, Failed);
    assert_eq!(get(&**b, &t, &ids[1][1].1).await.error_code, Some(131026));
    // The orphan is folded in when a send with that wamid is accepted.
    let late = queued(&**b, &t, T0).await;
    b.claim_due_messages(&t.number, T0, T0 + 30_000, 10)
        .await
        .expect("claim");
    b.mark_accepted(&late, &crate::fixtures::wm("wamid.unknown.1"), T0 + 35)
        .await
        .expect("accept");
    assert_eq!(get(&**b, &t, &late).await.state, Delivered);
}

async fn a_status_naming_only_a_wamid_recorded_in_the_same_batch_applies(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let id = queued(&**b, &t, T0).await;
    b.claim_due_messages(&t.number, T0, T0 + 30_000, 1)
        .await
        .expect("claim");
    // `delivered` names only the wamid; the `sent` after it carries our id (callback data)
    // and records the wamid on the row: the batch applies both.
    let matched: Vec<Option<MessageId>> = b
        .apply_statuses(&[
            status("wamid.x", None, MessageState::Delivered, T0 + 20),
            status("wamid.x", Some(&id), MessageState::Sent, T0 + 10),
        ])
        .await
        .expect("apply")
        .into_iter()
        .map(|f| f.map(|f| f.id))
        .collect();
    assert_eq!(matched, vec![Some(id.clone()), Some(id.clone())]);
    let m = get(&**b, &t, &id).await;
    assert_eq!(m.state, MessageState::Delivered);
    assert_eq!(m.wamid.as_ref().map(|x| x.as_str()), Some("wamid.x"));
    assert_eq!((m.sent_at, m.delivered_at), (Some(T0 + 10), Some(T0 + 20)));
}

async fn acceptances_record_wamids_and_quota_and_report_unknown_ids(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let (m1, m2) = (queued(&**b, &t, T0).await, queued(&**b, &t, T0).await);
    b.claim_due_messages(&t.number, T0, T0 + 30_000, 10)
        .await
        .expect("claim");
    b.reschedule_message(&m2, T0, Some((131000, "transient")), T0)
        .await
        .expect("retry");
    b.claim_due_messages(&t.number, T0, T0 + 30_000, 10)
        .await
        .expect("claim again");
    // A status outran the acceptance of m1: folded in.
    b.apply_status(&status("wamid.m1", None, MessageState::Sent, T0 + 50))
        .await
        .expect("orphan");
    let unknown = MessageId::new();
    let scope = "pn:batch";
    let missing = b
        .record_acceptances(&[
            Acceptance {
                id: m1.clone(),
                wamid: crate::fixtures::wm("wamid.m1"),
                at: T0 + 40,
                quota: Some(QuotaConfirm {
                    scope_key: scope.into(),
                    contact: "+4915100000001".into(),
                }),
            },
            Acceptance {
                id: unknown.clone(),
                wamid: crate::fixtures::wm("wamid.none"),
                at: T0 + 40,
                quota: None,
            },
            Acceptance {
                id: m2.clone(),
                wamid: crate::fixtures::wm("wamid.m2"),
                at: T0 + 41,
                quota: Some(QuotaConfirm {
                    scope_key: scope.into(),
                    contact: "+4915100000002".into(),
                }),
            },
        ])
        .await
        .expect("record");
    assert_eq!(missing, vec![unknown]);
    let a = get(&**b, &t, &m1).await;
    assert_eq!(
        (a.state, a.wamid.as_ref().map(|x| x.as_str())),
        (MessageState::Sent, Some("wamid.m1"))
    );
    assert_eq!((a.accepted_at, a.sent_at), (Some(T0 + 40), Some(T0 + 50)));
    let c = get(&**b, &t, &m2).await;
    assert_eq!(c.state, MessageState::Accepted);
    assert_eq!(c.error_code, None, "the retry's error is cleared");
    assert_eq!(
        b.quota_active(scope, T0 + 100).await.expect("active"),
        vec![T0 + 40, T0 + 41]
    );
}

/// Two acceptances for one contact in one batch (the first had reserved the slot): one ledger
/// row, at the later time, and the reservation is confirmed (a later release of it by the
/// first message frees nothing).
async fn a_contact_confirmed_twice_in_one_batch_keeps_its_latest_reach(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let scope = "bp:twice";
    let contact = "+4915100000077";
    let (m1, m2) = (queued(&**b, &t, T0).await, queued(&**b, &t, T0).await);
    b.claim_due_messages(&t.number, T0, T0 + 30_000, 10)
        .await
        .expect("claim");
    let answer = b
        .reserve_quota(&QuotaRequest {
            scope_key: scope,
            application_id: &t.app,
            contact,
            message_id: &m1,
            limit: MessagingLimit::Limited(10),
            now: T0,
        })
        .await
        .expect("reserve");
    assert_eq!(answer.gate, Gate::Go(Reach::NewContact));
    let accept = |id: &MessageId, wamid: &str, at: i64| Acceptance {
        id: id.clone(),
        wamid: crate::fixtures::wm(wamid),
        at,
        quota: Some(QuotaConfirm {
            scope_key: scope.into(),
            contact: contact.into(),
        }),
    };
    let missing = b
        .record_acceptances(&[
            accept(&m2, "wamid.twice2", T0 + 40),
            accept(&m1, "wamid.twice1", T0 + 45),
        ])
        .await
        .expect("record");
    assert!(missing.is_empty());
    assert_eq!(
        b.quota_active(scope, T0 + 100).await.expect("active"),
        vec![T0 + 45]
    );
    b.release_quota(scope, contact, &m1).await.expect("release");
    assert_eq!(
        b.quota_active(scope, T0 + 100).await.expect("active"),
        vec![T0 + 45],
        "the confirmed reach is not a reservation any more"
    );
}

async fn a_quota_batch_answers_as_one_request_at_a_time(b: &Backend) {
    let t = tenant(&**b, 1).await;
    b.record_inbound(&InboundRecord {
        wamid: crate::fixtures::wm("wamid.in.batch"),
        application_id: t.app.clone(),
        phone_number_id: t.number.clone(),
        from_phone: "+4915100000009".into(),
        from: parley_store::ContactIdentity {
            phone: Some("+4915100000009".into()),
            name: None,
            ..Default::default()
        },
        kind: parley_domain::InboundKind::Text,
        body: serde_json::json!({"kind": "text"}),
        refers_to: None,
        media: None,
        text: Some("hi".into()),
        raw: json!({}),
        received_at: T0,
    })
    .await
    .expect("inbound");
    let contacts = [
        "+4915100000001",
        "+4915100000001",
        "+4915100000002",
        "+4915100000003",
        "+4915100000009",
    ];
    let limit = MessagingLimit::Limited(2);
    // One at a time in scope a, as one batch in scope b.
    let ids: Vec<MessageId> = contacts.iter().map(|_| MessageId::new()).collect();
    let mut single = Vec::new();
    for (c, id) in contacts.iter().zip(&ids) {
        single.push(
            b.reserve_quota(&QuotaRequest {
                scope_key: "pn:a",
                application_id: &t.app,
                contact: c,
                message_id: id,
                limit,
                now: T0 + 10,
            })
            .await
            .expect("reserve"),
        );
    }
    let items: Vec<QuotaItem<'_>> = contacts
        .iter()
        .zip(&ids)
        .map(|(c, id)| QuotaItem {
            contact: c,
            message_id: id,
        })
        .collect();
    let batch = b
        .reserve_quota_batch(&QuotaBatch {
            scope_key: "pn:b",
            application_id: &t.app,
            limit,
            now: T0 + 10,
            items: &items,
        })
        .await
        .expect("reserve batch");
    assert_eq!(batch, single);
    let gates: Vec<Gate> = batch.iter().map(|a| a.gate).collect();
    assert_eq!(
        gates,
        vec![
            Gate::Go(Reach::NewContact),
            Gate::Go(Reach::AlreadyCounted),
            Gate::Go(Reach::NewContact),
            Gate::WaitUntil(T0 + 10 + QUOTA_WINDOW_MS),
            Gate::Go(Reach::InServiceWindow),
        ]
    );
    assert_eq!(batch[4].used, Some(2));
    // Unlimited: everyone goes, nothing is counted against it.
    let unlimited = b
        .reserve_quota_batch(&QuotaBatch {
            scope_key: "pn:c",
            application_id: &t.app,
            limit: MessagingLimit::Unlimited,
            now: T0 + 10,
            items: &items,
        })
        .await
        .expect("reserve unlimited");
    assert!(
        unlimited
            .iter()
            .all(|a| matches!(a.gate, Gate::Go(_)) && a.used.is_none())
    );
    // No slot is held for an unlimited send: the contact counts once Meta accepts it.
    assert!(
        b.quota_active("pn:c", T0 + 20)
            .await
            .expect("active")
            .is_empty()
    );
}

async fn webhook_events_finish_in_one_batch(b: &Backend) {
    let first = b.insert_webhook_event(b"{}", T0).await.expect("insert");
    let second = b.insert_webhook_event(b"[]", T0).await.expect("insert");
    let third = b.insert_webhook_event(b"{}", T0).await.expect("insert");
    b.finish_webhook_events(
        &[
            (first, None),
            (third, Some("field `x` stored, not acted on yet".into())),
        ],
        T0 + 1,
    )
    .await
    .expect("finish");
    let pending: Vec<i64> = b
        .pending_webhook_events(10)
        .await
        .expect("pending")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(pending, vec![second]);
}

async fn pending_events_stop_at_the_body_budget(b: &Backend) {
    let big = vec![b' '; (parley_store::PENDING_BODY_BUDGET as usize) / 2 + 1];
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(b.insert_webhook_event(&big, T0).await.expect("insert"));
    }
    let first: Vec<i64> = b
        .pending_webhook_events(10)
        .await
        .expect("pending")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(first, vec![ids[0]], "two halves and a byte pass the budget");
    let huge = vec![b' '; parley_store::PENDING_BODY_BUDGET as usize + 1];
    b.finish_webhook_events(&[(ids[0], None), (ids[1], None), (ids[2], None)], T0)
        .await
        .expect("finish");
    let alone = b.insert_webhook_event(&huge, T0).await.expect("insert");
    b.insert_webhook_event(b"{}", T0).await.expect("insert");
    let got: Vec<i64> = b
        .pending_webhook_events(10)
        .await
        .expect("pending")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        got,
        vec![alone],
        "one event over the budget still goes, alone"
    );
}

/// `record_pricing` over a webhook round: by wamid, else by our id when no message has the
/// wamid; the last pricing of a wamid wins; a status naming nothing changes nothing.
async fn a_round_of_pricing_ends_as_one_at_a_time(b: &Backend) {
    use parley_store::consent::PricingUpdate;
    let t = tenant(&**b, 1).await;
    let by_wamid = accepted(&**b, &t, "wamid.p1", T0).await;
    let by_id = queued(&**b, &t, T0).await;
    let untouched = accepted(&**b, &t, "wamid.p3", T0).await;
    let pricing = |category: &str| json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": category});
    let update = |wamid: &str, id: Option<&MessageId>, category: &str| PricingUpdate {
        wamid: crate::fixtures::wm(wamid),
        message_id: id.cloned(),
        pricing: pricing(category),
        category: Some(category.to_owned()),
    };
    let n = b
        .record_pricing(&[
            update("wamid.p1", None, "utility"),
            // The wamid is known: the id it names is not used.
            update("wamid.p1", Some(&untouched), "marketing"),
            update("wamid.not-yet-recorded", Some(&by_id), "service"),
            update("wamid.nobody", None, "authentication"),
        ])
        .await
        .expect("pricing");
    assert_eq!(n, 2);
    let meta = b
        .message_meta(
            &t.app,
            &[by_wamid.clone(), by_id.clone(), untouched.clone()],
        )
        .await
        .expect("meta");
    assert_eq!(meta[&by_wamid].pricing, Some(pricing("marketing")));
    assert_eq!(
        meta[&by_wamid].pricing_category.as_deref(),
        Some("marketing")
    );
    assert_eq!(meta[&by_id].pricing, Some(pricing("service")));
    assert_eq!(meta[&untouched].pricing, None);
    assert_eq!(b.record_pricing(&[]).await.expect("nothing"), 0);
}
