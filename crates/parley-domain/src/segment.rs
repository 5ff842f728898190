//! Segments: a small filter language over contact tags (`city = "Berlin" and visits >= 3`).
//! Parsed once, evaluated in memory for previews and compiled to SQL by the stores.

/// A segment filter that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {position}: {message}")]
pub struct SegmentError {
    /// Character (not byte) offset in the input, counted from 0.
    pub position: usize,
    pub message: String,
}
