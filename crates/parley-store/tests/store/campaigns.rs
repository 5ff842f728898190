//! Campaigns: conditional state changes (starting twice changes once), planner chunks tied to
//! the cursor (a stale planner writes nothing), paused campaigns are not claimed, and the
//! quota gate (unique contacts, the service window, the instant a slot frees, release).

use parley_domain::quota::{Gate, MessagingLimit, QUOTA_WINDOW_MS, Reach};
use parley_domain::{CampaignId, CampaignKind, CampaignState, MessageId, MessageState};
use parley_store::InboundRecord;
use parley_store::campaigns::{CampaignRecord, PlannedMessage, QuotaRequest};
use serde_json::json;

use crate::backend::Backend;
use crate::fixtures::{T0, get, new_message, tenant};

crate::contract!(
    campaign_states_change_once_and_chunks_follow_the_cursor,
    quota_gate_counts_unique_contacts_outside_the_window,
    quota_reservations_at_once_agree_with_the_reference_ledger,
    campaign_counts_follow_every_transition,
    planned_messages_count_their_own_statistics,
    a_capped_message_requeued_while_its_campaign_completes_keeps_the_campaign_running,
);

/// The campaign worker's completion (`Engine::work_campaigns`): a read without a lock, then
/// the decision under the campaign's lock.
async fn complete_if_done(b: &Backend, id: &CampaignId, now: i64) -> bool {
    b.campaign_open_messages(id).await.expect("open") == 0
        && b.campaign_meta_counts(id).await.expect("meta").held_by_meta == 0
        && b.complete_campaign_if_done(id, now)
            .await
            .expect("complete")
}

/// Meta fails a campaign's last open message with its per-user marketing cap (131049): the
/// failure lets the campaign worker find nothing open while the message goes back to the
/// queue for its next day (`requeue_capped`). Run at once, many times: whatever the
/// interleaving, the campaign stays running with the message queued (a completion that read
/// the `failed` and wrote after the requeue left a completed campaign whose queued message the
/// sender never claims: the per-user cap test's "not resent a day later").
async fn a_capped_message_requeued_while_its_campaign_completes_keeps_the_campaign_running(
    b: &Backend,
) {
    const DAY: i64 = 24 * 3_600_000;
    let t = tenant(&**b, 1).await;
    for round in 0..60 {
        let c = running_campaign(b, &t).await;
        let m = new_message(&t, T0, None);
        let planned = PlannedMessage {
            message: m.clone(),
            skip: None,
            send_window: None,
            window_opens_at: None,
        };
        assert!(
            b.add_planned_messages(&c.id, None, &[planned], Some(&m.to_phone), true, T0)
                .await
                .expect("chunk")
        );
        // Sent, accepted, then failed by Meta with its per-user cap.
        let sql = format!(
            "UPDATE messages SET state = 'failed', error_code = 131049, wamid = 'wamid.capped.{round}',
               accepted_at = {t1}, failed_at = {t1} WHERE id = '{id}'",
            t1 = T0 + 1,
            id = m.id.as_str()
        );
        b.raw_execute(Box::leak(sql.into_boxed_str())).await;
        // Either first to reach the database, by turns.
        let requeue = b.requeue_capped(&m.id, T0 + DAY, 3, T0 + 10);
        let complete = complete_if_done(b, &c.id, T0 + 10);
        let requeued = match round % 2 {
            0 => tokio::join!(requeue, complete).0,
            _ => tokio::join!(complete, requeue).1,
        };
        assert!(requeued.expect("requeue"), "round {round}");
        assert_eq!(get(&**b, &t, &m.id).await.state, MessageState::Queued);
        let after = b
            .campaign(&t.app, &c.id)
            .await
            .expect("campaign")
            .expect("exists");
        assert_eq!(
            after.state,
            CampaignState::Running,
            "round {round}: a queued message under a completed campaign"
        );
    }
}

/// The planner counts the statistics of the rows it inserts (the insert trigger is off for
/// its transaction, migration 0042): queued, skipped with a reason, held for a window, numbers
/// of two countries; a stale chunk (rolled back) counts nothing. The counters equal the recount.
async fn planned_messages_count_their_own_statistics(b: &Backend) {
    use parley_store::stats::{StatQuery, StatSpan};
    let t = tenant(&**b, 1).await;
    let c = running_campaign(b, &t).await;
    let planned = |to: &str, skip: bool, window: bool| {
        let mut m = new_message(&t, T0, None);
        m.to_phone = to.into();
        PlannedMessage {
            message: m,
            skip: skip.then(|| ("opted_out".to_owned(), "opted out".to_owned())),
            send_window: window.then(|| "09:00-20:00@Europe/Berlin".to_owned()),
            window_opens_at: window.then_some(T0 + 3_600_000),
        }
    };
    let chunk = vec![
        planned("+4915100000001", false, false),
        planned("+4915100000002", true, false),
        planned("+12025550100", false, true),
        planned("+4915100000003", false, false),
    ];
    assert!(
        b.add_planned_messages(&c.id, None, &chunk, Some("+4915100000003"), false, T0)
            .await
            .expect("chunk")
    );
    assert!(
        !b.add_planned_messages(&c.id, None, &chunk[..1], Some("+4915100000001"), false, T0)
            .await
            .expect("stale chunk")
    );
    let diff = b.stat_check_message_contributions().await.expect("check");
    assert!(diff.is_empty(), "Rust and SQL differ: {diff:#?}");
    let diff = b.stat_recount(false).await.expect("recount");
    assert!(
        diff.is_empty(),
        "counters differ from the recount: {diff:#?}"
    );
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
    let sum = |metric: &str, detail: &str| -> i64 {
        rows.iter()
            .filter(|r| r.metric == metric && r.detail == detail)
            .map(|r| r.n)
            .sum()
    };
    assert_eq!(sum("queued", ""), 4);
    assert_eq!(sum("skipped", "opted_out"), 1);
}

/// A campaign of the tenant, created and started at `T0`.
async fn running_campaign(b: &Backend, t: &crate::fixtures::Tenant) -> CampaignRecord {
    let c = campaign(t);
    assert!(b.create_campaign(&c, &[], 1).await.expect("create"));
    b.transition_campaign(
        &c.id,
        &[CampaignState::Draft],
        CampaignState::Running,
        None,
        T0,
    )
    .await
    .expect("start");
    c
}

fn campaign(t: &crate::fixtures::Tenant) -> CampaignRecord {
    CampaignRecord {
        id: CampaignId::new(),
        application_id: t.app.clone(),
        name: "Spring sale".into(),
        phone_number_id: t.number.clone(),
        template_name: "order_update".into(),
        template_language: "en".into(),
        variables: json!({"1": "{{first_name|CapitalizeFirst|there}}"}),
        audience: json!({"filter": "city = \"Berlin\""}),
        audience_filter: "city = \"Berlin\"".into(),
        kind: CampaignKind::Marketing,
        scheduled_at: None,
        send_window: None,
        marketing_ttl_seconds: None,
        state: CampaignState::Draft,
        state_reason: None,
        planner_cursor: None,
        planned: false,
        recipients: 0,
        created_at: T0,
        updated_at: T0,
        started_at: None,
        finished_at: None,
    }
}

async fn campaign_states_change_once_and_chunks_follow_the_cursor(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let c = campaign(&t);
    assert!(b.create_campaign(&c, &[], 1).await.expect("create"));
    // A second draft is past a cap of 1 and is not written.
    let second = campaign(&t);
    assert!(!b.create_campaign(&second, &[], 1).await.expect("capped"));
    assert!(
        b.campaign(&t.app, &second.id)
            .await
            .expect("read")
            .is_none()
    );
    let from = [CampaignState::Draft, CampaignState::Scheduled];
    let other = b.another_node(None).await;
    let (a, z) = tokio::join!(
        b.transition_campaign(&c.id, &from, CampaignState::Running, None, T0 + 1),
        other.transition_campaign(&c.id, &from, CampaignState::Running, None, T0 + 2),
    );
    assert!(
        a.expect("a") ^ z.expect("z"),
        "exactly one start changes the campaign"
    );
    let stored = b.campaign(&t.app, &c.id).await.expect("get").expect("some");
    assert_eq!(stored.state, CampaignState::Running);
    assert!(stored.started_at.is_some());
    assert_eq!(b.campaigns_to_work(T0).await.expect("work").len(), 1);

    let planned = |to: &str, skip: bool| {
        let mut m = new_message(&t, T0, None);
        m.to_phone = to.into();
        PlannedMessage {
            message: m,
            skip: skip.then(|| ("opted_out".to_owned(), "opted out".to_owned())),
            send_window: None,
            window_opens_at: None,
        }
    };
    let chunk = vec![
        planned("+4915100000001", false),
        planned("+4915100000002", true),
    ];
    assert!(
        b.add_planned_messages(&c.id, None, &chunk, Some("+4915100000002"), false, T0)
            .await
            .expect("chunk")
    );
    // A second planner with the old cursor writes nothing.
    let again = vec![planned("+4915100000001", false)];
    assert!(
        !b.add_planned_messages(&c.id, None, &again, Some("+4915100000001"), false, T0)
            .await
            .expect("stale chunk")
    );
    assert!(
        b.add_planned_messages(&c.id, Some("+4915100000002"), &[], None, true, T0)
            .await
            .expect("last chunk")
    );
    let stored = b.campaign(&t.app, &c.id).await.expect("get").expect("some");
    assert!(stored.planned);
    assert_eq!(stored.recipients, 2);
    assert_eq!(
        get(&**b, &t, &chunk[1].message.id).await.state,
        MessageState::Skipped
    );
    assert_eq!(b.campaign_open_messages(&c.id).await.expect("open"), 1);

    // Paused: its message is not claimed; resumed: it is.
    assert!(
        b.transition_campaign(
            &c.id,
            &[CampaignState::Running],
            CampaignState::Paused,
            Some("by the user"),
            T0
        )
        .await
        .expect("pause")
    );
    assert!(
        b.claim_due_messages(&t.number, T0 + 10, T0 + 100, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    b.transition_campaign(
        &c.id,
        &[CampaignState::Paused],
        CampaignState::Running,
        None,
        T0,
    )
    .await
    .expect("resume");
    let claimed = b
        .claim_due_messages(&t.number, T0 + 10, T0 + 100, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        b.message_campaign(&claimed[0].id).await.expect("campaign"),
        Some(c.id.clone())
    );

    let counts = b.campaign_counts(&c.id).await.expect("counts");
    assert_eq!(counts.by_state.get("sending"), Some(&1));
    assert_eq!(counts.skipped_by_reason.get("opted_out"), Some(&1));
    assert!(
        b.transition_campaign(
            &c.id,
            &[CampaignState::Running, CampaignState::Paused],
            CampaignState::Cancelled,
            None,
            T0
        )
        .await
        .expect("cancel")
    );
    let stored = b.campaign(&t.app, &c.id).await.expect("get").expect("some");
    assert!(stored.finished_at.is_some());
    // The claimed message's lease lapses (a crash): cancelled meanwhile, it is skipped, not
    // put back in a queue nothing will claim.
    b.requeue_stale_sending(T0 + 1_000, 0)
        .await
        .expect("requeue");
    let m = get(&**b, &t, &claimed[0].id).await;
    assert_eq!(m.state, MessageState::Skipped);
}

async fn quota_gate_counts_unique_contacts_outside_the_window(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let scope = "bp:901";
    let limit = MessagingLimit::Limited(2);
    let ask = |contact: &'static str, id: MessageId, now: i64| {
        let store = b.store.clone();
        let app = t.app.clone();
        async move {
            store
                .reserve_quota(&QuotaRequest {
                    scope_key: scope,
                    application_id: &app,
                    contact,
                    message_id: &id,
                    limit,
                    now,
                })
                .await
                .expect("reserve")
        }
    };
    let (m1, m2, m3) = (MessageId::new(), MessageId::new(), MessageId::new());
    let a = ask("+4915100000001", m1.clone(), T0).await;
    assert_eq!(a.gate, Gate::Go(Reach::NewContact));
    b.confirm_quota(scope, "+4915100000001", &m1, Reach::NewContact, T0)
        .await
        .expect("confirm");
    assert_eq!(
        ask("+4915100000001", MessageId::new(), T0 + 1000)
            .await
            .gate,
        Gate::Go(Reach::AlreadyCounted)
    );
    assert_eq!(
        ask("+4915100000002", m2.clone(), T0 + 2000).await.gate,
        Gate::Go(Reach::NewContact)
    );
    // Full: the third waits until the first leaves the window.
    assert_eq!(
        ask("+4915100000003", m3.clone(), T0 + 3000).await.gate,
        Gate::WaitUntil(T0 + QUOTA_WINDOW_MS)
    );
    // The second's send failed: its slot is free again.
    b.release_quota(scope, "+4915100000002", &m2)
        .await
        .expect("release");
    assert_eq!(
        ask("+4915100000003", m3.clone(), T0 + 4000).await.gate,
        Gate::Go(Reach::NewContact)
    );
    // A contact who wrote in the last 24 h takes no slot.
    b.record_inbound(&InboundRecord {
        wamid: crate::fixtures::wm("wamid.in1"),
        application_id: t.app.clone(),
        phone_number_id: t.number.clone(),
        from_phone: "+4915100000004".into(),
        from: parley_store::ContactIdentity {
            phone: Some("+4915100000004".into()),
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
    let answer = ask("+4915100000004", MessageId::new(), T0 + 5000).await;
    assert_eq!(answer.gate, Gate::Go(Reach::InServiceWindow));
    assert_eq!(answer.used, Some(2));
    assert_eq!(
        b.quota_active(scope, T0 + 5000).await.expect("active"),
        vec![T0, T0 + 4000]
    );
    // Other scopes are not affected.
    assert!(
        b.quota_active("bp:other", T0 + 5000)
            .await
            .expect("other")
            .is_empty()
    );
}

/// Many senders asking the gate at the same instant (the concurrent rounds of several
/// numbers of one portfolio): the store's answers must be those of some one-after-the-other
/// order, checked by replaying them through `QuotaLedger`, the reference model: the sends
/// that went first, then those told to wait. An over-admission (two reservations taking the
/// last slot) makes the ledger answer `WaitUntil` where the store said `Go`.
async fn quota_reservations_at_once_agree_with_the_reference_ledger(b: &Backend) {
    use parley_domain::quota::QuotaLedger;
    let t = tenant(&**b, 1).await;
    let scope = "bp:concurrent";
    let limit = MessagingLimit::Limited(6);
    let mut ledger = QuotaLedger::new();
    // Two contacts counted since T0.
    for contact in ["+4915100000901", "+4915100000902"] {
        let id = MessageId::new();
        let a = b
            .reserve_quota(&QuotaRequest {
                scope_key: scope,
                application_id: &t.app,
                contact,
                message_id: &id,
                limit,
                now: T0,
            })
            .await
            .expect("reserve");
        assert_eq!(a.gate, Gate::Go(Reach::NewContact));
        b.confirm_quota(scope, contact, &id, Reach::NewContact, T0)
            .await
            .expect("confirm");
        ledger.record(contact, false, T0);
    }
    // Wave 1: 16 new contacts and 4 asks for the counted ones, at once: 4 slots are free.
    // Wave 2: a day later the first two leave the window; 10 new contacts at once.
    let waves: [(i64, Vec<String>); 2] = [
        (
            T0 + 1_000,
            (0..16)
                .map(|i| format!("+49151000010{i:02}"))
                .chain(
                    ["+4915100000901", "+4915100000902"]
                        .iter()
                        .cycle()
                        .take(4)
                        .map(|s| s.to_string()),
                )
                .collect(),
        ),
        (
            T0 + QUOTA_WINDOW_MS,
            (0..10).map(|i| format!("+49151000020{i:02}")).collect(),
        ),
    ];
    for (now, contacts) in waves {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(contacts.len()));
        let mut tasks = tokio::task::JoinSet::new();
        for contact in contacts {
            let store = b.store.clone();
            let app = t.app.clone();
            let barrier = barrier.clone();
            tasks.spawn(async move {
                barrier.wait().await;
                let answer = store
                    .reserve_quota(&QuotaRequest {
                        scope_key: scope,
                        application_id: &app,
                        contact: &contact,
                        message_id: &MessageId::new(),
                        limit,
                        now,
                    })
                    .await
                    .expect("reserve");
                (contact, answer.gate)
            });
        }
        let mut answers = tasks.join_all().await;
        // Sends that went first (in any order among them), then the waits.
        answers.sort_by_key(|(_, gate)| matches!(gate, Gate::WaitUntil(_)));
        for (contact, gate) in &answers {
            // A reservation holds a new contact's slot; a counted contact's reach moves only
            // when Meta accepts (confirm_quota), so the ledger records new contacts here.
            let expected = ledger.check(limit, contact, false, now);
            if expected == Gate::Go(Reach::NewContact) {
                ledger.record(contact, false, now);
            }
            assert_eq!(
                *gate,
                expected,
                "{}: {contact} at {now}: the store's answers are no sequential order: {answers:?}",
                b.name()
            );
        }
        assert_eq!(
            b.quota_active(scope, now).await.expect("active"),
            ledger.active(now),
            "{}: the store's ledger and the reference differ",
            b.name()
        );
    }
}

/// The statistics (counters on SQLite) after every kind of change a message goes through.
async fn campaign_counts_follow_every_transition(b: &Backend) {
    use parley_store::StatusChange;
    const HOUR: i64 = 3_600_000;
    let t = tenant(&**b, 1).await;
    let c = running_campaign(b, &t).await;
    let planned: Vec<PlannedMessage> = (0..6)
        .map(|n| {
            let mut m = new_message(&t, T0, None);
            m.to_phone = format!("+491510000010{n}");
            PlannedMessage {
                message: m,
                skip: (n == 0).then(|| ("opted_out".to_owned(), "opted out".to_owned())),
                send_window: None,
                window_opens_at: None,
            }
        })
        .collect();
    let ids: Vec<MessageId> = planned.iter().map(|p| p.message.id.clone()).collect();
    b.add_planned_messages(&c.id, None, &planned, None, true, T0)
        .await
        .expect("plan");
    let counts = b.campaign_counts(&c.id).await.expect("counts");
    assert_eq!(counts.by_state.get("queued"), Some(&5));
    assert_eq!(counts.skipped_by_reason.get("opted_out"), Some(&1));
    assert_eq!(
        b.claim_due_messages(&t.number, T0, T0 + 60_000, 10)
            .await
            .expect("claim")
            .len(),
        5
    );
    b.wait_for_quota(&ids[1], T0 + 5 * HOUR, T0)
        .await
        .expect("quota");
    b.wait_for_window(&ids[2], T0 + 7 * HOUR, T0)
        .await
        .expect("window");
    b.mark_accepted(&ids[3], &crate::fixtures::wm("wamid.c3"), T0 + 1)
        .await
        .expect("accept");
    b.mark_accepted(&ids[4], &crate::fixtures::wm("wamid.c4"), T0 + 1)
        .await
        .expect("accept");
    b.fail_message(&ids[5], 131049, "healthy ecosystem", T0 + 1)
        .await
        .expect("fail");
    let status = |wamid: &str, state: MessageState, at: i64, error: Option<i64>| StatusChange {
        wamid: crate::fixtures::wm(wamid),
        message_id: None,
        state,
        at,
        error: error.map(|c| (c, "undeliverable".to_owned())),
        pricing: None,
    };
    // `sent` reported two hours late first, then its real (earlier) time: one hour counted.
    b.apply_statuses(&[
        status("wamid.c3", MessageState::Sent, T0 + 2 * HOUR, None),
        status("wamid.c4", MessageState::Failed, T0 + 20, Some(131026)),
    ])
    .await
    .expect("statuses");
    b.apply_statuses(&[
        status("wamid.c3", MessageState::Sent, T0 + 10, None),
        status("wamid.c3", MessageState::Delivered, T0 + 30, None),
    ])
    .await
    .expect("statuses");
    b.record_inbound(&InboundRecord {
        wamid: crate::fixtures::wm("wamid.reply.c3"),
        application_id: t.app.clone(),
        phone_number_id: t.number.clone(),
        from_phone: "+4915100000103".into(),
        from: parley_store::ContactIdentity {
            phone: Some("+4915100000103".into()),
            name: None,
            ..Default::default()
        },
        kind: parley_domain::InboundKind::Text,
        body: serde_json::json!({"kind": "text"}),
        refers_to: None,
        media: None,
        text: Some("thanks".into()),
        raw: json!({}),
        received_at: T0 + 60,
    })
    .await
    .expect("reply");
    let counts = b.campaign_counts(&c.id).await.expect("counts");
    let by_state: Vec<(&str, u64)> = counts
        .by_state
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_state,
        vec![
            ("delivered", 1),
            ("failed", 2),
            ("queued", 2),
            ("skipped", 1)
        ]
    );
    assert_eq!(
        (counts.waiting_for_quota, counts.next_slot_at),
        (1, Some(T0 + 5 * HOUR))
    );
    assert_eq!(
        (counts.waiting_for_window, counts.next_window_at),
        (1, Some(T0 + 7 * HOUR))
    );
    let failed: Vec<(&str, u64)> = counts
        .failed_by_code
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(failed, vec![("131026", 1), ("131049", 1)]);
    assert_eq!(counts.replied, 1);
    let hours: Vec<(i64, u64)> = counts.sent_per_hour.into_iter().collect();
    assert_eq!(hours, vec![((T0 + 10) / HOUR * HOUR, 1)]);
    // Cancelled: what waited is skipped with the reason.
    b.cancel_campaign_messages(&c.id, T0 + 100)
        .await
        .expect("cancel");
    let counts = b.campaign_counts(&c.id).await.expect("counts");
    assert_eq!(counts.by_state.get("queued"), None);
    assert_eq!(counts.waiting_for_quota, 0);
    assert_eq!(counts.skipped_by_reason.get("cancelled"), Some(&2));
    assert_eq!(counts.by_state.get("skipped"), Some(&3));
}
