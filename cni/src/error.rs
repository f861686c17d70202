//! CNI error objects (spec 1.0 "Error", 1.1 codes 50/51): what the plugin prints on
//! stdout when it fails, with the code a runtime acts on.

use serde::Serialize;

/// The well-known codes of the spec, and ours (100 and up are the plugin's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion,
    UnsupportedField,
    UnknownContainer,
    InvalidEnv,
    Io,
    Decode,
    InvalidConfig,
    TryAgainLater,
    /// CNI 1.1 `STATUS`: the plugin cannot add containers now.
    NotAvailable,
    /// vswitchd refused a request (its one-line message is the error's `msg`).
    Refused,
    /// A delegated IPAM plugin's own code, passed on as it gave it (host-local's 999,
    /// a plugin's code of 100 or more).
    Delegated(u32),
}

impl Code {
    /// The number the spec's error object carries.
    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnv => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::Refused => 100,
            Code::Delegated(n) => n,
        }
    }
}

/// One CNI error: `{"cniVersion":…,"code":N,"msg":…,"details":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: one_line(msg.into()),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = one_line(details.into());
        self
    }

    /// The error object as the spec prints it, for `version` (the config's, or ours when
    /// the config could not be read).
    pub fn to_json(&self, version: &str) -> String {
        #[derive(Serialize)]
        struct Obj<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Obj {
            cni_version: version,
            code: self.code.number(),
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"error\"}}", self.code.number()))
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// Runtimes log `msg` on one line; a newline from a child's output would break that.
fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        s
    }
}

/// Shorthand for a `Result` whose error is a [`CniError`].
pub type Result<T> = std::result::Result<T, CniError>;

/// An error of code `code` from any message.
pub fn err(code: Code, msg: impl Into<String>) -> CniError {
    CniError::new(code, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_object_on_one_line() {
        let e = err(Code::InvalidConfig, "bad\nthing").with_details("x");
        assert_eq!(
            e.to_json("1.0.0"),
            r#"{"cniVersion":"1.0.0","code":7,"msg":"bad; thing","details":"x"}"#
        );
        assert_eq!(
            err(Code::TryAgainLater, "later").to_json("0.4.0"),
            r#"{"cniVersion":"0.4.0","code":11,"msg":"later"}"#
        );
    }
}
