//! A minimal ISO 9660 writer: one root directory holding a few small files, which is all a
//! cloud-init NoCloud seed needs.
//!
//! Why not a crate: the one maintained writer on crates.io (`hadris-iso`) is a 3.0 release
//! candidate spread over five crates; the format needed here fits in this file and is pinned by
//! tests (including a reader below, and `isoinfo` when it is installed).
//!
//! Names reach every reader intact three ways, as `genisoimage -joliet -rock` does it:
//! - Rock Ridge (`NM` entries, announced by `SP` and `ER` on the root), which Linux prefers;
//! - Joliet (a supplementary volume descriptor with UCS-2 names), which Windows reads;
//! - the plain ISO 9660 name, upper case (`META-DATA.;1`), which Linux maps back to `meta-data`
//!   even when mounted with `norock,nojoliet`.
//!
//! Layout (2048-byte sectors): 0–15 system area, 16 primary volume descriptor, 17 Joliet
//! descriptor, 18 terminator, 19–22 path tables (L and M, primary then Joliet), 23 root
//! directory, 24 Joliet root directory, 25 Rock Ridge continuation area (`ER`), then the files.
//! The output depends only on the input: every date is fixed, so the same seed gives the same
//! bytes.

const SECTOR: usize = 2048;
const PVD: usize = 16;
const SVD: usize = 17;
const TERMINATOR: usize = 18;
const L_PATH: usize = 19;
const M_PATH: usize = 20;
const JL_PATH: usize = 21;
const JM_PATH: usize = 22;
const ROOT: usize = 23;
const JROOT: usize = 24;
const CONTINUATION: usize = 25;
const FIRST_FILE: usize = 26;

/// The recording date of every directory record: 1970-01-01 00:00:00 UTC.
const DATE: [u8; 7] = [70, 1, 1, 0, 0, 0, 0];

const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DESC: &[u8] = b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY \
VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// One file of the image's root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File<'a> {
    /// The name as readers should see it: lower-case ASCII letters, digits, `-`, `_` and `.`.
    pub name: &'a str,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsoError {
    #[error("ISO volume label {0:?} must be 1 to 16 ASCII letters, digits or '_'")]
    Label(String),
    #[error("file name {0:?} must be 1 to 30 ASCII letters, digits, '-', '_' or '.'")]
    Name(String),
    #[error("the files do not fit one directory sector")]
    TooManyFiles,
    #[error("file {0:?} is too large for this writer")]
    TooLarge(String),
}

/// Writes an image with volume label `label` whose root directory holds `files`.
pub fn write(label: &str, files: &[File<'_>]) -> Result<Vec<u8>, IsoError> {
    if label.is_empty() || label.len() > 16 || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(IsoError::Label(label.to_owned()));
    }
    for f in files {
        let ok = !f.name.is_empty()
            && f.name.len() <= 30
            && f.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(IsoError::Name(f.name.to_owned()));
        }
        if f.data.len() > 64 << 20 {
            return Err(IsoError::TooLarge(f.name.to_owned()));
        }
    }
    // Where each file's data goes.
    let mut extents = Vec::with_capacity(files.len());
    let mut next = FIRST_FILE;
    for f in files {
        extents.push(next);
        next += f.data.len().div_ceil(SECTOR).max(1);
    }
    let total = next;

    let root = directory(files, &extents, DirKind::Primary)?;
    let jroot = directory(files, &extents, DirKind::Joliet)?;

    let mut img = vec![0u8; total * SECTOR];
    let path_table_len = 10;
    img[sector(PVD)].copy_from_slice(&volume_descriptor(label, total, path_table_len, DirKind::Primary));
    img[sector(SVD)].copy_from_slice(&volume_descriptor(label, total, path_table_len, DirKind::Joliet));
    let t = &mut img[sector(TERMINATOR)];
    t[0] = 255;
    t[1..6].copy_from_slice(b"CD001");
    t[6] = 1;
    img[sector(L_PATH)][..10].copy_from_slice(&path_table(ROOT, false));
    img[sector(M_PATH)][..10].copy_from_slice(&path_table(ROOT, true));
    img[sector(JL_PATH)][..10].copy_from_slice(&path_table(JROOT, false));
    img[sector(JM_PATH)][..10].copy_from_slice(&path_table(JROOT, true));
    img[sector(ROOT)][..root.len()].copy_from_slice(&root);
    img[sector(JROOT)][..jroot.len()].copy_from_slice(&jroot);
    let er = er_entry();
    img[sector(CONTINUATION)][..er.len()].copy_from_slice(&er);
    for (f, &at) in files.iter().zip(&extents) {
        img[at * SECTOR..at * SECTOR + f.data.len()].copy_from_slice(f.data);
    }
    Ok(img)
}

fn sector(n: usize) -> std::ops::Range<usize> {
    n * SECTOR..(n + 1) * SECTOR
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DirKind {
    Primary,
    Joliet,
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

/// Text in the descriptor's character set, padded with spaces to `len` bytes.
fn padded(text: &str, len: usize, kind: DirKind) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    match kind {
        DirKind::Primary => {
            out.extend(text.bytes());
            out.resize(len, b' ');
        }
        DirKind::Joliet => {
            out.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
            while out.len() < len {
                out.extend([0, b' ']);
            }
        }
    }
    out.truncate(len);
    out
}

fn volume_descriptor(label: &str, total: usize, path_table_len: u32, kind: DirKind) -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[0] = if kind == DirKind::Primary { 1 } else { 2 };
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d[8..40].copy_from_slice(&padded("LINUX", 32, kind));
    d[40..72].copy_from_slice(&padded(label, 32, kind));
    d[80..88].copy_from_slice(&both32(total as u32));
    if kind == DirKind::Joliet {
        // UCS-2 level 3.
        d[88..91].copy_from_slice(b"%/E");
    }
    d[120..124].copy_from_slice(&both16(1));
    d[124..128].copy_from_slice(&both16(1));
    d[128..132].copy_from_slice(&both16(SECTOR as u16));
    d[132..140].copy_from_slice(&both32(path_table_len));
    let (l, m, root) = match kind {
        DirKind::Primary => (L_PATH, M_PATH, ROOT),
        DirKind::Joliet => (JL_PATH, JM_PATH, JROOT),
    };
    d[140..144].copy_from_slice(&(l as u32).to_le_bytes());
    d[148..152].copy_from_slice(&(m as u32).to_be_bytes());
    d[156..190].copy_from_slice(&record(root, SECTOR, 0x02, &[0], &[]));
    d[190..318].copy_from_slice(&padded("", 128, kind));
    d[318..446].copy_from_slice(&padded("", 128, kind));
    d[446..574].copy_from_slice(&padded("", 128, kind));
    d[574..702].copy_from_slice(&padded("OPENWINV", 128, kind));
    d[702..739].copy_from_slice(&padded("", 37, kind));
    d[739..776].copy_from_slice(&padded("", 37, kind));
    d[776..813].copy_from_slice(&padded("", 37, kind));
    // Creation, modification, expiration, effective: "not specified".
    for at in [813, 830, 847, 864] {
        d[at..at + 16].copy_from_slice(b"0000000000000000");
        d[at + 16] = 0;
    }
    d[881] = 1;
    d
}

/// A path table with the root directory alone.
fn path_table(root: usize, big_endian: bool) -> [u8; 10] {
    let mut t = [0u8; 10];
    t[0] = 1;
    let (extent, parent) = if big_endian {
        ((root as u32).to_be_bytes(), 1u16.to_be_bytes())
    } else {
        ((root as u32).to_le_bytes(), 1u16.to_le_bytes())
    };
    t[2..6].copy_from_slice(&extent);
    t[6..8].copy_from_slice(&parent);
    t
}

/// A directory record with its system use area.
fn record(extent: usize, size: usize, flags: u8, id: &[u8], system_use: &[u8]) -> Vec<u8> {
    let pad = usize::from(id.len().is_multiple_of(2));
    let len = 33 + id.len() + pad + system_use.len();
    let len = len + len % 2;
    let mut r = vec![0u8; len];
    r[0] = len as u8;
    r[2..10].copy_from_slice(&both32(extent as u32));
    r[10..18].copy_from_slice(&both32(size as u32));
    r[18..25].copy_from_slice(&DATE);
    r[25] = flags;
    r[28..32].copy_from_slice(&both16(1));
    r[32] = id.len() as u8;
    r[33..33 + id.len()].copy_from_slice(id);
    let su = 33 + id.len() + pad;
    r[su..su + system_use.len()].copy_from_slice(system_use);
    r
}

/// Rock Ridge `PX` (RRIP 1991A): mode, links, uid, gid.
fn px(mode: u32, links: u32) -> Vec<u8> {
    let mut e = vec![b'P', b'X', 36, 1];
    for v in [mode, links, 0, 0] {
        e.extend(both32(v));
    }
    e
}

fn nm(name: &str) -> Vec<u8> {
    let mut e = vec![b'N', b'M', (5 + name.len()) as u8, 1, 0];
    e.extend(name.bytes());
    e
}

fn er_entry() -> Vec<u8> {
    let mut e = vec![b'E', b'R', 0, 1, ER_ID.len() as u8, ER_DESC.len() as u8, ER_SRC.len() as u8, 1];
    e.extend(ER_ID);
    e.extend(ER_DESC);
    e.extend(ER_SRC);
    e[2] = e.len() as u8;
    e
}

/// `SP` + `CE` (pointing at the continuation area that holds `ER`) + `PX`: the root's `.`.
fn root_dot_system_use() -> Vec<u8> {
    let mut su = vec![b'S', b'P', 7, 1, 0xbe, 0xef, 0];
    su.extend([b'C', b'E', 28, 1]);
    su.extend(both32(CONTINUATION as u32));
    su.extend(both32(0));
    su.extend(both32(er_entry().len() as u32));
    su.extend(px(0o040555, 2));
    su
}

fn directory(files: &[File<'_>], extents: &[usize], kind: DirKind) -> Result<Vec<u8>, IsoError> {
    let root = if kind == DirKind::Primary { ROOT } else { JROOT };
    let mut dir = Vec::new();
    match kind {
        DirKind::Primary => {
            dir.extend(record(root, SECTOR, 0x02, &[0], &root_dot_system_use()));
            dir.extend(record(root, SECTOR, 0x02, &[1], &px(0o040555, 2)));
        }
        DirKind::Joliet => {
            dir.extend(record(root, SECTOR, 0x02, &[0], &[]));
            dir.extend(record(root, SECTOR, 0x02, &[1], &[]));
        }
    }
    // Readers expect the records sorted by identifier.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| files[a].name.cmp(files[b].name));
    for i in order {
        let f = &files[i];
        let r = match kind {
            DirKind::Primary => {
                let mut id = f.name.to_ascii_uppercase();
                if !id.contains('.') {
                    id.push('.');
                }
                id.push_str(";1");
                let mut su = px(0o100444, 1);
                su.extend(nm(f.name));
                record(extents[i], f.data.len(), 0, id.as_bytes(), &su)
            }
            DirKind::Joliet => {
                // As genisoimage writes Joliet names: without the `;1` version.
                let id: Vec<u8> = f.name.encode_utf16().flat_map(u16::to_be_bytes).collect();
                record(extents[i], f.data.len(), 0, &id, &[])
            }
        };
        dir.extend(r);
    }
    if dir.len() > SECTOR {
        return Err(IsoError::TooManyFiles);
    }
    Ok(dir)
}

/// What [`read`] finds in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The primary volume label.
    pub label: String,
    /// The Joliet volume label, if there is a Joliet descriptor.
    pub joliet_label: Option<String>,
    /// Root directory files: (ISO 9660 name, Rock Ridge name, contents).
    pub files: Vec<(String, Option<String>, Vec<u8>)>,
    /// Root directory files as Joliet names them.
    pub joliet_names: Vec<String>,
    /// Whether the root's `.` announces Rock Ridge (`SP`, and `ER` in its continuation area).
    pub rock_ridge: bool,
}

/// A directory record as [`read`] sees it: identifier, flags, extent, size, system use area.
type Record = (Vec<u8>, u8, usize, usize, Vec<u8>);

/// Reads back the root directory of an image this module wrote (or a similar single-directory
/// one): for tests, and for checking a seed on disk.
pub fn read(img: &[u8]) -> Result<Parsed, String> {
    let get = |at: usize, len: usize| img.get(at..at + len).ok_or_else(|| format!("truncated at byte {at}"));
    let u32le = |at: usize| -> Result<usize, String> {
        let b = get(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let pvd = PVD * SECTOR;
    if get(pvd, 7)? != b"\x01CD001\x01" {
        return Err("no primary volume descriptor at sector 16".into());
    }
    let label = String::from_utf8_lossy(get(pvd + 40, 32)?).trim_end().to_owned();
    let mut joliet_root = None;
    let mut joliet_label = None;
    for n in PVD + 1..PVD + 16 {
        let d = n * SECTOR;
        let head = get(d, 7)?;
        if head[0] == 255 {
            break;
        }
        if head[0] == 2 && get(d + 88, 3)? == b"%/E" {
            let raw = get(d + 40, 32)?;
            let units: Vec<u16> = raw.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            joliet_label = Some(String::from_utf16_lossy(&units).trim_end().to_owned());
            joliet_root = Some((u32le(d + 156 + 2)?, u32le(d + 156 + 10)?));
        }
    }
    let root = (u32le(pvd + 156 + 2)?, u32le(pvd + 156 + 10)?);
    let records = |(extent, size): (usize, usize)| -> Result<Vec<Record>, String> {
        let mut out = Vec::new();
        let mut at = extent * SECTOR;
        let end = at + size;
        while at < end {
            let len = usize::from(*get(at, 1)?.first().unwrap_or(&0));
            if len == 0 {
                // Records do not cross sectors: skip to the next one.
                at = (at / SECTOR + 1) * SECTOR;
                continue;
            }
            let r = get(at, len)?;
            let id_len = usize::from(r[32]);
            let id = r.get(33..33 + id_len).ok_or("bad record")?.to_vec();
            let su_at = 33 + id_len + usize::from(id_len.is_multiple_of(2));
            let su = r.get(su_at..).unwrap_or(&[]).to_vec();
            let ext = u32::from_le_bytes([r[2], r[3], r[4], r[5]]) as usize;
            let size = u32::from_le_bytes([r[10], r[11], r[12], r[13]]) as usize;
            out.push((id, r[25], ext, size, su));
            at += len;
        }
        Ok(out)
    };
    let entries = |su: &[u8]| -> Vec<([u8; 2], Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i + 4 <= su.len() {
            let len = usize::from(su[i + 2]);
            if len < 4 || i + len > su.len() {
                break;
            }
            out.push(([su[i], su[i + 1]], su[i + 4..i + len].to_vec()));
            i += len;
        }
        out
    };
    let mut files = Vec::new();
    let mut rock_ridge = false;
    for (id, flags, ext, size, su) in records(root)? {
        if id == [0] {
            let es = entries(&su);
            let sp = es.iter().any(|(sig, body)| sig == b"SP" && body.starts_with(&[0xbe, 0xef]));
            let er = es.iter().find(|(sig, _)| sig == b"CE").is_some_and(|(_, body)| {
                let block = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
                let off = u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize;
                img.get(block * SECTOR + off..block * SECTOR + off + 2) == Some(b"ER")
            });
            rock_ridge = sp && er;
            continue;
        }
        if id == [1] || flags & 0x02 != 0 {
            continue;
        }
        let rr = entries(&su)
            .into_iter()
            .find(|(sig, _)| sig == b"NM")
            .map(|(_, body)| String::from_utf8_lossy(body.get(1..).unwrap_or(&[])).into_owned());
        files.push((String::from_utf8_lossy(&id).into_owned(), rr, get(ext * SECTOR, size)?.to_vec()));
    }
    let mut joliet_names = Vec::new();
    if let Some(jroot) = joliet_root {
        for (id, flags, ..) in records(jroot)? {
            if id == [0] || id == [1] || flags & 0x02 != 0 {
                continue;
            }
            let units: Vec<u16> = id.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            joliet_names.push(String::from_utf16_lossy(&units));
        }
    }
    Ok(Parsed { label, joliet_label, files, joliet_names, rock_ridge })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let big = vec![b'x'; 5000];
        write(
            "cidata",
            &[
                File { name: "user-data", data: b"#cloud-config\nhostname: a\n" },
                File { name: "meta-data", data: b"instance-id: i-1\n" },
                File { name: "big", data: &big },
            ],
        )
        .expect("write")
    }

    #[test]
    fn reads_back() {
        let img = sample();
        // 26 fixed sectors, then 1 + 1 + 3 for the files.
        assert_eq!(img.len(), (26 + 5) * SECTOR);
        let p = read(&img).expect("read");
        assert_eq!(p.label, "cidata");
        assert_eq!(p.joliet_label.as_deref(), Some("cidata"));
        assert!(p.rock_ridge);
        let names: Vec<_> = p.files.iter().map(|(iso, rr, _)| (iso.as_str(), rr.as_deref().unwrap_or(""))).collect();
        assert_eq!(
            names,
            [("BIG.;1", "big"), ("META-DATA.;1", "meta-data"), ("USER-DATA.;1", "user-data")],
            "sorted, upper-case ISO names with Rock Ridge names"
        );
        assert_eq!(p.files[1].2, b"instance-id: i-1\n");
        assert_eq!(p.files[2].2, b"#cloud-config\nhostname: a\n");
        assert_eq!(p.files[0].2.len(), 5000);
        assert_eq!(p.joliet_names, ["big", "meta-data", "user-data"]);
    }

    #[test]
    fn deterministic() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn refuses_bad_names() {
        assert!(matches!(write("ci data", &[]), Err(IsoError::Label(_))));
        assert!(matches!(write("cidata", &[File { name: "a/b", data: b"" }]), Err(IsoError::Name(_))));
        assert!(matches!(write("cidata", &[File { name: "", data: b"" }]), Err(IsoError::Name(_))));
    }

    #[test]
    fn empty_file() {
        let img = write("cidata", &[File { name: "meta-data", data: b"" }]).expect("write");
        let p = read(&img).expect("read");
        assert_eq!(p.files[0].2, b"");
    }

    /// Cross-checks with `isoinfo` (genisoimage) when it is installed: the Rock Ridge and Joliet
    /// listings and the volume label.
    #[test]
    fn isoinfo_agrees() {
        let Ok(out) = std::process::Command::new("isoinfo").arg("--version").output() else {
            eprintln!("isoinfo is not installed (apt-get install genisoimage); cross-check skipped");
            return;
        };
        let _ = out;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seed.iso");
        std::fs::write(&path, sample()).expect("write iso");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("isoinfo").args(args).arg("-i").arg(&path).output().expect("isoinfo");
            assert!(out.status.success(), "isoinfo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(run(&["-R", "-f"]), "/big\n/meta-data\n/user-data\n");
        assert_eq!(run(&["-J", "-f"]), "/big\n/meta-data\n/user-data\n");
        assert_eq!(run(&["-f"]), "/BIG.;1\n/META-DATA.;1\n/USER-DATA.;1\n");
        let d = run(&["-d"]);
        assert!(d.contains("Volume id: cidata"), "{d}");
        assert!(d.contains("Rock Ridge signatures version 1 found"), "{d}");
        assert!(d.contains("Joliet with UCS level 3 found"), "{d}");
        let body = run(&["-R", "-x", "/meta-data"]);
        assert_eq!(body, "instance-id: i-1\n");
    }
}
