//! The data `--data mnist` and the digit metric use (the digits, their licence, the classifier),
//! embedded in the binary: an installed treadc needs no source tree. Run from a checkout (a
//! `data/` folder with the digits and the classifier) it reads those files; elsewhere it unpacks
//! the embedded copy once into the temporary directory, named by the binary's version, and
//! reuses it while its bytes still equal the embedded ones (a killed run leaves nothing new).

use std::path::{Path, PathBuf};

use crate::failure::Failure;

/// The bundled files, by their path under the data folder.
const FILES: [(&str, &[u8]); 6] = [
    (
        "mnist/images-idx3-ubyte.gz",
        include_bytes!("../data/mnist/images-idx3-ubyte.gz"),
    ),
    (
        "mnist/labels-idx1-ubyte.gz",
        include_bytes!("../data/mnist/labels-idx1-ubyte.gz"),
    ),
    ("mnist/LICENSE", include_bytes!("../data/mnist/LICENSE")),
    ("mnist/README.md", include_bytes!("../data/mnist/README.md")),
    (
        "classifier/digits-cnn.safetensors",
        include_bytes!("../data/classifier/digits-cnn.safetensors"),
    ),
    (
        "classifier/README.md",
        include_bytes!("../data/classifier/README.md"),
    ),
];

/// The bundled data folder (`mnist/`, `classifier/`): the checkout's, or the embedded copy.
pub(crate) struct BundledData {
    dir: PathBuf,
    /// A private unpacked copy (when the shared one cannot be used), removed on drop.
    _private: Option<tempfile::TempDir>,
}

impl BundledData {
    /// `data/` under the working directory when it holds every bundled file, else the embedded
    /// copy unpacked under the temporary directory.
    pub(crate) fn unpack() -> Result<Self, Failure> {
        let local = PathBuf::from("data");
        if FILES.iter().all(|(name, _)| local.join(name).is_file()) {
            return Ok(BundledData {
                dir: local,
                _private: None,
            });
        }
        let shared = std::env::temp_dir().join(format!(
            "treadc-data-{}-{:016x}",
            env!("CARGO_PKG_VERSION"),
            fingerprint()
        ));
        if holds_the_files(&shared) {
            return Ok(BundledData {
                dir: shared,
                _private: None,
            });
        }
        let failed = |e: std::io::Error| {
            Failure::Other(format!(
                "cannot unpack the bundled data under {}: {e}",
                std::env::temp_dir().display()
            ))
        };
        let tmp = tempfile::Builder::new()
            .prefix("treadc-data-")
            .tempdir()
            .map_err(failed)?;
        for (name, bytes) in FILES {
            let path = tmp.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(failed)?;
            }
            std::fs::write(&path, bytes).map_err(failed)?;
        }
        // Publish it for later runs; where another run won the race (or the name is taken by
        // something else), this run keeps its private copy.
        let published = tmp.path().to_path_buf();
        if std::fs::rename(&published, &shared).is_ok() {
            let _ = tmp.keep();
            return Ok(BundledData {
                dir: shared,
                _private: None,
            });
        }
        Ok(BundledData {
            dir: published,
            _private: Some(tmp),
        })
    }

    /// The data folder.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// The digits' folder.
    pub(crate) fn mnist(&self) -> PathBuf {
        self.dir.join("mnist")
    }
}

/// FNV-1a over the embedded files: the shared copy's name changes with its contents.
fn fingerprint() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in FILES {
        for &b in name.as_bytes().iter().chain(bytes.iter()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Whether `dir` holds every bundled file with exactly the embedded bytes.
fn holds_the_files(dir: &Path) -> bool {
    FILES
        .iter()
        .all(|(name, bytes)| std::fs::read(dir.join(name)).is_ok_and(|b| b == *bytes))
}
