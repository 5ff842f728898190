//! Contact identity (META_2026 §3.8): a contact is known by phone, BSUID, parent BSUID or
//! several; one person is one contact, across linking, merging and identity changes.

use parley_domain::{TagValue, Tags};
use parley_store::{ContactIdentity, InboundRecord, NewContact};
use serde_json::json;

use crate::backend::Backend;
use crate::fixtures::{T0, Tenant, new_message, tenant};

crate::contract!(
    a_bsuid_only_sender_is_one_contact_and_a_later_phone_links_to_it,
    a_phone_contact_and_a_bsuid_contact_merge_into_the_older_with_all_history,
    an_identity_change_repoints_the_contact_and_keeps_its_history,
    a_status_can_link_but_never_creates,
    erasure_by_bsuid_removes_every_identity,
    segments_see_phone_and_bsuid_identities,
    a_round_of_learning_ends_as_resolving_each_identity_alone,
    known_identities_answer_exactly_the_application_s_contacts_holding_the_bsuids,
);

const BSUID: &str = "US.13491208655302741918";
const PARENT: &str = "US.ENT.11815799212886844830";
const PHONE: &str = "+4915100000077";

fn ident(phone: Option<&str>, bsuid: Option<&str>) -> ContactIdentity {
    ContactIdentity {
        phone: phone.map(str::to_owned),
        bsuid: bsuid.map(str::to_owned),
        ..ContactIdentity::default()
    }
}

fn inbound(t: &Tenant, wamid: &str, at: i64, from: ContactIdentity) -> InboundRecord {
    InboundRecord {
        wamid: crate::fixtures::wm(wamid),
        application_id: t.app.clone(),
        phone_number_id: t.number.clone(),
        from_phone: from.address().expect("an address").to_owned(),
        from,
        kind: parley_domain::InboundKind::Text,
        body: serde_json::json!({"kind": "text"}),
        refers_to: None,
        media: None,
        text: Some("hi".into()),
        raw: json!({}),
        received_at: at,
    }
}

async fn a_bsuid_only_sender_is_one_contact_and_a_later_phone_links_to_it(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let from = ContactIdentity {
        bsuid: Some(BSUID.into()),
        parent_bsuid: Some(PARENT.into()),
        username: Some("@sheena".into()),
        name: Some("Sheena".into()),
        ..ContactIdentity::default()
    };
    assert!(
        b.record_inbound(&inbound(&t, "wamid.b1", T0, from.clone()))
            .await
            .expect("first")
    );
    assert!(
        b.record_inbound(&inbound(&t, "wamid.b2", T0 + 5, from))
            .await
            .expect("second")
    );
    assert_eq!(
        b.count_contacts(&t.app).await.expect("count"),
        1,
        "one person, one contact"
    );
    let c = b
        .contact_by_bsuid(&t.app, BSUID)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(c.phone_number(), None, "no phone known");
    assert_eq!(c.phone, BSUID, "the address is the BSUID");
    assert_eq!(c.parent_bsuid.as_deref(), Some(PARENT));
    assert_eq!(c.username.as_deref(), Some("@sheena"));
    assert_eq!(c.name.as_deref(), Some("Sheena"));
    assert_eq!(c.last_inbound_at, Some(T0 + 5));
    // By parent BSUID too.
    let by_parent = b
        .contact_by_bsuid(&t.app, PARENT)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(by_parent.id, c.id);
    // A webhook naming phone and BSUID together links the phone to the same contact.
    b.record_inbound(&inbound(
        &t,
        "wamid.b3",
        T0 + 9,
        ident(Some(PHONE), Some(BSUID)),
    ))
    .await
    .expect("third");
    assert_eq!(b.count_contacts(&t.app).await.expect("count"), 1);
    let c2 = b
        .contact_by_phone(&t.app, PHONE)
        .await
        .expect("read")
        .expect("by phone");
    assert_eq!(c2.id, c.id);
    assert_eq!(c2.phone_number(), Some(PHONE));
    assert_eq!(c2.bsuid.as_deref(), Some(BSUID));
    assert_eq!(c2.wa_id.as_ref().map(|w| w.as_str()), Some("4915100000077"));
    // Later webhooks without the phone keep it.
    b.record_inbound(&inbound(&t, "wamid.b4", T0 + 20, ident(None, Some(BSUID))))
        .await
        .expect("fourth");
    let c3 = b
        .contact_by_bsuid(&t.app, BSUID)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(c3.phone_number(), Some(PHONE), "a phone once known is kept");
    assert_eq!(c3.last_inbound_at, Some(T0 + 20));
    // Identity is per application.
    let other = tenant(&**b, 2).await;
    assert!(
        b.contact_by_bsuid(&other.app, BSUID)
            .await
            .expect("read")
            .is_none()
    );
}

async fn a_phone_contact_and_a_bsuid_contact_merge_into_the_older_with_all_history(b: &Backend) {
    let t = tenant(&**b, 1).await;
    // Imported first, with a tag.
    let tags: Tags = [("plan".to_owned(), TagValue::String("pro".into()))].into();
    b.upsert_contacts(
        &t.app,
        &[NewContact {
            phone: PHONE.into(),
            name: Some("Imported".into()),
            tags,
        }],
        T0,
    )
    .await
    .expect("import");
    let imported = b
        .contact_by_phone(&t.app, PHONE)
        .await
        .expect("read")
        .expect("imported");
    let mut sent = new_message(&t, T0 + 1, None);
    sent.to_phone = PHONE.into();
    sent.contact_id = Some(imported.id.clone());
    b.insert_message(&sent).await.expect("message to the phone");
    // Then the same person writes with the phone withheld: a second contact, for now.
    b.record_inbound(&inbound(&t, "wamid.m1", T0 + 10, ident(None, Some(BSUID))))
        .await
        .expect("bsuid only");
    assert_eq!(b.count_contacts(&t.app).await.expect("count"), 2);
    let mut by_bsuid = new_message(&t, T0 + 11, None);
    by_bsuid.to_phone = BSUID.into();
    by_bsuid.contact_id = b
        .contact_by_bsuid(&t.app, BSUID)
        .await
        .expect("read")
        .map(|c| c.id);
    b.insert_message(&by_bsuid)
        .await
        .expect("message to the bsuid");
    // A webhook naming both: one contact, the older, with everything.
    b.record_inbound(&inbound(
        &t,
        "wamid.m2",
        T0 + 20,
        ident(Some(PHONE), Some(BSUID)),
    ))
    .await
    .expect("both");
    assert_eq!(b.count_contacts(&t.app).await.expect("count"), 1, "merged");
    let c = b
        .contact_by_bsuid(&t.app, BSUID)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(c.id, imported.id, "the older contact survives");
    assert_eq!(c.phone_number(), Some(PHONE));
    assert_eq!(c.name.as_deref(), Some("Imported"));
    assert_eq!(c.tags.get("plan"), Some(&TagValue::String("pro".into())));
    assert_eq!(c.last_inbound_at, Some(T0 + 20));
    let history = b.messages_to(&t.app, PHONE, 10).await.expect("history");
    let ids: Vec<_> = history.iter().map(|m| m.id.clone()).collect();
    assert!(
        ids.contains(&sent.id) && ids.contains(&by_bsuid.id),
        "{ids:?}"
    );
}

async fn an_identity_change_repoints_the_contact_and_keeps_its_history(b: &Backend) {
    let t = tenant(&**b, 1).await;
    b.record_inbound(&inbound(
        &t,
        "wamid.r1",
        T0,
        ident(Some(PHONE), Some(BSUID)),
    ))
    .await
    .expect("first");
    let before = b
        .contact_by_bsuid(&t.app, BSUID)
        .await
        .expect("read")
        .expect("exists");
    let mut sent = new_message(&t, T0 + 1, None);
    sent.to_phone = PHONE.into();
    sent.contact_id = Some(before.id.clone());
    b.insert_message(&sent).await.expect("message");
    // user_changed_number: new phone, new BSUID.
    let new_phone = "+4915100000088";
    let new_bsuid = "US.22222222222222222222";
    let id = b
        .repoint_contact(
            &t.app,
            &ident(Some(PHONE), Some(BSUID)),
            &ident(Some(new_phone), Some(new_bsuid)),
            T0 + 5,
        )
        .await
        .expect("repoint");
    assert_eq!(id, Some(before.id.clone()));
    assert!(
        b.contact_by_phone(&t.app, PHONE)
            .await
            .expect("read")
            .is_none(),
        "the old phone is gone"
    );
    let c = b
        .contact_by_bsuid(&t.app, new_bsuid)
        .await
        .expect("read")
        .expect("by new bsuid");
    assert_eq!(c.id, before.id);
    assert_eq!(c.phone_number(), Some(new_phone));
    // user_changed_user_id: only the BSUID; the phone stays.
    let third = "US.33333333333333333333";
    b.repoint_contact(
        &t.app,
        &ident(None, Some(new_bsuid)),
        &ident(None, Some(third)),
        T0 + 6,
    )
    .await
    .expect("repoint id");
    let c = b
        .contact_by_bsuid(&t.app, third)
        .await
        .expect("read")
        .expect("by third");
    assert_eq!(c.id, before.id);
    assert_eq!(c.phone_number(), Some(new_phone));
    assert_eq!(b.count_contacts(&t.app).await.expect("count"), 1);
    let history = b.messages_to(&t.app, new_phone, 10).await.expect("history");
    assert_eq!(
        history.len(),
        1,
        "the message sent to the old number is still the contact's"
    );
    // A change for someone unknown creates them under the new identity.
    b.repoint_contact(
        &t.app,
        &ident(None, Some("US.9")),
        &ident(None, Some("US.10")),
        T0 + 7,
    )
    .await
    .expect("unknown");
    assert!(
        b.contact_by_bsuid(&t.app, "US.10")
            .await
            .expect("read")
            .is_some()
    );
}

async fn a_status_can_link_but_never_creates(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let none = b
        .resolve_contact(&t.app, &ident(Some(PHONE), Some(BSUID)), false, T0)
        .await
        .expect("resolve");
    assert_eq!(none, None);
    assert_eq!(b.count_contacts(&t.app).await.expect("count"), 0);
    b.record_inbound(&inbound(&t, "wamid.s1", T0, ident(None, Some(BSUID))))
        .await
        .expect("bsuid only");
    let id = b
        .resolve_contact(&t.app, &ident(Some(PHONE), Some(BSUID)), false, T0 + 1)
        .await
        .expect("resolve");
    let c = b
        .contact_by_phone(&t.app, PHONE)
        .await
        .expect("read")
        .expect("linked");
    assert_eq!(Some(c.id), id);
    assert_eq!(c.bsuid.as_deref(), Some(BSUID));
    // Nothing names nobody.
    assert_eq!(
        b.resolve_contact(&t.app, &ContactIdentity::default(), true, T0)
            .await
            .expect("empty"),
        None
    );
}

async fn erasure_by_bsuid_removes_every_identity(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let from = ContactIdentity {
        phone: Some(PHONE.into()),
        bsuid: Some(BSUID.into()),
        parent_bsuid: Some(PARENT.into()),
        username: Some("sheena".into()),
        ..ContactIdentity::default()
    };
    b.record_inbound(&inbound(&t, "wamid.e1", T0, from))
        .await
        .expect("inbound");
    b.record_inbound(&inbound(&t, "wamid.e2", T0 + 1, ident(None, Some(BSUID))))
        .await
        .expect("inbound by bsuid");
    let report = b.erase_contact(&t.app, BSUID).await.expect("erase");
    assert_eq!(report.contacts, 1);
    assert_eq!(report.inbound_messages, 2);
    assert!(
        b.contact_by_phone(&t.app, PHONE)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        b.contact_by_bsuid(&t.app, BSUID)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        b.contact_by_bsuid(&t.app, PARENT)
            .await
            .expect("read")
            .is_none()
    );
}

async fn segments_see_phone_and_bsuid_identities(b: &Backend) {
    use parley_domain::Segment;
    let t = tenant(&**b, 1).await;
    // Phone only (imported), BSUID only (a username user), and both.
    b.upsert_contacts(
        &t.app,
        &[NewContact {
            phone: "+4915100000001".into(),
            name: None,
            tags: Tags::new(),
        }],
        T0,
    )
    .await
    .expect("import");
    b.record_inbound(&inbound(&t, "wamid.g1", T0, ident(None, Some("US.1"))))
        .await
        .expect("bsuid only");
    b.record_inbound(&inbound(
        &t,
        "wamid.g2",
        T0,
        ident(Some(PHONE), Some(BSUID)),
    ))
    .await
    .expect("both");
    let now = time::OffsetDateTime::from_unix_timestamp(T0 / 1000).expect("now");
    for (filter, n) in [
        ("exists(phone)", 2),
        ("exists(bsuid)", 2),
        ("exists(phone) and exists(bsuid)", 1),
        ("not exists(phone)", 1),
        ("not exists(bsuid)", 1),
        ("all", 3),
    ] {
        let seg = Segment::parse(filter).expect("filter");
        assert_eq!(
            b.count_segment(&t.app, &seg, now).await.expect("count"),
            n,
            "{filter}"
        );
    }
}

/// `learn_contacts` (a round of status webhooks) takes shortcuts (bulk reads, a new BSUID
/// linked to its phone's contact without reading again); its result must be what resolving
/// each identity alone, in order, without creating, gives: a link, nobody, a BSUID that a
/// later identity shows to be a second contact's (a merge), a BSUID-only contact and a phone
/// contact named together (a merge), a repeated identity.
async fn a_round_of_learning_ends_as_resolving_each_identity_alone(b: &Backend) {
    use parley_store::audience::ContactUpsert;
    let phones = [
        "+4915100000101",
        "+4915100000103",
        "+4915100000104",
        "+4915100000105",
    ];
    let bsuid = |n: u32| format!("US.1349120865530274{n:04}");
    let full = |phone: &str, b: &str, parent: Option<&str>| ContactIdentity {
        phone: Some(phone.into()),
        bsuid: Some(b.into()),
        parent_bsuid: parent.map(str::to_owned),
        username: Some(format!("@{}", &phone[10..])),
        ..ContactIdentity::default()
    };
    let round = vec![
        full("+4915100000101", &bsuid(1), Some(PARENT)),
        full("+4915100000102", &bsuid(2), None),
        full("+4915100000103", &bsuid(3), None),
        full("+4915100000104", &bsuid(3), None),
        full("+4915100000105", &bsuid(5), None),
        full("+4915100000101", &bsuid(1), Some(PARENT)),
    ];
    let mut seen = Vec::new();
    for (n, learn) in [(1, true), (2, false)] {
        let t = tenant(&**b, n).await;
        let upserts: Vec<ContactUpsert> = phones
            .iter()
            .map(|p| ContactUpsert {
                phone: (*p).into(),
                ..ContactUpsert::default()
            })
            .collect();
        b.upsert_audience(&t.app, &upserts, T0)
            .await
            .expect("contacts");
        b.record_inbound(&inbound(
            &t,
            &format!("wamid.l{n}"),
            T0 + 1,
            ident(None, Some(&bsuid(5))),
        ))
        .await
        .expect("a bsuid-only contact");
        if learn {
            b.learn_contacts(&t.app, &round, T0 + 2)
                .await
                .expect("learn");
        } else {
            for i in &round {
                b.resolve_contact(&t.app, i, false, T0 + 2)
                    .await
                    .expect("resolve");
            }
        }
        let mut state = vec![b.count_contacts(&t.app).await.expect("count") as i64];
        let mut rows = Vec::new();
        for p in phones.iter().copied().chain(["+4915100000102"]) {
            let c = b.contact_by_phone(&t.app, p).await.expect("read");
            rows.push(c.map(|c| (c.phone, c.bsuid, c.parent_bsuid, c.username, c.created_at)));
        }
        state.push(rows.iter().flatten().count() as i64);
        seen.push((state, rows));
    }
    assert_eq!(seen[0], seen[1], "learned in a round, then one by one");
    // The link and the two merges happened, and 102 (nobody) was not created.
    let rows = &seen[0].1;
    assert_eq!(rows[0].as_ref().and_then(|r| r.1.clone()), Some(bsuid(1)));
    assert_eq!(
        rows[0].as_ref().and_then(|r| r.2.clone()).as_deref(),
        Some(PARENT)
    );
    assert!(rows[4].is_none(), "a status never creates: {rows:?}");
    // Five contacts before (four phones, one BSUID): 103 and 104 merged, 105 and its BSUID.
    assert_eq!(seen[0].0[0], 3, "two merges: {:?}", seen[0]);
}

/// `known_identities` (the webhook processor's read of a round's BSUIDs): the contacts of
/// this application holding any of the BSUIDs asked, with their phone, parent and username;
/// nothing for a BSUID nobody holds or another application's; more than one statement's worth
/// of values (the read was 500 bound values a statement) and repeated BSUIDs.
async fn known_identities_answer_exactly_the_application_s_contacts_holding_the_bsuids(
    b: &Backend,
) {
    let t = tenant(&**b, 1).await;
    let other = tenant(&**b, 2).await;
    let bsuid = |n: u32| format!("DE.1349120865530{n:05}");
    let phone = |n: u32| format!("+49151{n:08}");
    let round: Vec<ContactIdentity> = (0..1_200u32)
        .map(|n| ContactIdentity {
            phone: Some(phone(n)),
            bsuid: Some(bsuid(n)),
            parent_bsuid: (n % 3 == 0).then(|| PARENT.to_owned()),
            username: (n % 5 == 0).then(|| format!("@u{n}")),
            ..ContactIdentity::default()
        })
        .collect();
    let upserts: Vec<parley_store::audience::ContactUpsert> = (0..1_200u32)
        .map(|n| parley_store::audience::ContactUpsert {
            phone: phone(n),
            ..parley_store::audience::ContactUpsert::default()
        })
        .collect();
    b.upsert_audience(&t.app, &upserts, T0)
        .await
        .expect("phone contacts");
    b.learn_contacts(&t.app, &round, T0 + 10_000)
        .await
        .expect("learn");
    // Another application's contact holds BSUID 1,300: not this application's.
    b.record_inbound(&inbound(
        &other,
        "wamid.other",
        T0,
        ident(Some(&phone(1_300)), Some(&bsuid(1_300))),
    ))
    .await
    .expect("another application's contact");

    let mut asked: Vec<String> = (0..1_300u32).map(bsuid).collect();
    asked.push(bsuid(7));
    let asked_refs: Vec<&str> = asked.iter().map(String::as_str).collect();
    let known = b
        .known_identities(&t.app, &asked_refs)
        .await
        .expect("known identities");
    assert_eq!(
        known.len(),
        1_200,
        "the 1,200 held, not the 100 nobody holds"
    );
    for n in [0u32, 1, 2, 3, 5, 499, 500, 501, 999, 1_000, 1_199] {
        let k = known.get(&bsuid(n)).expect("a held BSUID is known");
        assert_eq!(k.bsuid, bsuid(n));
        assert_eq!(k.phone, phone(n), "its contact's phone");
        assert_eq!(k.parent_bsuid, (n % 3 == 0).then(|| PARENT.to_owned()));
        assert_eq!(k.username, (n % 5 == 0).then(|| format!("@u{n}")));
    }
    assert!(!known.contains_key(&bsuid(1_250)), "nobody holds it");
    assert!(
        !known.contains_key(&bsuid(1_300)),
        "another application's contact"
    );
    assert!(
        b.known_identities(&t.app, &[])
            .await
            .expect("none asked")
            .is_empty()
    );
}
