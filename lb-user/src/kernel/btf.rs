//! Just enough of a BTF reader to find a struct member's byte offset in the running
//! kernel (`/sys/kernel/btf/vmlinux`). The verdict reads `tcp_sock.write_seq` of the
//! peer socket, its own `tcp_sock.copied_seq` and `TCP_SKB_CB(skb)->seq` at such
//! offsets, handed to it as read-only globals at load time.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a BTF blob ({what})")]
    Format { path: String, what: &'static str },
    #[error("{path}: struct {name} not found")]
    NoStruct { path: String, name: String },
    #[error("{path}: struct {name} has no member {member}")]
    NoMember {
        path: String,
        name: String,
        member: String,
    },
}

const KIND_STRUCT: u32 = 4;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn str_at(strs: &[u8], o: u32) -> &[u8] {
    let s = strs.get(o as usize..).unwrap_or(&[]);
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    &s[..end]
}

/// Bytes of kind-specific data after each 12-byte type header.
fn extra_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 => 4,             // INT
        3 => 12,            // ARRAY
        4 | 5 => 12 * vlen, // STRUCT, UNION
        6 => 8 * vlen,      // ENUM
        13 => 8 * vlen,     // FUNC_PROTO
        14 => 4,            // VAR
        15 => 12 * vlen,    // DATASEC
        17 => 4,            // DECL_TAG
        19 => 12 * vlen,    // ENUM64
        2 | 7..=12 | 16 | 18 => 0,
        _ => return None,
    })
}

/// Byte offset of `member` in `struct name`, from a BTF blob.
pub fn member_offset_in(
    blob: &[u8],
    path: &str,
    name: &str,
    member: &str,
) -> Result<u32, BtfError> {
    let fmt = |what| BtfError::Format {
        path: path.to_string(),
        what,
    };
    if u16_at(blob, 0) != Some(0xeb9f) {
        return Err(fmt("bad magic"));
    }
    let hdr_len = u32_at(blob, 4).ok_or(fmt("short header"))? as usize;
    let type_off = u32_at(blob, 8).ok_or(fmt("short header"))? as usize;
    let type_len = u32_at(blob, 12).ok_or(fmt("short header"))? as usize;
    let str_off = u32_at(blob, 16).ok_or(fmt("short header"))? as usize;
    let str_len = u32_at(blob, 20).ok_or(fmt("short header"))? as usize;
    let types = blob
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or(fmt("type section out of bounds"))?;
    let strs = blob
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or(fmt("string section out of bounds"))?;
    let mut o = 0;
    while o + 12 <= types.len() {
        let name_off = u32_at(types, o).ok_or(fmt("truncated type"))?;
        let info = u32_at(types, o + 4).ok_or(fmt("truncated type"))?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31;
        let extra = extra_len(kind, vlen).ok_or(fmt("unknown type kind"))?;
        if kind == KIND_STRUCT && str_at(strs, name_off) == name.as_bytes() {
            for m in 0..vlen {
                let mo = o + 12 + m * 12;
                let m_name = u32_at(types, mo).ok_or(fmt("truncated member"))?;
                let m_off = u32_at(types, mo + 8).ok_or(fmt("truncated member"))?;
                if str_at(strs, m_name) == member.as_bytes() {
                    let bits = if kind_flag == 1 {
                        m_off & 0xff_ffff
                    } else {
                        m_off
                    };
                    return Ok(bits / 8);
                }
            }
            return Err(BtfError::NoMember {
                path: path.to_string(),
                name: name.to_string(),
                member: member.to_string(),
            });
        }
        o += 12 + extra;
    }
    Err(BtfError::NoStruct {
        path: path.to_string(),
        name: name.to_string(),
    })
}

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// What the stream verdict reads inside kernel structures, from the running
/// kernel's BTF.
#[derive(Clone, Copy, Debug)]
pub struct VerdictOffsets {
    /// `tcp_sock.write_seq` (the peer's backlog).
    pub write_seq: u32,
    /// `tcp_sock.copied_seq` (where a direction starts).
    pub copied_seq: u32,
    /// `sk_buff.cb` + `tcp_skb_cb.seq`: an skb's first sequence number.
    pub skb_seq: u32,
}

impl VerdictOffsets {
    fn kernel_blob() -> Result<Vec<u8>, BtfError> {
        std::fs::read(Path::new(VMLINUX)).map_err(|source| BtfError::Read {
            path: VMLINUX.to_string(),
            source,
        })
    }

    pub fn from_kernel() -> Result<Self, BtfError> {
        Self::from_blob(&Self::kernel_blob()?, VMLINUX)
    }

    fn from_blob(blob: &[u8], path: &str) -> Result<Self, BtfError> {
        let at = |name, member| member_offset_in(blob, path, name, member);
        Ok(Self {
            write_seq: at("tcp_sock", "write_seq")?,
            copied_seq: at("tcp_sock", "copied_seq")?,
            skb_seq: at("sk_buff", "cb")? + at("tcp_skb_cb", "seq")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob with `struct pair { int a; int b; }` and an INT type.
    fn blob() -> Vec<u8> {
        let strs = b"\0int\0pair\0a\0b\0".to_vec();
        let mut types = Vec::new();
        // [1] INT "int" size 4
        types.extend_from_slice(&1u32.to_le_bytes());
        types.extend_from_slice(&(1u32 << 24).to_le_bytes());
        types.extend_from_slice(&4u32.to_le_bytes());
        types.extend_from_slice(&32u32.to_le_bytes());
        // [2] STRUCT "pair" size 8, two members
        types.extend_from_slice(&5u32.to_le_bytes());
        types.extend_from_slice(&((4u32 << 24) | 2).to_le_bytes());
        types.extend_from_slice(&8u32.to_le_bytes());
        for (name, bits) in [(10u32, 0u32), (12, 32)] {
            types.extend_from_slice(&name.to_le_bytes());
            types.extend_from_slice(&1u32.to_le_bytes());
            types.extend_from_slice(&bits.to_le_bytes());
        }
        let mut b = Vec::new();
        b.extend_from_slice(&0xeb9fu16.to_le_bytes());
        b.push(1);
        b.push(0);
        b.extend_from_slice(&24u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(types.len() as u32).to_le_bytes());
        b.extend_from_slice(&(types.len() as u32).to_le_bytes());
        b.extend_from_slice(&(strs.len() as u32).to_le_bytes());
        b.extend_from_slice(&types);
        b.extend_from_slice(&strs);
        b
    }

    #[test]
    fn finds_member_offsets() {
        let b = blob();
        assert_eq!(member_offset_in(&b, "t", "pair", "a").unwrap(), 0);
        assert_eq!(member_offset_in(&b, "t", "pair", "b").unwrap(), 4);
        assert!(matches!(
            member_offset_in(&b, "t", "pair", "c"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            member_offset_in(&b, "t", "nope", "a"),
            Err(BtfError::NoStruct { .. })
        ));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let b = blob();
        for cut in 0..b.len() {
            let _ = member_offset_in(&b[..cut], "t", "pair", "b");
        }
        assert!(member_offset_in(b"nope", "t", "pair", "a").is_err());
    }

    #[test]
    fn running_kernel_has_the_verdicts_fields() {
        // Every kernel this project supports ships BTF; a machine without it cannot
        // run the kernel path at all, which the daemon reports at start-up.
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let v = VerdictOffsets::from_kernel().unwrap();
        assert!(v.write_seq > 0 && v.write_seq < 8192, "{v:?}");
        assert!(v.copied_seq > 0 && v.copied_seq < 8192, "{v:?}");
        // `cb` is 48 bytes into the first 256 of an sk_buff on every kernel
        // since 4.x; seq is the first member of tcp_skb_cb.
        assert!(v.skb_seq > 0 && v.skb_seq < 256, "{v:?}");
    }
}
