//! Embedded Signup, Meta's side of it (META_API.md §1): what a finished signup leaves in the
//! world (a business portfolio, a WABA and a number, created or chosen), the single-use
//! authorization code (30 s of virtual time) and the business token it is exchanged for,
//! Meta's commerce-policy review of the new WABA, and messaging-limit changes.
//!
//! The dialog (`dialog` module) and `POST /sandbox/signup` (scripts, tests) both go through
//! [`validate`] and [`create`], so the two paths cannot disagree. Control endpoints:
//!
//! | Method | Path | Body | Answer |
//! |---|---|---|---|
//! | `POST` | `/sandbox/signup` | `{"business": {"id"} \| {"name","website","country","address"?}, "waba": {"id"} \| {"name"}, "profile": {"display_name","vertical"?}, "phone_number": {"display_phone_number"?} \| {"id"}}` (all optional) | `{"code","waba_id","phone_number_id","business_id"}` |
//! | `POST` | `/sandbox/signup` | `{"cancel_at": "<STEP>"}` or `{"report_problem": "<message>"}` | the `WA_EMBEDDED_SIGNUP` CANCEL message object the page would receive; nothing is created |
//! | `POST` | `/sandbox/review` | `{"waba_id","decision":"APPROVED"\|"REJECTED"\|"DEFERRED","reason"?}` | `{"waba_id","account_review_status"}`; sends `account_review_update` now |
//! | `POST` | `/sandbox/phone_numbers/{id}/limit` | `{"limit":"TIER_2K","event"?:"ONBOARDING"}` | `{"id","old_limit","current_limit"}`; sends `business_capability_update` and `phone_number_quality_update` |

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::config::{BusinessSeed, PhoneSeed, WabaSeed};
use crate::control::json_body;
use crate::errors::GraphError;
use crate::state::{EventKind, State as World, digits};

/// Meta: "The code has a time-to-live of 30 seconds".
pub(crate) const CODE_TTL_MS: i64 = 30_000;
/// Codes are remembered this long (to answer "has been used" / "has expired").
const CODE_MEMORY_MS: i64 = 24 * 60 * 60 * 1000;

/// Where Meta says a signup was abandoned (`current_step`), plus the sandbox's own names for
/// the screens Meta has no name for. The last, `QUOTAS`, is the final screen: leaving it is a
/// finish, not a cancel.
pub(crate) const STEPS: [&str; 11] = [
    "LOGIN",
    "GET_STARTED",
    "PHONE_NUMBER_SETUP",
    "PHONE_NUMBER_VERIFICATION",
    "BUSINESS_ACCOUNT_SELECTION",
    "WHATSAPP_BUSINESS_APP_QR",
    "WABA_PHONE_PROFILE_PICKER",
    "WHATSAPP_BUSINESS_PROFILE_SETUP",
    "PERMISSIONS",
    "CONFIRMATION",
    "QUOTAS",
];

/// The final screen.
pub(crate) const FINAL_STEP: &str = "QUOTAS";

/// Messaging limit tiers, lowest first, with their per-day conversation count (-1: none).
pub(crate) const TIERS: [(&str, i64); 6] = [
    ("TIER_50", 50),
    ("TIER_250", 250),
    ("TIER_2K", 2000),
    ("TIER_10K", 10_000),
    ("TIER_100K", 100_000),
    ("TIER_UNLIMITED", -1),
];

/// Business categories (`vertical` of the business profile) with the dialog's labels.
pub(crate) const VERTICALS: [(&str, &str); 18] = [
    ("OTHER", "Other"),
    ("AUTO", "Automotive"),
    ("BEAUTY", "Beauty, spa and salon"),
    ("APPAREL", "Clothing and apparel"),
    ("EDU", "Education"),
    ("ENTERTAIN", "Entertainment"),
    ("EVENT_PLAN", "Event planning and service"),
    ("FINANCE", "Finance and banking"),
    ("GROCERY", "Food and grocery"),
    ("GOVT", "Public service"),
    ("HOTEL", "Hotel and lodging"),
    ("HEALTH", "Medical and health"),
    ("NONPROFIT", "Non-profit"),
    ("PROF_SERVICES", "Professional services"),
    ("RETAIL", "Shopping and retail"),
    ("TRAVEL", "Travel and transportation"),
    ("RESTAURANT", "Restaurant"),
    ("NOT_A_BIZ", "Not a business"),
];

/// Countries offered for a new business portfolio.
pub(crate) const COUNTRIES: [(&str, &str); 32] = [
    ("US", "United States"),
    ("GB", "United Kingdom"),
    ("DE", "Germany"),
    ("FR", "France"),
    ("ES", "Spain"),
    ("IT", "Italy"),
    ("NL", "Netherlands"),
    ("BE", "Belgium"),
    ("AT", "Austria"),
    ("CH", "Switzerland"),
    ("PT", "Portugal"),
    ("IE", "Ireland"),
    ("SE", "Sweden"),
    ("NO", "Norway"),
    ("DK", "Denmark"),
    ("FI", "Finland"),
    ("PL", "Poland"),
    ("BR", "Brazil"),
    ("MX", "Mexico"),
    ("AR", "Argentina"),
    ("CO", "Colombia"),
    ("CA", "Canada"),
    ("IN", "India"),
    ("ID", "Indonesia"),
    ("SG", "Singapore"),
    ("JP", "Japan"),
    ("AU", "Australia"),
    ("NZ", "New Zealand"),
    ("ZA", "South Africa"),
    ("NG", "Nigeria"),
    ("AE", "United Arab Emirates"),
    ("TR", "Turkey"),
];

/// A code minted at the end of a signup.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub created: Created,
    pub minted_ms: i64,
    pub used: bool,
}

/// A business token handed out for a code: accepted by every Graph endpoint.
#[derive(Clone, Debug)]
pub(crate) struct TokenGrant {
    pub created: Created,
    pub issued_ms: i64,
}

/// What a finished signup hands the page (and `POST /sandbox/signup` returns).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Created {
    pub business_id: String,
    pub waba_id: String,
    /// `None` when the signup finished without a number.
    pub phone_number_id: Option<String>,
    pub completion: Completion,
}

/// How an Embedded Signup v4 ends (META_2026.md §1.3, §1.4): the FINISH variant the page
/// receives and what exists at Meta afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Completion {
    /// `FINISH`: a WABA and a verified number.
    Verified,
    /// `FINISH`: the number exists with `code_verification_status: "NOT_VERIFIED"`.
    Unverified,
    /// `FINISH` without `phone_number_id` (or `FINISH_ONLY_WABA`, see
    /// `Behaviour::no_number_event`): a WABA only.
    NoNumber,
    /// `FINISH_GRANT_ONLY_API_ACCESS`: app-only install (`features: [{name: "app_only_install"}]`).
    AppOnly,
    /// `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`: a WhatsApp Business app number, already
    /// registered (coexistence).
    Coexistence,
}

impl Completion {
    pub(crate) const NAMES: [&'static str; 5] = [
        "verified",
        "unverified",
        "no_number",
        "app_only",
        "coexistence",
    ];

    pub(crate) fn parse(name: &str) -> Option<Completion> {
        Some(match name {
            "verified" => Completion::Verified,
            "unverified" => Completion::Unverified,
            "no_number" => Completion::NoNumber,
            "app_only" => Completion::AppOnly,
            "coexistence" => Completion::Coexistence,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Completion::Verified => "verified",
            Completion::Unverified => "unverified",
            Completion::NoNumber => "no_number",
            Completion::AppOnly => "app_only",
            Completion::Coexistence => "coexistence",
        }
    }
}

/// A pending phone-number verification code (`request_code`), as `/sandbox/state` and
/// `GET /sandbox/phone_numbers/{id}/code` show it so a test or a person can type it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct PendingCode {
    pub code: String,
    /// `SMS` or `VOICE`.
    pub code_method: String,
    pub language: String,
    /// Virtual ms when it was sent; it expires after [`VERIFY_CODE_TTL_MS`].
    pub sent_ms: i64,
    /// Wrong codes typed against it.
    pub attempts: u32,
}

/// How long a verification code works (Meta's spec: "typically 10 minutes").
pub(crate) const VERIFY_CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// Wrong codes before the code is void (a new one must be requested).
pub(crate) const VERIFY_MAX_ATTEMPTS: u32 = 5;
/// `request_code` calls per number per hour before 136024.
pub(crate) const REQUEST_CODE_MAX_PER_HOUR: usize = 5;

/// Which extras a dialog (or headless signup) was launched with, for
/// `GET /sandbox/signups`: `v4` (`{}` or `{setup: {}}` only, plus v4's `featureType` and
/// `features`), `v4-public-preview`, `v3`, or `legacy` (`sessionInfoVersion`, an empty
/// `featureType` or `only_waba_sharing`: the deprecated v2 shape).
pub(crate) fn extras_flavour(extras: &Value) -> &'static str {
    let version = extras.get("version").and_then(Value::as_str);
    match version {
        Some("v4-public-preview") => return "v4-public-preview",
        Some("v3") | Some("v3-public-preview") => return "v3",
        Some(_) => return "legacy",
        None => {}
    }
    let feature_type = extras.get("featureType").and_then(Value::as_str);
    if extras.get("sessionInfoVersion").is_some()
        || matches!(feature_type, Some("") | Some("only_waba_sharing"))
    {
        return "legacy";
    }
    "v4"
}

/// One signup as `GET /sandbox/signups` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct SignupRecord {
    /// The dialog session, or `headless` for `POST /sandbox/signup`.
    pub session: String,
    pub at_ms: i64,
    /// The `extras` the page sent, as received.
    pub extras: Value,
    /// [`extras_flavour`] of them.
    pub flavour: &'static str,
    /// The FINISH variant once finished (`None`: still open or cancelled).
    pub event: Option<String>,
    pub completion: Option<&'static str>,
}

/// Signups remembered for `GET /sandbox/signups`.
pub(crate) const SIGNUP_LOG_CAP: usize = 1000;

pub(crate) fn log_signup(state: &mut World, record: SignupRecord) {
    state.signups.push_back(record);
    while state.signups.len() > SIGNUP_LOG_CAP {
        state.signups.pop_front();
    }
}

/// Either an existing object (by id) or a new one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Pick<T> {
    Existing(String),
    New(T),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewBusiness {
    pub name: String,
    pub website: String,
    pub country: String,
    pub address: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewPhone {
    pub display_phone_number: String,
    pub display_name: String,
    pub vertical: String,
}

/// Everything the user chose, validated.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Choices {
    pub business: Pick<NewBusiness>,
    pub waba: Pick<String>,
    /// A new WABA's time zone (Meta's `timezone_id`; `None`: "1", America/Los_Angeles).
    pub waba_timezone: Option<String>,
    /// `None`: finish without a number (`Completion::NoNumber`).
    pub phone: Option<Pick<NewPhone>>,
    pub completion: Completion,
}

/// One form error: the field and what to fix.
pub(crate) type FieldError = (&'static str, String);

/// Checks a new portfolio's company data; errors name the dialog's field.
pub(crate) fn validate_business(
    name: &str,
    website: &str,
    country: &str,
    address: Option<&str>,
) -> Result<NewBusiness, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = name.trim();
    if name.is_empty() {
        errors.push(("business_name", "Enter your business's name.".to_owned()));
    } else if name.chars().count() > 100 {
        errors.push((
            "business_name",
            "Use at most 100 characters for the business name.".to_owned(),
        ));
    }
    let website = website.trim();
    if !crate::validate::is_http_url(website) {
        errors.push((
            "website",
            "Enter a valid website URL, starting with http:// or https://.".to_owned(),
        ));
    }
    let country = country.trim().to_ascii_uppercase();
    if !COUNTRIES.iter().any(|(code, _)| *code == country) {
        errors.push(("country", "Choose a country.".to_owned()));
    }
    if errors.is_empty() {
        Ok(NewBusiness {
            name: name.to_owned(),
            website: website.to_owned(),
            country,
            address: address
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
        })
    } else {
        Err(errors)
    }
}

/// A time zone id as Meta writes it: digits. One outside Meta's table (`zones.rs`) is kept
/// as given and counted in UTC, as a zone Meta added after the table would be.
pub(crate) fn validate_timezone_id(id: &str) -> Result<String, Vec<FieldError>> {
    let id = id.trim();
    if id.is_empty() || id.len() > 6 || !id.bytes().all(|b| b.is_ascii_digit()) || id == "0" {
        return Err(vec![(
            "waba_timezone",
            "Choose a time zone (Meta's numeric timezone_id, like 1 for America/Los_Angeles)."
                .to_owned(),
        )]);
    }
    Ok(id.to_owned())
}

pub(crate) fn validate_waba_name(name: &str) -> Result<String, Vec<FieldError>> {
    let name = name.trim();
    if name.is_empty() {
        Err(vec![(
            "waba_name",
            "Enter a name for the WhatsApp Business Account.".to_owned(),
        )])
    } else if name.chars().count() > 100 {
        Err(vec![(
            "waba_name",
            "Use at most 100 characters for the account name.".to_owned(),
        )])
    } else {
        Ok(name.to_owned())
    }
}

/// Display name and category of a new WhatsApp business profile.
pub(crate) fn validate_profile(
    display_name: &str,
    vertical: &str,
) -> Result<(String, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let display_name = display_name.trim();
    let length = display_name.chars().count();
    if length < 3 {
        errors.push((
            "display_name",
            "Enter a display name of at least 3 characters.".to_owned(),
        ));
    } else if length > 100 {
        errors.push((
            "display_name",
            "Use at most 100 characters for the display name.".to_owned(),
        ));
    } else if display_name.to_ascii_lowercase().contains("whatsapp") {
        errors.push((
            "display_name",
            "The display name can't contain \"WhatsApp\".".to_owned(),
        ));
    }
    let vertical = vertical.trim().to_ascii_uppercase();
    if !VERTICALS.iter().any(|(code, _)| *code == vertical) {
        errors.push(("vertical", "Choose a category.".to_owned()));
    }
    if errors.is_empty() {
        Ok((display_name.to_owned(), vertical))
    } else {
        Err(errors)
    }
}

/// A phone number typed by the user: `+`, 8–15 digits, not already on the platform.
pub(crate) fn validate_phone_number(
    state: &World,
    number: &str,
) -> Result<String, Vec<FieldError>> {
    let number = number.trim();
    let wanted = digits(number);
    let allowed = number
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
    if !number.starts_with('+') || !allowed || !(8..=15).contains(&wanted.len()) {
        return Err(vec![(
            "phone_number",
            "Enter the number in international format, e.g. +1 555 010 0199.".to_owned(),
        )]);
    }
    if number_taken(state, &wanted) {
        return Err(vec![(
            "phone_number",
            "This phone number is already registered with a WhatsApp Business Account.".to_owned(),
        )]);
    }
    Ok(number.to_owned())
}

fn number_taken(state: &World, wanted_digits: &str) -> bool {
    state
        .config
        .businesses
        .iter()
        .flat_map(|b| b.wabas.iter())
        .flat_map(|w| w.phone_numbers.iter())
        .any(|p| digits(&p.display_phone_number) == wanted_digits)
}

/// A fresh fictional US number (`+1 555-0xx-xxxx`) not used yet.
pub(crate) fn new_display_number(state: &World) -> String {
    let mut rng = rand::rng();
    loop {
        let number = format!(
            "+1 555-0{:02}-{:04}",
            rng.random_range(10..100),
            rng.random_range(0..10_000)
        );
        if !number_taken(state, &digits(&number)) {
            return number;
        }
    }
}

pub(crate) fn new_id(state: &World, digits: u32) -> String {
    let mut rng = rand::rng();
    let low = 10u64.pow(digits - 1);
    loop {
        let id = rng.random_range(low..low * 10).to_string();
        if !state.id_taken(&id) {
            return id;
        }
    }
}

fn random_text(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Checks the choices against the world: ids exist and belong together.
pub(crate) fn check(state: &World, choices: &Choices) -> Result<(), GraphError> {
    if let Pick::Existing(id) = &choices.business
        && state.business(id).is_none()
    {
        return Err(GraphError::invalid_param(format!(
            "Business portfolio {id} does not exist."
        )));
    }
    if let Pick::Existing(waba_id) = &choices.waba {
        let owner = state.business_of_waba(waba_id).map(|b| b.id.as_str());
        match (&choices.business, owner) {
            (_, None) => {
                return Err(GraphError::invalid_param(format!(
                    "WhatsApp Business Account {waba_id} does not exist."
                )));
            }
            (Pick::Existing(business), Some(owner)) if business != owner => {
                return Err(GraphError::invalid_param(format!(
                    "WhatsApp Business Account {waba_id} does not belong to business portfolio {business}."
                )));
            }
            (Pick::New(_), Some(_)) => {
                return Err(GraphError::invalid_param(format!(
                    "WhatsApp Business Account {waba_id} belongs to another business portfolio; a new portfolio needs a new account."
                )));
            }
            _ => {}
        }
    }
    match (&choices.phone, &choices.waba) {
        (None, _) => {}
        (Some(Pick::Existing(phone_id)), Pick::Existing(waba_id)) => {
            if state.phone(phone_id).is_none_or(|p| &p.waba.id != waba_id) {
                return Err(GraphError::invalid_param(format!(
                    "Phone number {phone_id} is not a number of WhatsApp Business Account {waba_id}."
                )));
            }
        }
        (Some(Pick::Existing(phone_id)), Pick::New(_)) => {
            return Err(GraphError::invalid_param(format!(
                "Phone number {phone_id} belongs to another WhatsApp Business Account; a new account needs a new number."
            )));
        }
        (Some(Pick::New(phone)), _) => {
            if number_taken(state, &digits(&phone.display_phone_number)) {
                return Err(GraphError::invalid_param(format!(
                    "The phone number {} is already registered with a WhatsApp Business Account.",
                    phone.display_phone_number
                )));
            }
        }
    }
    Ok(())
}

/// Creates what the choices ask for, announces the partner (`account_update` PARTNER_ADDED)
/// and, for a new WABA, queues its review. Nothing changes when a check fails.
pub(crate) fn create(
    state: &mut World,
    now_ms: i64,
    choices: &Choices,
) -> Result<Created, GraphError> {
    check(state, choices)?;
    let business_id = match &choices.business {
        Pick::Existing(id) => id.clone(),
        Pick::New(new) => {
            let id = new_id(state, 16);
            state.config.businesses.push(BusinessSeed {
                id: id.clone(),
                name: new.name.clone(),
                website: Some(new.website.clone()),
                country: Some(new.country.clone()),
                address: new.address.clone(),
                verification_status: "not_verified".to_owned(),
                wabas: Vec::new(),
            });
            id
        }
    };
    let (waba_id, new_waba) = match &choices.waba {
        Pick::Existing(id) => (id.clone(), false),
        Pick::New(name) => {
            let id = new_id(state, 15);
            let namespace = uuid::Uuid::new_v4().to_string().replace('-', "_");
            let waba = WabaSeed {
                id: id.clone(),
                name: name.clone(),
                currency: "USD".to_owned(),
                timezone_id: choices
                    .waba_timezone
                    .clone()
                    .unwrap_or_else(|| "1".to_owned()),
                message_template_namespace: namespace,
                account_review_status: "PENDING".to_owned(),
                phone_numbers: Vec::new(),
                templates: Vec::new(),
            };
            let Some(business) = state
                .config
                .businesses
                .iter_mut()
                .find(|b| b.id == business_id)
            else {
                return Err(GraphError::invalid_param(format!(
                    "Business portfolio {business_id} does not exist."
                )));
            };
            business.wabas.push(waba);
            (id, true)
        }
    };
    let phone_number_id = match &choices.phone {
        None => None,
        Some(Pick::Existing(id)) => Some(id.clone()),
        Some(Pick::New(new)) if choices.completion == Completion::Coexistence => {
            let id = new_id(state, 15);
            if !state.create_coexistence_number(
                &waba_id,
                &id,
                &new.display_phone_number,
                &new.display_name,
            ) {
                return Err(GraphError::invalid_param(format!(
                    "WhatsApp Business Account {waba_id} does not exist."
                )));
            }
            // What the app brings (contacts, chats, history sharing): `coexist` owns it.
            crate::coexist::onboard_app_number(
                state,
                now_ms,
                &id,
                crate::coexist::AppSetup::default(),
            )?;
            Some(id)
        }
        Some(Pick::New(new)) => {
            let id = new_id(state, 15);
            let verification = if choices.completion == Completion::Unverified {
                "NOT_VERIFIED"
            } else {
                "VERIFIED"
            };
            let phone = PhoneSeed {
                id: id.clone(),
                display_phone_number: new.display_phone_number.clone(),
                verified_name: new.display_name.clone(),
                name_status: "PENDING_REVIEW".to_owned(),
                status: "PENDING".to_owned(),
                quality_rating: "UNKNOWN".to_owned(),
                messaging_limit: "TIER_250".to_owned(),
                throughput_mps: 80,
                code_verification_status: verification.to_owned(),
                is_on_biz_app: false,
            };
            let Some(waba) = state.waba_mut(&waba_id) else {
                return Err(GraphError::invalid_param(format!(
                    "WhatsApp Business Account {waba_id} does not exist."
                )));
            };
            waba.phone_numbers.push(phone);
            state.profiles.insert(
                id.clone(),
                json!({
                    "messaging_product": "whatsapp",
                    "about": "",
                    "address": "",
                    "description": "",
                    "email": "",
                    "profile_picture_url": "",
                    "websites": [],
                    "vertical": new.vertical,
                }),
            );
            Some(id)
        }
    };
    let partner = state.config.partner_business_id.clone();
    let value = if choices.completion == Completion::AppOnly {
        json!({
            "event": "PARTNER_APP_INSTALLED",
            "waba_info": {
                "waba_id": waba_id,
                "owner_business_id": business_id,
                "partner_app_id": state.config.app_id,
            },
        })
    } else {
        json!({
            "event": "PARTNER_ADDED",
            "waba_info": {"waba_id": waba_id, "owner_business_id": business_id},
        })
    };
    state.schedule(
        now_ms,
        "",
        EventKind::Change {
            entry_id: partner,
            field: "account_update".to_owned(),
            value,
        },
    );
    if new_waba {
        let delay = i64::try_from(state.config.behaviour.review_delay_ms).unwrap_or(i64::MAX);
        state.schedule(
            now_ms.saturating_add(delay),
            "",
            EventKind::AccountReview {
                waba_id: waba_id.clone(),
            },
        );
    }
    Ok(Created {
        business_id,
        waba_id,
        phone_number_id,
        completion: choices.completion,
    })
}

/// A new single-use authorization code for a finished signup.
pub(crate) fn mint_code(state: &mut World, now_ms: i64, created: &Created) -> String {
    state
        .codes
        .retain(|_, grant| grant.minted_ms > now_ms.saturating_sub(CODE_MEMORY_MS));
    let code = format!("AQ{}", random_text(86));
    state.codes.insert(
        code.clone(),
        CodeGrant {
            created: created.clone(),
            minted_ms: now_ms,
            used: false,
        },
    );
    code
}

fn oauth_error(code: u32, message: &str) -> GraphError {
    GraphError {
        code,
        message: message.to_owned(),
        details: None,
        kind: "OAuthException",
        subcode: None,
    }
}

/// `GET /oauth/access_token?client_id&client_secret&code` (no bearer token): a minted code,
/// once, within 30 s, becomes a new business token.
pub(crate) fn exchange_code(
    state: &mut World,
    now_ms: i64,
    param: impl Fn(&str) -> Option<String>,
) -> Result<Value, GraphError> {
    if param("client_id").as_deref() != Some(state.config.app_id.as_str()) {
        return Err(oauth_error(
            101,
            "Error validating application. Invalid application ID.",
        ));
    }
    if param("client_secret").as_deref() != Some(state.config.app_secret.as_str()) {
        return Err(oauth_error(1, "Error validating client secret."));
    }
    if param("redirect_uri").is_some() {
        return Err(oauth_error(
            100,
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
        ));
    }
    let Some(code) = param("code").filter(|c| !c.is_empty()) else {
        return Err(oauth_error(
            100,
            "Missing authorization code. The parameter code is required.",
        ));
    };
    let Some(grant) = state.codes.get_mut(&code) else {
        return Err(oauth_error(100, "Invalid verification code format."));
    };
    if grant.used {
        return Err(oauth_error(100, "This authorization code has been used."));
    }
    if now_ms > grant.minted_ms.saturating_add(CODE_TTL_MS) {
        return Err(oauth_error(100, "This authorization code has expired."));
    }
    grant.used = true;
    let created = grant.created.clone();
    let token = format!("EAAS{}", random_text(120));
    state.tokens.insert(
        token.clone(),
        TokenGrant {
            created,
            issued_ms: now_ms,
        },
    );
    Ok(json!({ "access_token": token, "token_type": "bearer" }))
}

/// The review of a new WABA comes due: approve it unless someone decided already.
pub(crate) fn conclude_review(state: &mut World, waba_id: &str) -> Vec<EventKind> {
    let pending = state
        .waba(waba_id)
        .is_some_and(|w| w.account_review_status == "PENDING");
    if !pending {
        return Vec::new();
    }
    decide(state, waba_id, "APPROVED", None).unwrap_or_default()
}

/// Sets a WABA's review decision and returns the webhooks that announce it:
/// `account_review_update`, plus `phone_number_name_update` for names approved with it, and
/// `account_update` ACCOUNT_VIOLATION carrying the reason of a rejection.
pub(crate) fn decide(
    state: &mut World,
    waba_id: &str,
    decision: &str,
    reason: Option<&str>,
) -> Result<Vec<EventKind>, GraphError> {
    let Some(waba) = state.waba_mut(waba_id) else {
        return Err(GraphError::invalid_param(format!(
            "WhatsApp Business Account {waba_id} does not exist."
        )));
    };
    waba.account_review_status = decision.to_owned();
    let mut events = vec![EventKind::Change {
        entry_id: waba_id.to_owned(),
        field: "account_review_update".to_owned(),
        value: json!({ "decision": decision }),
    }];
    if decision == "APPROVED" {
        for phone in &mut waba.phone_numbers {
            if phone.name_status == "PENDING_REVIEW" {
                phone.name_status = "APPROVED".to_owned();
                events.push(EventKind::Change {
                    entry_id: waba_id.to_owned(),
                    field: "phone_number_name_update".to_owned(),
                    value: json!({
                        "display_phone_number": digits(&phone.display_phone_number),
                        "decision": "APPROVED",
                        "requested_verified_name": phone.verified_name,
                        "rejection_reason": Value::Null,
                    }),
                });
            }
        }
    }
    if decision == "REJECTED"
        && let Some(reason) = reason
    {
        events.push(EventKind::Change {
            entry_id: waba_id.to_owned(),
            field: "account_update".to_owned(),
            value: json!({
                "event": "ACCOUNT_VIOLATION",
                "violation_info": {"violation_type": reason},
            }),
        });
    }
    Ok(events)
}

/// Changes a number's messaging limit; returns the old limit and the two webhooks.
pub(crate) fn set_limit(
    state: &mut World,
    phone_id: &str,
    limit: &str,
    event: &str,
) -> Result<(String, Vec<EventKind>), GraphError> {
    let Some(&(_, per_day)) = TIERS.iter().find(|(tier, _)| *tier == limit) else {
        return Err(GraphError::invalid_param(format!(
            "limit must be one of {} - got {limit:?}.",
            TIERS.map(|(t, _)| t).join(", ")
        )));
    };
    let Some(waba_id) = state.phone(phone_id).map(|p| p.waba.id.clone()) else {
        return Err(GraphError::invalid_param(format!(
            "Phone number {phone_id} does not exist."
        )));
    };
    let Some(phone) = state.phone_mut(phone_id) else {
        return Err(GraphError::invalid_param(format!(
            "Phone number {phone_id} does not exist."
        )));
    };
    let old = std::mem::replace(&mut phone.messaging_limit, limit.to_owned());
    let display = digits(&phone.display_phone_number);
    let legacy = state.config.behaviour.legacy_limit_webhooks;
    let events =
        crate::limits::limit_webhooks(&waba_id, &display, &old, limit, per_day, event, legacy);
    Ok((old, events))
}

/// The CANCEL message of an abandoned signup (`event.data`, parsed).
pub(crate) fn cancel_message(step: &str) -> Value {
    json!({
        "data": {"current_step": step},
        "type": "WA_EMBEDDED_SIGNUP",
        "event": "CANCEL",
        "version": 3,
    })
}

/// The CANCEL message of a problem the user reported.
pub(crate) fn problem_message(
    message: &str,
    error_code: &str,
    session_id: &str,
    now_secs: i64,
) -> Value {
    json!({
        "data": {
            "error_message": message,
            "error_code": error_code,
            "session_id": session_id,
            "timestamp": now_secs.to_string(),
        },
        "type": "WA_EMBEDDED_SIGNUP",
        "event": "CANCEL",
    })
}

/// `error_code` of a user-reported problem (Meta's example value).
pub(crate) const PROBLEM_CODE: &str = "524126";

/// The numeric Embedded Signup error codes Meta documents (META_2026.md §1.3), with the
/// user-visible text the dialog shows and reports as `error_message`.
pub(crate) const ES_ERRORS: [(&str, &str); 21] = [
    (
        "524126",
        "Something went wrong while connecting your account.",
    ),
    (
        "3441045",
        "This phone number isn't eligible to connect to the WhatsApp Business app and a business solution.",
    ),
    (
        "2655095",
        "This phone number isn't registered on the WhatsApp Business app.",
    ),
    (
        "2655048",
        "This phone number isn't a WhatsApp Business app number.",
    ),
    (
        "3441042",
        "Connecting a WhatsApp Business app number isn't available in this region yet.",
    ),
    (
        "2655093",
        "This WhatsApp Business app number is already shared with another business solution provider.",
    ),
    (
        "3441049",
        "Disconnect your current business solution, then wait 15 minutes and try again.",
    ),
    (
        "2655094",
        "Disconnect your current business solution, then wait 15 minutes and try again.",
    ),
    (
        "4563015",
        "Update the WhatsApp Business app to the latest version and try again.",
    ),
    (
        "3441047",
        "This WhatsApp Business Account uses marketing messages and can't be onboarded this way.",
    ),
    (
        "2593037",
        "The verification code couldn't be sent. Try again later.",
    ),
    ("2593039", "The verification code is incorrect."),
    (
        "2494158",
        "Too many verification codes were requested. Try again later.",
    ),
    (
        "2388091",
        "The verification code has expired. Request a new one.",
    ),
    ("2388093", "The phone number couldn't be verified."),
    ("3441033", "You're doing this too often. Try again later."),
    ("3441046", "Too many attempts. Try again later."),
    ("1675004", "Too many requests. Try again later."),
    (
        "2655049",
        "This account is already shared with another business.",
    ),
    (
        "2494028",
        "This WhatsApp Business Account is already shared with this app.",
    ),
    (
        "2388098",
        "This business portfolio has reached its limit of WhatsApp Business Accounts.",
    ),
];

/// The text of a numeric ES error code, `None` for a code Meta does not document.
pub(crate) fn es_error_text(code: &str) -> Option<&'static str> {
    ES_ERRORS.iter().find(|(c, _)| *c == code).map(|(_, t)| *t)
}

/// The FINISH message of a completed signup (`event.data`, parsed), in the variant of its
/// completion (META_2026.md §1.3): `FINISH` (verified or unverified number), `FINISH` without
/// `phone_number_id` or `FINISH_ONLY_WABA` (no number, per `no_number_event`),
/// `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING` with only `waba_id` and `version: 3` (Meta's
/// example), `FINISH_GRANT_ONLY_API_ACCESS` (app-only).
pub(crate) fn finish_message(created: &Created, no_number_event: &str) -> Value {
    match created.completion {
        Completion::Verified | Completion::Unverified => json!({
            "data": {
                "phone_number_id": created.phone_number_id,
                "waba_id": created.waba_id,
                "business_id": created.business_id,
            },
            "type": "WA_EMBEDDED_SIGNUP",
            "event": "FINISH",
        }),
        Completion::NoNumber if no_number_event == "FINISH_ONLY_WABA" => json!({
            "data": {"waba_id": created.waba_id, "business_id": created.business_id},
            "type": "WA_EMBEDDED_SIGNUP",
            "event": "FINISH_ONLY_WABA",
            "version": 3,
        }),
        Completion::NoNumber => json!({
            "data": {"waba_id": created.waba_id, "business_id": created.business_id},
            "type": "WA_EMBEDDED_SIGNUP",
            "event": "FINISH",
        }),
        Completion::Coexistence => json!({
            "data": {"waba_id": created.waba_id},
            "type": "WA_EMBEDDED_SIGNUP",
            "event": "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING",
            "version": 3,
        }),
        Completion::AppOnly => json!({
            "data": {
                "phone_number_id": created.phone_number_id,
                "waba_id": created.waba_id,
                "business_id": created.business_id,
            },
            "type": "WA_EMBEDDED_SIGNUP",
            "event": "FINISH_GRANT_ONLY_API_ACCESS",
        }),
    }
}

/// Whether the extras ask for an app-only install (`features: [{name: "app_only_install"}]`).
pub(crate) fn wants_app_only(extras: &Value) -> bool {
    extras
        .get("features")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x["name"] == "app_only_install"))
}

/// A fresh session id (dialog sessions, user-reported problems).
pub(crate) fn session_id() -> String {
    let mut rng = rand::rng();
    (0..15)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

impl World {
    /// Adds a WhatsApp Business app number to a WABA as a coexistence signup leaves it
    /// (META_2026.md §1.4, §2): already registered (`CONNECTED`), verified, `is_on_biz_app`,
    /// `platform_type` `CLOUD_API`, 20 messages per second. Returns false when the WABA does
    /// not exist. The coexistence area owns what follows (sync calls, history, echoes).
    pub(crate) fn create_coexistence_number(
        &mut self,
        waba_id: &str,
        id: &str,
        display_phone_number: &str,
        verified_name: &str,
    ) -> bool {
        let Some(waba) = self.waba_mut(waba_id) else {
            return false;
        };
        waba.phone_numbers.push(PhoneSeed {
            id: id.to_owned(),
            display_phone_number: display_phone_number.to_owned(),
            verified_name: verified_name.to_owned(),
            name_status: "APPROVED".to_owned(),
            status: "CONNECTED".to_owned(),
            quality_rating: "GREEN".to_owned(),
            messaging_limit: "TIER_250".to_owned(),
            throughput_mps: 20,
            code_verification_status: "VERIFIED".to_owned(),
            is_on_biz_app: true,
        });
        self.profiles.insert(
            id.to_owned(),
            json!({
                "messaging_product": "whatsapp", "about": "", "address": "", "description": "",
                "email": "", "profile_picture_url": "", "websites": [], "vertical": "OTHER",
            }),
        );
        true
    }
}

// ---- control API ----------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BusinessIn {
    id: Option<String>,
    name: Option<String>,
    website: Option<String>,
    country: Option<String>,
    address: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WabaIn {
    id: Option<String>,
    name: Option<String>,
    /// A new WABA's time zone: Meta's numeric `timezone_id` (default "1").
    timezone_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProfileIn {
    display_name: Option<String>,
    vertical: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PhoneIn {
    id: Option<String>,
    display_phone_number: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SignupIn {
    business: Option<BusinessIn>,
    waba: Option<WabaIn>,
    profile: Option<ProfileIn>,
    phone_number: Option<PhoneIn>,
    cancel_at: Option<String>,
    report_problem: Option<String>,
    /// `verified` (default), `unverified`, `no_number`, `app_only` or `coexistence`.
    completion: Option<String>,
    /// With `report_problem`: the numeric ES error code (META_2026.md §1.3); `524126` when absent.
    error_code: Option<String>,
    /// The `extras` a page would have sent (recorded for `GET /sandbox/signups`).
    extras: Option<Value>,
    /// With `"completion": "coexistence"`: the app's contacts, chats and history setting.
    coexistence: Option<crate::coexist::AppSetup>,
}

fn field_errors(errors: Vec<FieldError>) -> GraphError {
    let text: Vec<String> = errors
        .into_iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect();
    GraphError::invalid_param(text.join(" "))
}

/// Turns the JSON body into validated choices, filling defaults (create everything).
fn choices_from(state: &World, input: SignupIn) -> Result<Choices, GraphError> {
    let business_in = input.business.unwrap_or_default();
    let business = match business_in {
        BusinessIn {
            id: Some(id),
            name: None,
            website: None,
            country: None,
            address: None,
        } => Pick::Existing(id),
        BusinessIn { id: Some(_), .. } => {
            return Err(GraphError::invalid_param(
                "business: give either {\"id\"} of an existing portfolio or the new one's name, website, country and address.",
            ));
        }
        BusinessIn {
            name,
            website,
            country,
            address,
            ..
        } => {
            let name = name.unwrap_or_else(|| {
                format!(
                    "Sandbox Company {}",
                    &session_id()[..4].to_ascii_uppercase()
                )
            });
            let website = website.unwrap_or_else(|| "https://www.example.com".to_owned());
            let country = country.unwrap_or_else(|| "US".to_owned());
            Pick::New(
                validate_business(&name, &website, &country, address.as_deref())
                    .map_err(field_errors)?,
            )
        }
    };
    let default_name = match &business {
        Pick::Existing(id) => match state.business(id) {
            Some(b) => b.name.clone(),
            None => {
                return Err(GraphError::invalid_param(format!(
                    "Business portfolio {id} does not exist."
                )));
            }
        },
        Pick::New(new) => new.name.clone(),
    };
    let waba_in = input.waba.unwrap_or_default();
    let waba_timezone = match waba_in.timezone_id.as_deref() {
        None => None,
        Some(_) if waba_in.id.is_some() => {
            return Err(GraphError::invalid_param(
                "waba: an existing account keeps its time zone; give timezone_id only with a new one.",
            ));
        }
        Some(id) => Some(validate_timezone_id(id).map_err(field_errors)?),
    };
    let waba = match waba_in {
        WabaIn {
            id: Some(id),
            name: None,
            ..
        } => Pick::Existing(id),
        WabaIn { id: Some(_), .. } => {
            return Err(GraphError::invalid_param(
                "waba: give either {\"id\"} of an existing account or {\"name\"} of a new one.",
            ));
        }
        WabaIn { name, .. } => Pick::New(
            validate_waba_name(name.as_deref().unwrap_or(&default_name)).map_err(field_errors)?,
        ),
    };
    let profile = input.profile.unwrap_or_default();
    let completion = match input.completion.as_deref() {
        None => Completion::Verified,
        Some(name) => Completion::parse(name).ok_or_else(|| {
            GraphError::invalid_param(format!(
                "completion must be one of {} - got {name:?}.",
                Completion::NAMES.join(", ")
            ))
        })?,
    };
    if completion == Completion::NoNumber {
        if input.phone_number.is_some() || profile.display_name.is_some() {
            return Err(GraphError::invalid_param(
                "completion no_number finishes without a number: give no phone_number and no profile.",
            ));
        }
        return Ok(Choices {
            business,
            waba,
            waba_timezone,
            phone: None,
            completion,
        });
    }
    let phone_in = input.phone_number.unwrap_or_default();
    if phone_in.id.is_some()
        && matches!(completion, Completion::Unverified | Completion::Coexistence)
    {
        return Err(GraphError::invalid_param(format!(
            "completion {} enters a new number: give no phone_number id.",
            completion.name()
        )));
    }
    let phone = match phone_in {
        PhoneIn {
            id: Some(id),
            display_phone_number: None,
        } if profile.display_name.is_none() && profile.vertical.is_none() => Pick::Existing(id),
        PhoneIn { id: Some(_), .. } => {
            return Err(GraphError::invalid_param(
                "phone_number: an existing number ({\"id\"}) keeps its profile; give no display_phone_number and no profile with it.",
            ));
        }
        PhoneIn {
            display_phone_number,
            ..
        } => {
            let display_phone_number = match display_phone_number {
                Some(number) => validate_phone_number(state, &number).map_err(field_errors)?,
                None => new_display_number(state),
            };
            let default_display = match &waba {
                Pick::New(name) => name.clone(),
                Pick::Existing(id) => state
                    .waba(id)
                    .map_or_else(|| default_name.clone(), |w| w.name.clone()),
            };
            let (display_name, vertical) = validate_profile(
                profile.display_name.as_deref().unwrap_or(&default_display),
                profile.vertical.as_deref().unwrap_or("OTHER"),
            )
            .map_err(field_errors)?;
            Pick::New(NewPhone {
                display_phone_number,
                display_name,
                vertical,
            })
        }
    };
    Ok(Choices {
        business,
        waba,
        waba_timezone,
        phone: Some(phone),
        completion,
    })
}

type Answer = Result<Response, GraphError>;

fn ok(value: Value) -> Answer {
    Ok(Json(value).into_response())
}

/// `POST /sandbox/signup`: a whole Embedded Signup without a browser.
pub(crate) async fn signup(State(sandbox): State<Sandbox>, body: Body) -> Answer {
    let mut input: SignupIn = json_body(body).await?;
    let now_ms = sandbox.inner.clock.now_ms();
    if let Some(step) = input.cancel_at.take() {
        if step == FINAL_STEP {
            return Err(GraphError::invalid_param(
                "Leaving the final screen (QUOTAS) is a finish, not a cancel.",
            ));
        }
        if !STEPS.contains(&step.as_str()) {
            return Err(GraphError::invalid_param(format!(
                "cancel_at must be one of {} - got {step:?}.",
                STEPS
                    .iter()
                    .filter(|s| **s != FINAL_STEP)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return ok(cancel_message(&step));
    }
    if let Some(message) = input.report_problem.take() {
        let code = input.error_code.as_deref().unwrap_or(PROBLEM_CODE);
        if es_error_text(code).is_none() {
            return Err(GraphError::invalid_param(format!(
                "error_code must be one of Meta's Embedded Signup codes ({}) - got {code:?}.",
                ES_ERRORS
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return ok(problem_message(
            &message,
            code,
            &session_id(),
            now_ms.div_euclid(1000),
        ));
    }
    let extras = input.extras.take().unwrap_or_else(|| json!({"setup": {}}));
    let app_setup = input.coexistence.take();
    let (created, code, message) = {
        let mut state = sandbox.inner.lock();
        let mut choices = choices_from(&state, input)?;
        if extras_flavour(&extras) == "v4" && wants_app_only(&extras) {
            choices.completion = Completion::AppOnly;
        }
        if app_setup.is_some() && choices.completion != Completion::Coexistence {
            return Err(GraphError::invalid_param(
                "coexistence: the app's setup goes with \"completion\": \"coexistence\".",
            ));
        }
        let created = create(&mut state, now_ms, &choices)?;
        if let (Some(setup), Some(phone_id)) = (app_setup, created.phone_number_id.as_deref()) {
            // The app's own contacts, chats and history setting, as the caller described them.
            crate::coexist::onboard_app_number(&mut state, now_ms, phone_id, setup)?;
        }
        let code = mint_code(&mut state, now_ms, &created);
        let message = finish_message(&created, &state.config.behaviour.no_number_event);
        log_signup(
            &mut state,
            SignupRecord {
                session: "headless".to_owned(),
                at_ms: now_ms,
                flavour: extras_flavour(&extras),
                extras,
                event: message["event"].as_str().map(str::to_owned),
                completion: Some(created.completion.name()),
            },
        );
        (created, code, message)
    };
    sandbox.inner.wake.notify_one();
    ok(json!({
        "code": code,
        "waba_id": created.waba_id,
        "phone_number_id": created.phone_number_id,
        "business_id": created.business_id,
        "event": message["event"],
        "message": message,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewIn {
    waba_id: String,
    decision: String,
    reason: Option<String>,
}

/// `POST /sandbox/review`: Meta's review decides now.
pub(crate) async fn review(State(sandbox): State<Sandbox>, body: Body) -> Answer {
    let input: ReviewIn = json_body(body).await?;
    let decision = input.decision.to_ascii_uppercase();
    if !matches!(decision.as_str(), "APPROVED" | "REJECTED" | "DEFERRED") {
        return Err(GraphError::invalid_param(format!(
            "decision must be APPROVED, REJECTED or DEFERRED - got {:?}.",
            input.decision
        )));
    }
    let now_ms = sandbox.inner.clock.now_ms();
    {
        let mut state = sandbox.inner.lock();
        let events = decide(
            &mut state,
            &input.waba_id,
            &decision,
            input.reason.as_deref(),
        )?;
        for event in events {
            state.schedule(now_ms, "", event);
        }
    }
    sandbox.inner.wake.notify_one();
    ok(json!({ "waba_id": input.waba_id, "account_review_status": decision }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitIn {
    limit: String,
    event: Option<String>,
}

/// `POST /sandbox/phone_numbers/{id}/limit`: Meta moves the number to another tier.
pub(crate) async fn phone_limit(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let input: LimitIn = json_body(body).await?;
    let limit = input.limit.to_ascii_uppercase();
    let event = input
        .event
        .map_or_else(|| "ONBOARDING".to_owned(), |e| e.to_ascii_uppercase());
    let now_ms = sandbox.inner.clock.now_ms();
    let old = {
        let mut state = sandbox.inner.lock();
        let (old, events) = set_limit(&mut state, &id, &limit, &event)?;
        for event in events {
            state.schedule(now_ms, "", event);
        }
        old
    };
    sandbox.inner.wake.notify_one();
    ok(json!({ "id": id, "old_limit": old, "current_limit": limit }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;

    #[test]
    fn business_form_errors_name_their_fields() {
        let errors = validate_business(" ", "example.com", "XX", None).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["business_name", "website", "country"]);
        let ok =
            validate_business("Acme", "https://acme.example", "de", Some("  ")).expect("valid");
        assert_eq!(ok.country, "DE");
        assert_eq!(ok.address, None);
    }

    #[test]
    fn codes_are_single_use_and_short_lived() {
        let mut state = World::new(SandboxConfig::demo());
        let created = Created {
            business_id: "b".into(),
            waba_id: "w".into(),
            phone_number_id: Some("p".into()),
            completion: Completion::Verified,
        };
        let app_id = state.config.app_id.clone();
        let secret = state.config.app_secret.clone();
        let code = mint_code(&mut state, 1_000, &created);
        let params = |code: String| {
            let app_id = app_id.clone();
            let secret = secret.clone();
            move |k: &str| match k {
                "client_id" => Some(app_id.clone()),
                "client_secret" => Some(secret.clone()),
                "code" => Some(code.clone()),
                _ => None,
            }
        };
        let late = exchange_code(&mut state, 1_000 + CODE_TTL_MS + 1, params(code.clone()));
        assert_eq!(
            late.expect_err("expired").message,
            "This authorization code has expired."
        );
        let code = mint_code(&mut state, 50_000, &created);
        assert!(exchange_code(&mut state, 50_000 + CODE_TTL_MS, params(code.clone())).is_ok());
        let again = exchange_code(&mut state, 50_001, params(code));
        assert_eq!(
            again.expect_err("used").message,
            "This authorization code has been used."
        );
    }
}
