//! Messages: idempotent insert, pages, claims (order, lease, never twice), acceptance,
//! retries and failures, stale leases.

use std::collections::HashSet;

use parley_domain::{ApplicationId, MessageContent, MessageId, MessageState, Wamid};
use parley_store::{InsertOutcome, Store};

use crate::backend::Backend;
use crate::fixtures::{T0, get, new_message, queued, rendered, tenant};

crate::contract!(
    insert_message_is_idempotent_per_application,
    messages_page_newest_first,
    claim_takes_due_messages_in_order_with_a_lease,
    concurrent_claimers_never_share_a_message,
    mark_accepted_records_the_wamid_and_clears_retry_errors,
    reschedule_and_fail,
    requeue_stale_sending_after_lease_and_grace,
    a_send_meta_holds_is_never_requeued_by_crash_recovery,
    a_stale_send_waits_for_the_webhooks_received_in_its_grace,
);

async fn insert_message_is_idempotent_per_application(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let first = new_message(&t, T0, Some("order-42"));
    assert!(matches!(
        b.insert_message(&first).await.expect("insert"),
        InsertOutcome::Created
    ));
    let stored = get(&**b, &t, &first.id).await;
    assert_eq!(
        stored.content,
        rendered("order_update"),
        "content round-trips"
    );
    assert_eq!(stored.state, MessageState::Queued);
    assert_eq!(
        (stored.queued_at, stored.next_attempt_at, stored.updated_at),
        (T0, T0, T0)
    );
    assert_eq!(stored.attempts, 0);
    assert_eq!(stored.to_phone, first.to_phone);

    let repeat = new_message(&t, T0 + 5, Some("order-42"));
    match b.insert_message(&repeat).await.expect("repeat") {
        InsertOutcome::Existing(m) => assert_eq!(m.id, first.id, "the first message answers"),
        InsertOutcome::Created => panic!("{}: a used key created a second message", b.name()),
    }
    assert!(b.message(&t.app, &repeat.id).await.expect("read").is_none());

    // Keys are per application; no key never deduplicates.
    let other = tenant(&**b, 2).await;
    assert!(matches!(
        b.insert_message(&new_message(&other, T0, Some("order-42")))
            .await
            .expect("other app"),
        InsertOutcome::Created
    ));
    for _ in 0..2 {
        assert!(matches!(
            b.insert_message(&new_message(&t, T0, None))
                .await
                .expect("no key"),
            InsertOutcome::Created
        ));
    }
    let mut text = new_message(&t, T0, None);
    text.content = MessageContent::Text {
        body: "Hallo, grüß dich 👋".into(),
        preview_url: true,
    };
    text.reply_to = Some(Wamid::parse("wamid.in.1").expect("wamid"));
    b.insert_message(&text).await.expect("text");
    let stored = get(&**b, &t, &text.id).await;
    assert_eq!(stored.content, text.content);
    assert_eq!(
        stored.reply_to.as_ref().map(Wamid::as_str),
        Some("wamid.in.1")
    );
    assert!(
        b.message(&other.app, &first.id)
            .await
            .expect("read")
            .is_none(),
        "a message is only visible to its application"
    );
}

async fn messages_page_newest_first(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(queued(&**b, &t, T0 + i).await);
    }
    ids.reverse();
    let page = |after: Option<MessageId>, limit| {
        let app = t.app.clone();
        async move {
            b.messages(&app, after.as_ref(), limit)
                .await
                .expect("page")
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        }
    };
    let first = page(None, 2).await;
    assert_eq!(first, ids[..2]);
    let second = page(first.last().cloned(), 2).await;
    assert_eq!(second, ids[2..4]);
    let third = page(second.last().cloned(), 2).await;
    assert_eq!(third, ids[4..]);
    assert!(page(third.last().cloned(), 2).await.is_empty());
    assert!(
        b.messages(&ApplicationId::new(), None, 10)
            .await
            .expect("page")
            .is_empty()
    );
}

async fn claim_takes_due_messages_in_order_with_a_lease(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let other = tenant(&**b, 2).await;
    let late = queued(&**b, &t, T0 + 30).await;
    let early = queued(&**b, &t, T0 + 10).await;
    let middle = queued(&**b, &t, T0 + 20).await;
    let future = queued(&**b, &t, T0 + 10_000).await;
    let elsewhere = queued(&**b, &other, T0).await;
    assert_eq!(b.next_due_at(&t.number).await.expect("due"), Some(T0 + 10));

    let now = T0 + 100;
    let lease = now + 60_000;
    let claimed = b
        .claim_due_messages(&t.number, now, lease, 2)
        .await
        .expect("claim");
    let got: Vec<&MessageId> = claimed.iter().map(|m| &m.id).collect();
    assert_eq!(got, [&early, &middle], "earliest due first");
    for m in &claimed {
        assert_eq!(m.state, MessageState::Sending);
        assert_eq!(m.attempts, 1);
        assert_eq!(m.sending_at, Some(now));
        assert_eq!(m.updated_at, now);
    }
    let again = b
        .claim_due_messages(&t.number, now, lease, 10)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|m| &m.id).collect::<Vec<_>>(),
        [&late],
        "claimed rows and rows not yet due stay out"
    );
    assert!(
        b.claim_due_messages(&t.number, now, lease, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        b.next_due_at(&t.number).await.expect("due"),
        Some(T0 + 10_000)
    );
    assert_eq!(get(&**b, &t, &future).await.state, MessageState::Queued);
    assert_eq!(
        get(&**b, &other, &elsewhere).await.state,
        MessageState::Queued
    );
    assert_eq!(
        b.next_due_at(&crate::fixtures::pnid("999999999"))
            .await
            .expect("due"),
        None
    );
}

async fn concurrent_claimers_never_share_a_message(b: &Backend) {
    const MESSAGES: usize = 150;
    let t = tenant(&**b, 1).await;
    let mut all = HashSet::new();
    for i in 0..MESSAGES {
        all.insert(queued(&**b, &t, T0 + (i as i64 % 7)).await);
    }
    // Two nodes, two claiming loops each.
    let nodes = [
        b.store.clone(),
        b.store.clone(),
        b.another_node(None).await,
        b.another_node(None).await,
    ];
    let mut loops = Vec::new();
    for store in nodes {
        let number = t.number.clone();
        loops.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim_due_messages(&number, T0 + 1_000, T0 + 61_000, 4)
                    .await
                    .expect("claim");
                if batch.is_empty() {
                    break mine;
                }
                mine.extend(batch.into_iter().map(|m| m.id));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut per_loop = Vec::new();
    for handle in loops {
        let ids = handle.await.expect("claimer");
        per_loop.push(ids.len());
        for id in ids {
            assert!(
                seen.insert(id.clone()),
                "{}: {id} was claimed twice",
                b.name()
            );
        }
    }
    assert_eq!(
        seen, all,
        "every message claimed exactly once ({per_loop:?} per loop)"
    );
    let store: &dyn Store = &**b;
    for id in &all {
        let m = get(store, &t, id).await;
        assert_eq!((m.state, m.attempts), (MessageState::Sending, 1));
    }
}

async fn mark_accepted_records_the_wamid_and_clears_retry_errors(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let id = queued(&**b, &t, T0).await;
    b.claim_due_messages(&t.number, T0, T0 + 1_000, 1)
        .await
        .expect("claim");
    b.reschedule_message(
        &id,
        T0 + 2_000,
        Some((131000, "Something went wrong")),
        T0 + 10,
    )
    .await
    .expect("transient error");
    let m = get(&**b, &t, &id).await;
    assert_eq!(m.error_code, Some(131000));
    b.claim_due_messages(&t.number, T0 + 2_000, T0 + 3_000, 1)
        .await
        .expect("claim again");
    b.mark_accepted(&id, &crate::fixtures::wm("wamid.A"), T0 + 2_010)
        .await
        .expect("accept");
    let m = get(&**b, &t, &id).await;
    assert_eq!(m.state, MessageState::Accepted);
    assert_eq!(m.wamid.as_ref().map(|x| x.as_str()), Some("wamid.A"));
    assert_eq!(m.accepted_at, Some(T0 + 2_010));
    assert_eq!(m.sending_at, Some(T0), "the first claim's time is kept");
    assert_eq!(m.attempts, 2);
    assert_eq!(
        (m.error_code, m.error_message),
        (None, None),
        "the recovered error is cleared"
    );
    assert_eq!(m.updated_at, T0 + 2_010);
    assert!(matches!(
        b.mark_accepted(&MessageId::new(), &crate::fixtures::wm("wamid.B"), T0)
            .await,
        Err(parley_store::StoreError::NotFound(_))
    ));
    // Accepted is not due again, and a second wamid does not replace the first.
    assert!(
        b.claim_due_messages(&t.number, T0 + 9_999, T0 + 20_000, 5)
            .await
            .expect("claim")
            .is_empty()
    );
    b.mark_accepted(&id, &crate::fixtures::wm("wamid.A"), T0 + 3_000)
        .await
        .expect("repeat accept");
    let again = get(&**b, &t, &id).await;
    assert_eq!(again.accepted_at, Some(T0 + 2_010));
}

async fn reschedule_and_fail(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let id = queued(&**b, &t, T0).await;
    b.claim_due_messages(&t.number, T0, T0 + 1_000, 1)
        .await
        .expect("claim");
    b.reschedule_message(&id, T0 + 5_000, Some((130429, "Rate limit hit")), T0 + 1)
        .await
        .expect("reschedule");
    let m = get(&**b, &t, &id).await;
    assert_eq!(m.state, MessageState::Queued);
    assert_eq!(m.next_attempt_at, T0 + 5_000);
    assert_eq!(m.error_code, Some(130429));
    assert_eq!(m.error_message.as_deref(), Some("Rate limit hit"));
    assert_eq!(
        b.next_due_at(&t.number).await.expect("due"),
        Some(T0 + 5_000)
    );
    assert!(
        b.claim_due_messages(&t.number, T0 + 4_999, T0 + 9_000, 5)
            .await
            .expect("claim")
            .is_empty(),
        "not before its time"
    );
    let c = b
        .claim_due_messages(&t.number, T0 + 5_000, T0 + 9_000, 5)
        .await
        .expect("claim");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].attempts, 2);

    b.fail_message(&id, 131026, "Message undeliverable", T0 + 5_001)
        .await
        .expect("fail");
    let m = get(&**b, &t, &id).await;
    assert_eq!(m.state, MessageState::Failed);
    assert_eq!(m.error_code, Some(131026));
    assert_eq!(m.error_message.as_deref(), Some("Message undeliverable"));
    assert_eq!(m.failed_at, Some(T0 + 5_001));

    // A failed message stays failed: neither rescheduled nor failed again.
    b.reschedule_message(&id, T0 + 9_000, None, T0 + 6_000)
        .await
        .expect("no-op");
    b.fail_message(&id, 1, "other", T0 + 7_000)
        .await
        .expect("no-op");
    let after = get(&**b, &t, &id).await;
    assert_eq!(after.state, MessageState::Failed);
    assert_eq!(after.error_code, Some(131026));
    assert_eq!(after.updated_at, T0 + 5_001);
    assert_eq!(b.next_due_at(&t.number).await.expect("due"), None);

    // An accepted message is not failed by a late send error either.
    let accepted = crate::fixtures::accepted(&**b, &t, "wamid.ok", T0 + 10_000).await;
    b.fail_message(&accepted, 131000, "late", T0 + 10_005)
        .await
        .expect("no-op");
    b.reschedule_message(&accepted, T0, Some((1, "late")), T0 + 10_005)
        .await
        .expect("no-op");
    let m = get(&**b, &t, &accepted).await;
    assert_eq!((m.state, m.error_code), (MessageState::Accepted, None));
}

async fn requeue_stale_sending_after_lease_and_grace(b: &Backend) {
    use parley_store::{StaleSending, StatusChange};
    let t = tenant(&**b, 1).await;
    let stale = queued(&**b, &t, T0).await;
    let answered = queued(&**b, &t, T0).await;
    let settled = queued(&**b, &t, T0).await;
    let lease = T0 + 30_000;
    let claimed = b
        .claim_due_messages(&t.number, T0, lease, 3)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    b.mark_accepted(&answered, &crate::fixtures::wm("wamid.answered"), T0 + 5)
        .await
        .expect("accept");
    let pass = |now: i64| async move {
        b.requeue_stale_sending(now, 300_000)
            .await
            .expect("requeue")
    };
    let grace = 300_000;
    assert_eq!(pass(lease - 1).await, StaleSending::default(), "leased");
    // Parley was down far past lease + grace: the first pass after the restart notes the
    // rows stale, and the grace counts from then, so Meta's retried webhooks still come in time.
    let back = lease + 10 * grace;
    let noted = StaleSending {
        noticed: 2,
        requeued: 0,
    };
    assert_eq!(pass(back).await, noted);
    // A status naming one of them (our id in the callback data) settles it meanwhile.
    b.apply_status(&StatusChange {
        wamid: crate::fixtures::wm("wamid.settled"),
        message_id: Some(settled.clone()),
        state: MessageState::Sent,
        at: back + 10,
        error: None,
        pricing: None,
    })
    .await
    .expect("status")
    .expect("matched");
    // Later passes (another restart) do not start the grace again.
    assert_eq!(pass(back + grace - 1).await, StaleSending::default());
    let requeued = StaleSending {
        noticed: 0,
        requeued: 1,
    };
    assert_eq!(pass(back + grace).await, requeued, "once, after one grace");
    let m = get(&**b, &t, &stale).await;
    assert_eq!(m.state, MessageState::Queued);
    assert_eq!(m.next_attempt_at, back + grace);
    assert_eq!(get(&**b, &t, &answered).await.state, MessageState::Accepted);
    assert_eq!(get(&**b, &t, &settled).await.state, MessageState::Sent);
    assert_eq!(pass(back + grace + 1).await, StaleSending::default());
    let new_lease = back + grace + 30_000;
    let again = b
        .claim_due_messages(&t.number, back + grace, new_lease, 5)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.clone(), again[0].attempts), (stale, 2));
    // Claimed again, it has a fresh lease and, once that lapses, a fresh grace.
    let noted_one = StaleSending {
        noticed: 1,
        requeued: 0,
    };
    assert_eq!(pass(new_lease + 1).await, noted_one);
}

/// A crash after Meta answered "held for quality assessment" (noted on the row) but before
/// the acceptance was written: the row stays `sending` past lease and grace, and recovery
/// never puts it back in the queue (Meta has it); its release settles it (META_2026 §6.3).
async fn a_send_meta_holds_is_never_requeued_by_crash_recovery(b: &Backend) {
    use parley_store::{StaleSending, StatusChange};
    let t = tenant(&**b, 1).await;
    let held = queued(&**b, &t, T0).await;
    let lost = queued(&**b, &t, T0).await;
    let lease = T0 + 30_000;
    assert_eq!(
        b.claim_due_messages(&t.number, T0, lease, 2)
            .await
            .expect("claim")
            .len(),
        2
    );
    b.mark_meta_status(&held, "held_for_quality_assessment")
        .await
        .expect("note the hold");
    let grace = 300_000;
    let noted = b
        .requeue_stale_sending(lease + 1, grace)
        .await
        .expect("pass");
    assert_eq!(noted.noticed, 2);
    let pass = b
        .requeue_stale_sending(lease + 1 + 10 * grace, grace)
        .await
        .expect("pass");
    assert_eq!(
        pass,
        StaleSending {
            noticed: 0,
            requeued: 1
        },
        "only the send Meta never answered goes again"
    );
    assert_eq!(get(&**b, &t, &lost).await.state, MessageState::Queued);
    assert_eq!(get(&**b, &t, &held).await.state, MessageState::Sending);
    // Meta releases it: the status (our id in the callback data) settles the row.
    b.apply_status(&StatusChange {
        wamid: crate::fixtures::wm("wamid.released"),
        message_id: Some(held.clone()),
        state: MessageState::Sent,
        at: lease + 20 * grace,
        error: None,
        pricing: None,
    })
    .await
    .expect("status")
    .expect("matched");
    assert_eq!(get(&**b, &t, &held).await.state, MessageState::Sent);
    let meta = b
        .message_meta(&t.app, std::slice::from_ref(&held))
        .await
        .expect("meta");
    assert_eq!(
        meta[&held].meta_status.as_deref(),
        Some("held_for_quality_assessment")
    );
}

/// Before an ambiguous resend, the webhooks received while the grace ran are applied: a row
/// whose grace passed stays `sending` while a webhook received before the grace ended is still
/// waiting to be processed (it may be the status naming it), and goes back to the queue once
/// that webhook is processed. A webhook received after the grace ended does not hold it.
async fn a_stale_send_waits_for_the_webhooks_received_in_its_grace(b: &Backend) {
    use parley_store::StaleSending;
    let t = tenant(&**b, 1).await;
    let stale = queued(&**b, &t, T0).await;
    let lease = T0 + 30_000;
    assert_eq!(
        b.claim_due_messages(&t.number, T0, lease, 1)
            .await
            .expect("claim")
            .len(),
        1
    );
    let grace = 300_000;
    let noticed = lease + 1;
    assert_eq!(
        b.requeue_stale_sending(noticed, grace)
            .await
            .expect("pass")
            .noticed,
        1
    );
    let end = noticed + grace;
    // One webhook stored during the grace, one after it; neither processed yet.
    let during = b
        .insert_webhook_events(
            &[b"{\"object\":\"whatsapp_business_account\",\"entry\":[]}"],
            end - 1,
        )
        .await
        .expect("store")[0];
    let after = b
        .insert_webhook_events(
            &[b"{\"object\":\"whatsapp_business_account\",\"entry\":[]}"],
            end,
        )
        .await
        .expect("store")[0];
    assert_eq!(
        b.requeue_stale_sending(end + 10, grace)
            .await
            .expect("pass"),
        StaleSending::default(),
        "a webhook received in the grace is not applied yet"
    );
    assert_eq!(get(&**b, &t, &stale).await.state, MessageState::Sending);
    b.finish_webhook_events(&[(during, None)], end + 20)
        .await
        .expect("finish");
    assert_eq!(
        b.requeue_stale_sending(end + 30, grace)
            .await
            .expect("pass"),
        StaleSending {
            noticed: 0,
            requeued: 1
        },
        "the one received after the grace does not hold it"
    );
    assert_eq!(get(&**b, &t, &stale).await.state, MessageState::Queued);
    b.finish_webhook_events(&[(after, None)], end + 40)
        .await
        .expect("finish");
}
