//! Fakes of the cloud APIs the providers call for registry credentials, on loopback:
//!
//! - [`alibaba`]: Alibaba Cloud's Container Registry (`cr`) OpenAPI, verifying the ACS3-HMAC-SHA256
//!   signature of every request with an implementation of its own;
//! - [`google`]: Google's OAuth2 token endpoint (with `authorized_user` files pointing at it) and
//!   the GCE metadata server;
//! - [`aws`]: ECR's and ECR Public's `GetAuthorizationToken` (AWS JSON 1.1).
//!
//! Like the rest of the harness they are plain axum/tokio and do not use `registry-client` nor the
//! provider crates, so the providers' tests (and the cache's) check the providers against
//! something that did not come from them. Building a provider that points at a fake is left to
//! the tests.

pub mod alibaba;
pub mod aws;
pub mod google;
