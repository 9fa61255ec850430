//! The seed corpus: a handful of meaningful inputs per target, made from values (frames,
//! messages, a handshake transcript, records, event sequences, key and scenario files) by
//! the same code paths the library uses, not written by hand.
//!
//! `cargo run -p laxnet-fuzz --example gen_corpus` writes them to `fuzz/corpus/<target>/`
//! as `seed-<name>`; `tests/replay.rs` checks that the committed files are what this
//! module makes.

use borsh::BorshSerialize;
use laxnet::fuzz_api::{Cipher, KeyPair, Message, SH_LEN};
use laxnet_sim::schedule::{CtAct, Dir, Fault, IoAct, Schedule};

use crate::decode::{Blob, Chat, Command, Empty, Flags, Unwanted};
use crate::handshake::fixtures;
use crate::records::{REAL_KEY, null_keys, seal};
use crate::session::{Input, Op, Setup};
use crate::tape::Tape;

/// One seed: its target, its name and its bytes.
pub struct Seed {
    /// The target.
    pub target: &'static str,
    /// The file name without `seed-`.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

fn body<T: Message>(m: &T) -> Vec<u8> {
    borsh::to_vec(m).expect("encode")
}

fn frame<T: Message + BorshSerialize>(m: &T) -> Vec<u8> {
    let b = body(m);
    let mut f = ((b.len() + 4) as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&T::ID.to_le_bytes());
    f.extend(b);
    f
}

fn chat(text: &str) -> Chat {
    Chat {
        from: "seed".into(),
        text: text.into(),
        seq: 7,
    }
}

fn some_frames() -> Vec<u8> {
    let mut s = frame(&chat("hello"));
    s.extend(frame(&Blob {
        bytes: vec![9; 600],
        tags: vec!["a".into(), "bc".into()],
        nested: vec![vec![1, 2], vec![]],
    }));
    s.extend(frame(&Empty));
    s
}

fn frames_seeds(out: &mut Vec<Seed>) {
    let mut add = |name: &str, max_frame: u16, sel: u8, chunks: [u8; 4], stream: &[u8]| {
        let mut t = Tape::default();
        t.u16(max_frame).u8(sel).bytes(&chunks).bytes(stream);
        out.push(Seed {
            target: "frames",
            name: name.into(),
            bytes: t.0,
        });
    };
    let s = some_frames();
    add("three-frames", 4096, 0, [0, 1, 6, 255], &s);
    add("byte-by-byte", 4096, 5, [0; 4], &s);
    add("truncated", 4096, 0, [3, 3, 3, 3], &s[..s.len() - 3]);
    add("too-large", 64, 0, [255; 4], &s);
    add("too-short", 4096, 0, [255; 4], &[2, 0, 0, 0, 1, 0]);
}

fn decode_seeds(out: &mut Vec<Seed>) {
    let mut add = |name: &str, id: u32, b: Vec<u8>| {
        let mut bytes = id.to_le_bytes().to_vec();
        bytes.extend(b);
        out.push(Seed {
            target: "decode",
            name: name.into(),
            bytes,
        });
    };
    add("chat", 1, body(&chat("hi")));
    add(
        "blob",
        2,
        body(&Blob {
            bytes: vec![1, 2, 3],
            tags: vec!["x".into()],
            nested: vec![vec![7; 3]],
        }),
    );
    add(
        "command-move",
        3,
        body(&Command::Move {
            x: -1,
            y: 2,
            note: Some("n".into()),
        }),
    );
    add(
        "flags",
        4,
        body(&Flags {
            a: true,
            b: Some(false),
            c: [1, 2, 3],
            d: (4, 5),
        }),
    );
    add("empty", 5, body(&Empty));
    add("unwanted", 6, body(&Unwanted { words: vec![1, 2] }));
    add("unknown-id", 77, body(&chat("?")));
    let mut trailing = body(&chat("t"));
    trailing.push(0);
    add("trailing-byte", 1, trailing);
    let c = body(&chat("truncated"));
    add("truncated", 1, c[..c.len() - 2].to_vec());
    // A vector announcing 2^32 - 1 elements with three bytes behind it.
    let mut hostile = u32::MAX.to_le_bytes().to_vec();
    hostile.extend([1, 2, 3]);
    add("hostile-vec-length", 2, hostile);
    let mut hostile_str = 0u32.to_le_bytes().to_vec(); // `from` is empty
    hostile_str.extend(0x7fff_ffffu32.to_le_bytes()); // `text` announces 2 GiB
    add("hostile-string-length", 1, hostile_str);
}

fn handshake_seeds(out: &mut Vec<Seed>) {
    for (i, fx) in fixtures().iter().enumerate() {
        let keys = &fx.keys;
        // The server side: hello, finished, then a record from the client.
        let mut s = vec![i as u8, fx.hello.len() as u8];
        s.extend(&fx.hello);
        s.extend(fx.cf);
        s.extend(seal(
            keys.cipher,
            &keys.c2s,
            &[&frame(&chat("from client"))],
            false,
        ));
        out.push(Seed {
            target: "handshake_server",
            name: format!("setup{i}"),
            bytes: s,
        });
        // The client side: the server's hello, then its records (the last a Close).
        let mut c = vec![i as u8];
        c.extend(fx.sh);
        let f = frame(&chat("from server"));
        c.extend(seal(keys.cipher, &keys.s2c, &[&f, &[]], true));
        out.push(Seed {
            target: "handshake_client",
            name: format!("setup{i}"),
            bytes: c,
        });
        assert_eq!(fx.sh.len(), SH_LEN);
    }
}

fn records_seeds(out: &mut Vec<Seed>) {
    let n = null_keys();
    let f = some_frames();
    let mut add = |target: &'static str, name: &str, head: Vec<u8>, wire: Vec<u8>| {
        let mut bytes = head;
        bytes.extend(wire);
        out.push(Seed {
            target,
            name: name.into(),
            bytes,
        });
    };
    let max = 16384u16.to_le_bytes().to_vec();
    add(
        "records_null",
        "frames-then-close",
        max.clone(),
        seal(Cipher::Null, &n.c2s, &[&f, &[]], true),
    );
    // One frame split over three records.
    let (a, rest) = f.split_at(5);
    let (b, c) = rest.split_at(300);
    add(
        "records_null",
        "frame-across-records",
        max,
        seal(Cipher::Null, &n.c2s, &[a, b, c], false),
    );
    add(
        "records_null",
        "too-large",
        64u16.to_le_bytes().to_vec(),
        seal(Cipher::Null, &n.c2s, &[&f], false),
    );
    // Real ciphers: well-formed records under another key.
    let other = ([0x17; 32], REAL_KEY.1);
    add(
        "records_real",
        "chacha-other-key",
        vec![0],
        seal(Cipher::ChaCha20Poly1305, &other, &[&f, &[]], true),
    );
    add(
        "records_real",
        "aes-other-key",
        vec![1],
        seal(Cipher::Aes128Gcm, &other, &[&f], false),
    );
}

/// Writes `input` in the layout `Input::arbitrary_take_rest` reads.
pub fn session_bytes(input: &Input) -> Vec<u8> {
    const OPS: u32 = 12;
    let mut t = Tape::default();
    let s = input.setup;
    t.u8(s.encrypted.into())
        .u8(s.client.into())
        .u8(s.max_frame)
        .u8(s.reads)
        .u8(s.send_limit)
        .u8(s.max_record);
    for op in &input.ops {
        t.more();
        match *op {
            Op::PeerFrame { id, len, fill } => t.variant(0, OPS).u8(id).u16(len).u8(fill),
            Op::PeerRecord { take, close } => t.variant(1, OPS).u16(take).u8(close.into()),
            Op::PeerRaw(b) => t.variant(2, OPS).bytes(&b),
            Op::Read { max } => t.variant(3, OPS).u16(max),
            Op::Eof => t.variant(4, OPS),
            Op::ReadError(k) => t.variant(5, OPS).u8(k),
            Op::Send { kind, len, fill } => t.variant(6, OPS).u8(kind).u16(len).u8(fill),
            Op::Write { max } => t.variant(7, OPS).u16(max),
            Op::WriteError(k) => t.variant(8, OPS).u8(k),
            Op::Shutdown => t.variant(9, OPS),
            Op::Close(k) => t.variant(10, OPS).u8(k),
            Op::Tick { ms } => t.variant(11, OPS).u16(ms),
        };
    }
    t.0
}

/// The session seeds as values (the replay test also checks they decode back).
pub fn session_inputs() -> Vec<(String, Input)> {
    let setup = |encrypted, client| Setup {
        encrypted,
        client,
        max_frame: 2,
        reads: 0,
        send_limit: 2,
        max_record: 1,
    };
    let echo = vec![
        Op::PeerFrame {
            id: 1,
            len: 10,
            fill: 0xAA,
        },
        Op::PeerFrame {
            id: 2,
            len: 700,
            fill: 0xBB,
        },
        Op::PeerRecord {
            take: 2000,
            close: false,
        },
        Op::Read { max: 3 },
        Op::Read { max: 600 },
        Op::Read { max: 2000 },
        Op::Send {
            kind: 0,
            len: 20,
            fill: 1,
        },
        Op::Send {
            kind: 1,
            len: 900,
            fill: 2,
        },
        Op::Write { max: 100 },
        Op::Write { max: 5000 },
        Op::Close(0),
        Op::Send {
            kind: 2,
            len: 5,
            fill: 3,
        },
        Op::Write { max: 5000 },
        Op::Shutdown,
        Op::PeerRecord {
            take: 0,
            close: true,
        },
        Op::Read { max: 5000 },
        Op::Eof,
    ];
    let violation = vec![
        Op::PeerFrame {
            id: 1,
            len: 4,
            fill: 0,
        },
        Op::PeerFrame {
            id: 200,
            len: 4,
            fill: 0,
        },
        Op::PeerRecord {
            take: 100,
            close: false,
        },
        Op::Read { max: 100 },
        Op::Send {
            kind: 0,
            len: 1,
            fill: 0,
        },
        Op::Write { max: 100 },
    ];
    let truncated = vec![
        Op::PeerFrame {
            id: 3,
            len: 50,
            fill: 7,
        },
        Op::PeerRecord {
            take: 30,
            close: false,
        },
        Op::Read { max: 1000 },
        Op::Eof,
    ];
    let linger = vec![
        Op::Send {
            kind: 0,
            len: 3000,
            fill: 9,
        },
        Op::Send {
            kind: 0,
            len: 3000,
            fill: 9,
        },
        Op::Close(0),
        Op::Write { max: 10 },
        Op::Tick { ms: 400 },
        Op::Tick { ms: 400 },
        Op::Write { max: 10 },
    ];
    let mut v = Vec::new();
    for enc in [false, true] {
        let p = if enc { "hpke-" } else { "bits-" };
        let names = [
            ("echo", &echo),
            ("violation", &violation),
            ("truncated", &truncated),
            ("linger", &linger),
        ];
        for (name, ops) in names {
            v.push((
                format!("{p}{name}"),
                Input {
                    setup: setup(enc, enc && name == "echo"),
                    ops: ops.clone(),
                },
            ));
        }
    }
    v
}

fn files_seeds(out: &mut Vec<Seed>) {
    let k = KeyPair::from_seed(&[3; 32]);
    let hex: String = k
        .secret_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for (name, text) in [
        ("saved", format!("{hex}\n")),
        ("upper-padded", format!("  {}\r\n", hex.to_uppercase())),
        ("bad-digit", format!("{}g", &hex[..63])),
        ("short", hex[..62].to_string()),
        ("public", k.public().to_string()),
    ] {
        out.push(Seed {
            target: "key_file",
            name: name.into(),
            bytes: text.into_bytes(),
        });
    }
    let dir = laxnet_sim::scenario::default_dir();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("the scenario directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    for p in names {
        out.push(Seed {
            target: "scenario",
            name: p.file_stem().unwrap().to_string_lossy().into_owned(),
            bytes: std::fs::read(&p).expect("read"),
        });
    }
    let faults = vec![
        Fault::Latency {
            min_ms: 1,
            max_ms: 8,
        },
        Fault::Partition {
            at_ms: 100,
            dur_ms: 300,
            a: "server0".into(),
            b: "client1".into(),
        },
        Fault::Hold {
            at_ms: 50,
            dur_ms: 80,
            a: "server0".into(),
            b: "client0".into(),
        },
        Fault::Spike {
            at_ms: 10,
            dur_ms: 20,
            max_ms: 90,
        },
        Fault::Crash {
            at_ms: 500,
            down_ms: 100,
            host: "server0".into(),
        },
        Fault::Io {
            t_us: 1,
            stream: 2,
            dir: Dir::Read,
            op: 3,
            act: IoAct::Short { n: 5 },
        },
        Fault::Io {
            t_us: 2,
            stream: 2,
            dir: Dir::Write,
            op: 4,
            act: IoAct::Stall { us: 5000 },
        },
        Fault::Io {
            t_us: 3,
            stream: 1,
            dir: Dir::Read,
            op: 9,
            act: IoAct::Reset,
        },
        Fault::Ct {
            t_us: 4,
            stream: 3,
            record: 0,
            act: CtAct::Corrupt { bit: 77 },
        },
        Fault::Ct {
            t_us: 5,
            stream: 4,
            record: 2,
            act: CtAct::Splice { pick: 1 },
        },
        Fault::Ct {
            t_us: 6,
            stream: 5,
            record: 1,
            act: CtAct::Reorder,
        },
    ];
    let s = Schedule {
        scenario: "steady-echo".into(),
        seed: 42,
        plant: None,
        faults,
    };
    out.push(Seed {
        target: "schedule",
        name: "every-kind".into(),
        bytes: serde_json::to_string_pretty(&s).expect("json").into_bytes(),
    });
}

/// Every seed.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    frames_seeds(&mut out);
    decode_seeds(&mut out);
    handshake_seeds(&mut out);
    records_seeds(&mut out);
    for (name, input) in session_inputs() {
        out.push(Seed {
            target: "session",
            name,
            bytes: session_bytes(&input),
        });
    }
    files_seeds(&mut out);
    sim_seeds(&mut out);
    out
}

/// Pseudo-random bytes (a fixed xorshift stream): inputs of the `sim` target, which maps any
/// bytes into a valid case.
pub fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The first xorshift input whose case has a fault of each of `kinds` (`Fault::kind`
/// prefixes) and, if `encrypted`, runs "bits-hpke".
pub fn sim_input_with(kinds: &[&str], encrypted: bool) -> Vec<u8> {
    (1..2000u64)
        .map(|s| xorshift_bytes(s, 600))
        .find(|d| {
            let c = laxnet_sim::fuzz::Case::new(d, None);
            c.scenario.protocol.encrypted() == encrypted
                && kinds
                    .iter()
                    .all(|k| c.schedule.faults.iter().any(|f| f.kind().starts_with(k)))
        })
        .expect("an input with these faults")
}

fn sim_seeds(out: &mut Vec<Seed>) {
    let mut add = |name: &str, bytes: Vec<u8>| {
        out.push(Seed {
            target: "sim",
            name: name.into(),
            bytes,
        })
    };
    // All zeros: one server, one client, "bits", no faults.
    add("quiet", vec![0; 64]);
    add(
        "network-and-sockets",
        sim_input_with(&["partition", "crash", "io-"], false),
    );
    add("records", sim_input_with(&["ct-", "hold"], true));
    add("spikes-hpke", sim_input_with(&["spike", "io-"], true));
}
