//! Both sides of the handshake, with fixed keys and fixed randoms, so that valid transcripts
//! exist (the seed corpus holds them) and the fuzzer starts past the first checks.
//!
//! Server side, input: a configuration byte, the ClientHello's length byte and bytes, the
//! ClientFinished (32 bytes), then records from the client. Client side, input: a
//! configuration byte, the ServerHello (96 bytes), then records from the server. Checks
//! beyond "no panic": the length the server reads off the header agrees with what it
//! accepts; a handshake completes only on an honest transcript, byte for byte (no second
//! encoding of a key or of anything else is accepted); the two sides derive the same keys;
//! records after the handshake go through the record layer (see [`crate::records`]).

use std::sync::OnceLock;

use laxnet::fuzz_api::{
    CF_LEN, CH_HEADER, Cipher, ClientKeys, FRESH_LEN, KeyPair, Keys, SH_LEN, ServerKeys,
    client_finish, client_hello, server_finish, server_respond,
};

/// The application's context string of every fixture.
pub const CONTEXT: &[u8] = b"laxnet-fuzz";
/// The client's fresh entropy in every handshake.
pub const FRESH_C: [u8; FRESH_LEN] = [0xC1; FRESH_LEN];
/// The server's fresh entropy in every handshake.
pub const FRESH_S: [u8; FRESH_LEN] = [0x5E; FRESH_LEN];

/// The server's key pair.
pub fn server_key() -> KeyPair {
    KeyPair::from_seed(&[1; 32])
}

/// The client's key pair (when it authenticates).
pub fn client_key() -> KeyPair {
    KeyPair::from_seed(&[2; 32])
}

/// One configuration of both sides.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The client presents its key.
    pub client_auth: bool,
    /// The server allows only the client's key.
    pub allow_list: bool,
    /// The cipher the client proposes (the server accepts `Null` only when it is its own).
    pub cipher: Cipher,
}

/// The configurations, picked by the input's first byte (modulo their number).
pub const SETUPS: [Setup; 4] = [
    Setup {
        client_auth: false,
        allow_list: false,
        cipher: Cipher::ChaCha20Poly1305,
    },
    Setup {
        client_auth: true,
        allow_list: false,
        cipher: Cipher::Aes128Gcm,
    },
    Setup {
        client_auth: true,
        allow_list: true,
        cipher: Cipher::ChaCha20Poly1305,
    },
    Setup {
        client_auth: false,
        allow_list: false,
        cipher: Cipher::Null,
    },
];

/// Both sides of one setup, and the honest transcript between them.
pub struct Fixture {
    /// The setup.
    pub setup: Setup,
    /// The client's prepared keys.
    pub client: ClientKeys,
    /// The server's prepared keys.
    pub server: ServerKeys,
    /// The honest ClientHello.
    pub hello: Vec<u8>,
    /// The honest ServerHello.
    pub sh: [u8; SH_LEN],
    /// The honest ClientFinished.
    pub cf: [u8; CF_LEN],
    /// The keys both sides derive.
    pub keys: Keys,
}

fn build(setup: Setup) -> Fixture {
    let (server_kp, client_kp) = (server_key(), client_key());
    let identity = setup.client_auth.then_some(&client_kp);
    let client = ClientKeys::new(&server_kp.public(), identity, CONTEXT);
    let allowed = [client_kp.public()];
    let server = ServerKeys::new(
        &server_kp,
        setup.allow_list.then_some(&allowed[..]),
        CONTEXT,
        setup.cipher == Cipher::Null,
    );
    let (cp, hello) = client_hello(&FRESH_C, setup.cipher, &client).expect("hello");
    let (sp, sh) = server_respond(&FRESH_S, &server, &hello).expect("honest hello");
    let (ck, cf) = client_finish(cp, &client, &sh).expect("honest server");
    let sk = server_finish(sp, &cf).expect("honest finished");
    assert!(same_keys(&ck, &sk));
    Fixture {
        setup,
        client,
        server,
        hello,
        sh,
        cf,
        keys: sk,
    }
}

/// The fixture of every setup (built once per process).
pub fn fixtures() -> &'static [Fixture] {
    static F: OnceLock<Vec<Fixture>> = OnceLock::new();
    F.get_or_init(|| SETUPS.iter().map(|s| build(*s)).collect())
}

/// The record keys and cipher are the same (the peer keys differ by side).
fn same_keys(a: &Keys, b: &Keys) -> bool {
    a.cipher == b.cipher && a.c2s == b.c2s && a.s2c == b.s2c
}

/// The server side: every client message.
pub fn server(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let fx = &fixtures()[usize::from(sel) % SETUPS.len()];
    let Some((&len, rest)) = rest.split_first() else {
        return;
    };
    let hello = &rest[..usize::from(len).min(rest.len())];
    let rest = &rest[hello.len()..];
    // What the server reads off the stream: the header, then the length it announces.
    let announced = hello
        .first_chunk::<CH_HEADER>()
        .map(|h| fx.server.hello_len(h));
    let answer = server_respond(&FRESH_S, &fx.server, hello);
    if answer.is_ok() {
        assert!(
            matches!(announced, Some(Ok(n)) if n == hello.len()),
            "accepted a hello whose header announces {announced:?}, length {}",
            hello.len()
        );
    }
    let Ok((pending, _sh)) = answer else {
        return;
    };
    let Some((cf, rest)) = rest.split_first_chunk::<CF_LEN>() else {
        return;
    };
    let Ok(keys) = server_finish(pending, cf) else {
        return;
    };
    // Completed: only an honest client's transcript does that (some setup's client, of a
    // server configured like this one).
    let honest = fixtures()
        .iter()
        .find(|f| f.hello == hello && f.cf == *cf)
        .unwrap_or_else(|| panic!("handshake completed on a forged transcript"));
    assert!(
        same_keys(&keys, &honest.keys),
        "other keys than the honest client's"
    );
    crate::records::open_all(&keys, false, rest);
}

/// The client side: every server message.
pub fn client(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let fx = &fixtures()[usize::from(sel) % SETUPS.len()];
    let Some((sh, rest)) = rest.split_first_chunk::<SH_LEN>() else {
        return;
    };
    let (pending, hello) = client_hello(&FRESH_C, fx.setup.cipher, &fx.client).expect("hello");
    assert_eq!(
        hello, fx.hello,
        "the client's hello is a function of its inputs"
    );
    let Ok((keys, cf)) = client_finish(pending, &fx.client, sh) else {
        return;
    };
    assert!(sh == &fx.sh, "handshake completed on a forged ServerHello");
    assert_eq!(cf, fx.cf);
    assert!(
        same_keys(&keys, &fx.keys),
        "the client derived other keys than the server"
    );
    crate::records::open_all(&keys, true, rest);
}
