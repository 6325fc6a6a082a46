//! Pull, copy and push progress on stderr: bars on a terminal, one line per layer otherwise,
//! nothing with `--quiet`. Log lines go through [`LogWriter`] so they print above the bars.

use registry_client::{Progress, ProgressEvent};
use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{plural, short_digest};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bar per layer and one overall (stderr is a terminal).
    Bars,
    /// One line per finished layer (stderr is a file or a pipe).
    Lines,
    /// Nothing (`--quiet`).
    Silent,
}

impl Mode {
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Silent
        } else if io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// The one set of bars of this process (log lines must know it to print above it).
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Turns [`ProgressEvent`]s into bars or lines.
pub struct Reporter {
    mode: Mode,
    bars: Arc<Mutex<Bars>>,
}

#[derive(Default)]
struct Bars {
    spinner: Option<ProgressBar>,
    overall: Option<ProgressBar>,
    layers: HashMap<String, Layer>,
}

struct Layer {
    bar: ProgressBar,
    done: u64,
}

impl Reporter {
    /// Starts reporting; on a terminal a spinner says what is being resolved.
    pub fn start(mode: Mode, what: &str) -> Reporter {
        let mut state = Bars::default();
        if mode == Mode::Bars {
            let spinner = bars().add(ProgressBar::new_spinner().with_style(style("{spinner} {msg}")));
            spinner.set_message(format!("resolving {what}"));
            spinner.enable_steady_tick(Duration::from_millis(100));
            state.spinner = Some(spinner);
        }
        Reporter {
            mode,
            bars: Arc::new(Mutex::new(state)),
        }
    }

    /// The SDK's progress callback, or `None` when nothing is shown.
    pub fn progress(&self) -> Option<Progress> {
        match self.mode {
            Mode::Silent => None,
            Mode::Lines => Some(Progress::new(line)),
            Mode::Bars => {
                let bars = self.bars.clone();
                Some(Progress::new(move |event| {
                    bars.lock().unwrap_or_else(|p| p.into_inner()).update(event)
                }))
            }
        }
    }

    /// Stops the bars and clears the live area; the lines of finished layers stay above.
    pub fn finish(&self) {
        let mut state = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let live = state
            .spinner
            .take()
            .into_iter()
            .chain(state.overall.take())
            .chain(state.layers.drain().map(|(_, l)| l.bar));
        for bar in live {
            bar.finish_and_clear();
            bars().remove(&bar);
        }
        if self.mode == Mode::Bars {
            let _ = bars().clear();
        }
    }
}

/// Lines mode: one line per layer when it is complete or taken from the cache.
fn line(event: &ProgressEvent) {
    let text = match event {
        ProgressEvent::BlobDone { digest, size } => format!("done {digest} {size} bytes"),
        ProgressEvent::BlobFromCache { digest, size } => format!("cached {digest} {size} bytes"),
        ProgressEvent::Retry {
            what,
            attempt,
            reason,
        } => format!("retry {what} (attempt {attempt}): {reason}"),
        ProgressEvent::ManifestResolved { digest, source, .. } => {
            format!("resolved {digest} from {source}")
        }
        ProgressEvent::CopyPlanned {
            digest,
            blobs,
            total_bytes,
            destination,
        } => format!(
            "copying {digest} to {destination}: {}, {total_bytes} bytes",
            plural(*blobs, "blob", "blobs")
        ),
        ProgressEvent::BlobSkipped { digest, size, reason } => format!("{reason} {digest} {size} bytes"),
        ProgressEvent::SourceSkipped { .. } => skipped_line(event),
        _ => return,
    };
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Prints skipped sources on stderr, for commands without progress bars.
pub fn skipped_sources() -> Progress {
    Progress::new(|event| {
        if matches!(event, ProgressEvent::SourceSkipped { .. }) {
            let _ = writeln!(io::stderr().lock(), "{}", skipped_line(event));
        }
    })
}

/// `skipped SOURCE for WHAT: REASON`, in both modes.
fn skipped_line(event: &ProgressEvent) -> String {
    match event {
        ProgressEvent::SourceSkipped { source, what, reason } => {
            format!("skipped {source} for {what}: {reason}")
        }
        _ => String::new(),
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid progress template")
        .progress_chars("=> ")
}

fn layer_style() -> ProgressStyle {
    style(
        "{prefix:.bold} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}",
    )
}

/// A finished layer leaves the live area (which stays as small as the downloads under way)
/// and is printed once above it.
fn finished(bar: &ProgressBar, digest: &str, how: &str, size: u64) {
    bar.finish_and_clear();
    bars().remove(bar);
    let _ = bars().println(format!(
        "{}  {how:<6}  {}",
        short_digest(digest),
        HumanBytes(size)
    ));
}

impl Bars {
    fn update(&mut self, event: &ProgressEvent) {
        match event {
            ProgressEvent::ManifestResolved {
                platform,
                layers,
                total_bytes,
                source,
                ..
            } => {
                let mut message = plural(*layers, "layer", "layers");
                if let Some(platform) = platform {
                    message = format!("{message} for {platform}");
                }
                message = format!("{message} from {source}");
                self.start_overall(*total_bytes, message);
            }
            ProgressEvent::CopyPlanned {
                blobs,
                total_bytes,
                destination,
                ..
            } => {
                let message = format!("{} to {destination}", plural(*blobs, "blob", "blobs"));
                self.start_overall(*total_bytes, message);
            }
            ProgressEvent::BlobStarted { digest, size } => {
                if let Some(layer) = self.layers.get_mut(digest) {
                    // Started again from the start: take back what it had counted.
                    if let Some(overall) = &self.overall {
                        overall.dec(layer.done);
                    }
                    layer.done = 0;
                    layer.bar.set_position(0);
                    layer.bar.reset_eta();
                } else {
                    let bar = self.add_layer(digest, *size);
                    self.layers.insert(digest.clone(), Layer { bar, done: 0 });
                }
            }
            ProgressEvent::BlobProgress { digest, done, .. } => {
                if let Some(layer) = self.layers.get_mut(digest) {
                    if let Some(overall) = &self.overall {
                        overall.inc(done.saturating_sub(layer.done));
                    }
                    layer.done = *done;
                    layer.bar.set_position(*done);
                }
            }
            ProgressEvent::BlobDone { digest, size } => {
                if let Some(layer) = self.layers.get_mut(digest) {
                    if let Some(overall) = &self.overall {
                        overall.inc(size.saturating_sub(layer.done));
                    }
                    layer.done = *size;
                    finished(&layer.bar, digest, "done", *size);
                }
            }
            ProgressEvent::BlobFromCache { digest, size } => self.skipped(digest, *size, "cached"),
            ProgressEvent::BlobSkipped { digest, size, reason } => {
                self.skipped(digest, *size, &reason.to_string())
            }
            ProgressEvent::Retry {
                what,
                attempt,
                reason,
            } => {
                let _ = bars().println(format!("retry {what} (attempt {attempt}): {reason}"));
            }
            ProgressEvent::SourceSkipped { .. } => {
                let _ = bars().println(skipped_line(event));
            }
            _ => {}
        }
    }

    /// The overall bar, once what will move is known; the spinner goes.
    fn start_overall(&mut self, total_bytes: u64, message: String) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
        let overall = ProgressBar::new(total_bytes)
            .with_style(style(
                "{prefix:.bold} [{bar:30.green}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta} {msg}",
            ))
            .with_prefix(format!("{:<19}", "total"))
            .with_message(message);
        self.overall = Some(bars().add(overall));
    }

    /// A blob that needs no transfer: counted at once, printed with `how`.
    fn skipped(&mut self, digest: &str, size: u64, how: &str) {
        if let Some(overall) = &self.overall {
            overall.inc(size);
        }
        let bar = self.add_layer(digest, size);
        finished(&bar, digest, how, size);
        self.layers.insert(digest.to_owned(), Layer { bar, done: size });
    }

    fn add_layer(&self, digest: &str, size: u64) -> ProgressBar {
        let bar = ProgressBar::new(size)
            .with_style(layer_style())
            .with_prefix(short_digest(digest).to_owned());
        match &self.overall {
            Some(overall) => bars().insert_before(overall, bar),
            None => bars().add(bar),
        }
    }
}

/// A `tracing` writer that prints each log record above the progress bars.
#[derive(Default)]
pub struct LogWriter {
    buffer: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let buffer = std::mem::take(&mut self.buffer);
        bars().suspend(|| {
            let _ = io::stderr().lock().write_all(&buffer);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_client::SkipReason;

    #[test]
    fn bars_follow_the_events_without_a_terminal() {
        let reporter = Reporter::start(Mode::Bars, "x");
        assert!(reporter.progress().is_some());
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let emit = |event: ProgressEvent| reporter.bars.lock().unwrap().update(&event);
        emit(ProgressEvent::ManifestResolved {
            digest: a.clone(),
            platform: Some("linux/amd64".into()),
            layers: 2,
            total_bytes: 30,
            source: "docker.io".into(),
        });
        emit(ProgressEvent::BlobFromCache {
            digest: b.clone(),
            size: 10,
        });
        emit(ProgressEvent::BlobStarted {
            digest: a.clone(),
            size: 20,
        });
        emit(ProgressEvent::BlobProgress {
            digest: a.clone(),
            done: 15,
            size: 20,
        });
        // A restart takes back what was counted.
        emit(ProgressEvent::BlobStarted {
            digest: a.clone(),
            size: 20,
        });
        emit(ProgressEvent::BlobProgress {
            digest: a.clone(),
            done: 5,
            size: 20,
        });
        emit(ProgressEvent::BlobDone {
            digest: a.clone(),
            size: 20,
        });
        let state = reporter.bars.lock().unwrap();
        assert_eq!(state.overall.as_ref().unwrap().position(), 30);
        assert!(state.layers[&a].bar.is_finished());
        assert!(state.layers[&b].bar.is_finished());
        drop(state);
        reporter.finish();
        assert!(reporter.bars.lock().unwrap().layers.is_empty());
    }

    #[test]
    fn a_copy_counts_skipped_blobs_and_uploads_in_one_total() {
        let reporter = Reporter::start(Mode::Bars, "x");
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let emit = |event: ProgressEvent| reporter.bars.lock().unwrap().update(&event);
        emit(ProgressEvent::CopyPlanned {
            digest: a.clone(),
            blobs: 2,
            total_bytes: 30,
            destination: "registry.example/app:v1".into(),
        });
        assert!(reporter.bars.lock().unwrap().spinner.is_none());
        emit(ProgressEvent::BlobSkipped {
            digest: b.clone(),
            size: 10,
            reason: SkipReason::Exists,
        });
        emit(ProgressEvent::BlobStarted {
            digest: a.clone(),
            size: 20,
        });
        emit(ProgressEvent::BlobProgress {
            digest: a.clone(),
            done: 12,
            size: 20,
        });
        assert_eq!(
            reporter.bars.lock().unwrap().overall.as_ref().unwrap().position(),
            22
        );
        emit(ProgressEvent::BlobDone {
            digest: a.clone(),
            size: 20,
        });
        let state = reporter.bars.lock().unwrap();
        assert_eq!(state.overall.as_ref().unwrap().position(), 30);
        assert!(state.layers[&b].bar.is_finished());
        drop(state);
        reporter.finish();
    }
}
