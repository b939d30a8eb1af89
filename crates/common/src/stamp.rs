//! Whether a file changed since it was last read: its modification time, size and inode. A file replaced
//! by rename (as config management writes) gets a new inode even within one mtime tick.

use std::path::Path;
use std::time::SystemTime;

pub type Stamp = (SystemTime, u64, u64);

/// The file's stamp now; none if it cannot be read.
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}
