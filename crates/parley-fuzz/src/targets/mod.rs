//! The fuzz targets, one per parser of untrusted input.

pub mod import;
pub mod personalize;
pub mod segment;
pub mod webhook;
