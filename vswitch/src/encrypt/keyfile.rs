//! The daemon's WireGuard private key on disk: generated at first start, kept in a
//! file only its owner may read, beside the config file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the key of the daemon whose config is `db` lives: `conf.json` → `conf.wg.key`.
pub fn path_for(db: &Path) -> PathBuf {
    db.with_extension("wg.key")
}

/// Reads the key at `path`, or makes one there if there is none. Refuses a key file
/// others may read (a key others read is no longer a secret) or one that holds no key.
pub fn load_or_create(path: &Path) -> Result<wg::PrivateKey, String> {
    match fs::metadata(path) {
        Ok(m) => {
            let mode = m.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "WireGuard key file {} is readable by others (mode {:o}); chmod 600 it, or remove it for a new key",
                    path.display(),
                    mode & 0o777
                ));
            }
            let text = fs::read_to_string(path)
                .map_err(|e| format!("cannot read WireGuard key file {}: {e}", path.display()))?;
            wg::PrivateKey::parse(&text)
                .map_err(|e| format!("WireGuard key file {}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(format!(
            "cannot read WireGuard key file {}: {e}",
            path.display()
        )),
    }
}

fn create(path: &Path) -> Result<wg::PrivateKey, String> {
    let key = wg::PrivateKey::generate();
    let err =
        |e: std::io::Error| format!("cannot write WireGuard key file {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(err)?;
    }
    // Written under a temporary name with mode 0600 from the start, then renamed, so
    // no reader ever sees a half-written or readable key.
    let tmp = path.with_extension("wg.key.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(format!("{}\n", key.to_base64()).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_kept_and_refused_when_readable() {
        let dir = std::env::temp_dir().join(format!("vswitch-wgkey-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = path_for(&dir.join("conf.json"));
        assert!(p.ends_with("conf.wg.key"));
        let k1 = load_or_create(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let k2 = load_or_create(&p).unwrap();
        assert_eq!(k1.public(), k2.public());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create(&p).unwrap_err().contains("chmod 600"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, "garbage").unwrap();
        assert!(load_or_create(&p).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
