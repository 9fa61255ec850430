#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // examples may use Tokio directly

//! A chat room over loopback: one server, several clients, in one process.
//!
//! Clients join; once all are in, the server sends everyone `Start`. Each client then says a
//! few lines; the server relays every `Say` to all members as `Heard`. A client that has
//! heard every line leaves (closes its session). The server prints its status table and
//! shuts down. Exits 0 when every client heard every line.
//!
//! Run: `cargo run --example chat`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{
    Config, Event, Protocol, Received, Service, SessionEvent, SessionId, SessionRef, Topic,
};

/// Client → server: a line of chat.
#[derive(BorshSerialize, BorshDeserialize, Debug)]
struct Say {
    text: String,
}

/// Server → clients: a line someone said.
#[derive(BorshSerialize, BorshDeserialize, Debug)]
struct Heard {
    from: u32,
    text: String,
}

/// Server → clients: everyone is here, start talking.
#[derive(BorshSerialize, BorshDeserialize, Debug)]
struct Start {
    members: u32,
}

laxnet::message!(Say = 1, Heard = 2, Start = 3);

const CLIENTS: usize = 4;
const LINES: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // --- server: keeps the room's members and relays what they say -------------------
    let server = Service::new(Config::default());
    let members: Arc<Mutex<BTreeMap<SessionId, SessionRef>>> = Arc::default();
    {
        let members = members.clone();
        server.sub(Topic::sessions(Protocol::Bits), move |ev: &SessionEvent| {
            let mut m = members.lock().unwrap();
            match ev {
                SessionEvent::Opened { session, .. } => {
                    m.insert(session.id(), session.clone());
                    println!(
                        "server: {} joined from {}",
                        session.id(),
                        session.peer_addr()
                    );
                    if m.len() == CLIENTS {
                        let start = Start {
                            members: m.len() as u32,
                        };
                        for member in m.values() {
                            let _ = member.send(&start);
                        }
                    }
                }
                SessionEvent::Closed { id, reason } => {
                    m.remove(id);
                    println!("server: {id} left ({reason})");
                }
                _ => {}
            }
        })?;
    }
    {
        let members = members.clone();
        server.sub(
            Topic::message::<Say>(Protocol::Bits),
            move |m: &Received<Say>| {
                let heard = Heard {
                    from: m.session.id().get(),
                    text: m.msg.text.clone(),
                };
                for member in members.lock().unwrap().values() {
                    // A member that is closing just misses the line.
                    let _ = member.send(&heard);
                }
            },
        )?;
    }
    let listener = server.accept("127.0.0.1:0", Protocol::Bits).await?;
    let addr = listener.local_addr().to_string();
    println!("server: listening on {addr}");

    // --- clients: each on its own service, like separate processes --------------------
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move { client(n, &addr).await }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }

    println!("{}", server.status());
    server.shutdown().await;
    let expected = CLIENTS * CLIENTS * LINES;
    if total < expected {
        return Err(format!("clients heard {total} lines, expected at least {expected}").into());
    }
    println!("chat: every client heard all {} lines", CLIENTS * LINES);
    Ok(())
}

/// One member: join, wait for `Start`, say `LINES` lines, hear everyone's, leave.
async fn client(n: usize, addr: &str) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let svc = Service::new(Config::default());
    let mut inbox = svc.inbox();
    inbox
        .add(Topic::message::<Heard>(Protocol::Bits))?
        .add(Topic::message::<Start>(Protocol::Bits))?;
    let session = svc.connect(addr, Protocol::Bits).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut heard = 0usize;
    let mut speakers = std::collections::BTreeSet::new();
    while heard < CLIENTS * LINES {
        let Ok(Some(Event::Message(m))) = tokio::time::timeout_at(deadline, inbox.recv()).await
        else {
            return Err(format!("client {n}: timed out after hearing {heard} lines").into());
        };
        match m.downcast::<Start>() {
            Ok(start) => {
                println!("client {n}: {} members, talking", start.msg.members);
                for i in 0..LINES {
                    session.send(&Say {
                        text: format!("client {n} line {i}"),
                    })?;
                }
            }
            Err(m) => {
                if let Ok(h) = m.downcast::<Heard>() {
                    speakers.insert(h.msg.from);
                    heard += 1;
                }
            }
        }
    }
    println!(
        "client {n}: heard {heard} lines from {} speakers; leaving",
        speakers.len()
    );
    session.close();
    svc.shutdown().await;
    Ok(heard)
}
