//! A tenant with a platform and a number, and messages built from real domain types.

use parley_domain::{
    AccountId, ApplicationId, BusinessId, MessageContent, MessageId, MessageState, PhoneNumberId,
    PlatformId, RenderedParam, RenderedTemplate, Template, TemplateId, WabaId, Wamid,
};
use parley_store::{
    MessageRecord, NewMessage, NewPlatform, PhoneNumberRecord, StatusChange, Store, TemplateRecord,
};
use serde_json::json;

pub const T0: i64 = 1_760_000_000_000;

pub struct Tenant {
    pub app: ApplicationId,
    pub platform: PlatformId,
    pub number: PhoneNumberId,
}

/// An account, an application, a platform (token `EAA-secret-<n>`) and number `1000<n>`.
pub async fn tenant(store: &dyn Store, n: u32) -> Tenant {
    let account = AccountId::new();
    let app = ApplicationId::new();
    store
        .create_account(&account, &format!("Account {n}"), T0)
        .await
        .expect("account");
    store
        .create_application(&app, &account, &format!("App {n}"), T0)
        .await
        .expect("application");
    let platform = store
        .upsert_platform(&NewPlatform {
            id: PlatformId::new(),
            application_id: app.clone(),
            business_id: Some(BusinessId::parse(&format!("90{n}")).unwrap()),
            waba_id: WabaId::parse(&format!("80{n}")).unwrap(),
            waba_name: Some(format!("WABA {n}")),
            status: "connected".into(),
            access_token: format!("EAA-secret-{n}"),
            details: json!({"n": n}),
            now: T0,
        })
        .await
        .expect("platform");
    let number = pnid(&format!("1000{n}"));
    store
        .upsert_phone_number(&PhoneNumberRecord {
            phone_number_id: number.clone(),
            platform_id: platform.clone(),
            application_id: app.clone(),
            display_phone_number: format!("+49 151 000 {n}"),
            verified_name: Some("Parley Test".into()),
            quality_rating: Some("GREEN".into()),
            messaging_limit: Some("TIER_1K".into()),
            throughput_mps: 80,
            status: Some("CONNECTED".into()),
            updated_at: T0,
        })
        .await
        .expect("number");
    Tenant {
        app,
        platform,
        number,
    }
}

/// Meta's JSON for a positional utility template.
pub fn meta_template(name: &str, language: &str, status: &str) -> serde_json::Value {
    json!({
        "id": format!("55{}", name.len()),
        "name": name,
        "language": language,
        "category": "UTILITY",
        "status": status,
        "parameter_format": "POSITIONAL",
        "components": [
            {"type": "BODY", "text": "Hello {{1}}, your order {{2}} has shipped.",
             "example": {"body_text": [["Ann", "A-1"]]}},
            {"type": "FOOTER", "text": "Parley"}
        ]
    })
}

pub fn template_record(t: &Tenant, raw: serde_json::Value, at: i64) -> TemplateRecord {
    TemplateRecord {
        id: TemplateId::new(),
        application_id: t.app.clone(),
        platform_id: t.platform.clone(),
        meta_id: raw["id"].as_str().map(str::to_owned),
        template: Template::from_meta_json(&raw).expect("Meta template JSON"),
        raw,
        updated_at: at,
        deleted_at: None,
    }
}

pub fn rendered(name: &str) -> MessageContent {
    MessageContent::Template {
        template: RenderedTemplate {
            name: name.into(),
            language: "en_US".into(),
            header: None,
            body: vec![
                RenderedParam {
                    parameter_name: None,
                    text: "Ann".into(),
                },
                RenderedParam {
                    parameter_name: None,
                    text: "A-1 ✓ «ü»".into(),
                },
            ],
            buttons: vec![],
        },
    }
}

/// A single send to a recipient of its own: one recipient's sends are one lane, sent one at a
/// time in order (migration 0041), which `lanes.rs` tests; the other cases want independent
/// messages.
pub fn new_message(t: &Tenant, now: i64, key: Option<&str>) -> NewMessage {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    NewMessage {
        id: MessageId::new(),
        application_id: t.app.clone(),
        phone_number_id: t.number.clone(),
        contact_id: None,
        to_phone: format!("+49151{n:08}"),
        content: rendered("order_update"),
        reply_to: None,
        idempotency_key: key.map(str::to_owned),
        now,
    }
}

/// Inserts a message due at `now` and returns its id.
pub async fn queued(store: &dyn Store, t: &Tenant, now: i64) -> MessageId {
    let m = new_message(t, now, None);
    store.insert_message(&m).await.expect("insert message");
    m.id
}

/// Inserts, claims and accepts a message with `wamid`.
/// All to one recipient (`+4915100000001`, whose inbound messages the statistics cases
/// answer): one lane, each message accepted before the next is queued.
pub async fn accepted(store: &dyn Store, t: &Tenant, wamid: &str, now: i64) -> MessageId {
    let m = NewMessage {
        to_phone: "+4915100000001".into(),
        ..new_message(t, now, None)
    };
    store.insert_message(&m).await.expect("insert message");
    let id = m.id;
    let claimed = store
        .claim_due_messages(&t.number, now, now + 30_000, 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "the message just queued is claimed");
    store
        .mark_accepted(&id, &wm(wamid), now + 1)
        .await
        .expect("accept");
    id
}

pub async fn get(store: &dyn Store, t: &Tenant, id: &MessageId) -> MessageRecord {
    store
        .message(&t.app, id)
        .await
        .expect("read message")
        .expect("message exists")
}

/// A status Meta reports for `wamid` (naming our `id` when given); a `failed` one carries
/// 131026.
pub fn status(wamid: &str, id: Option<&MessageId>, state: MessageState, at: i64) -> StatusChange {
    StatusChange {
        wamid: wm(wamid),
        message_id: id.cloned(),
        state,
        at,
        error: (state == MessageState::Failed).then(|| (131026, "undeliverable".to_owned())),
        pricing: None,
    }
}

/// Test ids: Meta's id types from literals the tests know are valid.
pub fn wm(s: &str) -> Wamid {
    Wamid::parse(s).expect("wamid")
}

pub fn pnid(s: &str) -> PhoneNumberId {
    PhoneNumberId::parse(s).expect("phone number id")
}

/// What the lattice decides of a message: everything but the row's identity (id, wamid).
pub fn outcome(m: &MessageRecord) -> impl PartialEq + std::fmt::Debug + use<> {
    (
        m.state,
        (
            m.accepted_at,
            m.sent_at,
            m.delivered_at,
            m.read_at,
            m.failed_at,
        ),
        (m.error_code, m.error_message.clone()),
        m.updated_at,
    )
}
