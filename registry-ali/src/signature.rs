//! ACS3-HMAC-SHA256, Alibaba Cloud's V3 request signature.
//!
//! ```text
//! canonical request = METHOD \n URI \n sorted RFC 3986 query \n
//!                     `name:value\n` per signed header \n signed;header;names \n hex(sha256(body))
//! string to sign    = ACS3-HMAC-SHA256 \n hex(sha256(canonical request))
//! signature         = hex(hmac_sha256(access key secret, string to sign))
//! Authorization     = ACS3-HMAC-SHA256 Credential=<key id>,SignedHeaders=<names>,Signature=<signature>
//! ```
//!
//! Signed headers are `host`, `content-type` and every `x-acs-*` header.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// `hex(sha256(data))`: the `x-acs-content-sha256` of a body.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - _ . ~` (a space is `%20`).
pub fn percent_encode(s: &str) -> String {
    encode_bytes(s.as_bytes())
}

fn encode_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The bytes a path segment as sent stands for: its `%XX` escapes decoded (a URL
/// escapes some characters already), so that encoding them again escapes each once.
fn percent_decode(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The canonical query string: names and values encoded, sorted by name then value.
/// It is also the query to send, so that what is signed is what goes on the wire.
pub fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    let pairs: Vec<String> = encoded.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join("&")
}

/// The canonical request and its `SignedHeaders` list. `path` is the request path as sent
/// (segments are decoded and encoded again here, `/` kept), `query` a [`canonical_query`], `headers` every
/// header of the request (names in any case); `body` the exact bytes sent.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (String, String) {
    let mut signed: Vec<(String, &str)> = headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .filter(|(name, _)| name == "host" || name == "content-type" || name.starts_with("x-acs-"))
        .collect();
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let names: Vec<&str> = signed.iter().map(|(n, _)| n.as_str()).collect();
    let names = names.join(";");
    let uri: Vec<String> = path
        .split('/')
        .map(|segment| encode_bytes(&percent_decode(segment)))
        .collect();
    let uri = match uri.join("/") {
        u if u.is_empty() => "/".to_owned(),
        u => u,
    };
    let request = format!(
        "{method}\n{uri}\n{query}\n{canonical_headers}\n{names}\n{}",
        sha256_hex(body)
    );
    (request, names)
}

/// `ACS3-HMAC-SHA256\n` + hex(sha256(canonical request)).
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// hex(HMAC-SHA256(secret, string to sign)).
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value for a request (see [`canonical_request`] for the arguments).
pub fn authorization(
    key_id: &str,
    secret: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let (request, signed_headers) = canonical_request(method, path, query, headers, body);
    let signature = signature(secret, &string_to_sign(&request));
    format!("{ALGORITHM} Credential={key_id},SignedHeaders={signed_headers},Signature={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path as a URL sends it (`url.path()`, some characters escaped already) is
    /// escaped once in the canonical request, never twice.
    #[test]
    fn a_path_already_escaped_is_escaped_once() {
        let canonical_uri = |path: &str| {
            let (request, _) = canonical_request("GET", path, "", &[("host", "h")], b"");
            request.lines().nth(1).expect("the URI line").to_owned()
        };
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/tokens"), "/tokens");
        assert_eq!(canonical_uri("/a%20b/c:d"), "/a%20b/c%3Ad");
        assert_eq!(canonical_uri("/a%2Fb/%E4%B8%AD"), "/a%2Fb/%E4%B8%AD");
        assert_eq!(canonical_uri("/100%"), "/100%25");
    }

    /// Alibaba's published example ("V3 request signature", RunInstances).
    #[test]
    fn published_example() {
        let query = canonical_query(&[
            ("RegionId", "cn-shanghai"),
            ("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"),
        ]);
        assert_eq!(
            query,
            "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"
        );
        let empty = sha256_hex(b"");
        let headers = [
            ("Host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-content-sha256", empty.as_str()),
            ("Accept", "application/json"),
        ];
        let (request, signed) = canonical_request("POST", "/", &query, &headers, b"");
        assert_eq!(
            request,
            "POST\n/\n\
             ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n\
             host:ecs.cn-shanghai.aliyuncs.com\n\
             x-acs-action:RunInstances\n\
             x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-acs-date:2023-10-26T10:22:32Z\n\
             x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n\
             x-acs-version:2014-05-26\n\
             \n\
             host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            signed,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        let to_sign = string_to_sign(&request);
        assert_eq!(
            to_sign,
            "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        let expected = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0";
        assert_eq!(signature("YourAccessKeySecret", &to_sign), expected);
        assert_eq!(
            authorization(
                "YourAccessKeyId",
                "YourAccessKeySecret",
                "POST",
                "/",
                &query,
                &headers,
                b""
            ),
            format!(
                "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders={signed},Signature={expected}"
            )
        );
    }

    #[test]
    fn rfc3986_encoding_and_order() {
        assert_eq!(percent_encode("a b*~/+=&é"), "a%20b%2A~%2F%2B%3D%26%C3%A9");
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(
            canonical_query(&[("b", "2"), ("a", "x y"), ("PageNo", "1"), ("Empty", "")]),
            "Empty=&PageNo=1&a=x%20y&b=2"
        );
        let (request, _) = canonical_request("GET", "/tokens", "", &[("host", "h")], b"");
        assert!(
            request.starts_with("GET\n/tokens\n\nhost:h\n\nhost\n"),
            "{request:?}"
        );
        let (request, _) = canonical_request("GET", "/a b/c", "", &[], b"x");
        assert_eq!(request.lines().nth(1), Some("/a%20b/c"));
    }
}
