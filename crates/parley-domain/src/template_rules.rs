//! Meta's rules for creating a message template, checked locally so the user gets every
//! field-level problem at once instead of one rejection per submission.
