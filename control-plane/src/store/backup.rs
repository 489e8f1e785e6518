//! Snapshot files, as written by `snapshot save` and read by `snapshot restore`.
//!
//! Layout: the magic `SKIFFSNAP2`, the store revision (u64 LE), the data length (u64 LE), a
//! CRC-32 of the data (u32 LE), the state export, zero padding to a multiple of 512 bytes, and a
//! SHA-256 of everything before it. The padding and trailing hash are what etcd's own snapshot
//! stream carries, so `etcdctl snapshot save` accepts the stream.

use sha2::{Digest, Sha256};

use super::error::StoreError;

const MAGIC: &[u8] = b"SKIFFSNAP2";
const HEADER: usize = 10 + 8 + 8 + 4;
const SECTOR: usize = 512;

/// Wraps a state export into snapshot-file bytes.
pub fn encode(revision: i64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + HEADER + SECTOR + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(revision as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(SECTOR) * SECTOR, 0);
    let hash = Sha256::digest(&out);
    out.extend_from_slice(&hash);
    out
}

/// Checks and unwraps snapshot-file bytes into (revision, state export).
pub fn decode(file: &[u8]) -> Result<(i64, &[u8]), StoreError> {
    let bad = |why: &str| StoreError::InvalidArgument(format!("not a valid skiff snapshot: {why}"));
    if file.len() < HEADER + 32 || !file.starts_with(MAGIC) {
        return Err(bad("missing header"));
    }
    let (body, hash) = file.split_at(file.len() - 32);
    if Sha256::digest(body).as_slice() != hash {
        return Err(bad("checksum mismatch (truncated or damaged file)"));
    }
    let word = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap_or_default());
    let revision = word(10) as i64;
    let len = word(18) as usize;
    let crc = u32::from_le_bytes(file[26..30].try_into().unwrap_or_default());
    let data = body
        .get(HEADER..HEADER.saturating_add(len))
        .ok_or_else(|| bad("data runs past the end"))?;
    if crc32fast::hash(data) != crc {
        return Err(bad("data checksum mismatch"));
    }
    Ok((revision, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage_detection() {
        let f = encode(42, b"state");
        assert_eq!(f.len() % SECTOR, 32, "etcdctl requires size = 32 mod 512");
        assert_eq!(decode(&f).unwrap(), (42, &b"state"[..]));
        let mut damaged = f.clone();
        damaged[HEADER] ^= 1;
        assert!(decode(&damaged).is_err());
        assert!(decode(&f[..f.len() - 1]).is_err());
        assert!(decode(b"junk").is_err());
    }
}
