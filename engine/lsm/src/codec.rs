//! Little-endian encoding helpers and `Cursor`, a bounds-checked reader
//! over untrusted bytes: every read that would run past the end returns
//! `None` instead of panicking, so decoders turn it into `Corrupt`.

/// Appends `v` little endian.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends `v` little endian.
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `u32` length then the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(
        out,
        u32::try_from(b.len()).expect("length checked against KEY/VALUE_BYTES_MAX"),
    );
    out.extend_from_slice(b);
}

/// Reads untrusted bytes front to back.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Whether everything was consumed.
    pub(crate) fn is_done(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A `u32` length then that many bytes.
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Splits `block` into its body and checks its trailing crc32c.
/// Returns the body, or `None` if too short or the checksum is wrong.
pub(crate) fn check_crc_trailer(block: &[u8]) -> Option<&[u8]> {
    let body_len = block.len().checked_sub(4)?;
    let (body, crc) = block.split_at(body_len);
    let want = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    (crc32c::crc32c(body) == want).then_some(body)
}

/// Appends the crc32c of `out[from..]`.
pub(crate) fn seal_crc_trailer(out: &mut Vec<u8>, from: usize) {
    let crc = crc32c::crc32c(&out[from..]);
    put_u32(out, crc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_never_reads_past_the_end() {
        let mut c = Cursor::new(&[1, 0, 0, 0, 9]);
        assert_eq!(c.u32(), Some(1));
        assert_eq!(c.u32(), None);
        assert_eq!(c.u8(), Some(9));
        assert!(c.is_done());
        let mut c = Cursor::new(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(c.bytes(), None);
    }

    #[test]
    fn crc_trailer_roundtrip_and_flip() {
        let mut b = b"hello".to_vec();
        seal_crc_trailer(&mut b, 0);
        assert_eq!(check_crc_trailer(&b), Some(&b"hello"[..]));
        b[1] ^= 1;
        assert_eq!(check_crc_trailer(&b), None);
        assert_eq!(check_crc_trailer(&[1, 2]), None);
    }
}
