//! Building pprof profiles from frames: used by the pprof export, the load generator and tests.

use std::collections::HashMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;
use stackdrift_proto::pprof::{Function, Label, Line, Location, Profile, Sample, ValueType};

use crate::stack::Frame;

/// Incrementally builds a [`Profile`], interning strings, functions and locations.
#[derive(Debug)]
pub struct PprofBuilder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(String, String), u64>,
    locations: HashMap<(u64, i64), u64>,
}

impl PprofBuilder {
    /// A profile with the given `(type, unit)` sample types and period type.
    pub fn new(sample_types: &[(&str, &str)], period_type: (&str, &str), period: i64) -> Self {
        let mut b = Self {
            profile: Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
        };
        b.string("");
        for (t, u) in sample_types {
            let vt = ValueType {
                r#type: b.string(t),
                unit: b.string(u),
            };
            b.profile.sample_type.push(vt);
        }
        b.profile.period_type = Some(ValueType {
            r#type: b.string(period_type.0),
            unit: b.string(period_type.1),
        });
        b.profile.period = period;
        b
    }

    /// Sets the profile's start time and duration.
    pub fn time(mut self, time_nanos: i64, duration_nanos: i64) -> Self {
        self.profile.time_nanos = time_nanos;
        self.profile.duration_nanos = duration_nanos;
        self
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(i) = self.strings.get(s) {
            return *i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn location(&mut self, frame: &Frame) -> u64 {
        let key = (frame.function.to_string(), frame.file.to_string());
        let function_id = match self.functions.get(&key) {
            Some(id) => *id,
            None => {
                let id = self.profile.function.len() as u64 + 1;
                let f = Function {
                    id,
                    name: self.string(&frame.function),
                    system_name: 0,
                    filename: self.string(&frame.file),
                    start_line: 0,
                };
                self.profile.function.push(f);
                self.functions.insert(key, id);
                id
            }
        };
        *self
            .locations
            .entry((function_id, frame.line))
            .or_insert_with(|| {
                let id = self.profile.location.len() as u64 + 1;
                self.profile.location.push(Location {
                    id,
                    line: vec![Line {
                        function_id,
                        line: frame.line,
                        column: 0,
                    }],
                    ..Default::default()
                });
                id
            })
    }

    /// Adds a sample: leaf-first frames, one value per sample type, string labels.
    pub fn sample(&mut self, frames: &[Frame], values: &[i64], labels: &[(&str, &str)]) {
        let location_id = frames.iter().map(|f| self.location(f)).collect();
        let label = labels
            .iter()
            .map(|(k, v)| Label {
                key: self.string(k),
                str: self.string(v),
                ..Default::default()
            })
            .collect();
        self.profile.sample.push(Sample {
            location_id,
            value: values.to_vec(),
            label,
        });
    }

    /// The finished profile.
    pub fn build(self) -> Profile {
        self.profile
    }

    /// The finished profile, protobuf-encoded and gzipped.
    pub fn encode_gzip(self) -> Vec<u8> {
        gzip(&self.profile.encode_to_vec())
    }
}

/// gzip-compresses `bytes` at the default level.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}
