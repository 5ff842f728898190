//! Platform setup: onboarding sessions with their steps and encrypted secrets, platform status
//! and facts, per-number patches, paging, lookups by WABA, disconnect.

use parley_domain::PlatformId;
use parley_store::platforms::{NumberPatch, OnboardingRecord, OnboardingStep, new_onboarding_id};

use crate::backend::Backend;
use crate::fixtures::{T0, tenant};

crate::contract!(
    onboarding_steps_and_secrets_round_trip,
    platform_status_numbers_and_disconnect,
    number_history_records_each_change_with_its_before,
);

fn step(name: &str, state: &str, at: i64) -> OnboardingStep {
    OnboardingStep {
        step: name.into(),
        state: state.into(),
        error_code: (state == "failed").then_some(2),
        error_message: (state == "failed").then(|| "Meta said no".to_owned()),
        at,
    }
}

async fn onboarding_steps_and_secrets_round_trip(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let mut session = OnboardingRecord {
        id: new_onboarding_id(),
        application_id: t.app.clone(),
        platform_id: None,
        event: Some("FINISH".into()),
        business_id: Some(parley_domain::BusinessId::parse("901").unwrap()),
        waba_id: None,
        phone_number_id: Some(t.number.clone()),
        state: "running".into(),
        failed_step: None,
        created_at: T0,
        updated_at: T0,
        steps: Vec::new(),
    };
    b.save_onboarding(&session).await.expect("insert");
    // Recorded out of order, shown in the order onboarding runs them; a retry replaces.
    b.record_onboarding_step(&session.id, &step("subscribe_app", "failed", T0 + 3))
        .await
        .expect("step");
    b.record_onboarding_step(&session.id, &step("exchange_code", "done", T0 + 1))
        .await
        .expect("step");
    b.record_onboarding_step(&session.id, &step("debug_token", "done", T0 + 2))
        .await
        .expect("step");
    session.platform_id = Some(t.platform.clone());
    session.waba_id = Some(parley_domain::WabaId::parse("801").unwrap());
    session.state = "failed".into();
    session.failed_step = Some("subscribe_app".into());
    session.updated_at = T0 + 3;
    b.save_onboarding(&session).await.expect("update");
    let stored = b
        .onboarding(&session.id)
        .await
        .expect("read")
        .expect("found");
    let names: Vec<&str> = stored.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(names, ["exchange_code", "debug_token", "subscribe_app"]);
    assert_eq!(stored.steps[2].error_code, Some(2));
    assert_eq!(stored.failed_step.as_deref(), Some("subscribe_app"));
    assert_eq!(stored.waba_id.as_ref().map(|x| x.as_str()), Some("801"));
    b.record_onboarding_step(&session.id, &step("subscribe_app", "done", T0 + 9))
        .await
        .expect("retry");
    let latest = b
        .latest_onboarding(&t.platform)
        .await
        .expect("latest")
        .expect("found");
    assert_eq!(latest.id, session.id);
    assert_eq!(latest.steps.len(), 3);
    assert_eq!(latest.steps[2].state, "done");
    assert_eq!(latest.steps[2].error_message, None);
    assert!(
        b.latest_onboarding(&PlatformId::new())
            .await
            .expect("none")
            .is_none()
    );

    b.set_onboarding_secrets(&session.id, Some("EAA-business-token"), None)
        .await
        .expect("token");
    b.set_onboarding_secrets(&session.id, None, Some("493817"))
        .await
        .expect("pin");
    let secrets = b.onboarding_secrets(&session.id).await.expect("secrets");
    assert_eq!(secrets.access_token.as_deref(), Some("EAA-business-token"));
    assert_eq!(secrets.pin.as_deref(), Some("493817"));
    assert!(!format!("{secrets:?}").contains("493817"));
}

async fn platform_status_numbers_and_disconnect(b: &Backend) {
    let t = tenant(&**b, 2).await;
    b.set_platform_status(&t.platform, "pending_review", Some("in review"), T0 + 1)
        .await
        .expect("status");
    b.set_platform_connected(&t.platform, Some("Acme GmbH"), Some(T0 + 2))
        .await
        .expect("connected");
    b.set_platform_connected(&t.platform, None, Some(T0 + 99))
        .await
        .expect("kept");
    let setup = b
        .platform_setup(&t.platform)
        .await
        .expect("setup")
        .expect("found");
    assert_eq!(setup.platform.status, "pending_review");
    assert_eq!(setup.status_reason.as_deref(), Some("in review"));
    assert_eq!(setup.company_name.as_deref(), Some("Acme GmbH"));
    assert_eq!(setup.connected_at, Some(T0 + 2), "first connection kept");

    // Paging by id, scoped by application.
    let other = tenant(&**b, 3).await;
    let page = b.platform_setups(&t.app, None, 10).await.expect("page");
    assert_eq!(page.len(), 1);
    assert!(
        b.platform_setups(&t.app, Some(&t.platform), 10)
            .await
            .expect("after")
            .is_empty()
    );
    assert_eq!(
        b.platforms_by_waba(&parley_domain::WabaId::parse("803").unwrap())
            .await
            .expect("by waba")[0]
            .id,
        other.platform
    );

    let patched = b
        .patch_phone_number(
            &t.number,
            &NumberPatch {
                messaging_limit: Some("TIER_2K".into()),
                messaging_limit_scope: Some("business_portfolio".into()),
                throughput_level: Some("HIGH".into()),
                throughput_mps: Some(1000),
                ..NumberPatch::default()
            },
            T0 + 5,
        )
        .await
        .expect("patch");
    assert!(patched);
    assert!(
        !b.patch_phone_number(
            &crate::fixtures::pnid("999999999"),
            &NumberPatch::default(),
            T0
        )
        .await
        .expect("unknown")
    );
    let numbers = b.platform_numbers(&t.platform).await.expect("numbers");
    assert_eq!(numbers.len(), 1);
    let n = &numbers[0];
    assert_eq!(n.number.messaging_limit.as_deref(), Some("TIER_2K"));
    assert_eq!(
        n.number.quality_rating.as_deref(),
        Some("GREEN"),
        "left alone"
    );
    assert_eq!(n.number.throughput_mps, 1000);
    assert_eq!(n.throughput_level.as_deref(), Some("HIGH"));
    assert_eq!(
        n.messaging_limit_scope.as_deref(),
        Some("business_portfolio")
    );

    b.disconnect_platform(&t.platform, "Disconnected in Parley", T0 + 7)
        .await
        .expect("disconnect");
    let gone = b
        .platform_setup(&t.platform)
        .await
        .expect("setup")
        .expect("kept");
    assert_eq!(gone.platform.status, "disconnected");
    assert_eq!(gone.disconnected_at, Some(T0 + 7));
    assert_eq!(gone.connected_at, None);
    assert_eq!(b.platform_token(&t.platform).await.expect("token"), "");
    assert!(
        b.platform_numbers(&t.platform)
            .await
            .expect("numbers")
            .is_empty()
    );
    assert!(b.phone_number(&t.number).await.expect("number").is_none());
    // Connected again.
    b.set_platform_status(&t.platform, "active", None, T0 + 8)
        .await
        .expect("status");
    let back = b
        .platform_setup(&t.platform)
        .await
        .expect("setup")
        .expect("kept");
    assert_eq!(back.disconnected_at, None);
}

/// Migration 0029: every change of a number's quality, tier or throughput is recorded with the
/// values before it, whatever writes it; a write that changes none of them records nothing;
/// the read gives the state before the period, then the period's changes, for the number's
/// application only.
async fn number_history_records_each_change_with_its_before(b: &Backend) {
    let t = tenant(&**b, 4).await;
    let patch = |quality: Option<&str>, tier: Option<&str>, mps: Option<u32>| NumberPatch {
        quality_rating: quality.map(str::to_owned),
        messaging_limit: tier.map(str::to_owned),
        throughput_mps: mps,
        ..NumberPatch::default()
    };
    for (p, at) in [
        (patch(Some("YELLOW"), None, None), T0 + 10),
        // Nothing changes: no row.
        (patch(Some("YELLOW"), Some("TIER_1K"), Some(80)), T0 + 20),
        (patch(None, Some("TIER_2K"), None), T0 + 30),
        (patch(Some("GREEN"), None, Some(1000)), T0 + 40),
    ] {
        assert!(
            b.patch_phone_number(&t.number, &p, at)
                .await
                .expect("patch")
        );
    }
    // The whole-record upsert (a sync) is recorded too.
    let mut record = b
        .phone_numbers(&t.app)
        .await
        .expect("numbers")
        .into_iter()
        .find(|n| n.phone_number_id == t.number)
        .expect("number");
    record.messaging_limit = Some("TIER_10K".into());
    record.updated_at = T0 + 50;
    b.upsert_phone_number(&record).await.expect("upsert");

    let all = b
        .number_history(&t.app, &t.number, T0, T0 + 100, 100)
        .await
        .expect("history");
    let seen: Vec<_> = all
        .iter()
        .map(|c| {
            (
                c.at,
                c.was_quality_rating.as_deref(),
                c.quality_rating.as_deref(),
                c.was_messaging_limit.as_deref(),
                c.messaging_limit.as_deref(),
                c.was_throughput_mps,
                c.throughput_mps,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                T0 + 10,
                Some("GREEN"),
                Some("YELLOW"),
                Some("TIER_1K"),
                Some("TIER_1K"),
                80,
                80
            ),
            (
                T0 + 30,
                Some("YELLOW"),
                Some("YELLOW"),
                Some("TIER_1K"),
                Some("TIER_2K"),
                80,
                80
            ),
            (
                T0 + 40,
                Some("YELLOW"),
                Some("GREEN"),
                Some("TIER_2K"),
                Some("TIER_2K"),
                80,
                1000
            ),
            (
                T0 + 50,
                Some("GREEN"),
                Some("GREEN"),
                Some("TIER_2K"),
                Some("TIER_10K"),
                1000,
                1000
            ),
        ]
    );
    // A later period starts with the last change before it.
    let later = b
        .number_history(&t.app, &t.number, T0 + 35, T0 + 45, 100)
        .await
        .expect("period");
    assert_eq!(
        later.iter().map(|c| c.at).collect::<Vec<_>>(),
        vec![T0 + 30, T0 + 40]
    );
    // Bounded, and scoped by application.
    assert_eq!(
        b.number_history(&t.app, &t.number, T0, T0 + 100, 2)
            .await
            .expect("bounded")
            .len(),
        2
    );
    let other = tenant(&**b, 5).await;
    assert!(
        b.number_history(&other.app, &t.number, T0, T0 + 100, 100)
            .await
            .expect("other")
            .is_empty()
    );
}
