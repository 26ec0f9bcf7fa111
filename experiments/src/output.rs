//! Standard output that follows the Unix convention for a closed pipe: when the reader has gone
//! (`ekvae inspect data.npz | head -1`), the rest of the output is dropped silently and the
//! command still finishes its work (files it writes) and exits 0 — no panic, no error line.
//! Standard error is unaffected.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Print one line on standard output (what `say!` expands to). A closed pipe ends standard
/// output for the rest of the process; another write error is reported once on standard error.
pub fn line(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) =
        out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush())
    {
        let first = !CLOSED.swap(true, Ordering::Relaxed);
        if first && e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("warning: cannot write to standard output ({e}); the rest of it is dropped");
        }
    }
}

/// Whether standard output was found closed.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}
