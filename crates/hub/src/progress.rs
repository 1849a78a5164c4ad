//! Telling the user what a pull is doing: notes and progress bars.
//!
//! The library reports through [`Report`]; the command line uses [`StderrReport`]
//! (indicatif bars on stderr, so stdout keeps only the answer), tests use
//! [`Recorder`] to check what the user would have been told.

use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a pull reports to.
pub trait Report: Sync {
    /// A line of news ("resuming at 1.2 GB", "waiting for another pull").
    fn note(&self, msg: &str);
    /// A transfer of `total` bytes (if known) starts.
    fn transfer(&self, label: &str, total: Option<u64>) -> Box<dyn Transfer + '_>;
}

/// One transfer's progress.
pub trait Transfer {
    /// `done` bytes are on disk (it may go back when a download restarts).
    fn position(&mut self, done: u64);
    /// The transfer ended (successfully or not).
    fn finish(&mut self);
}

/// Notes and progress bars on stderr; bars are hidden when stderr is not a terminal,
/// and a one-line summary is written instead.
#[derive(Debug, Default)]
pub struct StderrReport;

impl Report for StderrReport {
    fn note(&self, msg: &str) {
        eprintln!("sparetire: {msg}");
    }

    fn transfer(&self, label: &str, total: Option<u64>) -> Box<dyn Transfer + '_> {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let style = match total {
            Some(_) => ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            ),
            None => ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}"),
        };
        if let Ok(style) = style {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_owned());
        Box::new(StderrTransfer {
            bar,
            label: label.to_owned(),
            started: Instant::now(),
            first: None,
        })
    }
}

struct StderrTransfer {
    bar: ProgressBar,
    label: String,
    started: Instant,
    /// The position when the first bytes arrived (resumed downloads start above 0).
    first: Option<u64>,
}

impl Transfer for StderrTransfer {
    fn position(&mut self, done: u64) {
        if self.first.is_none() {
            self.first = Some(done);
            self.bar.reset_eta();
        }
        self.bar.set_position(done);
    }

    fn finish(&mut self) {
        let done = self.bar.position();
        if self.bar.is_hidden() {
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            let moved = done.saturating_sub(self.first.unwrap_or(0));
            eprintln!(
                "sparetire: {}: {:.1} MB ({:.1} MB/s)",
                self.label,
                done as f64 / 1e6,
                moved as f64 / 1e6 / secs
            );
        }
        self.bar.finish_and_clear();
    }
}

/// Keeps the notes (tests check what the user would read); draws nothing.
#[derive(Debug, Default)]
pub struct Recorder {
    notes: Mutex<Vec<String>>,
}

impl Recorder {
    /// A new, empty recorder.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// The notes so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

impl Report for Recorder {
    fn note(&self, msg: &str) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(msg.to_owned());
        }
    }

    fn transfer(&self, _label: &str, _total: Option<u64>) -> Box<dyn Transfer + '_> {
        Box::new(NoTransfer)
    }
}

struct NoTransfer;

impl Transfer for NoTransfer {
    fn position(&mut self, _done: u64) {}
    fn finish(&mut self) {}
}
