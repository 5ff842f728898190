//! Statuses projected into `status_log` ahead of their merge (migration 0048, #15): every
//! reader of a message sees them at once, exactly as the merge will write them, and they go
//! when the processor finishes their event.

use parley_domain::{MessageId, MessageState};
use parley_store::{InsertOutcome, NewMessage, StatusChange};

use crate::backend::Backend;
use crate::fixtures::{T0, accepted, get, new_message, outcome, status, tenant, wm};

crate::contract!(
    projected_statuses_read_as_their_merge_will_write_them,
    a_finished_event_takes_its_projected_statuses_with_it,
    an_event_already_processed_is_not_projected,
    a_failure_meta_retries_later_is_left_to_the_merge,
    an_idempotent_resend_answers_with_the_projected_status,
);

/// The same statuses for set `set` of three accepted messages (`ids`), in an order that needs
/// the lattice (a `failed` overruled by a later-arriving `delivered`, a `sent` after `read`).
/// Each names its message's id, as Meta echoes `biz_opaque_callback_data`.
fn changes(set: &str, ids: &[MessageId]) -> Vec<StatusChange> {
    use MessageState::*;
    let w = |n: usize| format!("wamid.{set}{n}");
    let id = |n: usize| Some(&ids[n]);
    vec![
        status(&w(0), id(0), Sent, T0 + 10),
        status(&w(0), id(0), Delivered, T0 + 20),
        status(&w(1), id(1), Failed, T0 + 15),
        status(&w(1), id(1), Delivered, T0 + 25),
        status(&w(2), id(2), Read, T0 + 30),
        status(&w(2), id(2), Sent, T0 + 9),
        // Not ours, no id: for the merge alone (kept as an orphan).
        status(&format!("wamid.unknown.{set}"), None, Delivered, T0 + 40),
    ]
}

async fn three(b: &Backend, t: &crate::fixtures::Tenant, set: &str) -> Vec<MessageId> {
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(accepted(&**b, t, &format!("wamid.{set}{n}"), T0).await);
    }
    ids
}

async fn projected_statuses_read_as_their_merge_will_write_them(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let projected = three(b, &t, "p").await;
    let merged = three(b, &t, "m").await;
    b.apply_statuses(&changes("m", &merged))
        .await
        .expect("merge");
    let event = b.insert_webhook_event(b"{}", T0).await.expect("event");
    let rows: Vec<(i64, StatusChange)> = changes("p", &projected)
        .into_iter()
        .map(|c| (event, c))
        .collect();
    // Two projections of the same event (a paused lease holder's, then its successor's) are
    // one: the rows are keyed by the event and their place in it.
    b.project_statuses(&[event], &rows).await.expect("project");
    b.project_statuses(&[event], &rows)
        .await
        .expect("project again");
    for (p, m) in projected.iter().zip(&merged) {
        let want = outcome(&get(&**b, &t, m).await);
        assert_eq!(outcome(&get(&**b, &t, p).await), want, "one message");
        assert_ne!(get(&**b, &t, p).await.state, MessageState::Accepted);
    }
    // Every reader: the application's list and the recipient's history.
    let listed = b.messages(&t.app, None, 50).await.expect("list");
    let to = b
        .messages_to(&t.app, "+4915100000001", 50)
        .await
        .expect("history");
    for list in [&listed, &to] {
        for (p, m) in projected.iter().zip(&merged) {
            let find = |id: &MessageId| list.iter().find(|x| &x.id == id).expect("listed");
            assert_eq!(outcome(find(p)), outcome(find(m)), "listed");
        }
    }
    // The campaign's per-recipient export reads them too.
    b.raw_execute(
        "UPDATE messages SET campaign_id = 'cmp_log' WHERE wamid LIKE 'wamid.p%' OR wamid LIKE 'wamid.m%'",
    )
    .await;
    let page = b
        .campaign_outcomes(&t.app, "cmp_log", None, 100)
        .await
        .expect("export page");
    let outcomes = page.rows().expect("rows");
    assert_eq!(outcomes.len(), 6);
    let exported = |id: &MessageId| {
        let o = outcomes
            .iter()
            .find(|o| o.message_id == id.as_str())
            .expect("exported");
        (
            o.state.to_string(),
            (
                o.accepted_at,
                o.sent_at,
                o.delivered_at,
                o.read_at,
                o.failed_at,
            ),
            (o.error_code, o.error_message.as_deref().map(str::to_owned)),
        )
    };
    for (p, m) in projected.iter().zip(&merged) {
        assert_eq!(exported(p), exported(m), "exported");
        assert_ne!(exported(p).0, "accepted");
    }
    // The projection is not the merge: the rows still hold what they held.
    assert_eq!(
        b.raw_i64(
            "SELECT COUNT(*) FROM messages WHERE wamid LIKE 'wamid.p%' AND state = 'accepted'"
        )
        .await,
        3
    );
    // The event is projected, not processed.
    assert!(
        b.unprojected_webhook_events_after(i64::MIN, 10)
            .await
            .expect("unprojected")
            .is_empty()
    );
    assert_eq!(
        b.pending_webhook_events(10).await.expect("pending").len(),
        1
    );
}

async fn a_finished_event_takes_its_projected_statuses_with_it(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let ids = three(b, &t, "p").await;
    let event = b.insert_webhook_event(b"{}", T0).await.expect("event");
    let other = b.insert_webhook_event(b"{}", T0).await.expect("event");
    let rows: Vec<(i64, StatusChange)> = changes("p", &ids)
        .into_iter()
        .enumerate()
        .map(|(i, c)| (if i < 4 { event } else { other }, c))
        .collect();
    b.project_statuses(&[event, other], &rows)
        .await
        .expect("project");
    let before: Vec<_> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(outcome(&get(&**b, &t, id).await));
        }
        v
    };
    assert_eq!(
        b.raw_i64("SELECT COUNT(*) FROM status_log").await,
        6,
        "the six that name a message"
    );
    // The processor merges the first event's statuses, then finishes it.
    b.apply_statuses(&changes("p", &ids)[..4])
        .await
        .expect("merge");
    b.finish_webhook_events(&[(event, None)], T0 + 1)
        .await
        .expect("finish");
    assert_eq!(
        b.raw_i64("SELECT COUNT(*) FROM status_log").await,
        2,
        "the other event's statuses stay"
    );
    for (id, want) in ids.iter().zip(&before) {
        assert_eq!(
            &outcome(&get(&**b, &t, id).await),
            want,
            "unchanged by the merge"
        );
    }
    b.apply_statuses(&changes("p", &ids)[4..])
        .await
        .expect("merge");
    b.finish_webhook_events(&[(other, None)], T0 + 1)
        .await
        .expect("finish");
    assert_eq!(b.raw_i64("SELECT COUNT(*) FROM status_log").await, 0);
    for (id, want) in ids.iter().zip(&before) {
        assert_eq!(
            &outcome(&get(&**b, &t, id).await),
            want,
            "merged as projected"
        );
    }
}

async fn an_event_already_processed_is_not_projected(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let id = accepted(&**b, &t, "wamid.p0", T0).await;
    let event = b.insert_webhook_event(b"{}", T0).await.expect("event");
    let pending = b
        .unprojected_webhook_events_after(i64::MIN, 10)
        .await
        .expect("unprojected");
    assert_eq!(
        pending.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![event]
    );
    // The processor got there first (it does not wait for the projection).
    b.finish_webhook_events(&[(event, None)], T0 + 1)
        .await
        .expect("finish");
    b.project_statuses(
        &[event],
        &[(
            event,
            status("wamid.p0", Some(&id), MessageState::Delivered, T0 + 5),
        )],
    )
    .await
    .expect("project");
    assert_eq!(b.raw_i64("SELECT COUNT(*) FROM status_log").await, 0);
    assert_eq!(get(&**b, &t, &id).await.state, MessageState::Accepted);
    // A status naming the message by id but another wamid (an earlier send's, released by a
    // 131049 requeue) is the merge's to judge: readers leave it.
    let later = b.insert_webhook_event(b"{}", T0).await.expect("event");
    b.project_statuses(
        &[later],
        &[(
            later,
            status("wamid.earlier", Some(&id), MessageState::Read, T0 + 6),
        )],
    )
    .await
    .expect("project");
    assert_eq!(b.raw_i64("SELECT COUNT(*) FROM status_log").await, 1);
    assert_eq!(get(&**b, &t, &id).await.state, MessageState::Accepted);
    b.finish_webhook_events(&[(later, None)], T0 + 1)
        .await
        .expect("finish");
    // A leftover of a race on several nodes goes with the retention sweep.
    b.raw_execute(
        "INSERT INTO status_log (event_id, n, message_id, wamid, state, at)
         VALUES (1, 0, 'msg_0', 'wamid.p0', 'read', 1760000000000)",
    )
    .await;
    let mut after = i64::MIN;
    loop {
        let step = b
            .prune_webhook_events(T0 + 86_400_000, after, 100)
            .await
            .expect("prune");
        match step.next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(b.raw_i64("SELECT COUNT(*) FROM status_log").await, 0);
}

/// A `failed` with Meta's per-user marketing cap (131049) is requeued by its merge, not left
/// `failed`: readers do not show it from the log (they would show an end that never comes for
/// the backlog's seconds); any other failure they show at once.
async fn a_failure_meta_retries_later_is_left_to_the_merge(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let capped = accepted(&**b, &t, "wamid.c0", T0).await;
    let undeliverable = accepted(&**b, &t, "wamid.c1", T0).await;
    let event = b.insert_webhook_event(b"{}", T0).await.expect("event");
    let mut cap = status("wamid.c0", Some(&capped), MessageState::Failed, T0 + 20);
    cap.error = Some((131049, "per-user marketing limit".to_owned()));
    let rows = vec![
        (
            event,
            status("wamid.c0", Some(&capped), MessageState::Sent, T0 + 10),
        ),
        (event, cap),
        (
            event,
            status(
                "wamid.c1",
                Some(&undeliverable),
                MessageState::Failed,
                T0 + 20,
            ),
        ),
    ];
    b.project_statuses(&[event], &rows).await.expect("project");
    assert_eq!(b.raw_i64("SELECT COUNT(*) FROM status_log").await, 3);
    let m = get(&**b, &t, &capped).await;
    assert_eq!(
        m.state,
        MessageState::Sent,
        "the cap's failure is the merge's"
    );
    assert_eq!((m.failed_at, m.error_code), (None, None));
    let m = get(&**b, &t, &undeliverable).await;
    assert_eq!(m.state, MessageState::Failed);
    assert_eq!(m.error_code, Some(131026));
    // The export reads them the same way.
    b.raw_execute("UPDATE messages SET campaign_id = 'cmp_cap' WHERE wamid LIKE 'wamid.c%'")
        .await;
    let page = b
        .campaign_outcomes(&t.app, "cmp_cap", None, 100)
        .await
        .expect("export page");
    let states: Vec<(String, String)> = page
        .rows()
        .expect("rows")
        .iter()
        .map(|o| (o.message_id.to_string(), o.state.to_string()))
        .collect();
    assert!(
        states.contains(&(capped.as_str().to_owned(), "sent".to_owned())),
        "{states:?}"
    );
    assert!(
        states.contains(&(undeliverable.as_str().to_owned(), "failed".to_owned())),
        "{states:?}"
    );
}

/// A send repeated with its idempotency key answers with the message as every reader sees
/// it: a status still in the log included.
async fn an_idempotent_resend_answers_with_the_projected_status(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let first = new_message(&t, T0, Some("order-7"));
    b.insert_message(&first).await.expect("insert");
    let claimed = b
        .claim_due_messages(&t.number, T0, T0 + 30_000, 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    b.mark_accepted(&first.id, &wm("wamid.k0"), T0 + 1)
        .await
        .expect("accept");
    let event = b.insert_webhook_event(b"{}", T0).await.expect("event");
    b.project_statuses(
        &[event],
        &[(
            event,
            status("wamid.k0", Some(&first.id), MessageState::Delivered, T0 + 5),
        )],
    )
    .await
    .expect("project");
    let again = NewMessage {
        id: MessageId::new(),
        ..new_message(&t, T0 + 10, Some("order-7"))
    };
    match b.insert_message(&again).await.expect("resend") {
        InsertOutcome::Existing(m) => {
            assert_eq!(m.id, first.id, "the first message answers");
            assert_eq!(
                m.state,
                MessageState::Delivered,
                "with its projected status"
            );
            assert_eq!(m.delivered_at, Some(T0 + 5));
        }
        other => panic!("a resend with the same key made a message: {other:?}"),
    }
}
