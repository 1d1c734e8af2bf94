//! A progress line on stderr for long client-side work (`graven check`, `import`,
//! `export`, `graven-bench`): shown only when stderr is a terminal, redrawn at most a few
//! times a second, and cleared when dropped, so that scripts and logs never see it.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// How often the line is redrawn at most.
const EVERY: Duration = Duration::from_millis(250);

/// A progress line; see the module documentation.
#[derive(Debug)]
pub struct ProgressLine {
    on: bool,
    last: Option<Instant>,
    shown: bool,
}

impl Default for ProgressLine {
    fn default() -> Self {
        ProgressLine::new()
    }
}

impl ProgressLine {
    /// A line shown when stderr is a terminal, first a quarter of a second from now (work
    /// that ends sooner shows nothing).
    pub fn new() -> ProgressLine {
        ProgressLine {
            on: std::io::stderr().is_terminal(),
            last: Some(Instant::now()),
            shown: false,
        }
    }

    /// A line that is never shown.
    pub fn off() -> ProgressLine {
        ProgressLine {
            on: false,
            last: None,
            shown: false,
        }
    }

    /// Redraws the line with `text()`, unless it was redrawn less than a quarter of a
    /// second ago (then `text` is not called).
    pub fn show(&mut self, text: impl FnOnce() -> String) {
        if !self.on || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.shown = true;
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the work.
        let _ = write!(err, "\r{}\x1b[K", text());
        let _ = err.flush();
    }

    /// Leaves `text` on its own line in place of the progress line.
    pub fn finish(&mut self, text: &str) {
        if self.on {
            eprintln!("\r{text}\x1b[K");
            self.shown = false;
        }
    }

    /// Erases the line.
    pub fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.clear();
    }
}
