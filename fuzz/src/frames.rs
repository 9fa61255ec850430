//! The frame parser and the session's receive buffer, fed the same stream in arbitrary
//! chunkings.
//!
//! Input: `max_frame: u16`, a read-size byte, four chunk sizes, then the stream. Checks: the
//! frames (and the violation, if any) are those of parsing the whole stream at once with
//! [`parse_frame`]; the end of stream is clean exactly at a frame boundary; the buffer never
//! holds more than a bounded multiple of the largest frame or read; every buffer goes back
//! to the pool.

use arbitrary::Unstructured;
use laxnet::fuzz_api::{
    BufferPool, FrameReader, Parsed, PoolConfig, ProtocolViolation, parse_frame,
};

/// Frames as (message id, body).
pub(crate) type Frames = Vec<(u32, Vec<u8>)>;

/// What a whole stream parses to: its frames, then a violation or the bytes of an
/// incomplete last frame.
pub(crate) fn reference(
    mut data: &[u8],
    max_frame: usize,
) -> (Frames, Result<usize, ProtocolViolation>) {
    let mut frames = Vec::new();
    loop {
        match parse_frame(data, max_frame) {
            Ok(Parsed::Frame { id, body, total }) => {
                frames.push((id, body.to_vec()));
                data = &data[total..];
            }
            Ok(Parsed::Incomplete { .. }) => return (frames, Ok(data.len())),
            Err(v) => return (frames, Err(v)),
        }
    }
}

/// Read sizes from one byte: 512 B to 4 KiB initially, up to 8 times that.
pub(crate) fn read_sizes(sel: u8) -> (usize, usize) {
    let initial = 512usize << (sel % 4);
    (initial, initial << ((sel >> 2) % 4))
}

/// The target.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(max_frame), Ok(sel), Ok(chunks)) = (
        u.arbitrary::<u16>(),
        u.arbitrary::<u8>(),
        u.arbitrary::<[u8; 4]>(),
    ) else {
        return;
    };
    let max_frame = usize::from(max_frame);
    let stream = u.take_rest();
    let (read_buffer, read_buffer_max) = read_sizes(sel);
    let (want, end) = reference(stream, max_frame);

    let pool = BufferPool::new(PoolConfig::default());
    let bound = 4 * read_buffer_max.max(max_frame + 4).next_power_of_two();
    let mut r = FrameReader::new(&pool, read_buffer, read_buffer_max, max_frame);
    let mut got = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    let outcome = 'feed: loop {
        if rest.is_empty() {
            break Ok(());
        }
        let chunk = usize::from(chunks[i % 4]) + 1;
        i += 1;
        let mut piece = &rest[..chunk.min(rest.len())];
        rest = &rest[piece.len()..];
        while !piece.is_empty() {
            let n = r.read(piece);
            assert!(n > 0, "the reader offered no room");
            piece = &piece[n..];
            loop {
                match r.next_frame() {
                    Ok(Some(f)) => got.push(f),
                    Ok(None) => break,
                    Err(v) => break 'feed Err(v),
                }
            }
            let used = pool.stats().in_use_bytes;
            assert!(used <= bound, "{used} bytes held, bound {bound}");
        }
        // The socket has nothing more for now.
        r.would_block();
    };
    assert_eq!(got, want, "frames differ from the whole-stream parse");
    match (&outcome, &end) {
        (Err(v), Err(w)) => assert_eq!(v, w),
        (Ok(()), Ok(partial)) => {
            assert_eq!(
                r.finish().is_ok(),
                *partial == 0,
                "end of stream after {partial} bytes"
            );
        }
        _ => panic!("outcome {outcome:?}, whole-stream parse {end:?}"),
    }
    r.release();
    drop(r);
    assert_eq!(pool.stats().in_use_bytes, 0, "buffers leaked");
}
