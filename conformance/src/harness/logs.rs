//! Log capture for tests that check what is (not) logged.
//!
//! One process-wide TRACE subscriber writing to memory. Thread-local
//! subscribers (`set_default`) are not reliable here: tracing caches each
//! callsite's interest globally, and with tests running in parallel a
//! callsite can be cached as uninteresting while another test's subscriber
//! comes and goes, so a test's own capture may miss lines or stay empty.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Registry, reload};

/// The buffer, the level switch, and how many captures are alive: logging is
/// at TRACE only while one is, so other tests do not fill memory.
struct Capturing {
    log: SharedLog,
    level: reload::Handle<LevelFilter, Registry>,
    alive: Mutex<usize>,
}

static CAPTURING: OnceLock<Capturing> = OnceLock::new();

/// What was logged from the moment [`capture`] was called, by any thread.
pub struct LogCapture {
    start: usize,
}

/// Starts capturing (installing the process-wide subscriber on first use).
///
/// Panics if another global subscriber was installed first.
pub fn capture() -> LogCapture {
    let capturing = CAPTURING.get_or_init(|| {
        let log = SharedLog::default();
        let (filter, level) = reload::Layer::new(LevelFilter::OFF);
        let subscriber = Registry::default().with(filter).with(
            tracing_subscriber::fmt::layer()
                .with_writer(log.clone())
                .with_ansi(false),
        );
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global tracing subscriber in this test binary");
        Capturing {
            log,
            level,
            alive: Mutex::new(0),
        }
    });
    let mut alive = capturing.alive.lock().unwrap_or_else(|p| p.into_inner());
    *alive += 1;
    capturing
        .level
        .modify(|l| *l = LevelFilter::TRACE)
        .expect("subscriber alive");
    LogCapture {
        start: capturing.log.len(),
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        let capturing = CAPTURING.get().expect("capture() ran");
        let mut alive = capturing.alive.lock().unwrap_or_else(|p| p.into_inner());
        *alive -= 1;
        if *alive == 0 {
            let _ = capturing.level.modify(|l| *l = LevelFilter::OFF);
        }
    }
}

impl LogCapture {
    /// Every line logged since [`capture`], including other tests' lines.
    pub fn text(&self) -> String {
        let log = &CAPTURING.get().expect("capture() ran").log;
        let bytes = log.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes[self.start.min(bytes.len())..]).into_owned()
    }
}

#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<u8>>>);

impl SharedLog {
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Write for SharedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedLog {
    type Writer = SharedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
