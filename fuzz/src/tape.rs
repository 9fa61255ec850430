//! Writing inputs in the byte layout `arbitrary` reads them in (little-endian integers, a
//! `u32` per enum variant, a "keep going" byte per element of a trailing `Vec`), so that the
//! seed corpus is generated from values rather than written by hand.

/// Bytes that `arbitrary::Unstructured` decodes back into the values written.
#[derive(Default)]
pub(crate) struct Tape(pub(crate) Vec<u8>);

impl Tape {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// The tag that `#[derive(Arbitrary)]` maps to variant `idx` of `count`.
    pub(crate) fn variant(&mut self, idx: u32, count: u32) -> &mut Self {
        let tag = (u64::from(idx) << 32).div_ceil(u64::from(count));
        self.u32(u32::try_from(tag).expect("idx < count"))
    }
    /// The "keep going" byte before each element of a `Vec` taken from the rest of the input.
    pub(crate) fn more(&mut self) -> &mut Self {
        self.u8(1)
    }
}
