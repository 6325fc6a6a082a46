//! `WWW-Authenticate` challenges (RFC 7235 §4.1).
//!
//! One header value may hold several challenges:
//!
//! ```text
//! Basic realm="simple", Bearer realm="https://auth.docker.io/token",service="registry.docker.io"
//! ```
//!
//! The parser is lenient: scheme names are matched case-insensitively, parameter
//! names are lowercased, whitespace around `=` and `,` is optional, quoted strings
//! may hold commas and backslash escapes, unquoted values may hold characters a
//! strict token would not (`realm=https://auth.example/token`), a token68 form
//! (`Basic YWxhZGRpbg==`) is skipped, and anything it cannot make sense of is
//! dropped rather than failing: it never panics and returns what it could parse.

use std::fmt;

/// The scheme of an auth challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    Basic,
    Bearer,
    /// Any other scheme, as sent.
    Other(String),
}

impl AuthScheme {
    /// The scheme for a name as sent, case-insensitively.
    pub fn from_name(name: &str) -> Self {
        if name.eq_ignore_ascii_case("basic") {
            AuthScheme::Basic
        } else if name.eq_ignore_ascii_case("bearer") {
            AuthScheme::Bearer
        } else {
            AuthScheme::Other(name.to_owned())
        }
    }

    /// The scheme's name: `Basic`, `Bearer`, or another scheme as sent.
    pub fn as_str(&self) -> &str {
        match self {
            AuthScheme::Basic => "Basic",
            AuthScheme::Bearer => "Bearer",
            AuthScheme::Other(name) => name,
        }
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One challenge from a `WWW-Authenticate` header. Parameter names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: AuthScheme,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses every challenge in one header value. Never fails: what cannot be
    /// parsed is skipped.
    pub fn parse_all(header: &str) -> Vec<Challenge> {
        Parser::new(header).challenges()
    }

    /// Parses every `WWW-Authenticate` header in `headers`, in order. Values that
    /// are not valid UTF-8 are skipped.
    pub fn from_headers(headers: &http::HeaderMap) -> Vec<Challenge> {
        headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(Challenge::parse_all)
            .collect()
    }

    /// The challenge callers should answer: the first `Bearer` one, else the
    /// first `Basic` one, else the first of any scheme.
    pub fn preferred(challenges: &[Challenge]) -> Option<&Challenge> {
        challenges
            .iter()
            .find(|c| c.is_bearer())
            .or_else(|| challenges.iter().find(|c| c.is_basic()))
            .or_else(|| challenges.first())
    }

    /// Whether this is a `Bearer` challenge (a token service to ask).
    pub fn is_bearer(&self) -> bool {
        self.scheme == AuthScheme::Bearer
    }

    /// Whether this is a `Basic` challenge (send username and password).
    pub fn is_basic(&self) -> bool {
        self.scheme == AuthScheme::Basic
    }

    /// A parameter's value; names match case-insensitively.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    pub fn service(&self) -> Option<&str> {
        self.param("service")
    }

    pub fn scope(&self) -> Option<&str> {
        self.param("scope")
    }

    /// The `error` parameter (RFC 6750), e.g. `insufficient_scope`.
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }
}

/// `tchar` of RFC 7230.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// The characters of a token68 before its trailing `=`s.
fn is_token68_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/".contains(c)
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser { input, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat_while(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !pred(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.input[start..self.pos]
    }

    fn skip_ws(&mut self) {
        self.eat_while(is_ws);
    }

    fn skip_ws_and_commas(&mut self) {
        self.eat_while(|c| is_ws(c) || c == ',');
    }

    fn at_end_of_item(&self) -> bool {
        matches!(self.peek(), None | Some(','))
    }

    /// Skips to the next comma that is not inside a quoted string.
    fn skip_garbage(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ',' => break,
                '"' => {
                    self.quoted_string();
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn challenges(mut self) -> Vec<Challenge> {
        let mut out = Vec::new();
        loop {
            self.skip_ws_and_commas();
            if self.peek().is_none() {
                return out;
            }
            let scheme = self.eat_while(is_tchar);
            if scheme.is_empty() {
                // Not a scheme; the first character is neither `,` nor
                // whitespace, so this always makes progress.
                self.skip_garbage();
                continue;
            }
            let mut challenge = Challenge {
                scheme: AuthScheme::from_name(scheme),
                params: Vec::new(),
            };
            match self.peek() {
                None | Some(',') => {}
                Some(c) if is_ws(c) => {
                    self.skip_ws();
                    self.token68();
                    self.params(&mut challenge.params);
                }
                // Something glued to the scheme, e.g. `Bearer=x`: not a challenge.
                Some(_) => {
                    self.skip_garbage();
                    continue;
                }
            }
            out.push(challenge);
        }
    }

    /// Skips a token68 (`Basic YWxhZGRpbg==`) when one follows the scheme.
    fn token68(&mut self) {
        let start = self.pos;
        let body = self.eat_while(is_token68_char);
        if !body.is_empty() {
            self.eat_while(|c| c == '=');
            self.skip_ws();
            if self.at_end_of_item() {
                return;
            }
        }
        self.pos = start;
    }

    /// Whether an `auth-param` (`name =`) starts here.
    fn looks_like_param(&self) -> bool {
        let mut probe = Parser {
            input: self.input,
            pos: self.pos,
        };
        if probe.eat_while(is_tchar).is_empty() {
            return false;
        }
        probe.skip_ws();
        probe.peek() == Some('=')
    }

    /// Reads parameters up to the start of the next challenge or the end.
    fn params(&mut self, params: &mut Vec<(String, String)>) {
        loop {
            self.skip_ws();
            match self.peek() {
                None => return,
                Some(',') => {
                    self.skip_ws_and_commas();
                    if !self.looks_like_param() {
                        // A new challenge, or the end.
                        return;
                    }
                }
                Some(_) if self.looks_like_param() => {}
                Some(_) => {
                    self.skip_garbage();
                    continue;
                }
            }
            params.push(self.param());
        }
    }

    /// Reads `name BWS "=" BWS ( token / quoted-string )`; the caller checked
    /// that a name and `=` follow.
    fn param(&mut self) -> (String, String) {
        let name = self.eat_while(is_tchar).to_ascii_lowercase();
        self.skip_ws();
        self.bump(); // '='
        self.skip_ws();
        let value = if self.peek() == Some('"') {
            self.quoted_string()
        } else {
            self.eat_while(|c| !is_ws(c) && c != ',' && c != '"').to_owned()
        };
        (name, value)
    }

    /// Reads a quoted string starting at `"`, unescaping `\x`. An unterminated
    /// string runs to the end of the input.
    fn quoted_string(&mut self) -> String {
        self.bump(); // opening quote
        let mut value = String::new();
        while let Some(c) = self.bump() {
            match c {
                '"' => break,
                '\\' => {
                    if let Some(escaped) = self.bump() {
                        value.push(escaped);
                    }
                }
                c => value.push(c),
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(scheme: AuthScheme, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn other(name: &str) -> AuthScheme {
        AuthScheme::Other(name.to_owned())
    }

    use AuthScheme::{Basic, Bearer};

    #[test]
    fn parses_table() {
        let cases: Vec<(&str, &str, Vec<Challenge>)> = vec![
            ("empty", "", vec![]),
            ("only whitespace and commas", "  , ,\t", vec![]),
            (
                "docker hub",
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                vec![ch(
                    Bearer,
                    &[
                        ("realm", "https://auth.docker.io/token"),
                        ("service", "registry.docker.io"),
                        ("scope", "repository:library/alpine:pull"),
                    ],
                )],
            ),
            (
                "ghcr",
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull""#,
                vec![ch(
                    Bearer,
                    &[
                        ("realm", "https://ghcr.io/token"),
                        ("service", "ghcr.io"),
                        ("scope", "repository:user/image:pull"),
                    ],
                )],
            ),
            (
                "basic with realm",
                r#"Basic realm="Registry Realm""#,
                vec![ch(Basic, &[("realm", "Registry Realm")])],
            ),
            ("bare scheme", "Basic", vec![ch(Basic, &[])]),
            (
                "lowercase scheme and uppercase param names",
                r#"bearer REALM="r",Service="s""#,
                vec![ch(Bearer, &[("realm", "r"), ("service", "s")])],
            ),
            (
                "unquoted params",
                "Bearer realm=https://auth.example/token,service=registry.example",
                vec![ch(
                    Bearer,
                    &[
                        ("realm", "https://auth.example/token"),
                        ("service", "registry.example"),
                    ],
                )],
            ),
            (
                "multiple challenges",
                r#"Basic realm="a", Bearer realm="b",service="c""#,
                vec![
                    ch(Basic, &[("realm", "a")]),
                    ch(Bearer, &[("realm", "b"), ("service", "c")]),
                ],
            ),
            (
                "comma inside quotes",
                r#"Bearer realm="r",scope="repository:a:pull,push""#,
                vec![ch(Bearer, &[("realm", "r"), ("scope", "repository:a:pull,push")])],
            ),
            (
                "escaped quotes and backslashes",
                r#"Newauth realm="apps", type=1, title="Login to \"apps\" \\ here", Basic realm="simple""#,
                vec![
                    ch(
                        other("Newauth"),
                        &[
                            ("realm", "apps"),
                            ("type", "1"),
                            ("title", r#"Login to "apps" \ here"#),
                        ],
                    ),
                    ch(Basic, &[("realm", "simple")]),
                ],
            ),
            (
                "whitespace around = and ,",
                "Bearer  realm = \"r\" ,\tservice= s ,scope =\"x\"",
                vec![ch(Bearer, &[("realm", "r"), ("service", "s"), ("scope", "x")])],
            ),
            (
                "token68",
                "Basic YWxhZGRpbjpvcGVuc2VzYW1l==",
                vec![ch(Basic, &[])],
            ),
            (
                "token68 then another challenge",
                r#"Negotiate a87421000492aa874209af8bc028, Bearer realm="r""#,
                vec![ch(other("Negotiate"), &[]), ch(Bearer, &[("realm", "r")])],
            ),
            (
                "two bare schemes",
                "Basic, Bearer",
                vec![ch(Basic, &[]), ch(Bearer, &[])],
            ),
            (
                "bearer error params",
                r#"Bearer realm="r",error="insufficient_scope",scope="repository:x:push""#,
                vec![ch(
                    Bearer,
                    &[
                        ("realm", "r"),
                        ("error", "insufficient_scope"),
                        ("scope", "repository:x:push"),
                    ],
                )],
            ),
            (
                "empty quoted value",
                r#"Bearer realm="",service="s""#,
                vec![ch(Bearer, &[("realm", ""), ("service", "s")])],
            ),
            (
                "unterminated quote",
                r#"Bearer realm="https://a, b"#,
                vec![ch(Bearer, &[("realm", "https://a, b")])],
            ),
            (
                "non-ascii in quoted value",
                r#"Basic realm="Zürich ✓""#,
                vec![ch(Basic, &[("realm", "Zürich ✓")])],
            ),
            (
                "leading garbage skipped",
                r#""junk", = , Bearer realm="r""#,
                vec![ch(Bearer, &[("realm", "r")])],
            ),
            (
                "missing comma between params",
                r#"Bearer realm="r" service="s""#,
                vec![ch(Bearer, &[("realm", "r"), ("service", "s")])],
            ),
            (
                "trailing comma",
                r#"Bearer realm="r","#,
                vec![ch(Bearer, &[("realm", "r")])],
            ),
        ];
        for (name, header, want) in cases {
            assert_eq!(Challenge::parse_all(header), want, "case {name}: {header}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for header in [
            "=",
            "\"",
            "\\",
            "Bearer \"",
            "Bearer realm=\"\\",
            "Bearer realm=",
            "Bearer realm=,",
            "Bearer=x",
            ",,,=,,\"",
            "Bearer realm==\"x\"",
            "ü",
            "Bearer ü=1",
            "Basic ==",
            "\u{0}\u{7f}",
        ] {
            let _ = Challenge::parse_all(header);
        }
    }

    #[test]
    fn accessors_and_helpers() {
        let all = Challenge::parse_all(
            r#"Basic realm="b", Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        let c = Challenge::preferred(&all).unwrap();
        assert!(c.is_bearer() && !c.is_basic());
        assert_eq!(c.realm(), Some("https://auth.docker.io/token"));
        assert_eq!(c.service(), Some("registry.docker.io"));
        assert_eq!(c.scope(), Some("repository:library/alpine:pull"));
        assert_eq!(c.param("SERVICE"), Some("registry.docker.io"));
        assert_eq!(c.error(), None);
        assert!(all[0].is_basic());
        assert_eq!(Challenge::preferred(&all[..1]), Some(&all[0]));
        assert_eq!(Challenge::preferred(&[]), None);
        assert_eq!(AuthScheme::from_name("BEARER"), Bearer);
        assert_eq!(other("Digest").to_string(), "Digest");
    }

    #[test]
    fn from_headers_reads_every_value() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(r#"Basic realm="a""#),
        );
        headers.append(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(r#"Bearer realm="b",service="c""#),
        );
        headers.append(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        assert_eq!(
            Challenge::from_headers(&headers),
            vec![
                ch(Basic, &[("realm", "a")]),
                ch(Bearer, &[("realm", "b"), ("service", "c")]),
            ]
        );
        assert!(Challenge::from_headers(&http::HeaderMap::new()).is_empty());
    }
}
