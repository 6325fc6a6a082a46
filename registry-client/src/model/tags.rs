//! A repository's tag list.

/// A repository's tags and where they were listed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TagList {
    pub tags: Vec<String>,
    /// The mirror or registry that listed them (`mirror.example.com/hub`, `docker.io`).
    pub source: String,
}
