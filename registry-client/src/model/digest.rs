//! Content digests (`sha256:…`, `sha512:…`) and their verification.

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};

/// The `sha256:<hex>` digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `(algorithm, hex)` of a `sha256:`/`sha512:` digest whose hex is lowercase and of the
/// right length: the form that is safe to use as a file name.
pub(crate) fn split_for_path(digest: &str) -> Option<(&str, &str)> {
    let (algorithm, hex) = digest.split_once(':')?;
    let len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some((algorithm, hex))
}

/// Incremental hash for a digest's algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    /// A hasher for `digest`'s algorithm (`sha256:` or `sha512:`).
    pub fn for_digest(digest: &str) -> Result<Self> {
        match digest.split_once(':') {
            Some(("sha256", _)) => Ok(Hasher::Sha256(Sha256::new())),
            Some(("sha512", _)) => Ok(Hasher::Sha512(Sha512::new())),
            _ => Err(Error::UnsupportedMediaType {
                media_type: format!("digest algorithm of {digest}"),
            }),
        }
    }

    /// The same algorithm, nothing hashed yet.
    pub fn fresh(&self) -> Self {
        match self {
            Hasher::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Hasher::Sha512(_) => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest, as `<algorithm>:<hex>`.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// Hashes what is written, so that `io::copy` can hash a reader.
impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks that `bytes` hash to `expected`, computing with the algorithm it names.
pub fn verify(expected: &str, bytes: &[u8]) -> Result<()> {
    let actual = match expected.split_once(':') {
        Some(("sha256", _)) => sha256(bytes),
        Some(("sha512", _)) => format!("sha512:{}", hex::encode(Sha512::digest(bytes))),
        _ => {
            return Err(Error::UnsupportedMediaType {
                media_type: format!("digest algorithm of {expected}"),
            });
        }
    };
    if actual == expected {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            expected: expected.to_owned(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_sha256_and_sha512() {
        let empty256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256(b""), empty256);
        verify(empty256, b"").unwrap();
        let err = verify(empty256, b"x").unwrap_err();
        assert!(err.is_integrity(), "{err}");
        assert!(err.to_string().contains(empty256));
        verify(
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
            b"",
        )
        .unwrap();
        assert!(verify("md5:d41d8cd98f00b204e9800998ecf8427e", b"").is_err());
    }
}
