//! What a planning error is and how it reads: one `FILE:LINE: message` per problem,
//! collected while resolving so that a wrong file shows all its problems at once.

use std::fmt;

use crate::model::Location;

/// One problem in a file, at a line (0 when the whole file is meant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub line: u64,
    pub msg: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line per error, whatever the file held: control characters in a name
        // quoted back (YAML's "h\n1") are shown escaped.
        let mut msg = String::with_capacity(self.msg.len());
        for c in self.msg.chars() {
            if c.is_control() {
                msg.extend(c.escape_default());
            } else {
                msg.push(c);
            }
        }
        if self.line > 0 {
            write!(f, "{}:{}: {msg}", self.file, self.line)
        } else {
            write!(f, "{}: {msg}", self.file)
        }
    }
}

/// Every problem found in a file, in line order.
#[derive(Debug, Clone)]
pub struct FileErrors(pub Vec<FileError>);

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

/// Collects errors while resolving.
pub(super) struct Cx<'a> {
    pub(super) file: &'a str,
    pub(super) errs: Vec<FileError>,
}

impl Cx<'_> {
    pub(super) fn err(&mut self, at: &Location, msg: impl Into<String>) {
        self.errs.push(FileError {
            file: self.file.to_string(),
            line: at.line(),
            msg: msg.into(),
        });
    }

    /// Records an error and gives up on what was being resolved: its error says it all.
    pub(super) fn fail<T>(&mut self, at: &Location, msg: impl Into<String>) -> Option<T> {
        self.err(at, msg);
        None
    }
}

/// Makes a serde-saphyr error read like the others: `message` (the location goes into
/// the line number), with hints where the library's words assume knowledge of serde.
pub(super) fn serde_error(file: &str, e: &serde_saphyr::Error) -> FileError {
    let line = e.location().map(|l| l.line()).unwrap_or(0);
    let mut msg = e.without_snippet().to_string();
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    if let Some(rest) = msg.strip_prefix("error: ") {
        // "error: line N column M: msg"
        msg = rest
            .split_once(": ")
            .filter(|(head, _)| head.starts_with("line "))
            .map(|(_, m)| m.to_string())
            .unwrap_or_else(|| rest.to_string());
    }
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        msg = format!("duplicate key `{key}`");
    } else if msg.contains("after enum variant value") {
        msg =
            "a check is a map with exactly one key, its kind, e.g. `- ping: {from: h1, to: h2}`; \
               put `name:` and every option inside it"
                .into();
    }
    FileError {
        file: file.to_string(),
        line,
        msg,
    }
}
