//! Contacts: upsert with tag merge, and inbound messages (idempotent, refreshing the window).

use parley_domain::{ApplicationId, TagValue, Tags};
use parley_store::{InboundRecord, NewContact};
use serde_json::json;

use crate::backend::Backend;
use crate::fixtures::{T0, Tenant, tenant};

crate::contract!(
    contacts_upsert_merges_tags,
    record_inbound_is_idempotent_and_refreshes_the_window,
    a_read_after_a_commit_sees_it,
);

fn tags(pairs: &[(&str, TagValue)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

async fn contacts_upsert_merges_tags(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let first = [
        NewContact {
            phone: "+4915100000001".into(),
            name: Some("Ann".into()),
            tags: tags(&[
                ("city", TagValue::String("Berlin".into())),
                ("orders", TagValue::Integer(3)),
                ("vip", TagValue::Boolean(true)),
            ]),
        },
        NewContact {
            phone: "+4915100000002".into(),
            name: None,
            tags: Tags::new(),
        },
    ];
    assert_eq!(
        b.upsert_contacts(&t.app, &first, T0).await.expect("upsert"),
        2
    );
    assert_eq!(b.count_contacts(&t.app).await.expect("count"), 2);

    let update = [NewContact {
        phone: "+4915100000001".into(),
        name: None,
        tags: tags(&[
            ("orders", TagValue::Integer(4)),
            ("score", TagValue::Float(0.75)),
            (
                "topics",
                TagValue::List(vec!["shoes".into(), "bags".into()]),
            ),
        ]),
    }];
    assert_eq!(
        b.upsert_contacts(&t.app, &update, T0 + 5)
            .await
            .expect("upsert"),
        1
    );
    let c = b
        .contact_by_phone(&t.app, "+4915100000001")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        c.name.as_deref(),
        Some("Ann"),
        "a missing name keeps the stored one"
    );
    assert_eq!(c.wa_id.as_ref().map(|x| x.as_str()), Some("4915100000001"));
    assert_eq!(
        c.tags,
        tags(&[
            ("city", TagValue::String("Berlin".into())),
            ("orders", TagValue::Integer(4)),
            ("score", TagValue::Float(0.75)),
            (
                "topics",
                TagValue::List(vec!["shoes".into(), "bags".into()])
            ),
            ("vip", TagValue::Boolean(true)),
        ]),
        "new tags are added, named ones replaced, the rest kept"
    );
    assert_eq!((c.created_at, c.updated_at), (T0, T0 + 5));
    assert_eq!(b.count_contacts(&t.app).await.expect("count"), 2);

    // The same phone in another application is another contact.
    let other = tenant(&**b, 2).await;
    assert!(
        b.contact_by_phone(&other.app, "+4915100000001")
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        b.upsert_contacts(&other.app, &update, T0)
            .await
            .expect("upsert"),
        1
    );
    assert_eq!(b.count_contacts(&other.app).await.expect("count"), 1);
    assert_eq!(
        b.count_contacts(&ApplicationId::new())
            .await
            .expect("count"),
        0
    );
    assert_eq!(
        b.upsert_contacts(&t.app, &[], T0).await.expect("nothing"),
        0
    );
}

fn inbound(t: &Tenant, wamid: &str, at: i64, name: Option<&str>, text: &str) -> InboundRecord {
    InboundRecord {
        wamid: crate::fixtures::wm(wamid),
        application_id: t.app.clone(),
        phone_number_id: t.number.clone(),
        from_phone: "+4915100000009".into(),
        from: parley_store::ContactIdentity {
            phone: Some("+4915100000009".into()),
            name: name.map(str::to_owned),
            ..Default::default()
        },
        kind: parley_domain::InboundKind::Text,
        body: serde_json::json!({"kind": "text"}),
        refers_to: None,
        media: None,
        text: Some(text.into()),
        raw: json!({"from": "4915100000009", "id": wamid, "text": {"body": text}}),
        received_at: at,
    }
}

async fn record_inbound_is_idempotent_and_refreshes_the_window(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let phone = "+4915100000009";
    assert!(
        b.record_inbound(&inbound(&t, "wamid.in.1", T0, Some("Zoe"), "hi"))
            .await
            .expect("first")
    );
    let c = b
        .contact_by_phone(&t.app, phone)
        .await
        .expect("read")
        .expect("created");
    assert_eq!(c.name.as_deref(), Some("Zoe"));
    assert_eq!(c.wa_id.as_ref().map(|x| x.as_str()), Some("4915100000009"));
    assert_eq!(c.last_inbound_at, Some(T0));
    assert!(c.tags.is_empty());

    assert!(
        !b.record_inbound(&inbound(&t, "wamid.in.1", T0 + 50, Some("Zed"), "hi"))
            .await
            .expect("duplicate"),
        "the same wamid is stored once"
    );
    let c = b
        .contact_by_phone(&t.app, phone)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        c.last_inbound_at,
        Some(T0),
        "a duplicate does not move the window"
    );

    assert!(
        b.record_inbound(&inbound(&t, "wamid.in.2", T0 + 100, Some("Zed"), "again"))
            .await
            .expect("second")
    );
    let c = b
        .contact_by_phone(&t.app, phone)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        c.last_inbound_at,
        Some(T0 + 100),
        "a newer message refreshes the window"
    );
    assert_eq!(c.name.as_deref(), Some("Zoe"), "the stored name is kept");

    assert!(
        b.record_inbound(&inbound(&t, "wamid.in.0", T0 - 100, None, "late"))
            .await
            .expect("older, delivered late")
    );
    let c = b
        .contact_by_phone(&t.app, phone)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        c.last_inbound_at,
        Some(T0 + 100),
        "an older message does not shrink it"
    );

    // A contact imported before writing keeps its tags and gains the window.
    let imported = NewContact {
        phone: "+4915100000010".into(),
        name: None,
        tags: [("plan".to_owned(), TagValue::String("pro".into()))].into(),
    };
    b.upsert_contacts(&t.app, &[imported], T0)
        .await
        .expect("import");
    let mut m = inbound(&t, "wamid.in.3", T0 + 7, Some("Kim"), "NUL \0 inside");
    m.from_phone = "+4915100000010".into();
    m.from.phone = Some("+4915100000010".into());
    assert!(
        b.record_inbound(&m)
            .await
            .expect("text with a NUL character is stored")
    );
    let c = b
        .contact_by_phone(&t.app, "+4915100000010")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        c.name.as_deref(),
        Some("Kim"),
        "a contact without a name takes the profile's"
    );
    assert_eq!(c.last_inbound_at, Some(T0 + 7));
    assert_eq!(c.tags.get("plan"), Some(&TagValue::String("pro".into())));
    assert_eq!(b.count_contacts(&t.app).await.expect("count"), 2);
}

/// Every read after a write's commit sees it (docs/TESTING.md, "Stale reads"): on SQLite the
/// write goes through the writer connection and the reads through the read-only pool, whose
/// connections must not keep an older snapshot from a statement left unreset (sqlx#2543).
/// The reads interleave single-row reads (`fetch_optional`) and an aggregate (`fetch_one`)
/// over every pooled reader connection.
async fn a_read_after_a_commit_sees_it(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let phone = "+4915100000077";
    for i in 0..300_i64 {
        let contact = NewContact {
            phone: phone.into(),
            name: None,
            tags: tags(&[("round", TagValue::Integer(i))]),
        };
        b.upsert_contacts(&t.app, &[contact], T0 + i)
            .await
            .expect("upsert");
        for _ in 0..4 {
            let c = b
                .contact_by_phone(&t.app, phone)
                .await
                .expect("read")
                .expect("the contact");
            assert_eq!(
                c.tags.get("round"),
                Some(&TagValue::Integer(i)),
                "round {i}: a read after the commit saw an older snapshot"
            );
            assert_eq!(b.count_contacts(&t.app).await.expect("count"), 1);
        }
    }
}
