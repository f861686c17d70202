//! The Prometheus text exposition format (version 0.0.4): families of counters, each
//! with one `# HELP` and `# TYPE` line and its samples together, as the format requires.

use std::fmt::Write as _;

use crate::Counter;

/// One metric family: a name, its help, its type and its labelled samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Family {
    name: String,
    help: String,
    gauge: bool,
    /// Values as they are written: integers exactly, seconds as decimals.
    samples: Vec<(Vec<(String, String)>, String)>,
}

impl Family {
    /// Adds a sample with these labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.push(labels, value.to_string())
    }

    /// Adds a sample with a fractional value (seconds).
    pub fn sample_f64(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.push(labels, format!("{value:?}"))
    }

    fn push(&mut self, labels: &[(&str, &str)], value: String) -> &mut Self {
        let l = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        self.samples.push((l, value));
        self
    }
}

/// Counter families in the order first declared, rendered as one exposition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter family `name`, created with `help` the first time it is asked for;
    /// later calls add samples to the same family, so a family is never split.
    pub fn counter(&mut self, name: &str, help: &str) -> &mut Family {
        self.family(name, help, false)
    }

    /// The gauge family `name` (a value that goes up and down: table sizes, limits,
    /// `_info` series), as [`Exposition::counter`] otherwise.
    pub fn gauge(&mut self, name: &str, help: &str) -> &mut Family {
        self.family(name, help, true)
    }

    fn family(&mut self, name: &str, help: &str, gauge: bool) -> &mut Family {
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help_text(help),
                    gauge,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        &mut self.families[i]
    }

    /// One family per counter of `C`, named `{prefix}_{name}_total` with the counter's doc
    /// as help; `values` gives the counters this object (`labels`) has.
    pub fn each<C: Counter>(
        &mut self,
        prefix: &str,
        labels: &[(&str, &str)],
        values: impl IntoIterator<Item = (C, u64)>,
    ) {
        for (c, v) in values {
            self.counter(&format!("{prefix}_{}_total", c.name()), c.doc())
                .sample(labels, v);
        }
    }

    /// One family `name` for all counters of `C`, told apart by a `reason` label; the
    /// help is `help` followed by every reason's name and doc, so no doc is lost.
    pub fn by_reason<C: Counter>(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        values: impl IntoIterator<Item = (C, u64)>,
    ) {
        let mut full = help_text(help);
        for c in C::all() {
            let _ = write!(full, " {}: {}", c.name(), help_text(c.doc()));
        }
        let fam = self.counter(name, &full);
        for (c, v) in values {
            let mut l = labels.to_vec();
            l.push(("reason", c.name()));
            fam.sample(&l, v);
        }
    }

    /// The text exposition: `# HELP`, `# TYPE name counter|gauge`, then the samples.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let kind = if f.gauge { "gauge" } else { "counter" };
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            for (labels, v) in &f.samples {
                out.push_str(&f.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(val));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {v}");
            }
        }
        out
    }
}

/// A doc comment as one help line: lines trimmed and joined by single spaces.
pub fn help_text(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Escapes a help text: the format gives `\` and newline a meaning there.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Escapes a label value (`\`, `"` and newline), since port and bridge names come from
/// the user.
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Checks text against the exposition format as [`Exposition::render`] writes it: every
/// family's `# HELP` then `# TYPE … counter|gauge` once, its samples right after them,
/// names of `[a-zA-Z0-9_:]`, labels in braces, integer or finite decimal values. For tests of callers, since
/// `promtool` is not always at hand.
pub fn validate(text: &str) -> Result<(), String> {
    let mut current = String::new();
    let mut typed = false;
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !seen.insert(name.to_string()) {
                return Err(format!("family {name} split or repeated"));
            }
            current = name.to_string();
            typed = false;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let ok = rest == format!("{current} counter") || rest == format!("{current} gauge");
            if !ok || typed {
                return Err(format!("TYPE line {line:?} not after its HELP"));
            }
            typed = true;
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .ok_or_else(|| format!("sample without a value: {line:?}"))?;
            let finite = value.parse::<f64>().is_ok_and(f64::is_finite);
            if value.parse::<u64>().is_err() && !finite {
                return Err(format!("value not a number: {line:?}"));
            }
            let name = series.split('{').next().unwrap_or_default();
            if name != current || !typed {
                return Err(format!("sample outside its family: {line:?}"));
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            {
                return Err(format!("bad metric name {name:?}"));
            }
            let labels = &series[name.len()..];
            let braced = labels.starts_with('{') && labels.ends_with('}');
            if !labels.is_empty() && !braced {
                return Err(format!("bad labels {labels:?}"));
            }
        }
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("no newline at the end".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::counters! {
        /// Test drops.
        #[derive(Debug)]
        enum D {
            /// Too short.
            Runt => "runt",
            /// Queue full.
            Full => "tx_queue_full",
        }
    }

    #[test]
    fn renders_families_with_help_type_and_labels() {
        let mut e = Exposition::new();
        e.by_reason(
            "vswitch_port_drops_total",
            "Frames dropped at a port.",
            &[("port", "p1")],
            [(D::Runt, 2), (D::Full, 0)],
        );
        e.each("vswitch_bridge", &[("bridge", "br\"0")], [(D::Full, 7)]);
        e.by_reason(
            "vswitch_port_drops_total",
            "",
            &[("port", "p2")],
            [(D::Runt, 1)],
        );
        let text = e.render();
        assert_eq!(validate(&text), Ok(()));
        assert_eq!(
            text,
            "# HELP vswitch_port_drops_total Frames dropped at a port. runt: Too short. tx_queue_full: Queue full.\n\
             # TYPE vswitch_port_drops_total counter\n\
             vswitch_port_drops_total{port=\"p1\",reason=\"runt\"} 2\n\
             vswitch_port_drops_total{port=\"p1\",reason=\"tx_queue_full\"} 0\n\
             vswitch_port_drops_total{port=\"p2\",reason=\"runt\"} 1\n\
             # HELP vswitch_bridge_tx_queue_full_total Queue full.\n\
             # TYPE vswitch_bridge_tx_queue_full_total counter\n\
             vswitch_bridge_tx_queue_full_total{bridge=\"br\\\"0\"} 7\n"
        );
    }

    #[test]
    fn gauges_and_seconds() {
        let mut e = Exposition::new();
        e.gauge("vswitch_build_info", "Build.")
            .sample(&[("version", "0.1.0")], 1);
        e.counter("vswitch_worker_busy_seconds_total", "Busy.")
            .sample_f64(&[("worker", "0")], 1.5)
            .sample_f64(&[("worker", "1")], 0.0);
        let text = e.render();
        assert_eq!(validate(&text), Ok(()));
        assert_eq!(
            text,
            "# HELP vswitch_build_info Build.\n\
             # TYPE vswitch_build_info gauge\n\
             vswitch_build_info{version=\"0.1.0\"} 1\n\
             # HELP vswitch_worker_busy_seconds_total Busy.\n\
             # TYPE vswitch_worker_busy_seconds_total counter\n\
             vswitch_worker_busy_seconds_total{worker=\"0\"} 1.5\n\
             vswitch_worker_busy_seconds_total{worker=\"1\"} 0.0\n"
        );
        assert!(validate("# HELP x h\n# TYPE x gauge\nx NaN\n").is_err());
    }

    #[test]
    fn validate_refuses_malformed_text() {
        assert!(validate("x 1\n").is_err());
        assert!(validate("# HELP x h\n# TYPE x counter\nx one\n").is_err());
        assert!(validate("# HELP x h\n# TYPE x counter\nx 1\n# HELP x h\n").is_err());
        assert!(validate("# HELP x h\n# TYPE x counter\ny 1\n").is_err());
        assert_eq!(
            validate("# HELP x h\n# TYPE x counter\nx{a=\"b\"} 1\n"),
            Ok(())
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        assert_eq!(help_text(" One.\n Two.\n"), "One. Two.");
    }
}
