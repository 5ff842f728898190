//! Marketing consent rules that need no I/O: opt-out keywords (configurable per application,
//! matched on the whole message after Unicode case folding and trimming) and the limits Meta
//! puts on marketing sends (131049 reschedules).

/// How many times a recipient Meta capped with 131049 (the per-user marketing limit) is
/// rescheduled before the message fails for good. Each reschedule waits
/// [`crate::MARKETING_LIMIT_DELAY`] (24 h, Meta's minimum), so a capped recipient is tried over
/// about three days; after that the campaign has usually moved on and the message fails with
/// Meta's 131049.
pub const MARKETING_CAP_RESCHEDULES: i64 = 3;

/// Hold reason of a message waiting after Meta's per-user marketing cap (131049).
pub const CAPPED_BY_META: &str = "capped_by_meta";

/// The send response's `message_status` for a send Meta holds (template or portfolio pacing).
pub const HELD_FOR_QUALITY_ASSESSMENT: &str = "held_for_quality_assessment";

/// The most opt-out keywords an application may configure, and the longest one.
pub const MAX_KEYWORDS: usize = 200;
pub const MAX_KEYWORD_CHARS: usize = 100;
/// The longest confirmation reply (a WhatsApp text body holds 4096 characters).
pub const MAX_REPLY_CHARS: usize = 4096;

/// The default opt-out keywords: English, Russian, German, Spanish, Portuguese, French and
/// Italian (plus the old English set). Stored folded.
pub const DEFAULT_OPT_OUT_KEYWORDS: &[&str] = &[
    // English
    "stop",
    "unsubscribe",
    "stop promotions",
    "opt out",
    "opt-out",
    "opt_out",
    "stop all",
    // Russian
    "стоп",
    "отписаться",
    "отписка",
    "отпишите",
    "остановить",
    // German
    "stopp",
    "abmelden",
    "abbestellen",
    // Spanish
    "baja",
    "darme de baja",
    "parar",
    "cancelar suscripción",
    // Portuguese
    "pare",
    "sair",
    "cancelar inscrição",
    "descadastrar",
    // French
    "arrêt",
    "arrêter",
    "désabonner",
    "se désabonner",
    "désinscrire",
    // Italian
    "basta",
    "disiscrivimi",
    "annulla iscrizione",
    "cancellami",
];

/// Opts back in (not configurable): the whole message `START`, any case.
pub const OPT_IN_KEYWORDS: &[&str] = &["start"];

/// The form keywords and messages are compared in: each character's Unicode lower case, with
/// the full case folds `char::to_lowercase` lacks for these languages (`ß` → `ss`, final
/// sigma), runs of white space as one space, and white space and the punctuation `. ! ?
/// ¡ ¿ "` trimmed from both ends. "  СТОП! " and "стоп" fold the same.
pub fn fold_keyword(s: &str) -> String {
    let trimmed = s.trim_matches(|c: char| {
        c.is_whitespace() || matches!(c, '.' | '!' | '?' | '¡' | '¿' | '"' | '\'' | '«' | '»')
    });
    let mut out = String::with_capacity(trimmed.len());
    let mut space = false;
    for c in trimmed.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        match c {
            'ß' | 'ẞ' => out.push_str("ss"),
            'ς' => out.push('σ'),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// A configured keyword list, checked and folded: `Err` names the first bad entry.
pub fn parse_keywords(list: &[String]) -> Result<Vec<String>, String> {
    if list.len() > MAX_KEYWORDS {
        return Err(format!("at most {MAX_KEYWORDS} keywords"));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, k) in list.iter().enumerate() {
        let folded = fold_keyword(k);
        if folded.is_empty() {
            return Err(format!("keyword {i} is empty"));
        }
        if folded.chars().count() > MAX_KEYWORD_CHARS {
            return Err(format!(
                "keyword {i} is longer than {MAX_KEYWORD_CHARS} characters"
            ));
        }
        if folded.chars().any(char::is_control) {
            return Err(format!("keyword {i} holds a control character"));
        }
        if !out.contains(&folded) {
            out.push(folded);
        }
    }
    Ok(out)
}

/// What a whole inbound message means for the marketing subscription: `Some(false)` opts out
/// (it is one of `opt_out`, folded), `Some(true)` opts back in (`START`), `None` neither. A
/// keyword inside a longer message ("please stop calling") does not count.
pub fn keyword_match(opt_out: &[String], message: &str) -> Option<bool> {
    let folded = fold_keyword(message);
    if folded.is_empty() {
        return None;
    }
    if opt_out.iter().any(|k| fold_keyword(k) == folded) {
        return Some(false);
    }
    OPT_IN_KEYWORDS.iter().any(|k| *k == folded).then_some(true)
}

/// The default keyword list, owned.
pub fn default_keywords() -> Vec<String> {
    DEFAULT_OPT_OUT_KEYWORDS
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_space_and_punctuation() {
        assert_eq!(fold_keyword("  СТОП! "), "стоп");
        assert_eq!(fold_keyword("Отписаться"), "отписаться");
        assert_eq!(fold_keyword("ABMELDEN"), "abmelden");
        assert_eq!(fold_keyword("Straße"), "strasse");
        assert_eq!(fold_keyword("Se   DÉSABONNER."), "se désabonner");
        assert_eq!(fold_keyword("¡BAJA!"), "baja");
    }

    #[test]
    fn whole_message_matches_only() {
        let d = default_keywords();
        assert_eq!(keyword_match(&d, "стоп"), Some(false));
        assert_eq!(keyword_match(&d, "ОТПИСАТЬСЯ"), Some(false));
        assert_eq!(keyword_match(&d, " Stop "), Some(false));
        assert_eq!(keyword_match(&d, "Cancelar Inscrição"), Some(false));
        assert_eq!(keyword_match(&d, "ANNULLA ISCRIZIONE"), Some(false));
        assert_eq!(keyword_match(&d, "START"), Some(true));
        assert_eq!(keyword_match(&d, "stop it"), None);
        assert_eq!(keyword_match(&d, "please стоп"), None);
        assert_eq!(keyword_match(&d, ""), None);
        // Every default is stored folded, so a configured list and the defaults compare alike.
        for k in DEFAULT_OPT_OUT_KEYWORDS {
            assert_eq!(&fold_keyword(k), k);
        }
    }

    #[test]
    fn configured_lists_are_checked() {
        assert_eq!(
            parse_keywords(&["  HALT ".into(), "halt".into(), "Нет".into()]).unwrap(),
            ["halt", "нет"]
        );
        assert!(parse_keywords(&["  ".into()]).is_err());
        assert!(parse_keywords(&["a\u{7}b".into()]).is_err());
        assert!(parse_keywords(&vec!["x".into(); MAX_KEYWORDS + 1]).is_err());
    }
}
