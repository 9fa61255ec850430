//! A room server on laxnet, grown from the chat sample (`examples/chat.rs`): clients join
//! named rooms, leave them, and say lines that the server broadcasts to every member of the
//! room (the speaker too). A member's memberships are dropped when its session closes, for
//! whatever reason; a client whose session is lost reconnects and joins its rooms again.
//!
//! Joining a room runs an access check first (here a stand-in that takes a few milliseconds,
//! as a lookup in a database would): the join completes in a task of its own, after the
//! session may already have closed. That is where the bug behind the `planted-bug` feature
//! lives (see [`RoomServer`]), and what the simulation test in `tests/sim.rs` finds.
//!
//! The code is runtime-agnostic: it runs on real sockets (`Service::new`) and, unchanged,
//! inside laxsim (`laxnet_sim::Ctx::service`).
// Application code, not the library: it spawns tasks and takes time from tokio, which inside
// the simulator is the simulated host's (virtual) runtime.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{
    AcceptError, Acceptor, Event, Protocol, Received, Service, SessionEvent, SessionId, SessionRef,
    SubscribeError, Topic,
};

/// Client → server: join `room`.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The room.
    pub room: String,
}

/// Client → server: leave `room`.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq, Eq)]
pub struct Leave {
    /// The room.
    pub room: String,
}

/// Client → server: say `text` in `room` (ignored unless the speaker is a member).
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq, Eq)]
pub struct Say {
    /// The room.
    pub room: String,
    /// What was said.
    pub text: String,
}

/// Server → client: the join of `room` went through; it has `members` members now.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The room.
    pub room: String,
    /// Members after the join.
    pub members: u32,
}

/// Server → members of a room: `from` (a session id on the server) said `text` in `room`.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// The room.
    pub room: String,
    /// The speaker's session on the server.
    pub from: u32,
    /// What was said.
    pub text: String,
}

laxnet::message!(Join = 1, Leave = 2, Say = 3, Joined = 4, Heard = 5);

/// The protocol the room server speaks.
pub const PROTOCOL: Protocol = Protocol::Bits;

/// How long the access check of a join takes.
pub const ACCESS_CHECK: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Member {
    sref: Option<SessionRef>,
    rooms: BTreeSet<String>,
}

#[derive(Default)]
struct Rooms {
    /// Room → its members.
    rooms: BTreeMap<String, BTreeSet<SessionId>>,
    /// Open sessions → the rooms they are in.
    members: BTreeMap<SessionId, Member>,
    /// Memberships dropped because a session closed.
    dropped_on_close: u64,
}

impl Rooms {
    fn drop_member(&mut self, id: SessionId) {
        let Some(m) = self.members.remove(&id) else {
            return;
        };
        for room in m.rooms {
            self.dropped_on_close += 1;
            self.leave(id, &room);
        }
    }

    fn leave(&mut self, id: SessionId, room: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.remove(&id);
            if r.is_empty() {
                self.rooms.remove(room);
            }
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.rooms.remove(room);
        }
    }
}

/// A running room server: a handle on its state, for status and checks.
#[derive(Clone)]
pub struct RoomServer {
    state: Arc<Mutex<Rooms>>,
}

fn lock(m: &Mutex<Rooms>) -> MutexGuard<'_, Rooms> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RoomServer {
    /// Serves rooms on `svc`, listening on `addr`. Keep the returned acceptor for as long as
    /// the server should accept.
    pub async fn start(svc: &Service, addr: &str) -> Result<(RoomServer, Acceptor), StartError> {
        let server = RoomServer {
            state: Arc::default(),
        };
        let st = server.state.clone();
        svc.sub(
            Topic::sessions(PROTOCOL),
            move |ev: &SessionEvent| match ev {
                SessionEvent::Opened { session, .. } => {
                    lock(&st).members.insert(
                        session.id(),
                        Member {
                            sref: Some(session.clone()),
                            rooms: BTreeSet::new(),
                        },
                    );
                }
                SessionEvent::Closed { id, .. } => lock(&st).drop_member(*id),
                _ => {}
            },
        )?;
        let st = server.state.clone();
        svc.sub(
            Topic::message::<Join>(PROTOCOL),
            move |m: &Received<Join>| {
                // The access check takes a while: the join completes in a task of its own.
                let st = st.clone();
                let (session, room) = (m.session.clone(), m.msg.room.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(ACCESS_CHECK).await;
                    join(&st, &session, room);
                });
            },
        )?;
        let st = server.state.clone();
        svc.sub(
            Topic::message::<Leave>(PROTOCOL),
            move |m: &Received<Leave>| {
                lock(&st).leave(m.session.id(), &m.msg.room);
            },
        )?;
        let st = server.state.clone();
        svc.sub(Topic::message::<Say>(PROTOCOL), move |m: &Received<Say>| {
            let st = lock(&st);
            let from = m.session.id();
            let Some(members) = st.rooms.get(&m.msg.room) else {
                return;
            };
            if !members.contains(&from) {
                return;
            }
            let heard = Heard {
                room: m.msg.room.clone(),
                from: from.get(),
                text: m.msg.text.clone(),
            };
            for id in members {
                if let Some(sref) = st.members.get(id).and_then(|m| m.sref.as_ref()) {
                    // A member that is closing, or too slow to read, misses the line.
                    let _ = sref.send(&heard);
                }
            }
        })?;
        let acceptor = svc.accept(addr, PROTOCOL).await?;
        Ok((server, acceptor))
    }

    /// The members of `room`, as session ids on the server.
    pub fn members(&self, room: &str) -> Vec<SessionId> {
        lock(&self.state)
            .rooms
            .get(room)
            .map_or_else(Vec::new, |r| r.iter().copied().collect())
    }

    /// Rooms with at least one member.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.state).rooms.keys().cloned().collect()
    }

    /// Memberships dropped so far because their session closed.
    pub fn dropped_on_close(&self) -> u64 {
        lock(&self.state).dropped_on_close
    }

    /// The server's own invariant: every member of a room is an open session that knows it
    /// is in that room, and every room a session knows of lists it. On failure, the room and
    /// the session that break it.
    pub fn check(&self) -> Result<(), (String, SessionId)> {
        let st = lock(&self.state);
        for (room, members) in &st.rooms {
            for id in members {
                match st.members.get(id) {
                    None => {
                        return Err((
                            format!("{id} is a member of room {room:?} but its session is gone"),
                            *id,
                        ));
                    }
                    Some(m) if !m.rooms.contains(room) => {
                        return Err((
                            format!("{id} is listed in room {room:?} but does not know it"),
                            *id,
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        for (id, m) in &st.members {
            for room in &m.rooms {
                if !st.rooms.get(room).is_some_and(|r| r.contains(id)) {
                    return Err((
                        format!("{id} thinks it is in room {room:?}, which does not list it"),
                        *id,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Completes a join after its access check.
fn join(st: &Mutex<Rooms>, session: &SessionRef, room: String) {
    let id = session.id();
    let mut st = lock(st);
    #[cfg(feature = "planted-bug")]
    {
        // The bug: the room's list is updated whether or not the session is still a member
        // (it may have closed during the access check, and its Closed already cleaned up).
        st.rooms.entry(room.clone()).or_default().insert(id);
        let Some(m) = st.members.get_mut(&id) else {
            return;
        };
        m.rooms.insert(room.clone());
    }
    #[cfg(not(feature = "planted-bug"))]
    {
        // The session may have closed during the access check: then its Closed has run and
        // it must not come back.
        let Some(m) = st.members.get_mut(&id) else {
            return;
        };
        m.rooms.insert(room.clone());
        st.rooms.entry(room.clone()).or_default().insert(id);
    }
    let members = st.rooms.get(&room).map_or(0, |r| r.len() as u32);
    drop(st);
    let _ = session.send(&Joined { room, members });
}

/// Why the server did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A subscription failed.
    Subscribe(SubscribeError),
    /// Listening failed.
    Accept(AcceptError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Subscribe(e) => write!(f, "subscribe: {e}"),
            StartError::Accept(e) => write!(f, "accept: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<SubscribeError> for StartError {
    fn from(e: SubscribeError) -> Self {
        StartError::Subscribe(e)
    }
}

impl From<AcceptError> for StartError {
    fn from(e: AcceptError) -> Self {
        StartError::Accept(e)
    }
}

/// What a client did ([`talk`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Talk {
    /// It heard every line it said, in the room it said it.
    pub done: bool,
    /// Sessions it opened.
    pub sessions: u32,
    /// Sessions it lost (closed under it) and replaced.
    pub reconnects: u32,
    /// Its own lines it heard back.
    pub heard_own: u32,
    /// Lines of others it heard.
    pub heard_others: u32,
    /// Rooms it left on purpose.
    pub left: u32,
}

/// Why a client gave up.
#[derive(Debug)]
#[non_exhaustive]
pub enum TalkError {
    /// A subscription failed.
    Subscribe(SubscribeError),
    /// The service shut down under it.
    ServiceGone,
    /// The server broadcast a line of a room this session never joined to it.
    NotAMember {
        /// The room.
        room: String,
        /// The line.
        text: String,
    },
}

impl std::fmt::Display for TalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TalkError::Subscribe(e) => write!(f, "subscribe: {e}"),
            TalkError::ServiceGone => write!(f, "the service shut down"),
            TalkError::NotAMember { room, text } => {
                write!(
                    f,
                    "heard {text:?} in room {room:?}, which this session never joined"
                )
            }
        }
    }
}

impl std::error::Error for TalkError {}

impl From<SubscribeError> for TalkError {
    fn from(e: SubscribeError) -> Self {
        TalkError::Subscribe(e)
    }
}

/// A member: connects to the room server at `addr`, joins `rooms`, then says `lines` lines
/// (tagged `name`) one at a time in the last of them, each once it heard the previous one
/// back. After its first line is heard it leaves the other rooms. A session lost under it
/// (or silent for `patience`) is replaced by a new one that joins again and goes on, up to
/// `attempts` sessions. Closes its session before it returns.
pub async fn talk(
    svc: &Service,
    addr: &str,
    name: &str,
    rooms: &[String],
    lines: u32,
    attempts: u32,
    patience: Duration,
) -> Result<Talk, TalkError> {
    let mut inbox = svc.inbox();
    inbox
        .add(Topic::sessions(PROTOCOL))?
        .add(Topic::message::<Joined>(PROTOCOL))?
        .add(Topic::message::<Heard>(PROTOCOL))?;
    let Some(speak_in) = rooms.last().cloned() else {
        return Ok(Talk::default());
    };
    let mut t = Talk::default();
    for _ in 0..attempts {
        let session = match svc.connect(addr, PROTOCOL).await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        t.sessions += 1;
        for room in rooms {
            let _ = session.send(&Join { room: room.clone() });
        }
        let mut joined: BTreeSet<String> = BTreeSet::new();
        let mut ever_joined: BTreeSet<String> = BTreeSet::new();
        let mut said = false;
        let lost = loop {
            if joined.contains(&speak_in) && !said {
                said = true;
                let _ = session.send(&Say {
                    room: speak_in.clone(),
                    text: format!("{name}#{}", t.heard_own),
                });
            }
            let ev = match tokio::time::timeout(patience, inbox.recv()).await {
                Err(_) => break true,
                Ok(None) => return Err(TalkError::ServiceGone),
                Ok(Some(ev)) => ev,
            };
            let m = match ev {
                Event::Session(SessionEvent::Closed { id, .. }) if id == session.id() => {
                    break true;
                }
                Event::Message(m) if m.session.id() == session.id() => m,
                _ => continue,
            };
            let m = match m.downcast::<Joined>() {
                Ok(j) => {
                    joined.insert(j.msg.room.clone());
                    ever_joined.insert(j.msg.room);
                    continue;
                }
                Err(m) => m,
            };
            let Ok(h) = m.downcast::<Heard>() else {
                continue;
            };
            if !ever_joined.contains(&h.msg.room) {
                session.close();
                return Err(TalkError::NotAMember {
                    room: h.msg.room,
                    text: h.msg.text,
                });
            }
            if h.msg.text != format!("{name}#{}", t.heard_own) || h.msg.room != speak_in {
                t.heard_others += 1;
                continue;
            }
            t.heard_own += 1;
            said = false;
            if t.heard_own == 1 {
                for room in rooms.iter().filter(|r| **r != speak_in) {
                    let _ = session.send(&Leave { room: room.clone() });
                    joined.remove(room);
                    t.left += 1;
                }
            }
            if t.heard_own >= lines {
                t.done = true;
                break false;
            }
        };
        session.close();
        if !lost {
            break;
        }
        t.reconnects += 1;
    }
    Ok(t)
}
