//! What xtask tells the user: status lines on stderr, honouring `-q` and `-v`, and a TTY-only spinner.

use std::{
    io::{IsTerminal, Write},
    sync::atomic::{AtomicU8, Ordering},
    time::Instant,
};

use crate::config::redact_text;

static VERBOSITY: AtomicU8 = AtomicU8::new(1);

pub fn set_verbosity(quiet: bool, verbose: u8) {
    let level = if quiet { 0 } else { 1 + verbose.min(1) };
    VERBOSITY.store(level, Ordering::Relaxed);
}

pub fn is_verbose() -> bool {
    VERBOSITY.load(Ordering::Relaxed) >= 2
}

pub fn is_quiet() -> bool {
    VERBOSITY.load(Ordering::Relaxed) == 0
}

/// Whether colour codes may go to stdout: it is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>).
pub fn stdout_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` without ANSI escape sequences: CSI (`ESC [`, parameters, a final byte `@`–`~`) and
/// the others (`ESC`, intermediates ` `–`/`, a final byte `0`–`~`, e.g. `ESC ( B`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        let finals = match chars.next() {
            Some('[') => '@'..='~',
            Some(' '..='/') => '0'..='~',
            _ => continue,
        };
        for c in chars.by_ref() {
            if finals.contains(&c) {
                break;
            }
        }
    }
    out
}

/// A status line; every line passes through URL redaction.
pub fn info(message: impl AsRef<str>) {
    if !is_quiet() {
        eprintln!("{}", redact_text(message.as_ref()));
    }
}

/// Shown even with `-q`: a warning changes what the user should expect.
pub fn warn(message: impl AsRef<str>) {
    eprintln!("warning: {}", redact_text(message.as_ref()));
}

pub fn debug(message: impl AsRef<str>) {
    if is_verbose() {
        eprintln!("  {}", redact_text(message.as_ref()));
    }
}

/// A command-line mistake in one line, like every other error; `--help` has the rest.
pub fn usage_error_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut first = lines
        .next()
        .unwrap_or("error: invalid arguments")
        .to_owned();
    // "required arguments were not provided:" names them on the next line.
    if first.ends_with(':')
        && let Some(detail) = lines.next()
    {
        first = format!("{first} {detail}");
    }
    format!("{first}; see `cargo xtask --help`")
}

/// Redraws one line while waiting; draws nothing unless stderr is a terminal.
pub struct Spinner {
    enabled: bool,
    started: Instant,
    frame: usize,
    label: String,
}

impl Spinner {
    pub fn new(label: &str) -> Spinner {
        Spinner {
            enabled: std::io::stderr().is_terminal() && !is_quiet(),
            started: Instant::now(),
            frame: 0,
            label: label.to_owned(),
        }
    }

    pub fn tick(&mut self, detail: &str) {
        if !self.enabled {
            return;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        self.frame = (self.frame + 1) % FRAMES.len();
        let mut stderr = std::io::stderr();
        let _ = write!(
            stderr,
            "\r\x1b[2K{} {} ({:.1}s) {}",
            FRAMES[self.frame],
            self.label,
            self.started.elapsed().as_secs_f64(),
            redact_text(detail)
        );
        let _ = stderr.flush();
    }

    pub fn clear(&mut self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.enabled = false;
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_codes_are_stripped_and_text_is_kept() {
        let coloured = "\x1b[36mpostgres_1  |\x1b[0m LOG:  ready \x1b[1;31mé\x1b[0m\x1b(B";
        assert_eq!(super::strip_ansi(coloured), "postgres_1  | LOG:  ready é");
        assert_eq!(super::strip_ansi("plain [36m"), "plain [36m");
    }
}
