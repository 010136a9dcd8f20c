//! Run directories that protect themselves: one run at a time, no silent mixing with
//! an earlier run, no stale temporary files, and files with the user's permissions.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file of a run directory, holding the owner's process id.
pub const LOCK_FILE: &str = ".latent.lock";

/// The files a run of this toolkit writes into its directory; their presence marks an
/// earlier run, and [`RunDir::claim`] with `overwrite` removes them.
pub const RUN_OUTPUTS: [&str; 15] = [
    "summary.json",
    "metrics.jsonl",
    "checkpoint.safetensors",
    "reconstructions.png",
    "samples.png",
    "latent.png",
    "pseudo_inputs.png",
    "results.json",
    "results.md",
    "config.json",
    "latents.csv",
    "interpolation.png",
    "traversal.png",
    "best.safetensors",
    "scaler.json",
];

/// The subdirectory where the `generate` example writes what it draws from a trained
/// run; its [`RUN_OUTPUTS`] belong to the run (refused or removed with it).
pub const GENERATED_DIR: &str = "generated";

/// An exclusive claim on a run directory for as long as the value lives.
///
/// [`RunDir::claim`] creates the directory, takes its lock file ([`LOCK_FILE`], created
/// exclusively, holding this process's id), refuses a directory that holds an earlier
/// run unless `overwrite` is set (then the earlier run's outputs, [`RUN_OUTPUTS`] in it
/// and in its [`GENERATED_DIR`], are removed first, so the old and new runs never
/// mix), and removes stale temporary files of interrupted writes (`.checkpoint-*.tmp`,
/// `.tmp*`). A lock whose process is gone (a run killed with `kill -9`) is taken over.
/// Claims nest within one process: the trainer claims its `out_dir`, which an example
/// may already hold for the whole run.
/// Dropping the owning claim removes the lock.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    owned: bool,
}

impl RunDir {
    /// Claims `path` (see the type's docs).
    ///
    /// # Errors
    /// [`Error::RunDirBusy`] if another live process holds the directory;
    /// [`Error::RunDirOccupied`] if it holds an earlier run and `overwrite` is false;
    /// [`Error::Io`] for file system errors.
    pub fn claim(path: impl AsRef<Path>, overwrite: bool) -> Result<Self> {
        Self::claim_as(
            path,
            if overwrite {
                Earlier::Remove
            } else {
                Earlier::Refuse
            },
        )
    }

    /// Claims `path` to continue the run it holds: as [`Self::claim`], but the earlier
    /// run's outputs are kept (stale temporary files are still removed).
    ///
    /// # Errors
    /// [`Error::RunDirBusy`] if another live process holds the directory;
    /// [`Error::Io`] for file system errors.
    pub fn resume(path: impl AsRef<Path>) -> Result<Self> {
        Self::claim_as(path, Earlier::Keep)
    }

    fn claim_as(path: impl AsRef<Path>, earlier: Earlier) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        let lock = path.join(LOCK_FILE);
        let me = std::process::id();
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&lock) {
                Ok(mut f) => {
                    writeln!(f, "{me}").map_err(|e| Error::io(&lock, e))?;
                    let claim = RunDir { path, owned: true };
                    claim.prepare(earlier)?;
                    return Ok(claim);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&lock)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if pid == me => return Ok(RunDir { path, owned: false }),
                        Some(pid) if alive(pid) => {
                            return Err(Error::RunDirBusy { path, pid });
                        }
                        // A dead holder, or a lock left half-written: take it over.
                        _ => {
                            std::fs::remove_file(&lock).map_err(|e| Error::io(&lock, e))?;
                        }
                    }
                }
                Err(e) => return Err(Error::io(&lock, e)),
            }
        }
        Err(Error::io(
            &lock,
            std::io::Error::other("the lock was taken by another process meanwhile"),
        ))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this value owns the lock (false for a claim nested in one this process
    /// already holds).
    pub fn owns_lock(&self) -> bool {
        self.owned
    }

    /// Refuses or clears an earlier run, and removes stale temporary files.
    fn prepare(&self, mode: Earlier) -> Result<()> {
        let generated = self.path.join(GENERATED_DIR);
        let earlier: Vec<PathBuf> = RUN_OUTPUTS
            .iter()
            .flat_map(|f| [self.path.join(f), generated.join(f)])
            .filter(|p| p.exists())
            .collect();
        if !earlier.is_empty() {
            match mode {
                Earlier::Refuse => {
                    return Err(Error::RunDirOccupied {
                        path: self.path.clone(),
                    })
                }
                Earlier::Remove => {
                    for p in earlier {
                        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                    }
                    // The directory goes too when nothing else is in it.
                    let _ = std::fs::remove_dir(&generated);
                }
                Earlier::Keep => {}
            }
        }
        let entries = std::fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = (name.starts_with(".checkpoint-") && name.ends_with(".tmp"))
                || name.starts_with(".tmp");
            if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
                let p = entry.path();
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        Ok(())
    }
}

/// What a claim does with an earlier run's outputs.
#[derive(Clone, Copy)]
enum Earlier {
    Refuse,
    Remove,
    Keep,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.owned {
            // Nothing useful can be done about a failure here; the next claim treats a
            // lock of a dead process as stale.
            let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
        }
    }
}

/// Whether process `pid` exists (Linux: `/proc/<pid>`; elsewhere every holder counts
/// as alive, so a stale lock must be removed by hand).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Gives `path` the permissions a newly created file gets under the process's umask
/// (`0666 & !umask`): files written through a temporary file are created `0600`.
///
/// # Errors
/// [`Error::Io`] if the permissions cannot be set.
pub fn set_default_permissions(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Umask:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|m| u32::from_str_radix(m, 8).ok())
            })
            .unwrap_or(0o022);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666 & !umask))
            .map_err(|e| Error::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `path` atomically: `write` fills a temporary file beside it, which is synced,
/// given the umask's permissions and renamed over `path`, so a reader (or a crash) sees
/// the old file or the whole new one, never a part.
///
/// # Errors
/// [`Error::Io`] for file system errors; whatever `write` returns.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file());
        write(&mut w)?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    set_default_permissions(tmp.path())?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
