//! Read-model snapshots: a read model's state at one feed position, in a
//! file, so that a service starts from it plus the events after it instead
//! of replaying its whole history.
//!
//! A snapshot is trusted only when everything about it checks out; anything
//! else is ignored (the model is replayed in full) with a log line saying
//! why. The file holds, in order (integers little-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 8 | `MOVSNAP` and the container format (1) |
//! | 1 + n | the model's name ([`Snapshot::NAME`]), length first |
//! | 4 | the projection code's version ([`Snapshot::VERSION`]) |
//! | 8 | the feed position it covers: every event up to here, none after |
//! | 16 | the id of the event at that position (all zero for position 0) |
//! | 8 | the payload's length |
//! | 32 | SHA-256 of the payload |
//! | … | the payload: [`Snapshot::encode`]'s bytes |
//!
//! The event id ties a snapshot to the store it was made from: a snapshot
//! beside a database that was replaced, restored from an older backup or
//! pointed elsewhere names an event that is not there, and is ignored.
//!
//! Files are written to a temporary name beside the target, flushed to disk
//! and renamed over it, so a reader sees the old snapshot or the new one,
//! never half of one (several replicas may share one file).

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::read_model::ReadModel;

/// The first bytes of every snapshot file: a name and the container format.
const MAGIC: &[u8; 8] = b"MOVSNAP\x01";

/// A read model that can be saved to and started from a snapshot.
pub trait Snapshot: ReadModel + Sized {
    /// Names the model in its file (a file of another model is ignored).
    const NAME: &'static str;
    /// The version of the projection code. Bump it whenever [`ReadModel::apply`]
    /// or [`Snapshot::encode`] changes what a model holds: snapshots of
    /// other versions are ignored, and the model is replayed in full.
    const VERSION: u32;

    /// Writes every field of the model, canonically: equal models give
    /// equal bytes (map entries in key order).
    fn encode(&self, out: &mut Encoder);

    /// Reads a model [`Snapshot::encode`] wrote; an error, never a panic,
    /// on anything else.
    fn decode(input: &mut Decoder<'_>) -> Result<Self, Damaged>;

    /// [`Snapshot::encode`] into a new buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Encoder::default();
        self.encode(&mut out);
        out.into_inner()
    }

    /// [`Snapshot::decode`] of a whole buffer (bytes left over: damaged).
    fn from_bytes(bytes: &[u8]) -> Result<Self, Damaged> {
        let mut input = Decoder::new(bytes);
        let model = Self::decode(&mut input)?;
        input.finish()?;
        Ok(model)
    }
}

/// A payload that does not decode as the model it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged snapshot: {0}")]
pub struct Damaged(pub &'static str);

/// Writes a snapshot's payload.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
        }
    }

    /// The bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Eight bytes.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Eight bytes.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A collection's length.
    pub fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }

    /// Bytes of a length both sides know (a digest, an id).
    pub fn fixed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// A string, length first.
    pub fn str(&mut self, s: &str) {
        self.count(s.len());
        self.fixed(s.as_bytes());
    }
}

/// Reads a snapshot's payload: every read checks that the bytes are there.
#[derive(Debug)]
pub struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Succeeds if every byte was read.
    pub fn finish(self) -> Result<(), Damaged> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Damaged("bytes after the end"))
        }
    }

    /// `n` bytes.
    pub fn fixed(&mut self, n: usize) -> Result<&'a [u8], Damaged> {
        if self.rest.len() < n {
            return Err(Damaged("cut short"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    /// `N` bytes, as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Damaged> {
        let mut out = [0; N];
        out.copy_from_slice(self.fixed(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Damaged> {
        Ok(self.array::<1>()?[0])
    }

    /// Eight bytes.
    pub fn u64(&mut self) -> Result<u64, Damaged> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Eight bytes.
    pub fn i64(&mut self) -> Result<i64, Damaged> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A collection's length, where each item takes at least `min_item`
    /// bytes: a length the bytes left cannot hold is damage, not a reason
    /// to allocate.
    pub fn count(&mut self, min_item: usize) -> Result<usize, Damaged> {
        let n = self.u64()?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_item.max(1)) <= self.rest.len() => Ok(n),
            _ => Err(Damaged("a length beyond the end")),
        }
    }

    /// A string, length first.
    pub fn str(&mut self) -> Result<String, Damaged> {
        let n = self.count(1)?;
        let bytes = self.fixed(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Damaged("a string not UTF-8"))
    }
}

/// What a snapshot says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The model's name.
    pub name: String,
    /// The projection code's version.
    pub version: u32,
    /// The feed position covered.
    pub position: u64,
    /// The id of the event at `position` (nil for 0).
    pub event_id: Uuid,
}

/// Why a snapshot file was not used.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// It could not be read.
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    /// It is not a snapshot file of this container format.
    #[error("not a snapshot file (or another format)")]
    NotASnapshot,
    /// It holds another model.
    #[error("it holds the read model {found:?}, not {expected:?}")]
    OtherModel {
        /// The model it holds.
        found: String,
        /// The model wanted.
        expected: &'static str,
    },
    /// Another version of the projection code made it.
    #[error("projection version {found}, not {expected}")]
    OtherVersion {
        /// The version that made it.
        found: u32,
        /// This code's version.
        expected: u32,
    },
    /// Its bytes do not check out.
    #[error(transparent)]
    Damaged(#[from] Damaged),
    /// Its position's event is not in the store.
    #[error("made from another store: the event at position {position} is not the one it names")]
    OtherStore {
        /// The position it covers.
        position: u64,
    },
}

/// Writes `payload` as the snapshot `header` describes at `path`,
/// atomically (a temporary file, flushed, renamed over `path`). Blocking.
pub fn write_file(path: &Path, header: &Header, payload: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a snapshot path needs a file name"))?;
    let mut temp_name = name.to_os_string();
    temp_name.push(format!(".{}.{}.tmp", std::process::id(), Uuid::new_v4()));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&temp)?);
        file.write_all(MAGIC)?;
        let name = header.name.as_bytes();
        let name_len = u8::try_from(name.len())
            .map_err(|_| std::io::Error::other("a model name over 255 bytes"))?;
        file.write_all(&[name_len])?;
        file.write_all(name)?;
        file.write_all(&header.version.to_le_bytes())?;
        file.write_all(&header.position.to_le_bytes())?;
        file.write_all(header.event_id.as_bytes())?;
        file.write_all(&(payload.len() as u64).to_le_bytes())?;
        file.write_all(&Sha256::digest(payload))?;
        file.write_all(payload)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // The rename itself survives a crash once the directory is flushed.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Reads the snapshot at `path` and checks it is a whole snapshot of the
/// model `name` at `version`: its header, and its payload (checksum
/// verified). Blocking. `Ok(None)`: there is no file.
pub fn read_file(
    path: &Path,
    name: &'static str,
    version: u32,
) -> Result<Option<(Header, Vec<u8>)>, Rejected> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut input = Decoder::new(&bytes);
    if input.fixed(MAGIC.len()).ok() != Some(&MAGIC[..]) {
        return Err(Rejected::NotASnapshot);
    }
    let name_len = input.u8()?;
    let found = String::from_utf8_lossy(input.fixed(name_len.into())?).into_owned();
    if found != name {
        return Err(Rejected::OtherModel {
            found,
            expected: name,
        });
    }
    let found_version = u32::from_le_bytes(input.array()?);
    if found_version != version {
        return Err(Rejected::OtherVersion {
            found: found_version,
            expected: version,
        });
    }
    let position = input.u64()?;
    let event_id = Uuid::from_bytes(input.array()?);
    let len = input.u64()?;
    let digest: [u8; 32] = input.array()?;
    let payload = usize::try_from(len)
        .ok()
        .and_then(|n| input.fixed(n).ok())
        .ok_or(Damaged("cut short"))?;
    input.finish()?;
    if Sha256::digest(payload)[..] != digest {
        return Err(Damaged("checksum mismatch").into());
    }
    let header = Header {
        name: found,
        version,
        position,
        event_id,
    };
    Ok(Some((header, payload.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            name: "m".into(),
            version: 3,
            position: 42,
            event_id: Uuid::new_v4(),
        }
    }

    #[test]
    fn a_file_reads_back_only_whole_and_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/m.snapshot");
        assert!(read_file(&path, "m", 3).unwrap().is_none());
        let h = header();
        write_file(&path, &h, b"payload").unwrap();
        let (read, payload) = read_file(&path, "m", 3).unwrap().unwrap();
        assert_eq!((read, payload.as_slice()), (h.clone(), &b"payload"[..]));
        assert!(matches!(
            read_file(&path, "m", 4),
            Err(Rejected::OtherVersion {
                found: 3,
                expected: 4
            })
        ));
        assert!(matches!(
            read_file(&path, "n", 3),
            Err(Rejected::OtherModel { .. })
        ));
        let whole = std::fs::read(&path).unwrap();
        for cut in [0, 5, 20, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(read_file(&path, "m", 3).is_err(), "cut at {cut}");
        }
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            read_file(&path, "m", 3),
            Err(Rejected::Damaged(Damaged("checksum mismatch")))
        ));
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn a_decoder_refuses_lengths_beyond_its_bytes() {
        let mut e = Encoder::default();
        e.count(1 << 40);
        let bytes = e.into_inner();
        assert!(Decoder::new(&bytes).count(1).is_err());
        let mut e = Encoder::default();
        e.str("héllo");
        e.i64(-7);
        let bytes = e.into_inner();
        let mut d = Decoder::new(&bytes);
        assert_eq!(d.str().unwrap(), "héllo");
        assert_eq!(d.i64().unwrap(), -7);
        d.finish().unwrap();
    }
}
