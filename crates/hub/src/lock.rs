//! Exclusive locks between processes (and threads): an OS file lock on a file
//! beside what it protects, released when dropped or when the process dies.
//!
//! Lock files are left in place: deleting one while another process waits on it
//! would let a third lock a new file of the same name.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::HubError;

/// A held lock.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Locks `path` (created if missing), calling `on_wait` first if another holder
    /// must be waited for.
    pub fn acquire(path: &Path, on_wait: impl FnOnce()) -> Result<FileLock, HubError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| HubError::io("creating", dir, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| HubError::io("opening the lock file", path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                on_wait();
                file.lock().map_err(|e| HubError::io("locking", path, e))?;
            }
            Err(TryLockError::Error(e)) => return Err(HubError::io("locking", path, e)),
        }
        Ok(FileLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = FileLock::acquire(&path, || panic!("nobody holds it yet")).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let waited = Arc::new(AtomicBool::new(false));
        let t = {
            let (path, released, waited) = (path.clone(), released.clone(), waited.clone());
            std::thread::spawn(move || {
                let _second =
                    FileLock::acquire(&path, || waited.store(true, Ordering::SeqCst)).unwrap();
                // Only reachable once the first lock is gone.
                assert!(released.load(Ordering::SeqCst));
            })
        };
        while !waited.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        released.store(true, Ordering::SeqCst);
        drop(first);
        t.join().unwrap();
    }
}
