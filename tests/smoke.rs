//! A first end-to-end check on real loopback sockets.
#![allow(clippy::disallowed_methods)] // test code may use Tokio timers directly
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{Config, Event, Received, Service, SessionEvent, Topic};

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
struct Ping {
    seq: u32,
}
laxnet::message!(Ping = 1);

#[tokio::test]
async fn echo_over_loopback() {
    let server = Service::new(Config::default());
    server
        .sub(Topic::message::<Ping>("bits"), |m: &Received<Ping>| {
            m.session.send(&m.msg).unwrap();
        })
        .unwrap();
    let acc = server.accept("127.0.0.1:0", "bits").await.unwrap();
    let client = Service::new(Config::default());
    let mut inbox = client.inbox();
    inbox
        .messages::<Ping>("bits")
        .unwrap()
        .sessions("bits")
        .unwrap();
    let s = client
        .connect(&acc.local_addr().to_string(), "bits")
        .await
        .unwrap();
    for seq in 0..100 {
        s.send(&Ping { seq }).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 100 {
        match tokio::time::timeout(Duration::from_secs(5), inbox.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Message(m) => got.push(m.downcast::<Ping>().unwrap().msg.seq),
            Event::Session(SessionEvent::Opened { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    s.close();
    match tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await
        .unwrap()
        .unwrap()
    {
        Event::Session(SessionEvent::Closed { reason, .. }) => {
            assert_eq!(reason, laxnet::CloseReason::Local)
        }
        other => panic!("{other:?}"),
    }
    println!("{}", server.status());
    server.shutdown().await;
    client.shutdown().await;
}
