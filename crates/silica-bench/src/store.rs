//! The results file: every record of every run, appended as one JSON line (the `-o jsonl` form), so runs on
//! different days and machines can be compared later. `--no-save` skips it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::record::BenchRecord;

/// The results file name inside the data directory.
pub const RESULTS_FILE: &str = "bench-results.jsonl";

/// The default results file: `$SILICA_DATA_DIR/bench-results.jsonl`, else `$XDG_DATA_HOME/silica/…`, else
/// `~/.local/share/silica/…` (the XDG base-directory default; the same path on macOS keeps one place for a
/// command-line tool). `None` when no home directory is known.
pub fn default_results_path() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = env("SILICA_DATA_DIR") {
        return Some(d.join(RESULTS_FILE));
    }
    let base = env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local/share")))?;
    Some(base.join("silica").join(RESULTS_FILE))
}

/// An append-only JSONL file of records.
#[derive(Debug)]
pub struct ResultsFile {
    path: PathBuf,
    file: fs_err::File,
}

impl ResultsFile {
    /// Opens (creating it and its directory if needed) `path` for appending.
    ///
    /// # Errors
    /// [`Error::Results`] naming the path.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Results {
            path: path.to_owned(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(dir).map_err(io)?;
        }
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(ResultsFile {
            path: path.to_owned(),
            file,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line, written in a single call and flushed, so an interrupted run keeps every
    /// finished record.
    ///
    /// # Errors
    /// [`Error::Results`] naming the path.
    pub fn append(&mut self, r: &BenchRecord) -> Result<(), Error> {
        let io = |e: String| Error::Results {
            path: self.path.clone(),
            message: e,
        };
        let mut line = serde_json::to_string(r).map_err(|e| io(e.to_string()))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| io(e.to_string()))?;
        self.file.flush().map_err(|e| io(e.to_string()))
    }
}

/// Reads every record of a results file (lines that do not parse are errors naming the line).
///
/// # Errors
/// [`Error::Results`] naming the path and line.
pub fn read_results(path: &Path) -> Result<Vec<BenchRecord>, Error> {
    let text = fs_err::read_to_string(path).map_err(|e| Error::Results {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Results {
                path: path.to_owned(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
