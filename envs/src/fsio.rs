//! Every file ekvae writes goes through [`write_atomic`]: the bytes go to a temporary sibling
//! (same folder, so the rename is atomic), are synced, and the sibling is renamed over the final
//! name; on any error, panic or early return the sibling is removed, and whatever was at the
//! final name before is left untouched.
//!
//! # Rules for outputs
//! - An output must be a regular file or not exist yet. A directory, FIFO, device node or
//!   socket at the output path is refused (writing there would replace it by a regular file).
//! - A symbolic link at the output path is refused as well: ekvae neither follows it (it could
//!   point at a device or an input) nor replaces it silently. Links in the folders above the
//!   file are followed as usual.
//! - The final file gets mode 0644 (less what the umask removes), like every other file.
//! - Temporary siblings are named `.NAME.tmp-PID-XXXXXX` (and checkpoint folders
//!   `.epoch-NNNN.tmp-PID`): [`remove_stale_temps`] deletes those of processes that no longer
//!   run (a `kill -9`, a power loss), so they do not pile up.

use crate::{Error, Result};
use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The marker between the final name and the owner's process id in a temporary name.
pub const TEMP_MARK: &str = ".tmp-";

/// The prefix of this process's temporary siblings of `name`: `.NAME.tmp-PID-`.
pub fn temp_prefix(name: &str) -> String {
    format!(".{name}{TEMP_MARK}{}-", std::process::id())
}

/// The name of this process's temporary folder for `name` (e.g. a checkpoint folder):
/// `.NAME.tmp-PID`.
pub fn temp_dir_name(name: &str) -> String {
    format!(".{name}{TEMP_MARK}{}", std::process::id())
}

/// The writer handed to the closure of [`write_atomic`]: buffered, seekable, and after its
/// first error it accepts (and drops) everything, so that writers that finish in `Drop` (the
/// zip writer) do not print a second error; the first error is what `write_atomic` returns.
pub struct AtomicWriter<'a> {
    inner: BufWriter<&'a mut File>,
    failed: Option<io::Error>,
}

impl AtomicWriter<'_> {
    /// Keep the first error; the caller sees it once, later calls are swallowed.
    fn record<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        r.map_err(|e| {
            let copy = io::Error::new(e.kind(), e.to_string());
            self.failed = Some(e);
            copy
        })
    }
}

impl Write for AtomicWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.record(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        let r = self.inner.flush();
        self.record(r)
    }
}

impl Seek for AtomicWriter<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        if self.failed.is_some() {
            return Ok(0);
        }
        let r = self.inner.seek(pos);
        self.record(r)
    }
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { path: path.into(), action, source }
}

/// What lies at `path`, for messages: `None` for a regular file or nothing.
fn not_a_regular_file(meta: &fs::Metadata) -> Option<&'static str> {
    let ft = meta.file_type();
    if ft.is_file() {
        return None;
    }
    if ft.is_symlink() {
        return Some("a symbolic link (ekvae does not write through links; give the real path)");
    }
    if ft.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if ft.is_char_device() || ft.is_block_device() {
            return Some("a device");
        }
        if ft.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// Refuse an output path that holds something other than a regular file (see the module docs);
/// a missing path is fine.
pub fn check_output(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) => match not_a_regular_file(&meta) {
            None => Ok(()),
            Some(what) => Err(Error::Output {
                path: path.into(),
                reason: format!("is {what}, not a regular file; choose another output path"),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => {
            Err(Error::Io { path: path.into(), action: "inspect the output path", source })
        }
    }
}

/// Refuse `output` if it is the same file as one of `inputs` (same device and inode, or the same
/// canonical path), so that an output never replaces an input.
pub fn check_distinct(output: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(out_meta) = fs::metadata(output) else { return Ok(()) };
    for input in inputs {
        let Ok(in_meta) = fs::metadata(input) else { continue };
        #[cfg(unix)]
        let same = {
            use std::os::unix::fs::MetadataExt;
            out_meta.dev() == in_meta.dev() && out_meta.ino() == in_meta.ino()
        };
        #[cfg(not(unix))]
        let same = {
            let _ = (&out_meta, &in_meta);
            fs::canonicalize(output).ok() == fs::canonicalize(input).ok()
        };
        if same {
            return Err(Error::Output {
                path: output.into(),
                reason: format!(
                    "is the input {}; writing there would replace it, choose another output path",
                    input.display()
                ),
            });
        }
    }
    Ok(())
}

/// Write a file atomically: `write` fills a temporary sibling of `path` (see the module docs),
/// which is synced and renamed to `path`. On failure nothing appears under `path` (an existing
/// file survives) and the temporary file is removed.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut AtomicWriter<'_>) -> io::Result<()>,
) -> Result<()> {
    check_output(path)?;
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    remove_stale_temps(&dir, Some(&name));
    let prefix = temp_prefix(&name);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix("");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder
        .tempfile_in(&dir)
        .map_err(io_err(&dir, "create a temporary file in this folder"))?;
    {
        let mut w = AtomicWriter {
            inner: BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
            failed: None,
        };
        let result = write(&mut w).and_then(|()| w.flush());
        let failed = w.failed.take();
        // The first error is the cause; a later one (or an Ok after a swallowed error) is not.
        let result = match (failed, result) {
            (Some(e), _) => Err(e),
            (None, r) => r,
        };
        if let Err(e) = result {
            // Drop the buffer without flushing into a file that is about to be removed.
            let (_, _) = w.inner.into_parts();
            return Err(Error::Io { path: path.into(), action: "write", source: e });
        }
    }
    tmp.as_file().sync_all().map_err(io_err(path, "sync the temporary file for"))?;
    tmp.persist(path).map_err(|e| Error::Io {
        path: path.into(),
        action: "rename the temporary file to",
        source: e.error,
    })?;
    sync_dir(&dir);
    Ok(())
}

/// Sync a folder so that a rename in it survives a power loss (best effort: not every
/// platform can open a folder).
pub fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Check early that `path` can be written (it is a regular file or missing, and its folder
/// exists and accepts a new file), so a long job fails before it starts rather than at the end.
pub fn check_writable(path: &Path) -> Result<()> {
    check_output(path)?;
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&temp_prefix(&name))
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|source| Error::Io { path: dir, action: "create files in this folder", source })
}

/// The folder of `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The owner of a temporary name `.NAME.tmp-PID[-XXXXXX]`, if it is one.
pub fn temp_owner(file_name: &str) -> Option<(&str, u32)> {
    let rest = file_name.strip_prefix('.')?;
    let at = rest.rfind(TEMP_MARK)?;
    let (name, tail) = (&rest[..at], &rest[at + TEMP_MARK.len()..]);
    let pid = tail.split('-').next()?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((name, pid.parse().ok()?))
}

/// Whether process `pid` may still be running. Where that cannot be known (no `/proc`), every
/// process counts as running, so nothing is removed; a temporary file whose pid was reused by
/// an unrelated process is likewise kept until that process ends.
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Remove the temporary files and folders in `dir` (only those of `name` when given) that
/// belong to processes that no longer run. Best effort: errors are ignored. Returns how many
/// were removed.
pub fn remove_stale_temps(dir: &Path, name: Option<&str>) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((owner_name, pid)) = file_name.to_str().and_then(temp_owner) else { continue };
        if name.is_some_and(|n| n != owner_name) || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let ok = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path).is_ok(),
            Ok(_) => fs::remove_file(&path).is_ok(),
            Err(_) => false,
        };
        removed += usize::from(ok);
    }
    removed
}

/// Bytes of memory available to a new allocation (Linux `MemAvailable`), if known.
pub fn available_memory() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Refuse a job that needs `bytes` of memory when the machine has less available (`what` and
/// `fix` go into the message: what needs the memory and which flags lower it). Unknown
/// availability passes.
pub fn check_memory(bytes: Option<u64>, what: &str, fix: &str) -> Result<()> {
    let gb = |b: u64| b as f64 / 1e9;
    match (bytes, available_memory()) {
        (None, _) => Err(Error::InvalidArgument {
            what: "size",
            reason: format!("{what} needs more memory than can be counted; {fix}"),
        }),
        (Some(need), Some(have)) if need > have => Err(Error::InvalidArgument {
            what: "size",
            reason: format!(
                "{what} needs about {:.1} GB of memory but {:.1} GB are available; {fix}",
                gb(need),
                gb(have)
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_replaces_and_sets_0644() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, |w| w.write_all(b"one")).unwrap();
        write_atomic(&p, |w| w.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // 0644 under the usual umask 022 (never the 0600 of a private temporary file).
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{mode:o}");
        }
        assert_eq!(names(dir.path()), ["a.txt"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        fs::write(&p, b"old").unwrap();
        let e = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("a.txt"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.txt"]);
        // A panic inside the writer removes the temporary file too.
        let r = std::panic::catch_unwind(|| {
            let _ = write_atomic(&p, |_| panic!("boom"));
        });
        assert!(r.is_err());
        assert_eq!(names(dir.path()), ["a.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_directories_fifos_devices_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let e = write_atomic(&sub, |w| w.write_all(b"x")).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = write_atomic(&fifo, |w| w.write_all(b"x")).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
        assert!(check_writable(&fifo).is_err());
        let e = check_output(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(e.contains("a device"), "{e}");
        let target = dir.path().join("target.txt");
        fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_atomic(&link, |w| w.write_all(b"x")).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo_like());
    }

    trait FifoLike {
        fn is_fifo_like(&self) -> bool;
    }
    impl FifoLike for fs::FileType {
        fn is_fifo_like(&self) -> bool {
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileTypeExt;
                self.is_fifo()
            }
            #[cfg(not(unix))]
            false
        }
    }

    #[test]
    fn distinct_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::write(&a, b"a").unwrap();
        let dotted = dir.path().join(".").join("a");
        assert!(check_distinct(&dotted, &[&a]).unwrap_err().to_string().contains("is the input"));
        assert!(check_distinct(&dir.path().join("b"), &[&a]).is_ok());
    }

    #[test]
    fn temp_names_and_stale_cleanup() {
        assert_eq!(temp_owner(".data.npz.tmp-123-abcdef"), Some(("data.npz", 123)));
        assert_eq!(temp_owner(".epoch-0002.tmp-77"), Some(("epoch-0002", 77)));
        assert_eq!(temp_owner("data.npz"), None);
        assert_eq!(temp_owner(".x.tmp-abc"), None);
        let dir = tempfile::tempdir().unwrap();
        // A pid above any kernel's pid_max never runs.
        let dead = 2_000_000_000u32;
        fs::write(dir.path().join(format!(".a.txt.tmp-{dead}-xyz")), b"").unwrap();
        fs::create_dir(dir.path().join(format!(".epoch-0001.tmp-{dead}"))).unwrap();
        let mine = dir.path().join(format!(".a.txt.tmp-{}-xyz", std::process::id()));
        fs::write(&mine, b"").unwrap();
        fs::write(dir.path().join("keep.txt"), b"").unwrap();
        if Path::new("/proc/self").exists() {
            assert_eq!(remove_stale_temps(dir.path(), Some("b.txt")), 0);
            assert_eq!(remove_stale_temps(dir.path(), None), 2);
            let mut expect = vec![mine.file_name().unwrap().to_string_lossy().into_owned()];
            expect.push("keep.txt".into());
            expect.sort();
            assert_eq!(names(dir.path()), expect);
        }
    }

    #[test]
    fn memory_check_refuses_the_impossible() {
        assert!(check_memory(None, "x", "lower y").is_err());
        if available_memory().is_some() {
            let e = check_memory(Some(u64::MAX), "collect", "lower --size").unwrap_err();
            assert!(e.to_string().contains("lower --size"), "{e}");
        }
        assert!(check_memory(Some(1), "x", "y").is_ok());
    }
}
