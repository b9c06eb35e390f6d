//! Apply progress: a bar redrawn in place on a terminal, one line per
//! phase otherwise (CI logs stay short and greppable).

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use meshplan_reconciler::apply::{failure_line, PhaseReport, Progress};
use meshplan_reconciler::diff::Change;
use meshplan_reconciler::Error;

#[derive(Debug)]
pub struct Printer {
    tty: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    phase: String,
    done: usize,
    total: usize,
    drawn: Instant,
}

impl Printer {
    pub fn new() -> Printer {
        Printer {
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                phase: String::new(),
                done: 0,
                total: 0,
                drawn: Instant::now(),
            }),
        }
    }

    fn draw(&self, s: &State) {
        const WIDTH: usize = 30;
        let filled = (s.done * WIDTH).checked_div(s.total).unwrap_or(WIDTH);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{:>16} [{}{}] {}/{}",
            s.phase,
            "=".repeat(filled),
            " ".repeat(WIDTH - filled),
            s.done,
            s.total
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

impl Progress for Printer {
    fn phase_started(&self, phase: &str, total: usize) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.phase = phase.to_owned();
        s.done = 0;
        s.total = total;
        if self.tty {
            self.draw(&s);
            s.drawn = Instant::now();
        }
    }

    fn object_done(&self, change: &Change, result: &Result<(), Error>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.done += 1;
        if let Err(e) = result {
            self.clear();
            eprintln!("error: {}", failure_line(&change.id(), e));
        }
        if self.tty && (s.drawn.elapsed() > Duration::from_millis(50) || s.done == s.total) {
            self.draw(&s);
            s.drawn = Instant::now();
        }
    }

    fn phase_finished(&self, phase: &str, r: &PhaseReport) {
        self.clear();
        let what = if phase.starts_with("prune") {
            format!("{} deleted", r.deleted)
        } else {
            format!("{} applied", r.applied)
        };
        let failed = match r.failed {
            0 => String::new(),
            n => format!(", {n} failed"),
        };
        eprintln!("{phase}: {what}{failed} in {:.1?}", r.elapsed);
    }
}
