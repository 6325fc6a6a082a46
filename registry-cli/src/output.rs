//! Results on stdout: human text or JSON. Progress and errors go to stderr elsewhere.

use std::io::{self, Write};

use indicatif::HumanBytes;
use serde::Serialize;

use crate::exit::Failure;

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    /// Prints `value` as pretty JSON with a final newline.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Failure> {
        let mut text = serde_json::to_string_pretty(value)
            .map_err(|e| Failure::Other(format!("cannot encode the result as JSON: {e}")))?;
        text.push('\n');
        write_stdout(text.as_bytes())
    }

    /// `json` when `--json` was given, else the human text `human()` builds.
    pub fn result<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> Result<(), Failure> {
        if self.json {
            self.json(value)
        } else {
            write_stdout(human().as_bytes())
        }
    }

    /// Bytes exactly as given: no newline added.
    pub fn raw(&self, bytes: &[u8]) -> Result<(), Failure> {
        write_stdout(bytes)
    }

    /// Text that only informs (summaries); dropped with `--quiet`.
    pub fn info(&self, text: &str) -> Result<(), Failure> {
        if self.quiet {
            return Ok(());
        }
        write_stdout(text.as_bytes())
    }
}

/// Writes to stdout and flushes. A closed pipe (`mcreg tags x | head -1`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure::io("cannot write to stdout", e)),
        _ => Ok(()),
    }
}

/// `1.2 MiB (1234567 bytes)`, or just `123 bytes` when small.
pub fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else {
        format!("{} ({bytes} bytes)", HumanBytes(bytes))
    }
}

/// `1 layer`, `2 layers`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A sha256 digest shortened for display (`sha256:0123456789ab`).
pub fn short_digest(digest: &str) -> &str {
    match digest.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 => &digest[..algorithm.len() + 1 + 12],
        _ => digest,
    }
}

/// Rows of text padded into columns (the last column is not padded).
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(size(12), "12 bytes");
        assert_eq!(size(2048), "2.00 KiB (2048 bytes)");
        assert_eq!(plural(1, "layer", "layers"), "1 layer");
        assert_eq!(plural(0, "layer", "layers"), "0 layers");
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short_digest(&digest), "sha256:abababababab");
        assert_eq!(short_digest("x"), "x");
        let rows = vec![
            vec!["ID".to_owned(), "HOSTS".to_owned()],
            vec!["oci".to_owned(), "*".to_owned()],
        ];
        assert_eq!(table(&rows), "ID   HOSTS\noci  *\n");
    }
}
