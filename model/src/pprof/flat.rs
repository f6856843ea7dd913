//! A flat, borrowing pprof decoder: the protobuf bytes are read once, into a handful of flat
//! vectors, and strings are borrowed from the buffer.
//!
//! ```text
//!  bytes ─▶ count top-level fields (capacities) ─▶ one pass over every field
//!        ─▶ FlatProfile { samples: spans into location_ids / values / labels,
//!                         locations: spans into lines, strings: &str into bytes, ... }
//! ```
//!
//! It accepts exactly what prost accepts for `perftools.profiles.Profile` and yields the same
//! data: unknown fields are skipped by wire type (groups too, with prost's nesting limit),
//! repeated scalars are read packed or unpacked, a repeated `period_type` merges, scalars
//! keep their last value, varints follow prost's 10-byte rule. The only input it refuses that
//! prost would take is a buffer of 4 GiB or more (indices are `u32`).

use std::ops::Range;

use stackdrift_proto::pprof::Profile;

use crate::error::DecodeError;

/// A half-open range of indices into one of the flat vectors of a [`FlatProfile`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// First index.
    pub start: u32,
    /// One past the last index.
    pub end: u32,
}

impl Span {
    /// The span as a `usize` range.
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// Number of elements.
    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    /// True when the span covers nothing.
    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }
}

/// A sample: spans into [`FlatProfile::location_ids`], [`FlatProfile::values`] and
/// [`FlatProfile::labels`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlatSample {
    /// Location IDs, leaf first.
    pub location_ids: Span,
    /// One value per sample type.
    pub values: Span,
    /// Sample labels.
    pub labels: Span,
}

/// A sample label (string indices, as in pprof).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlatLabel {
    /// Label name.
    pub key: i64,
    /// String value (0: none).
    pub str: i64,
    /// Numeric value.
    pub num: i64,
    /// Unit of the numeric value.
    pub num_unit: i64,
}

/// A mapping (the fields the normalizer uses; the others are validated and dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlatMapping {
    /// Mapping ID.
    pub id: u64,
    /// String index of the binary's file name.
    pub filename: i64,
}

/// A location; its lines are a span of [`FlatProfile::lines`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlatLocation {
    /// Location ID.
    pub id: u64,
    /// Mapping ID (0: none).
    pub mapping_id: u64,
    /// Instruction address.
    pub address: u64,
    /// Lines, innermost (inlined) first.
    pub lines: Span,
}

/// A line of a location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlatLine {
    /// Function ID.
    pub function_id: u64,
    /// Line number.
    pub line: i64,
}

/// A function (system name and start line are validated and dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlatFunction {
    /// Function ID.
    pub id: u64,
    /// String index of the name.
    pub name: i64,
    /// String index of the source file.
    pub filename: i64,
}

/// A pprof profile in flat vectors, strings borrowed from the encoded bytes (or from a prost
/// [`Profile`], see [`FlatProfile::from_prost`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlatProfile<'a> {
    /// Sample types, as (type, unit) string indices.
    pub sample_type: Vec<(i64, i64)>,
    /// Period type, as (type, unit) string indices.
    pub period_type: Option<(i64, i64)>,
    /// Samples.
    pub samples: Vec<FlatSample>,
    /// Location IDs of every sample, concatenated.
    pub location_ids: Vec<u64>,
    /// Values of every sample, concatenated.
    pub values: Vec<i64>,
    /// Labels of every sample, concatenated.
    pub labels: Vec<FlatLabel>,
    /// Mappings.
    pub mappings: Vec<FlatMapping>,
    /// Locations.
    pub locations: Vec<FlatLocation>,
    /// Lines of every location, concatenated.
    pub lines: Vec<FlatLine>,
    /// Functions.
    pub functions: Vec<FlatFunction>,
    /// The string table.
    pub strings: Vec<&'a str>,
    /// Time of collection, ns since the epoch.
    pub time_nanos: i64,
    /// Duration of the profile, ns.
    pub duration_nanos: i64,
    /// Sampling period.
    pub period: i64,
}

impl<'a> FlatProfile<'a> {
    /// Location IDs of `sample` (empty if its span is out of range).
    pub fn sample_location_ids(&self, sample: &FlatSample) -> &[u64] {
        self.location_ids
            .get(sample.location_ids.range())
            .unwrap_or(&[])
    }

    /// Values of `sample` (empty if its span is out of range).
    pub fn sample_values(&self, sample: &FlatSample) -> &[i64] {
        self.values.get(sample.values.range()).unwrap_or(&[])
    }

    /// Labels of `sample` (empty if its span is out of range).
    pub fn sample_labels(&self, sample: &FlatSample) -> &[FlatLabel] {
        self.labels.get(sample.labels.range()).unwrap_or(&[])
    }

    /// Lines of `location` (empty if its span is out of range).
    pub fn location_lines(&self, location: &FlatLocation) -> &[FlatLine] {
        self.lines.get(location.lines.range()).unwrap_or(&[])
    }

    /// Decodes an (uncompressed) encoded `perftools.profiles.Profile`.
    ///
    /// Invalid UTF-8 in the string table is [`DecodeError::InvalidUtf8`]; every other
    /// malformation is [`DecodeError::Protobuf`]. Never panics.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        if u32::try_from(buf.len()).is_err() {
            return Err(DecodeError::Protobuf(
                "profile of 4 GiB or more is not supported".into(),
            ));
        }
        let mut profile = Self::with_capacities(&Counts::of(buf));
        profile.merge(buf).map_err(Fault::into_error)?;
        Ok(profile)
    }

    /// The flat form of a prost [`Profile`], borrowing its strings.
    pub fn from_prost(profile: &'a Profile) -> Self {
        let mut flat = FlatProfile {
            sample_type: profile
                .sample_type
                .iter()
                .map(|vt| (vt.r#type, vt.unit))
                .collect(),
            period_type: profile.period_type.map(|vt| (vt.r#type, vt.unit)),
            samples: Vec::with_capacity(profile.sample.len()),
            mappings: profile
                .mapping
                .iter()
                .map(|m| FlatMapping {
                    id: m.id,
                    filename: m.filename,
                })
                .collect(),
            locations: Vec::with_capacity(profile.location.len()),
            functions: profile
                .function
                .iter()
                .map(|f| FlatFunction {
                    id: f.id,
                    name: f.name,
                    filename: f.filename,
                })
                .collect(),
            strings: profile.string_table.iter().map(String::as_str).collect(),
            time_nanos: profile.time_nanos,
            duration_nanos: profile.duration_nanos,
            period: profile.period,
            ..Default::default()
        };
        for s in &profile.sample {
            let location_ids = extend(&mut flat.location_ids, s.location_id.iter().copied());
            let values = extend(&mut flat.values, s.value.iter().copied());
            let labels = extend(
                &mut flat.labels,
                s.label.iter().map(|l| FlatLabel {
                    key: l.key,
                    str: l.str,
                    num: l.num,
                    num_unit: l.num_unit,
                }),
            );
            flat.samples.push(FlatSample {
                location_ids,
                values,
                labels,
            });
        }
        for loc in &profile.location {
            let lines = extend(
                &mut flat.lines,
                loc.line.iter().map(|l| FlatLine {
                    function_id: l.function_id,
                    line: l.line,
                }),
            );
            flat.locations.push(FlatLocation {
                id: loc.id,
                mapping_id: loc.mapping_id,
                address: loc.address,
                lines,
            });
        }
        flat
    }

    fn with_capacities(c: &Counts) -> Self {
        // Valid profiles have one value per sample type in every sample.
        let values = c
            .samples
            .saturating_mul(c.sample_types)
            .min(c.sample_varints);
        // Every varint in a sample that is neither a value nor the key and length of the two
        // packed fields is (at most) a location ID.
        let location_ids = c
            .sample_varints
            .saturating_sub(values.saturating_add(c.samples.saturating_mul(4)));
        FlatProfile {
            sample_type: Vec::with_capacity(c.sample_types),
            samples: Vec::with_capacity(c.samples),
            location_ids: Vec::with_capacity(location_ids),
            values: Vec::with_capacity(values),
            labels: Vec::with_capacity(c.samples / 2),
            mappings: Vec::with_capacity(c.mappings),
            locations: Vec::with_capacity(c.locations),
            lines: Vec::with_capacity(c.locations + c.locations / 4),
            functions: Vec::with_capacity(c.functions),
            strings: Vec::with_capacity(c.strings),
            ..Default::default()
        }
    }

    /// Reads every top-level field of `buf` into `self` (prost's `Message::merge`).
    fn merge(&mut self, buf: &'a [u8]) -> Result<(), Fault> {
        let mut r = Reader::new(buf);
        let mut strings = StringSpan::default();
        while !r.is_empty() {
            let (field, wire) = r.key()?;
            match field {
                1 => {
                    let m = r.message(field, wire)?;
                    self.sample_type.push(value_type(m, (0, 0))?);
                }
                2 => {
                    let m = r.message(field, wire)?;
                    self.sample(m)?;
                }
                3 => {
                    let m = r.message(field, wire)?;
                    self.mappings.push(mapping(m)?);
                }
                4 => {
                    let m = r.message(field, wire)?;
                    self.location(m)?;
                }
                5 => {
                    let m = r.message(field, wire)?;
                    self.functions.push(function(m)?);
                }
                6 => {
                    expect_wire(field, wire, LEN)?;
                    let bytes = r.len_delimited()?;
                    let start = buf.len() - r.buf.len() - bytes.len();
                    self.strings.push(strings.get(buf, start, bytes)?);
                }
                9 => self.time_nanos = r.int(field, wire)? as i64,
                10 => self.duration_nanos = r.int(field, wire)? as i64,
                11 => {
                    let m = r.message(field, wire)?;
                    let prior = self.period_type.unwrap_or((0, 0));
                    self.period_type = Some(value_type(m, prior)?);
                }
                12 => self.period = r.int(field, wire)? as i64,
                // drop_frames, keep_frames, default_sample_type, doc_url.
                7 | 8 | 14 | 15 => {
                    r.int(field, wire)?;
                }
                // comment (repeated int64).
                13 => r.repeated(field, wire, |_| {})?,
                _ => r.skip(field, wire, RECURSION_LIMIT)?,
            }
        }
        Ok(())
    }

    fn sample(&mut self, mut r: Reader<'a>) -> Result<(), Fault> {
        let ids_start = index(self.location_ids.len());
        let values_start = index(self.values.len());
        let labels_start = index(self.labels.len());
        while !r.is_empty() {
            let (field, wire) = r.key()?;
            match field {
                1 => {
                    let ids = &mut self.location_ids;
                    r.repeated(field, wire, |v| ids.push(v))?;
                }
                2 => {
                    let values = &mut self.values;
                    r.repeated(field, wire, |v| values.push(v as i64))?;
                }
                3 => {
                    let m = r.message(field, wire)?;
                    self.labels.push(label(m)?);
                }
                _ => r.skip(field, wire, RECURSION_LIMIT - 1)?,
            }
        }
        self.samples.push(FlatSample {
            location_ids: span(ids_start, self.location_ids.len()),
            values: span(values_start, self.values.len()),
            labels: span(labels_start, self.labels.len()),
        });
        Ok(())
    }

    fn location(&mut self, mut r: Reader<'a>) -> Result<(), Fault> {
        let lines_start = index(self.lines.len());
        let mut loc = FlatLocation::default();
        while !r.is_empty() {
            let (field, wire) = r.key()?;
            match field {
                1 => loc.id = r.int(field, wire)?,
                2 => loc.mapping_id = r.int(field, wire)?,
                3 => loc.address = r.int(field, wire)?,
                4 => {
                    let m = r.message(field, wire)?;
                    self.lines.push(line(m)?);
                }
                // is_folded.
                5 => {
                    r.int(field, wire)?;
                }
                _ => r.skip(field, wire, RECURSION_LIMIT - 1)?,
            }
        }
        loc.lines = span(lines_start, self.lines.len());
        self.locations.push(loc);
        Ok(())
    }
}

/// Validates the string table's UTF-8 a run of entries at a time.
///
/// Writers put the string table in one piece, and its keys and one-byte lengths are ASCII:
/// when the bytes from a string to the next invalid byte (a two-byte length, the next field's
/// varint, or the end) are valid UTF-8 as a whole, every string inside them is too, and is a
/// slice of that one validated `str`. One `from_utf8` over thousands of short strings costs
/// far less than one per string. Each run is validated at most twice (once to find its end,
/// once up to it) and runs do not overlap, so this stays linear on any input; a string
/// outside a run is validated on its own, so the outcome is exactly `from_utf8` per string.
#[derive(Default)]
struct StringSpan<'a> {
    /// Offset of `text` in the profile's bytes.
    start: usize,
    text: &'a str,
}

impl<'a> StringSpan<'a> {
    /// The string `bytes`, at offset `start` of `buf`.
    fn get(&mut self, buf: &'a [u8], start: usize, bytes: &'a [u8]) -> Result<&'a str, Fault> {
        let end = start + bytes.len();
        if start < self.start || end > self.start + self.text.len() {
            let tail = buf.get(start..).unwrap_or_default();
            self.start = start;
            self.text = match std::str::from_utf8(tail) {
                Ok(text) => text,
                Err(e) => std::str::from_utf8(&tail[..e.valid_up_to()]).unwrap_or_default(),
            };
        }
        match self.text.get(start - self.start..end - self.start) {
            Some(s) => Ok(s),
            // Not inside the run (or not on its character boundaries): on its own.
            None => std::str::from_utf8(bytes).map_err(|_| Fault::InvalidUtf8),
        }
    }
}

/// Pushes `items` onto `vec`, returning the span they occupy.
fn extend<T>(vec: &mut Vec<T>, items: impl Iterator<Item = T>) -> Span {
    let start = index(vec.len());
    vec.extend(items);
    span(start, vec.len())
}

/// A vector length as a `u32` index. Lengths never exceed the buffer length, which
/// [`FlatProfile::decode`] keeps below 4 GiB; saturates rather than panics regardless.
fn index(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn span(start: u32, end: usize) -> Span {
    Span {
        start,
        end: index(end),
    }
}

/// `ValueType`, merged into `prior` (a repeated singular message merges, as in prost).
fn value_type(mut r: Reader<'_>, prior: (i64, i64)) -> Result<(i64, i64), Fault> {
    let (mut ty, mut unit) = prior;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => ty = r.int(field, wire)? as i64,
            2 => unit = r.int(field, wire)? as i64,
            _ => r.skip(field, wire, RECURSION_LIMIT - 1)?,
        }
    }
    Ok((ty, unit))
}

fn label(mut r: Reader<'_>) -> Result<FlatLabel, Fault> {
    let mut l = FlatLabel::default();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => l.key = r.int(field, wire)? as i64,
            2 => l.str = r.int(field, wire)? as i64,
            3 => l.num = r.int(field, wire)? as i64,
            4 => l.num_unit = r.int(field, wire)? as i64,
            _ => r.skip(field, wire, RECURSION_LIMIT - 2)?,
        }
    }
    Ok(l)
}

fn mapping(mut r: Reader<'_>) -> Result<FlatMapping, Fault> {
    let mut m = FlatMapping::default();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => m.id = r.int(field, wire)?,
            5 => m.filename = r.int(field, wire)? as i64,
            // memory_start, memory_limit, file_offset, build_id, has_* flags.
            2..=4 | 6..=10 => {
                r.int(field, wire)?;
            }
            _ => r.skip(field, wire, RECURSION_LIMIT - 1)?,
        }
    }
    Ok(m)
}

fn line(mut r: Reader<'_>) -> Result<FlatLine, Fault> {
    let mut l = FlatLine::default();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => l.function_id = r.int(field, wire)?,
            2 => l.line = r.int(field, wire)? as i64,
            // column.
            3 => {
                r.int(field, wire)?;
            }
            _ => r.skip(field, wire, RECURSION_LIMIT - 2)?,
        }
    }
    Ok(l)
}

fn function(mut r: Reader<'_>) -> Result<FlatFunction, Fault> {
    let mut f = FlatFunction::default();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => f.id = r.int(field, wire)?,
            2 => f.name = r.int(field, wire)? as i64,
            4 => f.filename = r.int(field, wire)? as i64,
            // system_name, start_line.
            3 | 5 => {
                r.int(field, wire)?;
            }
            _ => r.skip(field, wire, RECURSION_LIMIT - 1)?,
        }
    }
    Ok(f)
}

/// prost's recursion limit: unknown fields of the top-level message are skipped with this
/// budget, those of a message nested `n` deep with `n` less, and each group level costs one.
const RECURSION_LIMIT: u32 = 100;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// What is wrong with the bytes (small and `Copy`: the decoder returns it on every call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    TruncatedVarint,
    VarintTooLong,
    VarintOverflow,
    KeyTooLarge,
    InvalidWireType(u8),
    FieldZero,
    WrongWireType { field: u32, wire: u8 },
    Truncated,
    UnexpectedEndGroup,
    RecursionLimit,
    InvalidUtf8,
}

impl Fault {
    fn into_error(self) -> DecodeError {
        let msg = match self {
            Fault::InvalidUtf8 => return DecodeError::InvalidUtf8,
            Fault::TruncatedVarint => "truncated varint".to_owned(),
            Fault::VarintTooLong => "varint longer than 10 bytes".to_owned(),
            Fault::VarintOverflow => "varint overflows 64 bits".to_owned(),
            Fault::KeyTooLarge => "field key larger than 32 bits".to_owned(),
            Fault::InvalidWireType(w) => format!("invalid wire type {w}"),
            Fault::FieldZero => "field number 0".to_owned(),
            Fault::WrongWireType { field, wire } => {
                format!("invalid wire type {wire} for field {field}")
            }
            Fault::Truncated => "length beyond the end of the buffer".to_owned(),
            Fault::UnexpectedEndGroup => "unexpected end group".to_owned(),
            Fault::RecursionLimit => "groups nested too deep".to_owned(),
        };
        DecodeError::Protobuf(msg)
    }
}

fn expect_wire(field: u32, wire: u8, want: u8) -> Result<(), Fault> {
    if wire == want {
        Ok(())
    } else {
        Err(Fault::WrongWireType { field, wire })
    }
}

/// A cursor over protobuf bytes; nested messages get a reader of their own bytes.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Fault> {
        // One and two bytes (keys, lengths, and IDs below 16,384: nearly every varint of a
        // profile but its values) without a loop.
        match *self.buf {
            [b0, ref rest @ ..] if b0 < 0x80 => {
                self.buf = rest;
                Ok(u64::from(b0))
            }
            [b0, b1, ref rest @ ..] if b1 < 0x80 => {
                self.buf = rest;
                Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
            }
            _ => self.varint_multi(),
        }
    }

    /// A varint of three bytes or more (or a truncated one): at most 10 bytes, the 10th 0
    /// or 1.
    fn varint_multi(&mut self) -> Result<u64, Fault> {
        let mut value = 0u64;
        for (i, &b) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(Fault::VarintOverflow);
                }
                self.buf = self.buf.get(i + 1..).unwrap_or_default();
                return Ok(value);
            }
        }
        if self.buf.len() >= 10 {
            Err(Fault::VarintTooLong)
        } else {
            Err(Fault::TruncatedVarint)
        }
    }

    /// A field key: (field number, wire type).
    #[inline]
    fn key(&mut self) -> Result<(u32, u8), Fault> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| Fault::KeyTooLarge)?;
        let wire = (key & 7) as u8;
        if wire > FIXED32 {
            return Err(Fault::InvalidWireType(wire));
        }
        let field = key >> 3;
        if field == 0 {
            return Err(Fault::FieldZero);
        }
        Ok((field, wire))
    }

    fn advance(&mut self, n: usize) -> Result<(), Fault> {
        self.buf = self.buf.get(n..).ok_or(Fault::Truncated)?;
        Ok(())
    }

    /// The bytes of a length-delimited field (its length already checked against the buffer).
    #[inline]
    fn len_delimited(&mut self) -> Result<&'a [u8], Fault> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| Fault::Truncated)?;
        let (head, tail) = self.buf.split_at_checked(len).ok_or(Fault::Truncated)?;
        self.buf = tail;
        Ok(head)
    }

    /// A varint scalar field.
    #[inline]
    fn int(&mut self, field: u32, wire: u8) -> Result<u64, Fault> {
        expect_wire(field, wire, VARINT)?;
        self.varint()
    }

    /// An embedded message field: a reader of its bytes.
    #[inline]
    fn message(&mut self, field: u32, wire: u8) -> Result<Reader<'a>, Fault> {
        expect_wire(field, wire, LEN)?;
        Ok(Reader::new(self.len_delimited()?))
    }

    /// One occurrence of a repeated varint field, packed (every varint of the bytes) or not.
    #[inline]
    fn repeated(&mut self, field: u32, wire: u8, mut push: impl FnMut(u64)) -> Result<(), Fault> {
        match wire {
            VARINT => push(self.varint()?),
            LEN => {
                let mut packed = Reader::new(self.len_delimited()?);
                while !packed.is_empty() {
                    push(packed.varint()?);
                }
            }
            _ => return Err(Fault::WrongWireType { field, wire }),
        }
        Ok(())
    }

    /// Skips an unknown field, as prost's `skip_field` does (`budget`: its recursion context).
    fn skip(&mut self, field: u32, wire: u8, budget: u32) -> Result<(), Fault> {
        if budget == 0 {
            return Err(Fault::RecursionLimit);
        }
        match wire {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => self.advance(8)?,
            LEN => {
                self.len_delimited()?;
            }
            START_GROUP => loop {
                let (inner, inner_wire) = self.key()?;
                if inner_wire == END_GROUP {
                    if inner != field {
                        return Err(Fault::UnexpectedEndGroup);
                    }
                    break;
                }
                self.skip(inner, inner_wire, budget - 1)?;
            },
            FIXED32 => self.advance(4)?,
            _ => return Err(Fault::UnexpectedEndGroup),
        }
        Ok(())
    }
}

/// Top-level counts, for capacities. Best effort: stops quietly at the first malformation
/// (the decoding pass reports it).
#[derive(Debug, Default)]
struct Counts {
    sample_types: usize,
    samples: usize,
    /// Varints (bytes below 0x80) in the bytes of every sample.
    sample_varints: usize,
    mappings: usize,
    locations: usize,
    functions: usize,
    strings: usize,
}

impl Counts {
    fn of(buf: &[u8]) -> Self {
        let mut c = Counts::default();
        let mut r = Reader::new(buf);
        while !r.is_empty() {
            let Ok((field, wire)) = r.key() else { break };
            if wire != LEN {
                if r.skip(field, wire, RECURSION_LIMIT).is_err() {
                    break;
                }
                continue;
            }
            let Ok(bytes) = r.len_delimited() else { break };
            match field {
                1 => c.sample_types += 1,
                2 => {
                    c.samples += 1;
                    c.sample_varints += bytes.iter().filter(|&&b| b < 0x80).count();
                }
                3 => c.mappings += 1,
                4 => c.locations += 1,
                5 => c.functions += 1,
                6 => c.strings += 1,
                _ => {}
            }
        }
        c
    }
}
