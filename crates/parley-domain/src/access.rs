//! What an API token may do: its scopes. `send` sends messages, `read` reads anything,
//! `manage` changes configuration, audience, campaigns, templates, platforms and tokens.

use std::fmt;

/// One permission of an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Send,
    Read,
    Manage,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Send, Scope::Read, Scope::Manage];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Manage => "manage",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        match s.trim() {
            "send" => Ok(Scope::Send),
            "read" => Ok(Scope::Read),
            "manage" => Ok(Scope::Manage),
            other => Err(ScopeError(crate::excerpt(other).into_owned())),
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Send => 1,
            Scope::Read => 2,
            Scope::Manage => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is none of `send`, `read`, `manage`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a scope: use send, read or manage")]
pub struct ScopeError(String);

/// A set of scopes; never empty once parsed (a token that may do nothing is refused).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope: what tokens made before scopes existed, and tokens made without a choice, get.
    pub const ALL: Scopes = Scopes(7);

    /// The set of these scopes; `Err` when empty.
    pub fn from_list(list: &[Scope]) -> Result<Scopes, ScopesError> {
        let bits = list.iter().fold(0, |b, s| b | s.bit());
        if bits == 0 {
            Err(ScopesError::Empty)
        } else {
            Ok(Scopes(bits))
        }
    }

    /// Parses names separated by spaces or commas, as stored (`"send read manage"`).
    pub fn parse(text: &str) -> Result<Scopes, ScopesError> {
        let list = text
            .split([' ', ','])
            .filter(|s| !s.trim().is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ScopesError::Unknown)?;
        Scopes::from_list(&list)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The names in a fixed order, e.g. `["send", "read"]`.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

impl fmt::Display for Scopes {
    /// As stored: names in a fixed order, separated by one space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(" "))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopesError {
    #[error("a token needs at least one scope: send, read or manage")]
    Empty,
    #[error(transparent)]
    Unknown(ScopeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_print_and_refuse_nonsense() {
        let s = Scopes::parse("manage, send").unwrap();
        assert_eq!(s.to_string(), "send manage");
        assert!(s.contains(Scope::Send) && s.contains(Scope::Manage));
        assert!(!s.contains(Scope::Read));
        assert_eq!(
            Scopes::parse(&Scopes::ALL.to_string()).unwrap(),
            Scopes::ALL
        );
        assert_eq!(Scopes::parse(""), Err(ScopesError::Empty));
        assert_eq!(
            Scopes::parse("read admin").unwrap_err().to_string(),
            "`admin` is not a scope: use send, read or manage"
        );
    }
}
