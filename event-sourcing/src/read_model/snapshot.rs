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
//! | 8 | `MOVSNAP` and the container format (2) |
//! | 1 + n | the model's name ([`Snapshot::NAME`]), length first |
//! | 4 | the projection code's version ([`Snapshot::VERSION`]) |
//! | 8 | the feed position it covers: every event up to here, none after |
//! | 16 | the id of the event at that position (all zero for position 0) |
//! | 8 | the payload's length |
//! | 32 | the tag: HMAC-SHA256, under the service's [`SnapshotKey`], of every byte before it and of the payload |
//! | … | the payload: [`Snapshot::encode`]'s bytes |
//!
//! The tag makes a snapshot a service wrote the only one it trusts: a file
//! written by anyone else (a token added, a hash read and put back) is
//! refused and the model replayed, whoever could write the directory. The
//! key is not in that directory (see [`SnapshotKey`]).
//!
//! The event id ties a snapshot to the store it was made from: a snapshot
//! beside a database that was replaced, restored from an older backup or
//! pointed elsewhere names an event that is not there, and is ignored.
//!
//! Files are written to a temporary name beside the target, flushed to disk
//! and renamed over it, so a reader sees the old snapshot or the new one,
//! never half of one (several replicas may share one file).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::ReadModel;

/// The first bytes of every snapshot file: a name and the container format.
/// (Format 1 had an unkeyed SHA-256 where the tag is: such files are
/// refused, and the model replayed once.)
const MAGIC: &[u8; 8] = b"MOVSNAP\x02";

type HmacSha256 = hmac::Hmac<sha2_v11::Sha256>;

/// The secret a service's snapshots are tagged under (HMAC-SHA256). Kept
/// where the snapshot files are not: in the store's own database (see
/// `EventStore::secret`), or in configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct SnapshotKey([u8; 32]);

impl SnapshotKey {
    /// The key of these bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key 64 hex digits give.
    pub fn from_hex(hex: &str) -> Result<Self, BadKey> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(hex.trim(), &mut bytes).map_err(|_| BadKey)?;
        Ok(Self(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

/// 64 hex digits (a setting).
impl std::str::FromStr for SnapshotKey {
    type Err = BadKey;

    fn from_str(hex: &str) -> Result<Self, BadKey> {
        Self::from_hex(hex)
    }
}

/// Never its bytes.
impl std::fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotKey(..)")
    }
}

/// A snapshot key that is not 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a snapshot key is 64 hex digits (32 bytes)")]
pub struct BadKey;

/// A read model that can be saved to and started from a snapshot.
pub trait Snapshot: ReadModel + Sized {
    /// Names the model in its file (a file of another model is ignored).
    const NAME: &'static str;
    /// The version of the projection code. Bump it whenever [`ReadModel::apply`]
    /// or [`Snapshot::encode`] changes what a model holds: snapshots of
    /// other versions are ignored, and the model is replayed in full.
    const VERSION: u32;

    /// Writes every field of the model. When [`Encoder::canonical`] (in
    /// memory, and for [`digest`]), equal models give equal bytes (map
    /// entries in key order); a snapshot file, written while new events
    /// wait, may take any order its decoding reads back as the same model,
    /// so that a save holds the model no longer than a pass over it.
    fn encode(&self, out: &mut Encoder<'_>);

    /// The model as it is now, to encode after the save lets go of it, so
    /// that new events wait only for this call, not for the whole encoding:
    /// `Some` where taking it is cheap (a model that keeps its bulk
    /// copy-on-write, see [`super::cow`]). It must write what
    /// [`Snapshot::encode`] would have written at this moment. `None` (the
    /// default): the save encodes under the lock.
    fn freeze(&self) -> Option<Frozen> {
        None
    }

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

/// A model's state taken by [`Snapshot::freeze`]: writes its encoding.
pub type Frozen = Box<dyn FnOnce(&mut Encoder<'_>)>;

/// A payload that does not decode as the model it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged snapshot: {0}")]
pub struct Damaged(pub &'static str);

/// How many bytes an [`Encoder`] writing to a file gathers before it writes
/// them.
const SPILL_AT: usize = 1024 * 1024;

/// Writes a snapshot's payload: into memory ([`Encoder::default`]), or
/// straight into a file through a small buffer, so that saving a big model
/// never holds a second copy of it.
pub struct Encoder<'a> {
    buf: Vec<u8>,
    sink: Option<&'a mut dyn Write>,
    spilled: u64,
    failed: Option<std::io::Error>,
    canonical: bool,
}

impl Default for Encoder<'_> {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            sink: None,
            spilled: 0,
            failed: None,
            canonical: true,
        }
    }
}

impl<'a> Encoder<'a> {
    /// Whether equal models must give equal bytes (see [`Snapshot::encode`]).
    pub fn canonical(&self) -> bool {
        self.canonical
    }

    /// An encoder writing to `sink` as it goes.
    fn to_sink(sink: &'a mut dyn Write) -> Self {
        Self {
            buf: Vec::with_capacity(SPILL_AT * 2),
            sink: Some(sink),
            ..Self::default()
        }
    }

    /// The bytes written (all of them for an encoder in memory).
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Hands the gathered bytes to the sink once there are enough.
    fn spill(&mut self) {
        if self.buf.len() >= SPILL_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let Some(sink) = &mut self.sink else {
            return;
        };
        self.spilled += self.buf.len() as u64;
        if self.failed.is_none()
            && let Err(e) = sink.write_all(&self.buf)
        {
            self.failed = Some(e);
        }
        self.buf.clear();
    }

    /// Writes what is left to the sink; returns the payload's length.
    fn finish(mut self) -> std::io::Result<u64> {
        self.flush();
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.spilled),
        }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
        self.spill();
    }

    /// Eight bytes.
    pub fn u64(&mut self, v: u64) {
        self.fixed(&v.to_le_bytes());
    }

    /// Eight bytes.
    pub fn i64(&mut self, v: impl Into<i64>) {
        self.fixed(&v.into().to_le_bytes());
    }

    /// A collection's length.
    pub fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }

    /// Bytes of a length both sides know (a digest, an id).
    pub fn fixed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.spill();
    }

    /// Records of `size` bytes each, count first, each written into its
    /// slot by `write`, a block at a time: the fast path for big vectors.
    pub fn records<'i, T: 'i>(
        &mut self,
        items: impl IntoIterator<Item = &'i T, IntoIter: ExactSizeIterator>,
        size: usize,
        write: impl Fn(&T, &mut [u8]),
    ) {
        self.records_of(items.into_iter(), size, |item, slot| write(item, slot));
    }

    /// [`Encoder::records`] of items given by value (as a
    /// [`super::compact::CompactVec`] gives them).
    pub fn records_of<T>(
        &mut self,
        mut items: impl ExactSizeIterator<Item = T>,
        size: usize,
        write: impl Fn(T, &mut [u8]),
    ) {
        self.count(items.len());
        let per_block = (SPILL_AT / size.max(1)).max(1);
        loop {
            let block = items.len().min(per_block);
            if block == 0 {
                break;
            }
            let start = self.buf.len();
            self.buf.resize(start + block * size, 0);
            for slot in self.buf[start..].chunks_exact_mut(size) {
                match items.next() {
                    Some(item) => write(item, slot),
                    // An iterator shorter than it said: never for ours.
                    None => break,
                }
            }
            self.spill();
        }
    }

    /// A string, length first.
    pub fn str(&mut self, s: &str) {
        self.count(s.len());
        self.fixed(s.as_bytes());
    }
}

/// SHA-256 of the model's canonical encoding ([`Snapshot::encode`]), hashed
/// as it is written (no copy of the payload is held): equal models, equal
/// digests. `movies copy` compares the models rebuilt from both stores by it.
pub fn digest<M: Snapshot>(model: &M) -> [u8; 32] {
    struct Hashing(Sha256);
    impl Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink = Hashing(Sha256::new());
    let mut out = Encoder::to_sink(&mut sink);
    model.encode(&mut out);
    // Hashing cannot fail: the length is all `finish` could report.
    let _ = out.finish();
    sink.0.finalize().into()
}

/// The little-endian `i64` at `at` in `record` (a slot of
/// [`Decoder::records`]).
pub fn i64_at(record: &[u8], at: usize) -> i64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&record[at..at + 8]);
    i64::from_le_bytes(bytes)
}

/// Reads a snapshot's payload, from memory or straight from its file a
/// block at a time: every read checks that the bytes are there, and no
/// length read is trusted beyond the bytes left.
pub struct Decoder<'a> {
    reader: Box<dyn Read + 'a>,
    /// Payload bytes not read yet.
    left: u64,
    buf: Vec<u8>,
}

impl<'a> Decoder<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self::from_reader(bytes, bytes.len() as u64)
    }

    /// Reads the `len` bytes of a payload from `reader`.
    fn from_reader(reader: impl Read + 'a, len: u64) -> Self {
        Self {
            reader: Box::new(reader),
            left: len,
            buf: Vec::new(),
        }
    }

    /// Succeeds if every byte was read.
    pub fn finish(self) -> Result<(), Damaged> {
        if self.left == 0 {
            Ok(())
        } else {
            Err(Damaged("bytes after the end"))
        }
    }

    /// `n` bytes (valid until the next read).
    pub fn fixed(&mut self, n: usize) -> Result<&[u8], Damaged> {
        if self.left < n as u64 {
            return Err(Damaged("cut short"));
        }
        self.buf.resize(n, 0);
        self.reader
            .read_exact(&mut self.buf)
            .map_err(|_| Damaged("cut short"))?;
        self.left -= n as u64;
        Ok(&self.buf)
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

    /// An id (stored as an `i64`; see `event_store::id_type!`).
    pub fn id<T: From<i64>>(&mut self) -> Result<T, Damaged> {
        self.i64().map(T::from)
    }

    /// A collection's length, where each item takes at least `min_item`
    /// bytes: a length the bytes left cannot hold is damage, not a reason
    /// to allocate.
    pub fn count(&mut self, min_item: usize) -> Result<usize, Damaged> {
        let n = self.u64()?;
        match usize::try_from(n) {
            Ok(n) if (n as u64).saturating_mul(min_item.max(1) as u64) <= self.left => Ok(n),
            _ => Err(Damaged("a length beyond the end")),
        }
    }

    /// Records [`Encoder::records`] wrote: their count, then each record's
    /// `size` bytes, handed to `each` in order, a block at a time. Returns
    /// how many there were.
    pub fn records(
        &mut self,
        size: usize,
        mut each: impl FnMut(&[u8]) -> Result<(), Damaged>,
    ) -> Result<usize, Damaged> {
        let size = size.max(1);
        let n = self.count(size)?;
        let per_block = (SPILL_AT / size).max(1);
        let mut left = n;
        while left > 0 {
            let block = left.min(per_block);
            for record in self.fixed(block * size)?.chunks_exact(size) {
                each(record)?;
            }
            left -= block;
        }
        Ok(n)
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
    /// Its tag is not this service's: written by someone else (or under
    /// another key), or damaged.
    #[error("its tag does not check out under this service's snapshot key")]
    NotAuthentic,
    /// Its position's event is not in the store.
    #[error("made from another store: the event at position {position} is not the one it names")]
    OtherStore {
        /// The position it covers.
        position: u64,
    },
}

/// Saves a snapshot of the model `name` at `version` to `path`, tagged
/// under `key`, atomically: `encode` writes the payload straight into a
/// temporary file and says which position and event it covers (`None`:
/// nothing to save); then, with `encode` done (and whatever lock it held
/// released), the payload is read back to tag it, the header written, the
/// file flushed and renamed over `path`. Files are the owner's only (0600,
/// a directory made here 0700). Blocking. Returns the header written and
/// the payload's size.
pub fn write_file(
    path: &Path,
    name: &str,
    version: u32,
    key: &SnapshotKey,
    encode: impl FnOnce(&mut Encoder<'_>) -> Option<(u64, Uuid)>,
) -> std::io::Result<Option<(Header, u64)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    private_dir(&dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a snapshot path needs a file name"))?;
    if name.len() > usize::from(u8::MAX) {
        return Err(std::io::Error::other("a model name over 255 bytes"));
    }
    let mut temp_name = file_name.to_os_string();
    temp_name.push(format!(".{}.{}.tmp", std::process::id(), Uuid::new_v4()));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = private_file(&temp)?;
        let header_len = MAGIC.len() + 1 + name.len() + 4 + 8 + 16 + 8 + 32;
        file.write_all(&vec![0; header_len])?;
        let mut out = Encoder::to_sink(&mut file);
        // A file need not be canonical: the model is held while it is written.
        out.canonical = false;
        let Some((position, event_id)) = encode(&mut out) else {
            return Ok(None);
        };
        let len = out.finish()?;
        let header = Header {
            name: name.to_owned(),
            version,
            position,
            event_id,
        };
        let mut head = head_bytes(&header, len);
        let mut mac = key.mac();
        mac.update(&head);
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(header_len as u64))?;
        tag_payload(&mut file, len, &mut mac)?;
        head.extend_from_slice(&mac.finalize().into_bytes());
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
        file.write_all(&head)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // The rename itself survives a crash once the directory is flushed.
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(Some((header, len)))
    })();
    if !matches!(written, Ok(Some(_))) {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Makes `dir` (and its parents) if missing; one made here is the owner's
/// only (0700). An existing directory is left as it is (the operator's).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the new file `path` for reading and writing, the owner's only
/// (0600).
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::File::options();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The header's bytes before the tag, for a payload of `len` bytes.
fn head_bytes(header: &Header, len: u64) -> Vec<u8> {
    let mut head = Vec::with_capacity(MAGIC.len() + 1 + header.name.len() + 36 + 32);
    head.extend_from_slice(MAGIC);
    head.push(header.name.len() as u8);
    head.extend_from_slice(header.name.as_bytes());
    head.extend_from_slice(&header.version.to_le_bytes());
    head.extend_from_slice(&header.position.to_le_bytes());
    head.extend_from_slice(header.event_id.as_bytes());
    head.extend_from_slice(&len.to_le_bytes());
    head
}

/// Feeds the next `len` bytes of `input` to `mac`, a block at a time.
fn tag_payload(input: &mut impl Read, len: u64, mac: &mut HmacSha256) -> std::io::Result<()> {
    let mut chunk = vec![0; SPILL_AT];
    let mut left = len;
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        input.read_exact(&mut chunk[..n])?;
        mac.update(&chunk[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// [`write_file`] of a payload already encoded, as `header` describes it.
pub fn write_bytes(
    path: &Path,
    header: &Header,
    key: &SnapshotKey,
    payload: &[u8],
) -> std::io::Result<()> {
    write_file(path, &header.name, header.version, key, |out| {
        out.fixed(payload);
        Some((header.position, header.event_id))
    })
    .map(drop)
}

/// A snapshot file, read from its payload on.
type Payload = std::io::BufReader<std::fs::File>;

/// Opens the snapshot at `path` and reads its header, checking that it is
/// a snapshot of the model `name` at `version` whose payload fills the rest
/// of the file. `Ok(None)`: there is no file. Returns the header, the
/// payload's length, a MAC under `key` fed with the header's bytes, the
/// tag the file holds, and the file positioned at the payload.
#[allow(clippy::type_complexity)]
fn open(
    path: &Path,
    name: &'static str,
    version: u32,
    key: &SnapshotKey,
) -> Result<Option<(Header, u64, HmacSha256, [u8; 32], Payload)>, Rejected> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let size = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(SPILL_AT, file);
    let mut input = Decoder::from_reader(&mut reader, size);
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
    let tag: [u8; 32] = input.array()?;
    let left = input.left;
    drop(input);
    match len.cmp(&left) {
        std::cmp::Ordering::Greater => return Err(Damaged("cut short").into()),
        std::cmp::Ordering::Less => return Err(Damaged("bytes after the end").into()),
        std::cmp::Ordering::Equal => {}
    }
    let header = Header {
        name: found,
        version,
        position,
        event_id,
    };
    let mut mac = key.mac();
    mac.update(&head_bytes(&header, len));
    Ok(Some((header, len, mac, tag, reader)))
}

/// Reads the snapshot at `path` of the model `M`, checking it whole: its
/// header (see [`open`]), its payload decoded straight from the file a
/// block at a time (no copy of the file in memory), once its tag under
/// `key` checked out: a file this service did not write is refused unread.
/// Blocking. `Ok(None)`: there is no file.
pub fn load<M: Snapshot>(path: &Path, key: &SnapshotKey) -> Result<Option<(Header, M)>, Rejected> {
    let Some((header, len, mut mac, tag, mut payload)) = open(path, M::NAME, M::VERSION, key)?
    else {
        return Ok(None);
    };
    // Authenticated first, then decoded: bytes nobody we trust wrote are
    // never parsed. Two reads of the one open file, never a copy in memory.
    tag_payload(&mut payload, len, &mut mac)?;
    mac.verify_slice(&tag).map_err(|_| Rejected::NotAuthentic)?;
    let back = i64::try_from(len).map_err(|_| Damaged("a length beyond the end"))?;
    std::io::Seek::seek(&mut payload, std::io::SeekFrom::Current(-back))?;
    let mut input = Decoder::from_reader(&mut payload, len);
    let model = M::decode(&mut input)?;
    input.finish()?;
    Ok(Some((header, model)))
}

/// Reads the snapshot at `path` of the model `name` at `version`, checked
/// as [`load`] does, as its header and payload bytes. Blocking. `Ok(None)`:
/// there is no file.
pub fn read_file(
    path: &Path,
    name: &'static str,
    version: u32,
    key: &SnapshotKey,
) -> Result<Option<(Header, Vec<u8>)>, Rejected> {
    let Some((header, len, mut mac, tag, mut payload)) = open(path, name, version, key)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    payload.read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(Damaged("cut short").into());
    }
    mac.update(&bytes);
    mac.verify_slice(&tag).map_err(|_| Rejected::NotAuthentic)?;
    Ok(Some((header, bytes)))
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
        let key = SnapshotKey::new([9; 32]);
        assert!(read_file(&path, "m", 3, &key).unwrap().is_none());
        let h = header();
        write_bytes(&path, &h, &key, b"payload").unwrap();
        // Nothing to save: nothing written.
        let none = write_file(&path, "m", 3, &key, |_| None).unwrap();
        assert!(none.is_none());
        let (read, payload) = read_file(&path, "m", 3, &key).unwrap().unwrap();
        assert_eq!((read, payload.as_slice()), (h.clone(), &b"payload"[..]));
        // Under another key: not ours.
        assert!(matches!(
            read_file(&path, "m", 3, &SnapshotKey::new([8; 32])),
            Err(Rejected::NotAuthentic)
        ));
        assert!(matches!(
            read_file(&path, "m", 4, &key),
            Err(Rejected::OtherVersion {
                found: 3,
                expected: 4
            })
        ));
        assert!(matches!(
            read_file(&path, "n", 3, &key),
            Err(Rejected::OtherModel { .. })
        ));
        let whole = std::fs::read(&path).unwrap();
        for cut in [0, 5, 20, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(read_file(&path, "m", 3, &key).is_err(), "cut at {cut}");
        }
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            read_file(&path, "m", 3, &key),
            Err(Rejected::NotAuthentic)
        ));
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    /// A model of many numbers (big enough to spill) for [`digest`].
    #[derive(Default)]
    struct Numbers(Vec<i64>);

    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(tag = "type")]
    enum Unused {
        Unused,
    }
    impl event_store::Event for Unused {}

    impl ReadModel for Numbers {
        type Event = Unused;
        fn apply(&mut self, _: Unused, _: &event_store::RecordedEvent) {}
    }

    impl Snapshot for Numbers {
        const NAME: &'static str = "numbers";
        const VERSION: u32 = 1;
        fn encode(&self, out: &mut Encoder<'_>) {
            out.records(&self.0, 8, |i, slot| slot.copy_from_slice(&i.to_le_bytes()));
        }
        fn decode(_: &mut Decoder<'_>) -> Result<Self, Damaged> {
            Err(Damaged("never decoded"))
        }
    }

    #[test]
    fn the_digest_is_the_sha256_of_the_encoding_and_tells_models_apart() {
        let model = Numbers((0..300_000).collect());
        let whole: [u8; 32] = Sha256::digest(model.to_bytes()).into();
        assert_eq!(digest(&model), whole);
        let mut other = Numbers(model.0.clone());
        other.0[123_456] += 1;
        assert_ne!(digest(&model), digest(&other));
    }

    #[test]
    fn a_payload_streamed_to_a_file_equals_one_built_in_memory() {
        let items: Vec<i64> = (0..300_000).collect(); // 2.4 MB: spilled thrice
        let encode = |out: &mut Encoder<'_>| {
            out.str("before");
            out.records(&items, 8, |i, slot| slot.copy_from_slice(&i.to_le_bytes()));
            out.u8(7);
        };
        let mut memory = Encoder::default();
        encode(&mut memory);
        let expected = memory.into_inner();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.snapshot");
        let key = SnapshotKey::new([3; 32]);
        let (header, len) = write_file(&path, "m", 3, &key, |out| {
            encode(out);
            Some((42, Uuid::nil()))
        })
        .unwrap()
        .unwrap();
        assert_eq!((header.position, len), (42, expected.len() as u64));
        let (_, payload) = read_file(&path, "m", 3, &key).unwrap().unwrap();
        assert!(payload == expected);
        let mut d = Decoder::new(&payload);
        assert_eq!(d.str().unwrap(), "before");
        let mut seen = Vec::new();
        let n = d.records(8, |r| {
            seen.push(i64_at(r, 0));
            Ok(())
        });
        assert_eq!(n.unwrap(), items.len());
        assert!(seen == items);
        assert_eq!(d.u8().unwrap(), 7);
        d.finish().unwrap();
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
