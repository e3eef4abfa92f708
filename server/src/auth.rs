//! Bearer-token authentication. Each token grants access to a list of
//! workspaces (or all of them). Tokens are compared in constant time and
//! never logged.

use subtle::ConstantTimeEq;

/// Workspaces a token may open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    All,
    Only(Vec<String>),
}

impl Access {
    pub fn allows(&self, workspace: &str) -> bool {
        match self {
            Access::All => true,
            Access::Only(list) => list.iter().any(|w| w == workspace),
        }
    }
}

#[derive(Clone)]
struct Entry {
    token: Vec<u8>,
    access: Access,
}

/// The configured tokens. Empty means authentication is off, which the
/// configuration allows only on loopback listen addresses.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

/// Reason a session was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
    #[error("this token does not grant access to workspace {0:?}")]
    Forbidden(String),
}

impl Tokens {
    /// Parses the token file format: one `TOKEN WORKSPACE[,WORKSPACE...]`
    /// entry per line (`*` grants every workspace); `;` also separates
    /// entries so the format fits in one environment variable. Blank lines
    /// and lines starting with `#` are ignored. Errors name the line number,
    /// never the token.
    pub fn parse(text: &str, source: &str) -> Result<Tokens, Vec<String>> {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for (index, line) in text.lines().enumerate() {
            for entry in line.split(';') {
                let entry = entry.trim();
                if entry.is_empty() || entry.starts_with('#') {
                    continue;
                }

                let mut fields = entry.split_whitespace();
                let token = fields.next().unwrap_or_default();
                let Some(list) = fields.next() else {
                    errors.push(format!(
                        "{source} line {}: missing workspace list; expected `TOKEN WORKSPACE[,WORKSPACE...]` or `TOKEN *`",
                        index + 1
                    ));
                    continue;
                };
                if fields.next().is_some() {
                    errors.push(format!(
                        "{source} line {}: unexpected text after the workspace list",
                        index + 1
                    ));
                    continue;
                }
                if token.len() < 16 {
                    errors.push(format!(
                        "{source} line {}: token shorter than 16 characters",
                        index + 1
                    ));
                    continue;
                }

                let access = if list == "*" {
                    Access::All
                } else {
                    Access::Only(
                        list.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    )
                };
                entries.push(Entry {
                    token: token.as_bytes().to_vec(),
                    access,
                });
            }
        }
        if errors.is_empty() {
            Ok(Tokens { entries })
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the entries of `other`.
    pub fn extend(&mut self, other: Tokens) {
        self.entries.extend(other.entries);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns what a presented token (the value after `Bearer `) grants.
    /// With no tokens configured everything is allowed.
    pub fn access(&self, presented: Option<&str>) -> Result<Access, AuthError> {
        if self.entries.is_empty() {
            return Ok(Access::All);
        }
        let presented = presented.ok_or(AuthError::Missing)?.as_bytes();

        // Compare against every entry so the time taken does not reveal
        // which entry, if any, matched.
        let mut matched: Option<&Access> = None;
        for entry in &self.entries {
            if bool::from(entry.token.ct_eq(presented)) && matched.is_none() {
                matched = Some(&entry.access);
            }
        }
        matched.cloned().ok_or(AuthError::Invalid)
    }

    /// Checks a presented token for one workspace.
    pub fn authorize(&self, presented: Option<&str>, workspace: &str) -> Result<(), AuthError> {
        if self.access(presented)?.allows(workspace) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(workspace.to_owned()))
        }
    }
}

/// Extracts the token from an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHA: &str = "alpha-token-0123456789";
    const ROOT: &str = "root-token-0123456789ab";

    fn tokens() -> Tokens {
        Tokens::parse(
            &format!("# comment\n{ALPHA} alpha,beta\n\n{ROOT} *"),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn authorizes_by_workspace() {
        let t = tokens();
        assert_eq!(t.authorize(Some(ALPHA), "alpha"), Ok(()));
        assert_eq!(t.authorize(Some(ALPHA), "beta"), Ok(()));
        assert_eq!(
            t.authorize(Some(ALPHA), "gamma"),
            Err(AuthError::Forbidden("gamma".into()))
        );
        assert_eq!(t.authorize(Some(ROOT), "gamma"), Ok(()));
        assert_eq!(
            t.authorize(Some("wrong-token-0123456789"), "alpha"),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            t.authorize(Some(&ALPHA[..10]), "alpha"),
            Err(AuthError::Invalid)
        );
        assert_eq!(t.authorize(None, "alpha"), Err(AuthError::Missing));
    }

    #[test]
    fn empty_allows_all() {
        assert_eq!(Tokens::default().authorize(None, "x"), Ok(()));
    }

    #[test]
    fn parses_env_form() {
        let t = Tokens::parse(&format!("{ALPHA} alpha; {ROOT} *"), "env").unwrap();
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn reports_bad_lines_without_tokens() {
        let errors = Tokens::parse(
            "short *\nsecret-token-0123456789\nsecret-token-0123456789 a b",
            "f",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("line 1: token shorter"));
        assert!(errors[1].contains("line 2: missing workspace list"));
        assert!(errors[2].contains("line 3: unexpected text"));
        assert!(errors.iter().all(|e| !e.contains("secret")), "{errors:?}");
    }

    #[test]
    fn parses_bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }
}
