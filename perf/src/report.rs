//! What `perf` prints: medians with their range ([`Stats`], [`line()`], [`percent`]),
//! percentiles, and the flat JSON object of `--json` ([`Json`]).

use std::fmt::Write as _;

/// The median and range of one figure over repetitions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Stats {
    /// Every field divided by 1000 (ns → µs).
    pub(crate) fn thousandths(self) -> Stats {
        Stats {
            median: self.median / 1e3,
            min: self.min / 1e3,
            max: self.max / 1e3,
        }
    }
}

/// The median, minimum and maximum of `v` (which must not be empty).
pub(crate) fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

/// `x` with a k or M suffix (2 decimals below a thousand).
pub(crate) fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.2}")
    }
}

/// Prints one figure: name, median, unit, `[min .. max]`.
pub(crate) fn line(name: &str, unit: &str, s: Stats) {
    println!(
        "{name:<52} {:>9} {unit:<6} [{} .. {}]",
        human(s.median),
        human(s.min),
        human(s.max)
    );
}

/// Prints a same-run ratio as a percentage: median `[min .. max]` over repetitions.
pub(crate) fn percent(label: &str, s: Stats, note: &str) {
    println!(
        "  {label} = {:.1} % [{:.1} .. {:.1}]{note}",
        s.median * 100.0,
        s.min * 100.0,
        s.max * 100.0
    );
}

/// The `p` percentile (0..=1, nearest rank) of `sorted`; NaN if it is empty.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64
}

/// The JSON object printed on the last line (flat keys, numbers only).
#[derive(Default)]
pub(crate) struct Json(Vec<(String, String)>);

impl Json {
    pub(crate) fn num(&mut self, k: impl Into<String>, v: f64) {
        let v = if v.is_finite() {
            format!("{v:.4}")
        } else {
            "null".into()
        };
        self.0.push((k.into(), v));
    }
    pub(crate) fn str(&mut self, k: impl Into<String>, v: &str) {
        self.0.push((k.into(), format!("\"{v}\"")));
    }
    /// `k` (the median), `k_min` and `k_max`.
    pub(crate) fn stats(&mut self, k: &str, s: Stats) {
        self.num(k, s.median);
        self.num(format!("{k}_min"), s.min);
        self.num(format!("{k}_max"), s.max);
    }
    pub(crate) fn render(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{k}\":{v}");
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = stats(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(stats(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }

    #[test]
    fn json_is_flat_and_ordered() {
        let mut j = Json::default();
        j.str("mode", "loopback");
        j.num("msgs", 20000.0);
        j.stats("x", stats(vec![1.0, 2.0]));
        j.num("nan", f64::NAN);
        assert_eq!(
            j.render(),
            r#"{"mode":"loopback","msgs":20000.0000,"x":1.5000,"x_min":1.0000,"x_max":2.0000,"nan":null}"#
        );
    }

    #[test]
    fn human_and_percentile() {
        assert_eq!(human(33_400_000.0), "33.40M");
        assert_eq!(human(5_012.0), "5.0k");
        assert_eq!(human(12.0), "12.00");
        assert_eq!(percentile(&[10, 20, 30, 40, 50], 0.5), 30.0);
        assert!(percentile(&[], 0.99).is_nan());
    }
}
