//! Counter declarations and their exposition.
//!
//! This crate owns the one place a counter's name and meaning are written down: the
//! [`counters!`] macro turns a list of documented variants into an enum that knows its
//! count, its names (what `vsctl stats` prints and `--json` uses as keys) and its docs
//! (Prometheus `# HELP`). It also owns the Prometheus text format ([`Exposition`]).
//! It has no dependencies, so the I/O-free crates (`vxlan`, `nat`) can declare their
//! drop reasons without depending on the switch.

mod prometheus;

pub use prometheus::{escape_label, help_text, validate, Exposition, Family};

/// An enum declared with [`counters!`]: a fixed set of counters, each with a unique
/// snake_case name and a doc line.
pub trait Counter: Copy + 'static {
    /// How many counters the enum declares; the length of a per-worker array of them.
    const COUNT: usize;
    /// Every counter, in declaration (and array-index) order.
    fn all() -> &'static [Self];
    /// The counter's name, as `vsctl stats` prints it.
    fn name(self) -> &'static str;
    /// The counter's doc comment, raw (one `\n`-ended line per doc line).
    fn doc(self) -> &'static str;
    /// The counter's index in an array of `COUNT` values.
    fn index(self) -> usize;
}

/// `(name, doc, value)` for every counter of `C`, given its values in index order.
///
/// `values` shorter than `C::COUNT` yields only the counters it has values for.
pub fn entries<C: Counter>(
    values: &[u64],
) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
    C::all()
        .iter()
        .zip(values)
        .map(|(c, v)| (c.name(), c.doc(), *v))
}

/// Declares a counter enum once: each variant's doc comment, then `Variant => "name"`,
/// optionally followed by `[attr, ...]` for attributes other than docs (e.g.
/// `[error("...")]` for thiserror).
///
/// ```
/// metrics_decl::counters! {
///     /// Why a frame was dropped.
///     #[derive(Debug)]
///     pub enum Why {
///         /// Shorter than an Ethernet header.
///         Runt => "runt",
///         /// The TX queue was full.
///         TxQueueFull => "tx_queue_full",
///     }
/// }
/// use metrics_decl::Counter;
/// assert_eq!(Why::COUNT, 2);
/// assert_eq!(Why::TxQueueFull.name(), "tx_queue_full");
/// assert_eq!(Why::NAMES, ["runt", "tx_queue_full"]);
/// ```
///
/// The enum gets `Clone, Copy, PartialEq, Eq, Hash` and `#[repr(usize)]` (the variant is
/// the index into a per-worker array), inherent `COUNT`, `ALL`, `NAMES`, `DOCS`,
/// `name()`, `doc()`, and the [`Counter`] trait.
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[doc = $doc:literal])+
                $variant:ident => $cname:literal $([$($vmeta:meta),* $(,)?])?
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(usize)]
        $vis enum $name {
            $(
                $(#[doc = $doc])+
                $($(#[$vmeta])*)?
                $variant,
            )+
        }

        #[allow(dead_code)]
        impl $name {
            /// How many counters there are.
            pub const COUNT: usize = [$($cname),+].len();
            /// Every counter, in index order.
            pub const ALL: [$name; Self::COUNT] = [$($name::$variant),+];
            /// Every counter's name, in index order.
            pub const NAMES: [&'static str; Self::COUNT] = [$($cname),+];
            /// Every counter's doc comment, in index order.
            pub const DOCS: [&'static str; Self::COUNT] = [$(concat!($($doc, "\n"),+)),+];

            /// The counter's name, as `vsctl stats` prints it.
            pub const fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }

            /// The counter's doc comment.
            pub const fn doc(self) -> &'static str {
                Self::DOCS[self as usize]
            }
        }

        impl $crate::Counter for $name {
            const COUNT: usize = $name::COUNT;
            fn all() -> &'static [Self] {
                &$name::ALL
            }
            fn name(self) -> &'static str {
                $name::name(self)
            }
            fn doc(self) -> &'static str {
                $name::doc(self)
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// Whether `s` is a non-empty snake_case name (`[a-z][a-z0-9_]*`, no `__`, no trailing
/// `_`): the shape every counter name must have to be a JSON key, a Prometheus label
/// value and a metric-name suffix alike.
pub fn is_snake_case(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(b'a'..=b'z'))
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && !s.contains("__")
        && !s.ends_with('_')
}

/// Checks a declaration: names unique and snake_case, every doc non-empty. For the
/// declaring crates' unit tests.
pub fn check<C: Counter>() -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for c in C::all() {
        if !is_snake_case(c.name()) {
            return Err(format!("{:?} is not snake_case", c.name()));
        }
        if !seen.insert(c.name()) {
            return Err(format!("{:?} is declared twice", c.name()));
        }
        if help_text(c.doc()).is_empty() {
            return Err(format!("{:?} has no doc", c.name()));
        }
    }
    if seen.len() != C::COUNT {
        return Err(format!("{} counters but COUNT is {}", seen.len(), C::COUNT));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    counters! {
        /// A test declaration.
        #[derive(Debug)]
        pub enum T {
            /// First line.
            /// Second line.
            A => "alpha",
            /// Only line.
            B => "beta_two" [allow(dead_code)],
        }
    }

    #[test]
    fn declaration_yields_count_names_docs() {
        assert_eq!(T::COUNT, 2);
        assert_eq!(T::ALL, [T::A, T::B]);
        assert_eq!(T::B.name(), "beta_two");
        assert_eq!(help_text(T::A.doc()), "First line. Second line.");
        assert_eq!(<T as Counter>::index(T::B), 1);
        let e: Vec<_> = entries::<T>(&[3, 4]).map(|(n, _, v)| (n, v)).collect();
        assert_eq!(e, [("alpha", 3), ("beta_two", 4)]);
        assert_eq!(check::<T>(), Ok(()));
    }

    #[test]
    fn snake_case() {
        for ok in ["runt", "tx_queue_full", "vxlan_bad_flags", "a1"] {
            assert!(is_snake_case(ok), "{ok}");
        }
        for bad in ["", "Runt", "tx-queue", "_x", "x_", "a__b", "1a", "a b"] {
            assert!(!is_snake_case(bad), "{bad}");
        }
    }
}
