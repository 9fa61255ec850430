use super::*;

#[test]
fn close_reasons_have_a_kind_and_a_fault() {
    for (i, k) in CloseKind::ALL.into_iter().enumerate() {
        assert_eq!(k.index(), i, "{k}");
        let same = CloseKind::ALL.iter().filter(|o| o.name() == k.name());
        assert_eq!(same.count(), 1, "{k}");
    }
    let reasons = [
        CloseReason::Local,
        CloseReason::PeerClosed,
        CloseReason::Reset,
        CloseReason::Io(io::ErrorKind::Other),
        CloseReason::Protocol(ProtocolViolation::TruncatedFrame),
        CloseReason::Heartbeat,
        CloseReason::Idle,
        CloseReason::Shutdown,
        CloseReason::Panic,
        CloseReason::Crypto(CryptoError::Truncated),
        CloseReason::Aborted,
        CloseReason::Peer(PeerClose::new(CloseCode::Normal)),
        CloseReason::LingerExpired { unsent: 1 },
    ];
    let kinds: Vec<CloseKind> = reasons.iter().map(CloseReason::kind).collect();
    assert_eq!(kinds, CloseKind::ALL);
    let faults: Vec<Fault> = reasons.iter().map(CloseReason::fault).collect();
    use Fault::*;
    #[rustfmt::skip]
    let expected = [Local, Peer, Network, Network, Peer, Timeout, Timeout, Local, Local, Peer, Local, Peer, Timeout];
    assert_eq!(faults, expected);
    // A clean ending names the side that chose it.
    for r in reasons.iter().filter(|r| r.is_clean()) {
        assert!(matches!(r.fault(), Peer | Local), "{r}");
    }
    let limit = CloseReason::Crypto(CryptoError::CounterExhausted);
    assert_eq!(limit.fault(), Local, "this side's configured usage limit");
    let peer = |c| CloseReason::Peer(PeerClose::new(c));
    assert!(peer(CloseCode::Shutdown).is_clean());
    assert!(!peer(CloseCode::Heartbeat).is_clean());
    assert_eq!(peer(CloseCode::Heartbeat).fault(), Timeout);
    assert_eq!(peer(CloseCode::Protocol).fault(), Local);
    assert!(!CloseReason::LingerExpired { unsent: 1 }.is_clean());
}

#[test]
fn close_codes_round_trip_and_unknown_ones_are_kept() {
    for b in 0..=u8::MAX {
        assert_eq!(CloseCode::from_u8(b).to_u8(), b);
    }
    assert_eq!(CloseCode::from_u8(200), CloseCode::Unknown(200));
    assert_eq!(Refusal::from(CloseCode::Full), Refusal::Full);
    let text = CloseReason::Peer(PeerClose {
        code: CloseCode::Normal,
        detail: 0,
        app_code: 7,
        text: "bye".into(),
    })
    .to_string();
    assert_eq!(
        text,
        "the peer closed: closed by its application (application code 7: \"bye\")"
    );
}
