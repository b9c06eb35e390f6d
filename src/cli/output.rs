//! Terminal output helpers.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    pub fn enabled(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

/// Colours the headers of rendered diagnostics (the renderer itself stays
/// plain, so snapshots and logs are stable).
pub fn colorize(text: &str) -> String {
    const RED: &str = "\x1b[1;31m";
    const YELLOW: &str = "\x1b[1;33m";
    const BLUE: &str = "\x1b[1;34m";
    const RESET: &str = "\x1b[0m";
    text.lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("error") {
                if rest.starts_with('[') {
                    return format!("{RED}error{RESET}{rest}");
                }
            }
            if let Some(rest) = l.strip_prefix("warning") {
                if rest.starts_with('[') {
                    return format!("{YELLOW}warning{RESET}{rest}");
                }
            }
            if l.trim_start().starts_with("-->")
                || l.trim_start().starts_with('|')
                || l.contains(" | ")
            {
                if let Some(i) = l.find('|') {
                    return format!("{BLUE}{}{RESET}{}", &l[..=i], &l[i + 1..]);
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Writes to stdout. A write that fails (a full disk, a closed file) is an
/// error, so that the command exits 2 instead of reporting success over
/// output that was never written; a closed pipe (`meshplan check | head`)
/// is not.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// Colours diagnostics written to stderr when stderr is a terminal.
pub fn colorize_stderr(text: &str, color: Color) -> String {
    if stderr_colored(color) {
        colorize(text)
    } else {
        text.to_owned()
    }
}

/// Whether diagnostics on stderr are coloured.
pub fn stderr_colored(color: Color) -> bool {
    match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Colours a text plan: titles bold, added lines green, removed red.
pub fn colorize_diff(text: &str) -> String {
    const GREEN: &str = "\x1b[32m";
    const RED: &str = "\x1b[31m";
    const CYAN: &str = "\x1b[36m";
    const BOLD: &str = "\x1b[1m";
    const RESET: &str = "\x1b[0m";
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for l in text.lines() {
        let color = if l.starts_with("+++") || l.starts_with("---") {
            BOLD
        } else if l.starts_with("@@") {
            CYAN
        } else if l.starts_with('+') && !l.starts_with("+ create") {
            GREEN
        } else if l.starts_with('-') && !l.starts_with("- prune") {
            RED
        } else if l.starts_with("+ ")
            || l.starts_with("- ")
            || l.starts_with("~ ")
            || l.starts_with("! ")
            || l.starts_with("Plan:")
        {
            BOLD
        } else {
            ""
        };
        if color.is_empty() {
            out.push_str(l);
        } else {
            out.push_str(color);
            out.push_str(l);
            out.push_str(RESET);
        }
        out.push('\n');
    }
    out
}
