//! The build fingerprint: what must match for a seed to replay the same run elsewhere.
//!
//! A seed decides every choice of a run, but the run is also the code that makes the choices:
//! the library and simulator (the git commit), every dependency's version (`Cargo.lock`), the
//! compiler (code generation and the standard library's hashers and sorts), the target, and
//! the cfg flags that change what runs (`tokio_unstable`, the planted bugs, the null cipher,
//! debug assertions). `sim/build.rs` records them at build time; failures print them with the
//! replay command (`--fingerprint`), and `laxsim replay` warns when they differ from its own.
//!
//! The form is one shell-safe word, `key=value` pairs joined by commas, in a fixed order:
//! `laxnet-sim=0.1.0,git=<commit>,lock=<fnv-1a of Cargo.lock>,rustc=<version-hash>,target=<triple>,cfg=<flag+flag>`.

use std::fmt;

/// The keys, in the order they are printed.
pub const KEYS: [&str; 6] = ["laxnet-sim", "git", "lock", "rustc", "target", "cfg"];

/// A build fingerprint: values for [`KEYS`], in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    values: Vec<(String, String)>,
}

impl Fingerprint {
    /// The fingerprint of this build.
    pub fn current() -> Self {
        let v = [
            env!("CARGO_PKG_VERSION"),
            env!("LAXSIM_FP_GIT"),
            env!("LAXSIM_FP_LOCK"),
            env!("LAXSIM_FP_RUSTC"),
            env!("LAXSIM_FP_TARGET"),
            env!("LAXSIM_FP_CFG"),
        ];
        Fingerprint {
            values: KEYS
                .iter()
                .zip(v)
                .map(|(k, v)| ((*k).to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Parses the printed form. Unknown keys are kept (a newer build may print more).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut values = Vec::new();
        for part in s.trim().split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("not a fingerprint (expected key=value,...): {s:?}"))?;
            values.push((k.to_string(), v.to_string()));
        }
        Ok(Fingerprint { values })
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The keys whose values differ, with (ours, theirs); a key only one side has counts as
    /// differing. An `unknown` commit on either side is not a difference we can see.
    pub fn differences(&self, other: &Fingerprint) -> Vec<(String, String, String)> {
        let mut keys: Vec<&str> = self.values.iter().map(|(k, _)| k.as_str()).collect();
        for (k, _) in &other.values {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
        let mut out = Vec::new();
        for k in keys {
            let a = self.get(k).unwrap_or("(absent)");
            let b = other.get(k).unwrap_or("(absent)");
            if a != b && !(k == "git" && (a == "unknown" || b == "unknown")) {
                out.push((k.to_string(), a.to_string(), b.to_string()));
            }
        }
        out
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_one_shell_word() {
        let fp = Fingerprint::current();
        let s = fp.to_string();
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "=,.+-_".contains(c)),
            "{s}"
        );
        assert_eq!(Fingerprint::parse(&s), Ok(fp.clone()));
        assert!(fp.differences(&fp).is_empty());
        assert_eq!(fp.get("laxnet-sim"), Some(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn differences_name_the_keys() {
        let a = Fingerprint::parse("laxnet-sim=0.1.0,git=abc,lock=01,cfg=tokio_unstable").unwrap();
        let b = Fingerprint::parse("laxnet-sim=0.1.0,git=unknown,lock=02,cfg=none").unwrap();
        let d: Vec<String> = a.differences(&b).into_iter().map(|d| d.0).collect();
        assert_eq!(d, ["lock", "cfg"]);
        assert!(Fingerprint::parse("nonsense").is_err());
    }
}
