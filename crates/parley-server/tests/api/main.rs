//! Parley's HTTP API end to end: real server, real SQLite file (or PostgreSQL with
//! `PARLEY_TEST_BACKEND=postgres`), real sandbox over HTTP, real Chromium for the console.

mod access;
mod audience;
mod bad_input;
mod bounded;
mod browser;
mod campaigns;
mod campaigns_console;
mod coexistence;
mod consent;
mod console;
mod conversations;
mod cost;
mod dashboards;
mod events;
mod graph_versions;
mod helpers;
mod identity_bsuid;
mod imports;
mod inbound_kinds;
mod inbox_console;
mod inbox_load;
mod intake;
mod marketing_messages;
mod meta_stats;
mod operations;
mod pages;
mod people;
mod quota_person;
mod reach_metrics;
// The store suite's PostgreSQL harness (throwaway cluster or PARLEY_TEST_POSTGRES_URL).
#[allow(dead_code)]
#[path = "../../../parley-store/tests/store/pg.rs"]
mod pg;
mod platforms;
mod safe_defaults;
mod send_order;
mod sending;
mod signup_states;
mod stats;
mod templates;
mod tenancy;
mod webhooks;
