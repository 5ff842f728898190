//! Parley's HTTP API end to end: real server, real SQLite file, real sandbox over HTTP.

mod bad_input;
mod browser;
mod console;
mod helpers;
mod operations;
mod platforms;
mod sending;
mod templates;
mod webhooks;
