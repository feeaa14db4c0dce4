//! Workloads after go-ycsb's conventions: a properties file
//! (`key=value`, `#` comments) such as `loadgen/workloads/workloada`,
//! overridden by `-p key=value`, validated into a [`Workload`].
//!
//! Owns the workload's knobs and their limits. Invariants: a `Workload`
//! that exists has passed `validate` — proportions in `[0, 1]` with a
//! positive sum, a record size within the protocol's value limit, every
//! count below its `_MAX`; unknown property names are rejected (a typo never
//! silently runs a different benchmark).

use crate::dist::Distribution;
use crate::error::LoadgenError;
use serde::Serialize;
use std::path::Path;

/// Most records a load phase may insert.
pub const RECORDS_MAX: u64 = 1_000_000_000;
/// Most operations of a run phase.
pub const OPERATIONS_MAX: u64 = 1_000_000_000_000;
/// Most fields per record.
pub const FIELDS_MAX: u32 = 1024;
/// Most concurrent workers (YCSB's threadcount).
pub const THREADS_MAX: usize = 4096;
/// Highest open-loop rate, in operations per second.
pub const TARGET_OPS_PER_S_MAX: u64 = 10_000_000;
/// Longest key-number padding, in digits.
pub const ZERO_PADDING_DIGITS_MAX: usize = 20;
/// Longest key prefix, in bytes.
pub const KEY_PREFIX_BYTES_MAX: usize = 64;

/// The built-in copies of `loadgen/workloads/*`, usable by name from any
/// directory (`-P workloada`).
const BUILTIN: [(&str, &str); 6] = [
    ("workloada", include_str!("../workloads/workloada")),
    ("workloadb", include_str!("../workloads/workloadb")),
    ("workloadc", include_str!("../workloads/workloadc")),
    ("workloadd", include_str!("../workloads/workloadd")),
    ("workloade", include_str!("../workloads/workloade")),
    ("workloadf", include_str!("../workloads/workloadf")),
];

/// Properties accepted for go-ycsb compatibility that change nothing here
/// (one value holds all fields of a record; it is always read and written
/// whole).
const IGNORED: [&str; 5] = [
    "workload",
    "readallfields",
    "writeallfields",
    "dotransactions",
    "fieldlengthdistribution",
];

/// How record numbers become keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InsertOrder {
    /// `prefix + fnv64(n)`: inserts land all over the key space (YCSB default).
    Hashed,
    /// `prefix + n`: inserts append at the end of the key space.
    Ordered,
}

/// A validated workload.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub name: String,
    pub recordcount: u64,
    /// Operations of the run phase; `None`: until the duration ends.
    pub operationcount: Option<u64>,
    pub fieldcount: u32,
    pub fieldlength: usize,
    pub readproportion: f64,
    pub updateproportion: f64,
    pub insertproportion: f64,
    pub scanproportion: f64,
    pub readmodifywriteproportion: f64,
    pub requestdistribution: Distribution,
    pub maxscanlength: u32,
    pub scanlengthdistribution: Distribution,
    pub insertorder: InsertOrder,
    pub zeropadding: usize,
    pub keyprefix: String,
    /// Concurrent workers; `None`: connections × in-flight.
    pub threadcount: Option<usize>,
    /// Open-loop rate in operations per second; 0: closed loop.
    pub target: u64,
}

impl Default for Workload {
    /// go-ycsb's CoreWorkload defaults.
    fn default() -> Workload {
        Workload {
            name: "default".into(),
            recordcount: 1000,
            operationcount: Some(1000),
            fieldcount: 10,
            fieldlength: 100,
            readproportion: 0.95,
            updateproportion: 0.05,
            insertproportion: 0.0,
            scanproportion: 0.0,
            readmodifywriteproportion: 0.0,
            requestdistribution: Distribution::Uniform,
            maxscanlength: 1000,
            scanlengthdistribution: Distribution::Uniform,
            insertorder: InsertOrder::Hashed,
            zeropadding: 1,
            keyprefix: "user".into(),
            threadcount: None,
            target: 0,
        }
    }
}

impl Workload {
    /// Reads `spec`: a file path, or the name of a built-in workload
    /// (`workloada`…`workloadf`, or just `a`…`f`).
    pub fn load(spec: &str) -> Result<Workload, LoadgenError> {
        let path = Path::new(spec);
        if path.exists() {
            let text =
                std::fs::read_to_string(path).map_err(|source| LoadgenError::WorkloadFile {
                    path: path.to_path_buf(),
                    source,
                })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| spec.to_string());
            return Workload::parse(&name, &text);
        }
        let wanted = if spec.len() == 1 {
            format!("workload{spec}")
        } else {
            spec.to_string()
        };
        match BUILTIN.iter().find(|(n, _)| *n == wanted) {
            Some((name, text)) => Workload::parse(name, text),
            None => Err(LoadgenError::Workload {
                source_name: spec.into(),
                reason: "no such file, and not a built-in workload (workloada … workloadf)".into(),
            }),
        }
    }

    /// Parses a properties text over the defaults.
    pub fn parse(name: &str, text: &str) -> Result<Workload, LoadgenError> {
        let mut w = Workload {
            name: name.to_string(),
            ..Workload::default()
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| LoadgenError::Workload {
                source_name: format!("{name} line {}", i + 1),
                reason,
            };
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| err("expected key=value".into()))?;
            w.set(k.trim(), v.trim()).map_err(err)?;
        }
        w.validate().map_err(|reason| LoadgenError::Workload {
            source_name: name.into(),
            reason,
        })?;
        Ok(w)
    }

    /// Applies `-p key=value` overrides, then validates again.
    pub fn apply_overrides(&mut self, props: &[String]) -> Result<(), LoadgenError> {
        for p in props {
            let err = |reason: String| LoadgenError::Workload {
                source_name: format!("-p {p}"),
                reason,
            };
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| err("expected key=value".into()))?;
            self.set(k.trim(), v.trim()).map_err(err)?;
        }
        self.validate().map_err(|reason| LoadgenError::Workload {
            source_name: format!("{} with -p overrides", self.name),
            reason,
        })
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{key}: {v:?} is not a valid number"))
        }
        match key {
            "recordcount" => self.recordcount = num(key, value)?,
            "operationcount" => self.operationcount = Some(num(key, value)?),
            "fieldcount" => self.fieldcount = num(key, value)?,
            "fieldlength" => self.fieldlength = num(key, value)?,
            "readproportion" => self.readproportion = num(key, value)?,
            "updateproportion" => self.updateproportion = num(key, value)?,
            "insertproportion" => self.insertproportion = num(key, value)?,
            "scanproportion" => self.scanproportion = num(key, value)?,
            "readmodifywriteproportion" => self.readmodifywriteproportion = num(key, value)?,
            "requestdistribution" => self.requestdistribution = value.parse()?,
            "maxscanlength" => self.maxscanlength = num(key, value)?,
            "scanlengthdistribution" => self.scanlengthdistribution = value.parse()?,
            "insertorder" => {
                self.insertorder = match value {
                    "hashed" => InsertOrder::Hashed,
                    "ordered" => InsertOrder::Ordered,
                    _ => return Err(format!("insertorder: {value:?} (hashed, ordered)")),
                }
            }
            "zeropadding" => self.zeropadding = num(key, value)?,
            "keyprefix" => self.keyprefix = value.to_string(),
            "threadcount" => self.threadcount = Some(num(key, value)?),
            "target" => self.target = num(key, value)?,
            "fieldlengthdistribution" if value != "constant" => {
                return Err("fieldlengthdistribution: only constant is supported".into())
            }
            k if IGNORED.contains(&k) => {}
            k => return Err(format!("unknown property {k:?}")),
        }
        Ok(())
    }

    /// Checks every bound; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.recordcount == 0 || self.recordcount > RECORDS_MAX {
            return Err(format!("recordcount must be 1..={RECORDS_MAX}"));
        }
        if let Some(n) = self.operationcount {
            if n == 0 || n > OPERATIONS_MAX {
                return Err(format!("operationcount must be 1..={OPERATIONS_MAX}"));
            }
        }
        if self.fieldcount == 0 || self.fieldcount > FIELDS_MAX {
            return Err(format!("fieldcount must be 1..={FIELDS_MAX}"));
        }
        let value_bytes_max = golem_wire::limits::VALUE_BYTES_MAX;
        if self.value_bytes().is_none_or(|b| b > value_bytes_max) {
            return Err(format!(
                "fieldcount × fieldlength must be at most {value_bytes_max} bytes"
            ));
        }
        let props = self.proportions();
        if props.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err("every proportion must be in 0..=1".into());
        }
        if props.iter().sum::<f64>() <= 0.0 {
            return Err("the proportions add up to zero: no operation to run".into());
        }
        let scan_max = golem_wire::limits::SCAN_PAIRS_MAX;
        if self.maxscanlength == 0 || self.maxscanlength > scan_max {
            return Err(format!("maxscanlength must be 1..={scan_max}"));
        }
        if self.zeropadding == 0 || self.zeropadding > ZERO_PADDING_DIGITS_MAX {
            return Err(format!("zeropadding must be 1..={ZERO_PADDING_DIGITS_MAX}"));
        }
        if self.keyprefix.len() > KEY_PREFIX_BYTES_MAX {
            return Err(format!(
                "keyprefix must be at most {KEY_PREFIX_BYTES_MAX} bytes"
            ));
        }
        if let Some(t) = self.threadcount {
            if t == 0 || t > THREADS_MAX {
                return Err(format!("threadcount must be 1..={THREADS_MAX}"));
            }
        }
        if self.target > TARGET_OPS_PER_S_MAX {
            return Err(format!("target must be 0..={TARGET_OPS_PER_S_MAX} ops/s"));
        }
        Ok(())
    }

    /// Bytes of one record's value (all its fields).
    pub fn value_bytes(&self) -> Option<usize> {
        (self.fieldcount as usize).checked_mul(self.fieldlength)
    }

    /// read, update, insert, scan, read-modify-write.
    pub fn proportions(&self) -> [f64; 5] {
        [
            self.readproportion,
            self.updateproportion,
            self.insertproportion,
            self.scanproportion,
            self.readmodifywriteproportion,
        ]
    }

    /// Inserts the run phase is expected to make (YCSB sizes its zipfian
    /// key space with twice this).
    pub fn expected_inserts(&self) -> u64 {
        let ops = self.operationcount.unwrap_or(self.recordcount) as f64;
        (ops * self.insertproportion * 2.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_workloads_parse() {
        for (name, _) in BUILTIN {
            let w = Workload::load(name).expect(name);
            assert_eq!(w.recordcount, 1000, "{name}");
        }
        let d = Workload::load("d").expect("workloadd");
        assert_eq!(d.requestdistribution, Distribution::Latest);
        assert_eq!(Workload::load("e").expect("e").maxscanlength, 100);
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let mut w = Workload::load("workloada").expect("a");
        w.apply_overrides(&["recordcount=5000".into(), "fieldlength=10".into()])
            .expect("valid");
        assert_eq!((w.recordcount, w.value_bytes()), (5000, Some(100)));
        assert!(w.apply_overrides(&["recordcount=0".into()]).is_err());
        let mut w = Workload::load("workloada").expect("a");
        assert!(w.apply_overrides(&["recordcont=5".into()]).is_err(), "typo");
        assert!(w.apply_overrides(&["fieldlength=x".into()]).is_err());
        assert!(w.apply_overrides(&["readproportion=2".into()]).is_err());
        let mut w = Workload::load("workloada").expect("a");
        assert!(w
            .apply_overrides(&["fieldcount=1000".into(), "fieldlength=100000".into()])
            .is_err());
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let e = Workload::parse("t", "# c\nrecordcount=1\nnonsense\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }
}
