//! The demo account: one account, application, API token, console login, WhatsApp platform
//! on the sandbox's demo WABA, its templates (synced over HTTP like production) and 1,000
//! contacts with tags. Seeding runs once; later runs reuse the same data.

use parley_domain::{
    AccountId, ApplicationId, BusinessId, E164, PhoneNumberId, PlatformId, TagValue, Tags, UserId,
    WabaId,
};
use parley_store::{NewContact, NewPlatform, PhoneNumberRecord};
use rand::{Rng, SeedableRng};

use crate::{Engine, EngineError, auth};

/// What the sandbox's demo WABA looks like, as the CLI learns it from the sandbox config.
#[derive(Debug, Clone)]
pub struct DemoPlatform {
    pub business_id: BusinessId,
    pub waba_id: WabaId,
    pub access_token: String,
}

/// Credentials created by the seed, shown to the user once.
#[derive(Debug, Clone)]
pub struct DemoSeed {
    pub application_id: ApplicationId,
    pub email: String,
    pub password: String,
    pub api_token: String,
    pub contacts: u64,
}

pub const DEMO_EMAIL: &str = "demo@parley.local";

impl Engine {
    /// Creates the demo data. Call only when the store has no application yet.
    pub async fn seed_demo(
        &self,
        platform: &DemoPlatform,
        contacts: usize,
    ) -> Result<DemoSeed, EngineError> {
        let now = self.now();
        let account = AccountId::new();
        let app = ApplicationId::new();
        let password = auth::generate_password();
        let hash = auth::hash_password(&password).map_err(EngineError::internal)?;
        self.store
            .create_owner(
                &parley_store::identity::NewOwner {
                    account_id: account,
                    account_name: "Parley Demo Shop".into(),
                    application_id: app.clone(),
                    application_name: "Demo application".into(),
                    user_id: UserId::new(),
                    email: DEMO_EMAIL.into(),
                    password_hash: hash,
                    now,
                },
                None,
            )
            .await?;
        let api_token = auth::generate_api_token();
        self.store
            .add_api_token(&app, &auth::hash_api_token(&api_token), "demo", now)
            .await?;
        self.connect_platform(&app, platform).await?;
        let mut people = demo_contact_stream().take(contacts);
        let mut written = 0;
        loop {
            let chunk: Vec<NewContact> = people.by_ref().take(500).collect();
            if chunk.is_empty() {
                break;
            }
            written += self.store.upsert_contacts(&app, &chunk, now).await?;
        }
        Ok(DemoSeed {
            application_id: app,
            email: DEMO_EMAIL.into(),
            password,
            api_token,
            contacts: written,
        })
    }

    /// Stores a platform for an already-exchanged business token, then reads its numbers and
    /// templates from Meta.
    pub async fn connect_platform(
        &self,
        app: &ApplicationId,
        platform: &DemoPlatform,
    ) -> Result<PlatformId, EngineError> {
        let meta_err = |e: parley_meta::GraphError| {
            EngineError::new(
                crate::ErrorKind::Upstream,
                "meta_unavailable",
                format!("Meta refused or did not answer: {e}"),
            )
        };
        let waba = self
            .graph
            .get_waba(&platform.access_token, platform.waba_id.as_str())
            .await
            .map_err(meta_err)?;
        let now = self.now();
        let platform_id = self
            .store
            .upsert_platform(&NewPlatform {
                id: PlatformId::new(),
                application_id: app.clone(),
                business_id: Some(platform.business_id.clone()),
                waba_id: platform.waba_id.clone(),
                waba_name: waba.name.clone(),
                status: "active".into(),
                access_token: platform.access_token.clone(),
                details: serde_json::to_value(&waba).unwrap_or_default(),
                now,
            })
            .await?;
        let numbers = self
            .graph
            .list_phone_numbers(&platform.access_token, platform.waba_id.as_str())
            .await
            .map_err(meta_err)?;
        for n in numbers {
            let level = n.throughput.as_ref().and_then(|t| t.level.clone());
            self.store
                .upsert_phone_number(&PhoneNumberRecord {
                    display_phone_number: n
                        .display_phone_number
                        .clone()
                        .unwrap_or_else(|| n.id.clone()),
                    phone_number_id: PhoneNumberId::parse(&n.id).map_err(EngineError::internal)?,
                    platform_id: platform_id.clone(),
                    application_id: app.clone(),
                    verified_name: n.verified_name,
                    quality_rating: n.quality_rating,
                    messaging_limit: n.whatsapp_business_manager_messaging_limit,
                    // Meta names only STANDARD (80 mps); upgraded numbers reach 1,000.
                    throughput_mps: if level.as_deref() == Some("STANDARD") || level.is_none() {
                        80
                    } else {
                        1000
                    },
                    status: n.status,
                    updated_at: now,
                })
                .await?;
        }
        // The platform list shows the portfolio's name, when it was connected, and each
        // number's limit scope and throughput level, as after Embedded Signup.
        let company = self
            .graph
            .get_business(&platform.access_token, platform.business_id.as_str())
            .await
            .ok()
            .and_then(|b| b.name);
        self.store
            .set_platform_connected(&platform_id, company.as_deref(), Some(now))
            .await?;
        for n in self.store.platform_numbers(&platform_id).await? {
            let level = if n.number.throughput_mps > 80 {
                "HIGH"
            } else {
                "STANDARD"
            };
            self.store
                .patch_phone_number(
                    &n.number.phone_number_id,
                    &parley_store::platforms::NumberPatch {
                        messaging_limit_scope: Some("business_portfolio".into()),
                        throughput_level: Some(level.into()),
                        ..Default::default()
                    },
                    now,
                )
                .await?;
        }
        self.sync_templates(app, &platform_id).await?;
        self.wake_senders(None);
        Ok(platform_id)
    }
}

const FIRST: &[&str] = &[
    "anna", "ben", "clara", "david", "elif", "felix", "greta", "hannah", "ivan", "julia", "karim",
    "lena", "mats", "nora", "oskar", "paula", "quentin", "rosa", "sami", "theresa", "umut", "vera",
    "wim", "xenia", "yusuf", "zoé", "élodie", "jörg", "łucja", "søren",
];
const LAST: &[&str] = &[
    "müller",
    "schmidt",
    "schneider",
    "fischer",
    "weber",
    "meyer",
    "wagner",
    "becker",
    "schulz",
    "hoffmann",
    "koch",
    "richter",
    "klein",
    "wolf",
    "neumann",
    "schwarz",
    "yilmaz",
    "kaya",
];
const CITIES: &[&str] = &[
    "Berlin",
    "Hamburg",
    "Munich",
    "Cologne",
    "Frankfurt",
    "Leipzig",
    "Vienna",
    "Zurich",
];
const PLANS: &[&str] = &["free", "free", "free", "pro", "pro", "team"];
const INTERESTS: &[&str] = &[
    "shoes", "jackets", "bags", "sports", "outdoor", "kids", "sale",
];

/// Deterministic demo people with valid German mobile numbers (+49 151 …).
pub fn demo_contacts(n: usize) -> Vec<NewContact> {
    demo_contact_stream().take(n).collect()
}

/// The demo contacts one after the other, generated as they are read (a large seed does not
/// hold them all in memory).
pub fn demo_contact_stream() -> impl Iterator<Item = NewContact> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut serial: u64 = 0;
    std::iter::from_fn(move || {
        loop {
            serial += 1;
            let number = format!("+49151{:08}", 10_000_000 + serial * 7919 % 89_999_999);
            let Ok(phone) = E164::parse(&number) else {
                continue;
            };
            let first = FIRST[rng.random_range(0..FIRST.len())];
            let last = LAST[rng.random_range(0..LAST.len())];
            let mut tags = Tags::new();
            // Names are stored as people typed them (lower case); templates capitalize.
            tags.insert("first_name".into(), TagValue::String(first.into()));
            tags.insert("last_name".into(), TagValue::String(last.into()));
            tags.insert(
                "city".into(),
                TagValue::String(CITIES[rng.random_range(0..CITIES.len())].into()),
            );
            tags.insert(
                "plan".into(),
                TagValue::String(PLANS[rng.random_range(0..PLANS.len())].into()),
            );
            let days_ago = rng.random_range(0..720);
            let signup = time::OffsetDateTime::now_utc().date() - time::Duration::days(days_ago);
            tags.insert("signup_date".into(), TagValue::Date(signup));
            tags.insert("visits".into(), TagValue::Integer(rng.random_range(0..40)));
            let a = INTERESTS[rng.random_range(0..INTERESTS.len())];
            let b = INTERESTS[rng.random_range(0..INTERESTS.len())];
            let mut interests = vec![a.to_owned()];
            if b != a {
                interests.push(b.to_owned());
            }
            tags.insert("interests".into(), TagValue::List(interests));
            return Some(NewContact {
                phone: phone.as_str().to_owned(),
                name: None,
                tags,
            });
        }
    })
}
