//! No request does unbounded work: the console's application, platform and number lists come a page at
//! a time, `/readyz` reads at most one row, and the periodic template sync walks every
//! tenant's platforms in keyset pages.

use fantoccini::Locator;
use parley_domain::{ApplicationId, PhoneNumberId, PlatformId, Role, WabaId};
use parley_store::{NewPlatform, PhoneNumberRecord};
use serde_json::Value;

use crate::audience::{console_sign_in, wait_for_text};
use crate::helpers::{TestApp, spawn_app};

/// The texts of the elements `css` finds on the current page.
async fn texts(browser: &crate::browser::Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for el in browser
        .client
        .find_all(Locator::Css(css))
        .await
        .expect("find")
    {
        out.push(el.text().await.expect("text"));
    }
    out
}

/// The platform cards' ids on the current page.
async fn platform_ids(browser: &crate::browser::Browser) -> Vec<String> {
    let mut out = Vec::new();
    for el in browser
        .client
        .find_all(Locator::Css("article.platform"))
        .await
        .expect("find")
    {
        out.push(
            el.attr("data-platform")
                .await
                .expect("attr")
                .expect("data-platform"),
        );
    }
    out
}

/// The demo application (the console user's only one before the test adds more).
async fn demo_application(app: &TestApp) -> ApplicationId {
    app.store
        .applications_after(None, 1)
        .await
        .expect("apps")
        .remove(0)
        .id
}

#[tokio::test]
async fn the_consoles_application_platform_and_number_lists_come_a_page_at_a_time_in_a_browser() {
    let app = spawn_app().await;
    let user = app
        .store
        .user_by_email(&app.console_email)
        .await
        .expect("user")
        .expect("the console user");
    // 55 more applications (56 in all: more than a page of 50), each the console user's.
    for i in 0..55 {
        app.store
            .create_application_with_members(
                &ApplicationId::new(),
                &user.account_id,
                &format!("Shop {i:02}"),
                &[(user.id.clone(), Role::Owner)],
                u64::MAX,
                app.now_ms(),
            )
            .await
            .expect("application");
    }
    // 24 more numbers on the demo platform (25 in all: more than a page of 20).
    let demo = demo_application(&app).await;
    let first = app
        .store
        .phone_numbers(&demo)
        .await
        .expect("numbers")
        .remove(0);
    for i in 0..24 {
        app.store
            .upsert_phone_number(&PhoneNumberRecord {
                phone_number_id: PhoneNumberId::parse(&format!("90000000{i:02}")).expect("id"),
                display_phone_number: format!("+49 151 9000 00{i:02}"),
                ..first.clone()
            })
            .await
            .expect("number");
    }

    // 20 more platforms (21 in all: more than a page of 20 cards).
    for i in 0..20 {
        app.store
            .upsert_platform(&NewPlatform {
                id: PlatformId::new(),
                application_id: demo.clone(),
                business_id: None,
                waba_id: WabaId::parse(&format!("7800000{i:04}")).expect("waba"),
                waba_name: Some(format!("Extra {i:02}")),
                status: "active".into(),
                access_token: "EAA-not-at-meta".into(),
                details: serde_json::json!({}),
                now: app.now_ms(),
            })
            .await
            .expect("platform");
    }

    let browser = console_sign_in(&app).await;
    // The overview's numbers: a page of 20, then the other 5 behind "Next numbers".
    let page1 = texts(&browser, "#numbers tbody tr td:nth-child(2)").await;
    assert_eq!(page1.len(), 20, "{page1:?}");
    browser
        .wait_css("#numbers-next")
        .await
        .click()
        .await
        .expect("click");
    browser.wait_url("numbers_after=").await;
    let page2 = texts(&browser, "#numbers tbody tr td:nth-child(2)").await;
    assert_eq!(page2.len(), 5, "{page2:?}");
    assert!(
        browser
            .client
            .find_all(Locator::Css("#numbers-next"))
            .await
            .expect("find")
            .is_empty(),
        "the last page has no next link"
    );
    let mut all: Vec<String> = page1.into_iter().chain(page2).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 25, "every number once: {all:?}");
    assert!(all.contains(&first.display_phone_number));

    // Settings › Platforms: 20 cards, then the last one, which the page keeps polling.
    browser
        .client
        .goto(&format!("{}/settings/platforms", app.url))
        .await
        .expect("goto");
    browser.wait_css("article.platform").await;
    let cards1 = platform_ids(&browser).await;
    assert_eq!(cards1.len(), 20, "{cards1:?}");
    browser
        .wait_css("#platforms-next")
        .await
        .click()
        .await
        .expect("click");
    browser.wait_url("/settings/platforms?after=").await;
    browser.wait_css("article.platform").await;
    let cards2 = platform_ids(&browser).await;
    assert_eq!(cards2.len(), 1, "{cards2:?}");
    assert!(!cards1.contains(&cards2[0]));
    let list_url = browser
        .wait_css("#platform-list")
        .await
        .attr("data-list-url")
        .await
        .expect("attr")
        .expect("data-list-url");
    assert!(list_url.contains("after=plt_"), "{list_url}");

    // The switcher lists 20 applications and links to the rest.
    let options = texts(&browser, "select[name=application] option").await;
    assert_eq!(options.len(), 20, "{options:?}");
    browser
        .wait_css("#all-applications")
        .await
        .click()
        .await
        .expect("click");
    browser.wait_url("/settings/applications").await;
    let page1 = texts(&browser, "tr.application td:first-child").await;
    assert_eq!(page1.len(), 50, "{page1:?}");
    browser
        .wait_css("#next-page")
        .await
        .click()
        .await
        .expect("click");
    browser.wait_url("after=app_").await;
    let page2 = texts(&browser, "tr.application td:first-child").await;
    assert_eq!(page2.len(), 6, "{page2:?}");
    let mut names: Vec<String> = page1.iter().chain(&page2).cloned().collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 56, "every application once: {names:?}");
    assert!(names.iter().any(|n| n == "Shop 54"));

    // An application from the second page becomes the current one (the switch goes to its
    // overview): the switcher shows it after its first 20.
    browser
        .wait_css("tr.application button[type=submit]")
        .await
        .click()
        .await
        .expect("switch");
    let name = page2[0].clone();
    wait_for_text(&browser, "h1", |t| t == name).await;
    let options = texts(&browser, "select[name=application] option").await;
    assert_eq!(options.len(), 21, "{options:?}");
    assert_eq!(options[20], page2[0]);
    let selected = browser
        .wait_css("select[name=application] option:checked")
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(selected, page2[0]);
}

#[tokio::test]
async fn readiness_stays_one_read_and_the_template_sync_reaches_a_platform_past_the_first_page() {
    let app = spawn_app().await;
    let demo = demo_application(&app).await;
    let account = app
        .store
        .application(&demo)
        .await
        .expect("lookup")
        .expect("demo")
        .account_id;
    for i in 0..300 {
        app.store
            .create_application(
                &ApplicationId::new(),
                &account,
                &format!("Tenant {i}"),
                app.now_ms(),
            )
            .await
            .expect("application");
    }
    let ready: Value = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready", "{ready}");

    // A page of platforms whose ids sort before the demo's: the demo platform is on the
    // walk's second page. Their WABAs are not Meta's, so only the demo's syncs.
    let page = parley_engine::templates::PLATFORM_PAGE;
    for i in 0..page {
        app.store
            .upsert_platform(&NewPlatform {
                id: PlatformId::parse(&format!("plt_{:032x}", u128::from(i) + 1)).expect("id"),
                application_id: demo.clone(),
                business_id: None,
                waba_id: WabaId::parse(&format!("7700000{i:04}")).expect("waba"),
                waba_name: None,
                status: "active".into(),
                access_token: "EAA-not-at-meta".into(),
                details: serde_json::json!({}),
                now: app.now_ms(),
            })
            .await
            .expect("platform");
    }
    let first_page = app
        .store
        .platforms_after(None, page)
        .await
        .expect("platforms");
    let demo_platform = app.store.phone_numbers(&demo).await.expect("numbers")[0]
        .platform_id
        .clone();
    assert!(
        first_page.iter().all(|p| p.id != demo_platform),
        "the demo platform is past the first page"
    );
    assert_eq!(app.engine.sync_all_templates().await, 1);
}
