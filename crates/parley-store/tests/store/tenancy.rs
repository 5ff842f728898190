//! Accounts, applications, API tokens, users, platforms (encrypted token), numbers, templates.

use parley_domain::{AccountId, ApplicationId, PlatformId, TemplateStatus, UserId};
use parley_store::{NewPlatform, PhoneNumberRecord, StoreError};
use serde_json::json;

use crate::backend::Backend;
use crate::fixtures::{T0, meta_template, template_record, tenant};

crate::contract!(
    accounts_applications_tokens_and_users,
    platform_token_is_encrypted_at_rest,
    phone_numbers_upsert_and_scope,
    templates_upsert_and_lookup,
    applications_and_numbers_page_by_their_keys,
    every_tenant_is_walked_in_id_pages,
);

/// `applications_after` and `platforms_after` walk every tenant's rows by id, a page at a
/// time: each once, in id order, whatever the page size.
async fn every_tenant_is_walked_in_id_pages(b: &Backend) {
    for n in 1..=5 {
        tenant(&**b, n).await;
    }
    let mut apps: Vec<ApplicationId> = b
        .applications()
        .await
        .expect("all")
        .into_iter()
        .map(|a| a.id)
        .collect();
    apps.sort();
    let mut walked = Vec::new();
    let mut after: Option<ApplicationId> = None;
    loop {
        let page = b.applications_after(after.as_ref(), 2).await.expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        walked.extend(page.into_iter().map(|a| a.id));
    }
    assert_eq!(walked, apps, "every application once, by id");

    let mut platforms: Vec<PlatformId> = Vec::new();
    for app in &apps {
        platforms.extend(
            b.platforms(app)
                .await
                .expect("platforms")
                .into_iter()
                .map(|p| p.id),
        );
    }
    platforms.sort();
    assert_eq!(platforms.len(), 5);
    let mut walked = Vec::new();
    let mut after: Option<PlatformId> = None;
    loop {
        let page = b.platforms_after(after.as_ref(), 2).await.expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        walked.extend(page.into_iter().map(|p| p.id));
    }
    assert_eq!(walked, platforms, "every platform once, by id");

    // A live platform is found with one row; an application without one has none.
    assert!(b.has_live_platform(&apps[0]).await.expect("live"));
    assert!(
        !b.has_live_platform(&ApplicationId::new())
            .await
            .expect("live")
    );
}

/// `application` is one application by id; `account_applications_after` pages an account's
/// applications oldest first with ties on the same millisecond by id (another account's never
/// in it); `phone_numbers_after` pages an application's numbers by id.
async fn applications_and_numbers_page_by_their_keys(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let other = tenant(&**b, 2).await;
    let account = b
        .application(&t.app)
        .await
        .expect("lookup")
        .expect("application")
        .account_id;
    assert!(
        b.application(&ApplicationId::new())
            .await
            .expect("lookup")
            .is_none()
    );
    for i in 0..4 {
        // Two share T0 with the tenant's first: their order is by id.
        b.create_application(
            &ApplicationId::new(),
            &account,
            &format!("More {i}"),
            T0 + i / 2,
        )
        .await
        .expect("app");
    }
    let all = b.account_applications(&account).await.expect("all");
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|a| a.id != other.app));
    let mut walked = Vec::new();
    let mut after: Option<(i64, ApplicationId)> = None;
    loop {
        let page = b
            .account_applications_after(&account, after.as_ref().map(|(at, id)| (*at, id)), 2)
            .await
            .expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some((last.created_at, last.id.clone()));
        walked.extend(page.iter().map(|a| a.id.clone()));
    }
    let all_ids: Vec<ApplicationId> = all.iter().map(|a| a.id.clone()).collect();
    assert_eq!(walked, all_ids, "every application once, oldest first");

    for i in 0..3 {
        let mut n = b.phone_numbers(&t.app).await.expect("numbers").remove(0);
        n.phone_number_id = parley_domain::PhoneNumberId::parse(&format!("2000{i}")).expect("id");
        b.upsert_phone_number(&n).await.expect("number");
    }
    let all: Vec<String> = b
        .phone_numbers(&t.app)
        .await
        .expect("numbers")
        .iter()
        .map(|n| n.phone_number_id.to_string())
        .collect();
    assert_eq!(all.len(), 4);
    let mut walked = Vec::new();
    let mut after: Option<parley_domain::PhoneNumberId> = None;
    loop {
        let page = b
            .phone_numbers_after(&t.app, after.as_ref(), 3)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.phone_number_id.clone());
        walked.extend(page.iter().map(|n| n.phone_number_id.to_string()));
    }
    assert_eq!(
        walked, all,
        "every number once, by id; another application's never"
    );
}

async fn accounts_applications_tokens_and_users(b: &Backend) {
    let account = AccountId::new();
    b.create_account(&account, "Acme", T0)
        .await
        .expect("account");
    let (first, second) = (ApplicationId::new(), ApplicationId::new());
    b.create_application(&second, &account, "Later", T0 + 5)
        .await
        .expect("app");
    b.create_application(&first, &account, "Earlier", T0)
        .await
        .expect("app");
    let apps = b.applications().await.expect("applications");
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["Earlier", "Later"], "ordered by creation time");
    assert_eq!(apps[0].id, first);
    assert_eq!(apps[0].account_id, account);
    assert_eq!(apps[0].created_at, T0);

    b.add_api_token(&first, "sha256-of-token", "ci", T0)
        .await
        .expect("token");
    let token = b
        .token_by_hash("sha256-of-token")
        .await
        .expect("lookup")
        .expect("token");
    assert_eq!(token.application_id, first);
    assert_eq!(token.scopes, parley_domain::Scopes::ALL);
    assert!(b.token_by_hash("other").await.expect("lookup").is_none());
    assert!(
        b.add_api_token(&second, "sha256-of-token", "dup", T0)
            .await
            .is_err(),
        "a token hash names one application"
    );

    let user = UserId::new();
    b.create_user(&user, &account, "ann@example.com", "$argon2id$…", T0)
        .await
        .expect("user");
    let found = b
        .user_by_email("ann@example.com")
        .await
        .expect("lookup")
        .expect("user exists");
    assert_eq!(found.id, user);
    assert_eq!(found.account_id, account);
    assert_eq!(found.password_hash, "$argon2id$…");
    assert!(
        b.user_by_email("bob@example.com")
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(
        b.create_user(&UserId::new(), &account, "ann@example.com", "x", T0)
            .await
            .is_err(),
        "emails are unique"
    );
    assert!(
        b.create_application(&ApplicationId::new(), &AccountId::new(), "orphan", T0)
            .await
            .is_err(),
        "an application needs an existing account"
    );
}

async fn platform_token_is_encrypted_at_rest(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let raw = b.raw_platform_token(&t.platform).await;
    assert!(
        !raw.windows(b"EAA-secret-1".len())
            .any(|w| w == b"EAA-secret-1"),
        "{}: the stored token must not contain the plaintext",
        b.name()
    );
    assert!(
        raw.len() > 12 + "EAA-secret-1".len(),
        "nonce and tag are stored"
    );
    assert_eq!(
        b.platform_token(&t.platform).await.expect("token"),
        "EAA-secret-1"
    );

    // Same application and WABA: the row is updated in place and keeps its id.
    let again = b
        .upsert_platform(&NewPlatform {
            id: PlatformId::new(),
            application_id: t.app.clone(),
            business_id: Some(parley_domain::BusinessId::parse("901").unwrap()),
            waba_id: parley_domain::WabaId::parse("801").unwrap(),
            waba_name: None,
            status: "restricted".into(),
            access_token: "EAA-rotated".into(),
            details: json!({"tier": "TIER_10K", "nested": {"a": [1, 2.5, true, null]}}),
            now: T0 + 10,
        })
        .await
        .expect("upsert");
    assert_eq!(again, t.platform);
    assert_eq!(
        b.platform_token(&t.platform).await.expect("token"),
        "EAA-rotated"
    );
    let p = b
        .platform(&t.app, &t.platform)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(p.status, "restricted");
    assert_eq!(p.waba_name, None);
    assert_eq!(
        p.details,
        json!({"tier": "TIER_10K", "nested": {"a": [1, 2.5, true, null]}})
    );
    assert_eq!((p.created_at, p.updated_at), (T0, T0 + 10));
    assert_eq!(b.platforms(&t.app).await.expect("list").len(), 1);
    assert!(
        b.platforms(&ApplicationId::new())
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        b.platform(&t.app, &PlatformId::new())
            .await
            .expect("read")
            .is_none()
    );
    // Another application's platform is not found by id: the scope is the store's.
    assert!(
        b.platform(&ApplicationId::new(), &t.platform)
            .await
            .expect("read")
            .is_none(),
        "another application's platform was read by its id"
    );
    assert!(matches!(
        b.platform_token(&PlatformId::new()).await,
        Err(StoreError::NotFound(_))
    ));

    // Another master key cannot read it.
    let other = b.another_node(Some([9; 32])).await;
    assert!(matches!(
        other.platform_token(&t.platform).await,
        Err(StoreError::Decrypt(_))
    ));
}

async fn phone_numbers_upsert_and_scope(b: &Backend) {
    let t1 = tenant(&**b, 1).await;
    let t2 = tenant(&**b, 2).await;
    let mut n = b
        .phone_number(&t1.number)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(n.platform_id, t1.platform);
    assert_eq!(n.throughput_mps, 80);
    n.quality_rating = Some("YELLOW".into());
    n.throughput_mps = 1000;
    n.verified_name = None;
    n.updated_at = T0 + 1;
    b.upsert_phone_number(&n).await.expect("update");
    let again = b
        .phone_number(&t1.number)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(again.quality_rating.as_deref(), Some("YELLOW"));
    assert_eq!(again.throughput_mps, 1000);
    assert_eq!(again.verified_name, None);
    assert_eq!(again.updated_at, T0 + 1);

    b.upsert_phone_number(&PhoneNumberRecord {
        phone_number_id: crate::fixtures::pnid("99"),
        display_phone_number: "+1 555 0199".into(),
        ..n.clone()
    })
    .await
    .expect("second number");
    let ids = |v: Vec<PhoneNumberRecord>| {
        v.into_iter()
            .map(|n| n.phone_number_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(b.phone_numbers(&t1.app).await.expect("list")),
        ["10001", "99"]
    );
    assert_eq!(
        ids(b.phone_numbers(&t2.app).await.expect("list")),
        ["10002"]
    );
    assert_eq!(
        ids(b.all_phone_numbers().await.expect("all")),
        ["10001", "10002", "99"]
    );
    assert!(
        b.phone_number(&crate::fixtures::pnid("999999999"))
            .await
            .expect("read")
            .is_none()
    );
}

async fn templates_upsert_and_lookup(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let other = tenant(&**b, 2).await;
    let pending = template_record(&t, meta_template("order_update", "en_US", "PENDING"), T0);
    b.upsert_template(&pending).await.expect("insert");
    b.upsert_template(&template_record(
        &t,
        meta_template("order_update", "de", "APPROVED"),
        T0,
    ))
    .await
    .expect("insert de");
    b.upsert_template(&template_record(
        &t,
        meta_template("a_welcome", "en_US", "APPROVED"),
        T0,
    ))
    .await
    .expect("insert welcome");

    let found = b
        .template(&t.app, "order_update", "en_US")
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(found.template, pending.template, "the model round-trips");
    assert_eq!(found.raw, pending.raw);
    assert_eq!(found.meta_id, pending.meta_id);
    assert_eq!(found.template.status, TemplateStatus::Pending);

    // Meta approved it: same (platform, name, language) updates the row.
    let approved = template_record(
        &t,
        meta_template("order_update", "en_US", "APPROVED"),
        T0 + 5,
    );
    b.upsert_template(&approved).await.expect("update");
    let found = b
        .template(&t.app, "order_update", "en_US")
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(found.id, pending.id, "the first id stays");
    assert_eq!(found.template.status, TemplateStatus::Approved);
    assert_eq!(found.updated_at, T0 + 5);

    let listed: Vec<(String, String)> = b
        .templates(&t.app)
        .await
        .expect("list")
        .into_iter()
        .map(|r| {
            (
                r.template.name.as_str().to_owned(),
                r.template.language.as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("a_welcome".to_owned(), "en_US".to_owned()),
            ("order_update".to_owned(), "de".to_owned()),
            ("order_update".to_owned(), "en_US".to_owned()),
        ]
    );

    // Deleted at Meta: listed, but no longer found for sending.
    let mut deleted = approved.clone();
    deleted.deleted_at = Some(T0 + 9);
    b.upsert_template(&deleted).await.expect("delete");
    assert!(
        b.template(&t.app, "order_update", "en_US")
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(b.templates(&t.app).await.expect("list").len(), 3);
    assert!(b.templates(&other.app).await.expect("list").is_empty());
    assert!(
        b.template(&other.app, "order_update", "de")
            .await
            .expect("lookup")
            .is_none(),
        "templates are per application"
    );
}
