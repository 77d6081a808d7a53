//! Files only their owner may read: keys, generated passwords, mail.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `file`, readable and writable by its owner only
/// (0600 on Unix, whatever the umask), whole or not at all: it is written
/// beside under another name and then renamed into place, so a reader never
/// sees half of it and an older file keeps its contents until then.
pub fn write_private(file: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = file.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        if partial.exists() {
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let mut handle = options.open(&partial)?;
    handle.write_all(contents)?;
    handle.sync_all()?;
    std::fs::rename(partial, file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_private_file_is_whole_and_its_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deep/key.txt");
        write_private(&file, b"one").unwrap();
        write_private(&file, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "two");
        assert!(!file.with_extension("partial").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
