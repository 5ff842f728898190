//! Parley's vocabulary: ids, phone numbers, templates, personalization and message rules.
//! Pure types and rules with no I/O and no async, so every other crate can trust a parsed value.

pub mod access;
pub mod binding;
pub mod bsuid;
pub mod consent;
pub mod ids;
pub mod inbound;
pub mod lifecycle;
pub mod meta_error;
pub mod personalize;
pub mod phone;
pub mod pricing;
pub mod quota;
pub mod role;
pub mod segment;
pub mod send_window;
pub mod state;
pub mod tags;
pub mod template;
pub mod template_rules;
pub mod waba_zone;
pub mod window;

pub use access::*;
pub use binding::*;
pub use bsuid::*;
pub use ids::*;
pub use inbound::*;
pub use lifecycle::*;
pub use meta_error::*;
pub use personalize::*;
pub use phone::*;
pub use role::{Role, RoleError};
pub use segment::*;
pub use send_window::{SendWindow, SendWindowError, known_timezone, next_opening};
pub use state::*;
pub use tags::*;
pub use template::*;
pub use template_rules::*;
pub use window::*;

/// Shortens user input quoted back in error messages so a megabyte of junk
/// does not become a megabyte of error.
pub(crate) fn excerpt(input: &str) -> std::borrow::Cow<'_, str> {
    const MAX_CHARS: usize = 64;
    match input.char_indices().nth(MAX_CHARS) {
        None => std::borrow::Cow::Borrowed(input),
        Some((byte, _)) => std::borrow::Cow::Owned(format!("{}…", &input[..byte])),
    }
}
