//! The OpenAPI document, generated from the handlers' annotations so it cannot drift.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes::{
    applications, audit, campaigns, consent, contacts, conversations, event_endpoints, health,
    messages, meta_stats, personalize, phone_numbers, platforms, pricing, segments, stats,
    templates, tokens, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Parley API",
        description = "Send personalized WhatsApp messages through Meta's Cloud API and follow them to `read`. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`; lists use `?limit&after` cursors. Each operation's `security` names the token scope it needs (`send`, `read` or `manage`): a token without it gets 403 `insufficient_scope`; an expired or revoked token gets 401; each token is rate limited (429 `rate_limited` with `Retry-After`).",
        license(name = "Apache-2.0")
    ),
    paths(
        conversations::list_conversations,
        conversations::get_conversation,
        conversations::thread,
        conversations::reply,
        conversations::mark_read,
        conversations::typing,
        conversations::put_assignee,
        messages::send_message,
        messages::get_message,
        messages::list_messages,
        campaigns::create_campaign,
        campaigns::list_campaigns,
        campaigns::get_campaign,
        campaigns::plan_campaign,
        campaigns::campaign_stats,
        campaigns::start_campaign,
        campaigns::pause_campaign,
        campaigns::resume_campaign,
        campaigns::cancel_campaign,
        phone_numbers::list_phone_numbers,
        applications::list_applications,
        applications::create_application,
        platforms::signup,
        platforms::list_platforms,
        platforms::get_platform,
        platforms::update_platform,
        platforms::refresh_platform,
        platforms::retry_platform,
        platforms::request_code,
        platforms::verify_code,
        platforms::add_phone_number,
        platforms::disconnect_platform,
        templates::list_templates,
        templates::sync_templates,
        templates::get_template,
        templates::create_template,
        templates::edit_template,
        templates::delete_template,
        templates::delete_templates_by_name,
        templates::upload_media,
        webhooks::verify,
        webhooks::receive,
        contacts::put_contact,
        contacts::get_contact,
        contacts::contact_messages,
        contacts::delete_contact,
        contacts::list_contacts,
        contacts::start_import,
        contacts::resume_import,
        contacts::list_imports,
        contacts::get_import,
        contacts::rejected_rows,
        consent::get_opt_out,
        consent::put_opt_out,
        segments::list_segments,
        segments::create_segment,
        segments::get_segment,
        segments::delete_segment,
        segments::preview_segment,
        personalize::preview,
        tokens::list_tokens,
        tokens::create_token,
        tokens::revoke_token,
        audit::list_audit,
        stats::get_stats,
        stats::export_stats,
        stats::export_campaign,
        meta_stats::get_meta_stats,
        pricing::get_rates,
        pricing::put_rates,
        pricing::reset_rates,
        event_endpoints::list_endpoints,
        event_endpoints::create_endpoint,
        event_endpoints::get_endpoint,
        event_endpoints::update_endpoint,
        event_endpoints::delete_endpoint,
        event_endpoints::rotate_secret,
        event_endpoints::list_deliveries,
        event_endpoints::replay_delivery,
        event_endpoints::replay_range,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    components(schemas(ErrorBody, ErrorDetail, event_endpoints::EventPayload)),
    modifiers(&BearerAuth, &QueryErrors),
    tags(
        (name = "messages", description = "Single sends and their delivery states"),
        (name = "conversations", description = "The inbox: conversations per contact, threads, replies, read receipts, typing, assignment"),
        (name = "contacts", description = "Contacts with typed tags, imports, erasure and personalization previews"),
        (name = "segments", description = "Filters over contact tags, saved with live counts"),
        (name = "campaigns", description = "One template to an audience, planned against Meta's messaging limit, with live statistics"),
        (name = "templates", description = "Message templates: synced from Meta, created, edited and deleted through it"),
        (name = "phone numbers", description = "The application's WhatsApp numbers"),
        (name = "platforms", description = "WhatsApp Business Accounts connected with Embedded Signup"),
        (name = "tokens", description = "The application's API tokens: scopes `send`, `read`, `manage`, expiry, revocation"),
        (name = "statistics", description = "Counts per hour, day, week or month from counters kept as events are applied; CSV exports"),
        (name = "events", description = "Event webhooks to your systems (Standard Webhooks): endpoints, deliveries with every attempt, replays"),
        (name = "audit", description = "Who changed what, when and from where"),
        (name = "webhooks", description = "Meta's webhook endpoint"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every operation that reads a query string answers 400 `invalid_query` when the string does
/// not parse (`crate::error::Query`): a number that is no number, a repeated parameter. Added
/// here for every operation with a query parameter, so a new route cannot leave it out; a
/// route's own 400 keeps its description with this one appended.
struct QueryErrors;

/// What the added or extended 400 says.
pub const INVALID_QUERY: &str = "`invalid_query`: the query string does not parse (a parameter of the wrong type, a repeated parameter); `field` names the parameter when it can";

impl Modify for QueryErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                document_invalid_query(op);
            }
        }
    }
}

fn document_invalid_query(op: &mut Operation) {
    let reads_query = op.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => matches!(
            p.parameter_in,
            ParameterIn::Query | ParameterIn::QueryString
        ),
        RefOr::Ref(_) => false,
    });
    if !reads_query {
        return;
    }
    let error_body = || {
        RefOr::T(Content::new(Some(
            RefOr::<utoipa::openapi::schema::Schema>::Ref(Ref::from_schema_name("ErrorBody")),
        )))
    };
    match op.responses.responses.get_mut("400") {
        Some(RefOr::T(r)) => {
            if !r.description.contains("invalid_query") {
                r.description = if r.description.trim().is_empty() {
                    INVALID_QUERY.to_owned()
                } else {
                    format!(
                        "{}; or {INVALID_QUERY}",
                        r.description.trim_end_matches('.')
                    )
                };
            }
            r.content
                .entry("application/json".to_owned())
                .or_insert_with(error_body);
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let mut r = Response::new(INVALID_QUERY);
            r.content
                .insert("application/json".to_owned(), error_body());
            op.responses.responses.insert("400".to_owned(), RefOr::T(r));
        }
    }
}
