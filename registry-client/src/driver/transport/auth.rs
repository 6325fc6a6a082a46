//! Answering registry auth challenges: Basic, and Bearer via the token service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode};
use url::Url;

use super::http::{HttpClients, map_reqwest_error, read_limited};
use super::request::{RegistryRequest, host_port};
use super::retry::Failure;
use crate::driver::auth::token::{DEFAULT_TOKEN_LIFETIME, Token, TokenCache, TokenResponse};
use crate::driver::auth::{AuthScheme, Challenge, Credentials};
use crate::driver::{AbstractRegistry, AuthRequest};
use crate::error::{Error, RateLimit, RegistryError, Result};
use secrecy::ExposeSecret;

/// Token responses are small JSON.
const MAX_TOKEN_RESPONSE: usize = 1024 * 1024;
/// Sent with OAuth2 refresh-token exchanges, as docker sends its own name.
const OAUTH_CLIENT_ID: &str = "mcreg";

/// The `Authorization` to send, and which cached token it came from.
#[derive(Clone, Default)]
pub(super) enum Auth {
    #[default]
    Anonymous,
    Basic(HeaderValue),
    Bearer {
        header: HeaderValue,
        serial: u64,
    },
}

impl Auth {
    pub(super) fn header(&self) -> Option<&HeaderValue> {
        match self {
            Auth::Anonymous => None,
            Auth::Basic(h) | Auth::Bearer { header: h, .. } => Some(h),
        }
    }

    fn serial(&self) -> Option<u64> {
        match self {
            Auth::Bearer { serial, .. } => Some(*serial),
            _ => None,
        }
    }
}

/// Remembers each registry's challenge and bearer tokens per scope, and asks
/// the provider for credentials.
#[derive(Debug)]
pub(super) struct Authenticator {
    provider: Arc<dyn AbstractRegistry>,
    tokens: TokenCache,
    /// The last challenge per registry origin, so that later requests can
    /// authenticate up front instead of taking a 401 first.
    challenges: Mutex<HashMap<String, Challenge>>,
}

impl Authenticator {
    pub(super) fn new(provider: Arc<dyn AbstractRegistry>) -> Self {
        Authenticator {
            provider,
            tokens: TokenCache::default(),
            challenges: Mutex::new(HashMap::new()),
        }
    }

    /// Auth for a first attempt: what worked for this registry before.
    pub(super) async fn prepare(
        &self,
        request: &RegistryRequest,
        http: &HttpClients,
    ) -> Result<Auth, Failure> {
        let known = self.known_challenge(&request.url);
        match known {
            None => Ok(Auth::Anonymous),
            Some(challenge) => self.respond(request, &challenge, None, http).await,
        }
    }

    /// Auth after a 401: `None` when there is nothing better to try.
    pub(super) async fn answer(
        &self,
        request: &RegistryRequest,
        headers: &HeaderMap,
        used: &Auth,
        http: &HttpClients,
    ) -> Result<Option<Auth>, Failure> {
        let challenges = Challenge::from_headers(headers);
        let Some(challenge) = Challenge::preferred(&challenges).cloned() else {
            return Ok(None);
        };
        // Remembered without its scope: that belongs to this request, not the next.
        let mut remembered = challenge.clone();
        remembered.params.retain(|(name, _)| name != "scope");
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(origin_key(&request.url), remembered);
        if matches!(used, Auth::Basic(_)) {
            // The credentials were refused; asking again gives the same ones.
            return Ok(None);
        }
        let auth = self.respond(request, &challenge, used.serial(), http).await?;
        Ok(match auth {
            Auth::Anonymous => None,
            auth => Some(auth),
        })
    }

    fn known_challenge(&self, url: &Url) -> Option<Challenge> {
        self.challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&origin_key(url))
            .cloned()
    }

    async fn respond(
        &self,
        request: &RegistryRequest,
        challenge: &Challenge,
        rejected: Option<u64>,
        http: &HttpClients,
    ) -> Result<Auth, Failure> {
        let scope = request.scope.as_deref();
        let auth_request = AuthRequest {
            host: &request.registry,
            challenge,
            scope,
        };
        match challenge.scheme {
            AuthScheme::Basic => match self.provider.credentials(&auth_request).await? {
                Some(c @ Credentials::Basic { .. }) => Ok(Auth::Basic(basic_header(&c))),
                _ => Ok(Auth::Anonymous),
            },
            AuthScheme::Bearer => {
                let registry = host_port(&request.url);
                // The provider is asked only when a token must be fetched.
                let fetch = async {
                    match self.provider.credentials(&auth_request).await? {
                        Some(Credentials::RegistryToken(t)) => {
                            Ok(Token::new(t.expose_secret().to_owned(), DEFAULT_TOKEN_LIFETIME))
                        }
                        credentials => {
                            fetch_token(http, challenge, scope, credentials.as_ref(), &registry).await
                        }
                    }
                };
                let token = self
                    .tokens
                    .get_or_fetch(&registry, scope.unwrap_or(""), rejected, fetch)
                    .await?;
                Ok(Auth::Bearer {
                    header: bearer_header(token.secret())?,
                    serial: token.serial(),
                })
            }
            AuthScheme::Other(_) => Ok(Auth::Anonymous),
        }
    }
}

/// Asks the challenge's realm for a token (distribution's token protocol,
/// or OAuth2 with a refresh token when the credentials are an identity token).
async fn fetch_token(
    http: &HttpClients,
    challenge: &Challenge,
    scope: Option<&str>,
    credentials: Option<&Credentials>,
    registry: &str,
) -> Result<Token> {
    let realm = challenge
        .realm()
        .ok_or_else(|| Error::invalid_response(registry, "bearer challenge without a realm"))?;
    let realm = Url::parse(realm)
        .map_err(|e| Error::invalid_response(registry, format!("invalid token realm: {e}")))?;
    let realm_host = host_port(&realm);
    // Credentials go to the realm: plain HTTP only where the realm itself may
    // have it (loopback, or marked insecure), never because the registry may.
    http.check_scheme(&realm)?;
    let client = http.client_for(&realm)?;
    let service = challenge.service();
    // The registry's own scope wins; it knows what it will check.
    let scopes: Vec<&str> = challenge
        .scope()
        .or(scope)
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();

    let builder = match credentials {
        Some(Credentials::IdentityToken(refresh)) => {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("client_id", OAUTH_CLIENT_ID),
                ("refresh_token", refresh.expose_secret()),
            ];
            if let Some(s) = service {
                form.push(("service", s));
            }
            let joined = scopes.join(" ");
            if !joined.is_empty() {
                form.push(("scope", &joined));
            }
            client.post(realm.clone()).form(&form)
        }
        other => {
            let mut query: Vec<(&str, &str)> = service.map(|s| ("service", s)).into_iter().collect();
            query.extend(scopes.iter().map(|s| ("scope", *s)));
            let builder = client.get(realm.clone()).query(&query);
            match other {
                Some(c @ Credentials::Basic { .. }) => {
                    builder.header(http::header::AUTHORIZATION, basic_header(c))
                }
                _ => builder,
            }
        }
    };

    let response = builder
        .send()
        .await
        .map_err(|e| map_reqwest_error(e, &realm_host))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_limited(response, MAX_TOKEN_RESPONSE, &realm_host)
        .await
        .map_err(Failure::into_error)?;
    if !status.is_success() {
        let message = RegistryError::parse_body(&body)
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| format!("token service answered {status}"));
        return Err(match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized {
                host: realm_host,
                message,
            },
            StatusCode::FORBIDDEN => Error::Denied {
                host: realm_host,
                message,
            },
            StatusCode::TOO_MANY_REQUESTS => Error::RateLimited {
                retry_after: super::retry_after(&headers),
                limit: RateLimit::from_headers(&headers),
                host: realm_host,
            },
            _ => Error::Registry {
                host: realm_host,
                status: status.as_u16(),
                errors: RegistryError::parse_body(&body),
            },
        });
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid_response(&realm_host, format!("token response is not JSON: {e}")))?;
    tracing::debug!(realm = %realm_host, scope = scopes.join(" "), "fetched registry token");
    parsed
        .into_token(SystemTime::now())
        .ok_or_else(|| Error::invalid_response(&realm_host, "token response has no token"))
}

fn basic_header(credentials: &Credentials) -> HeaderValue {
    let raw = format!(
        "{}:{}",
        credentials.username().unwrap_or_default(),
        credentials.secret()
    );
    let mut value = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
    .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

fn bearer_header(token: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::InvalidConfig("token contains characters not allowed in a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn origin_key(url: &Url) -> String {
    url.origin().ascii_serialization()
}
