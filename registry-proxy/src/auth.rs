//! Who a client is, for the routes that are not public: a user of the
//! htpasswd file (bcrypt only), by Basic credentials or by a bearer token
//! from the proxy's own token endpoint (`/token`), which is what docker,
//! containerd and podman ask for when they meet a `Bearer realm` challenge.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
use crate::error::{Error, Result};

/// The `service` of the proxy's challenges and the audience of its tokens.
pub const SERVICE: &str = "mcreg-proxy";
/// Where the token endpoint is served.
pub const TOKEN_PATH: &str = "/token";
/// How often the htpasswd file is looked at for changes, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// How long a verified password is remembered (bcrypt is slow on purpose;
/// a pull sends many requests).
const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    Anonymous,
    User(String),
}

/// Credentials that were given but are not good; the reason is for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// A token for a client, as the token endpoint answers it.
#[derive(Debug, Serialize)]
pub struct TokenAnswer {
    pub token: String,
    /// The same token, under OAuth2's name (some clients read only this).
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    /// The user; empty for an anonymous client's token.
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// The users and the token keys.
pub struct Access {
    users: Users,
    encoding: EncodingKey,
    decoding: DecodingKey,
    token_ttl: Duration,
    realm: Option<String>,
    scheme: &'static str,
}

impl Access {
    /// Reads the htpasswd file (an error names its line). Tokens are signed
    /// with the configured secret, or a random one (then valid only here).
    pub fn new(config: &AuthConfig, tls: bool) -> Result<Access> {
        let users = Users::load(&config.htpasswd)?;
        let secret = match &config.token_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        Ok(Access {
            users,
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            token_ttl: config.token_ttl,
            realm: config.realm.clone(),
            scheme: if tls { "https" } else { "http" },
        })
    }

    /// The client a request's `Authorization` names: no header is anonymous;
    /// a wrong password or a bad token is refused, never taken as anonymous.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Client, Refused> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Client::Anonymous);
        };
        let value = value
            .to_str()
            .map_err(|_| Refused("the Authorization header is not text".into()))?;
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => self.basic(rest.trim()).await,
            "bearer" => self.bearer(rest.trim()),
            _ => Err(Refused(format!(
                "the {scheme:?} authorization scheme is not accepted: use Basic or Bearer"
            ))),
        }
    }

    /// A token for whoever the request's Basic credentials name (none: an
    /// anonymous client, whose token opens only the public routes).
    pub async fn issue(&self, headers: &HeaderMap) -> Result<(Client, TokenAnswer), Refused> {
        let client = match headers.get(header::AUTHORIZATION) {
            None => Client::Anonymous,
            Some(_) => match self.identify(headers).await? {
                client @ Client::User(_) => client,
                Client::Anonymous => return Err(Refused("a token needs Basic credentials".into())),
            },
        };
        let now = unix_now();
        let claims = Claims {
            iss: SERVICE.to_owned(),
            sub: match &client {
                Client::User(user) => user.clone(),
                Client::Anonymous => String::new(),
            },
            aud: SERVICE.to_owned(),
            iat: now,
            exp: now + self.token_ttl.as_secs().max(1),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Refused(format!("cannot sign a token: {e}")))?;
        let issued_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        Ok((
            client,
            TokenAnswer {
                access_token: token.clone(),
                token,
                expires_in: self.token_ttl.as_secs().max(1),
                issued_at,
            },
        ))
    }

    /// `WWW-Authenticate: Bearer realm=…,service=…[,scope=…][,error=…]`.
    /// The realm is this server as the client reached it (its `Host`),
    /// unless configured.
    pub fn challenge(&self, host: Option<&str>, scope: Option<&str>, error: Option<&str>) -> HeaderValue {
        let realm = match (&self.realm, host.filter(|h| is_plain_host(h))) {
            (Some(realm), _) => realm.clone(),
            (None, Some(host)) => format!("{}://{host}{TOKEN_PATH}", self.scheme),
            (None, None) => format!("{}://localhost{TOKEN_PATH}", self.scheme),
        };
        let mut value = format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\"");
        if let Some(scope) = scope.filter(|s| !s.contains(['"', '\\'])) {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            value.push_str(&format!(",error=\"{error}\""));
        }
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    async fn basic(&self, encoded: &str) -> Result<Client, Refused> {
        let bad = || Refused("malformed Basic credentials".into());
        let decoded = STANDARD.decode(encoded).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
        if self.users.verify(user, password).await {
            Ok(Client::User(user.to_owned()))
        } else {
            Err(Refused("incorrect username or password".into()))
        }
    }

    fn bearer(&self, token: &str) -> Result<Client, Refused> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[SERVICE]);
        validation.set_issuer(&[SERVICE]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| Refused(format!("the token is not valid here: {e}")))?
            .claims;
        if claims.sub.is_empty() {
            return Ok(Client::Anonymous);
        }
        // A user removed from the file loses access with their next request.
        if self.users.exists(&claims.sub) {
            Ok(Client::User(claims.sub))
        } else {
            Err(Refused(format!("user {:?} is no longer allowed", claims.sub)))
        }
    }
}

/// What may appear in a realm built from a `Host` header.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The htpasswd file's users, re-read when the file changes.
struct Users {
    path: PathBuf,
    state: Mutex<Loaded>,
}

struct Loaded {
    hashes: HashMap<String, String>,
    modified: Option<SystemTime>,
    checked: Instant,
    /// `(user, sha256(password))` → when bcrypt last said yes.
    verified: HashMap<(String, [u8; 32]), Instant>,
}

impl Users {
    fn load(path: &Path) -> Result<Users> {
        let (hashes, modified) = read_htpasswd(path)?;
        if hashes.is_empty() {
            tracing::warn!(file = %path.display(), "the htpasswd file has no users: private routes refuse everyone");
        }
        Ok(Users {
            path: path.to_owned(),
            state: Mutex::new(Loaded {
                hashes,
                modified,
                checked: Instant::now(),
                verified: HashMap::new(),
            }),
        })
    }

    fn exists(&self, user: &str) -> bool {
        self.refresh();
        self.state.lock().expect("users lock").hashes.contains_key(user)
    }

    async fn verify(&self, user: &str, password: &str) -> bool {
        self.refresh();
        let key = (user.to_owned(), Sha256::digest(password.as_bytes()).into());
        let hash = {
            let state = self.state.lock().expect("users lock");
            if state
                .verified
                .get(&key)
                .is_some_and(|at| at.elapsed() < VERIFIED_FOR)
            {
                return true;
            }
            state.hashes.get(user).cloned()
        };
        let Some(hash) = hash else {
            return false;
        };
        let password = password.to_owned();
        let good = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if good {
            let mut state = self.state.lock().expect("users lock");
            state.verified.retain(|_, at| at.elapsed() < VERIFIED_FOR);
            state.verified.insert(key, Instant::now());
        }
        good
    }

    /// Re-reads the file when its modification time changed (looked at
    /// every few seconds at most). A broken file keeps the users as they were.
    fn refresh(&self) {
        let mut state = self.state.lock().expect("users lock");
        if state.checked.elapsed() < RELOAD_CHECK {
            return;
        }
        state.checked = Instant::now();
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified == state.modified {
            return;
        }
        match read_htpasswd(&self.path) {
            Ok((hashes, modified)) => {
                tracing::info!(file = %self.path.display(), users = hashes.len(), "htpasswd reloaded");
                state.hashes = hashes;
                state.modified = modified;
                state.verified.clear();
            }
            Err(e) => tracing::warn!("{e}; keeping the users read before"),
        }
    }
}

/// `user:hash` lines; blank lines and `#` comments are skipped. Only bcrypt
/// hashes (`htpasswd -B`): the others are weak or unsalted.
fn read_htpasswd(path: &Path) -> Result<(HashMap<String, String>, Option<SystemTime>)> {
    let error = |line: Option<usize>, message: String| Error::Config {
        path: path.to_owned(),
        line,
        key: None,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(None, e.to_string()))?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut hashes = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = Some(index + 1);
        let Some((user, hash)) = line.split_once(':') else {
            return Err(error(number, "expected user:bcrypt-hash".into()));
        };
        if user.is_empty() {
            return Err(error(number, "the user name is empty".into()));
        }
        if !["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| hash.starts_with(p))
        {
            return Err(error(
                number,
                format!("user {user:?}: only bcrypt hashes are accepted (htpasswd -B)"),
            ));
        }
        if hashes.insert(user.to_owned(), hash.to_owned()).is_some() {
            return Err(error(number, format!("user {user:?} is listed twice")));
        }
    }
    Ok((hashes, modified))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(htpasswd: &str, ttl: Duration) -> (tempfile::TempDir, Access) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, htpasswd).unwrap();
        let config = AuthConfig {
            htpasswd: path,
            token_ttl: ttl,
            realm: None,
            token_secret: None,
        };
        (dir, Access::new(&config, false).unwrap())
    }

    fn alice() -> String {
        let hash = bcrypt::hash_with_result("wonderland", 4).unwrap();
        format!(
            "# users\nalice:{}\n",
            hash.format_for_version(bcrypt::Version::TwoY)
        )
    }

    fn authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        authorization(&format!(
            "Basic {}",
            STANDARD.encode(format!("{user}:{password}"))
        ))
    }

    #[tokio::test]
    async fn basic_credentials_are_checked_against_the_file() {
        let (_dir, access) = access(&alice(), DEFAULT_TTL);
        assert_eq!(access.identify(&HeaderMap::new()).await, Ok(Client::Anonymous));
        assert_eq!(
            access.identify(&basic("alice", "wonderland")).await,
            Ok(Client::User("alice".into()))
        );
        // Remembered: the same answer, without bcrypt.
        assert_eq!(
            access.identify(&basic("alice", "wonderland")).await,
            Ok(Client::User("alice".into()))
        );
        for refused in [
            basic("alice", "looking-glass"),
            basic("bob", "wonderland"),
            authorization("Basic not-base64!"),
            authorization("Digest username=alice"),
        ] {
            assert!(access.identify(&refused).await.is_err(), "{refused:?}");
        }
    }

    const DEFAULT_TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn tokens_name_their_user_and_expire() {
        let (_dir, access) = access(&alice(), DEFAULT_TTL);
        let (client, answer) = access.issue(&basic("alice", "wonderland")).await.unwrap();
        assert_eq!(client, Client::User("alice".into()));
        assert_eq!(answer.expires_in, 60);
        let bearer = authorization(&format!("Bearer {}", answer.token));
        assert_eq!(access.identify(&bearer).await, Ok(Client::User("alice".into())));

        let (client, anonymous) = access.issue(&HeaderMap::new()).await.unwrap();
        assert_eq!(client, Client::Anonymous);
        let bearer = authorization(&format!("Bearer {}", anonymous.token));
        assert_eq!(access.identify(&bearer).await, Ok(Client::Anonymous));
        assert!(access.issue(&basic("alice", "nope")).await.is_err());

        // Another server's key, a changed payload, an expired token: refused.
        let (_other_dir, other) = self::access(&alice(), DEFAULT_TTL);
        let bearer = authorization(&format!("Bearer {}", answer.token));
        assert!(other.identify(&bearer).await.is_err());
        let mut parts: Vec<String> = answer.token.split('.').map(str::to_owned).collect();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"iss":"mcreg-proxy","sub":"mallory","aud":"mcreg-proxy","iat":0,"exp":9999999999}"#);
        let forged = authorization(&format!("Bearer {}", parts.join(".")));
        assert!(access.identify(&forged).await.is_err());
        let expired = Claims {
            iss: SERVICE.into(),
            sub: "alice".into(),
            aud: SERVICE.into(),
            iat: unix_now() - 120,
            exp: unix_now() - 60,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &access.encoding).unwrap();
        let error = access
            .identify(&authorization(&format!("Bearer {token}")))
            .await
            .unwrap_err();
        assert!(error.0.contains("xpired"), "{error:?}");
    }

    #[tokio::test]
    async fn the_file_is_reread_when_it_changes() {
        let (dir, access) = access(&alice(), DEFAULT_TTL);
        let (_, answer) = access.issue(&basic("alice", "wonderland")).await.unwrap();
        std::fs::write(dir.path().join("htpasswd"), "# nobody\n").unwrap();
        // Make the change visible now rather than after the reload interval.
        access.users.state.lock().unwrap().checked = Instant::now() - RELOAD_CHECK;
        access.users.state.lock().unwrap().modified = None;
        assert!(access.identify(&basic("alice", "wonderland")).await.is_err());
        let bearer = authorization(&format!("Bearer {}", answer.token));
        assert!(access.identify(&bearer).await.is_err(), "a removed user's token");
    }

    #[test]
    fn only_bcrypt_entries_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        for (text, line, says) in [
            ("alice:{SHA}abc\n", 1, "bcrypt"),
            ("\n# c\nalice\n", 3, "user:bcrypt-hash"),
            (":$2y$05$abc\n", 1, "empty"),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = read_htpasswd(&path).unwrap_err();
            let Error::Config {
                line: Some(l),
                message,
                ..
            } = &error
            else {
                panic!("{error:?}")
            };
            assert_eq!(*l, line, "{text}");
            assert!(message.contains(says), "{message}");
            assert!(error.to_string().contains("htpasswd, line"), "{error}");
        }
    }

    #[test]
    fn challenges_point_at_the_token_endpoint_as_reached() {
        let (_dir, access) = access(&alice(), DEFAULT_TTL);
        let value = access.challenge(Some("cache:5000"), Some("repository:a/b:pull"), None);
        assert_eq!(
            value.to_str().unwrap(),
            r#"Bearer realm="http://cache:5000/token",service="mcreg-proxy",scope="repository:a/b:pull""#
        );
        let value = access.challenge(Some("evil\"host"), None, Some("invalid_token"));
        assert_eq!(
            value.to_str().unwrap(),
            r#"Bearer realm="http://localhost/token",service="mcreg-proxy",error="invalid_token""#
        );
    }
}
