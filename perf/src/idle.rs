//! `--idle-sessions N`: the user-space memory (live heap bytes, from the counting allocator in
//! [`crate::alloc`]) and RSS per idle server session. The client ends live in a child process
//! (`perf --idle-client ADDR N`, [`idle_client`]).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use laxnet::{Protocol, Received, Service, Topic};

use crate::alloc::{ALLOCS, COUNTING, LIVE_BYTES};
use crate::baselines::Msg;
use crate::cli::Opts;
use crate::report::Json;
use crate::services::Lax;

/// Raises `RLIMIT_NOFILE` to `want` if allowed (else as far as the hard limit); returns the
/// soft limit now in force.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls with a valid pointer to a local.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < want {
            let new = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max.max(want),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) != 0 {
                // Not allowed to raise the hard limit: take what we can.
                let soft = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
            }
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Opens `n` plaintext sessions to a laxnet server (configured by `lax`, without encryption)
/// and reports what each idle one costs the server's process.
pub(crate) fn idle_sessions(o: &Opts, lax: &Lax, n: usize) {
    let limit = raise_nofile(n as u64 + 1024);
    assert!(
        limit >= n as u64 + 64,
        "RLIMIT_NOFILE is {limit}: {n} sessions need about {}",
        n + 64
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = lax.config();
    let (acceptor, server) = rt.block_on(async move {
        c.max_sessions = c.max_sessions.max(n + 16);
        let server = Service::new(c);
        server
            .sub(
                Topic::message::<Msg>(Protocol::Bits),
                |_m: &Received<Msg>| {},
            )
            .expect("sub");
        let acc = server
            .accept("127.0.0.1:0", Protocol::Bits)
            .await
            .expect("accept");
        (acc, server)
    });
    let addr = acceptor.local_addr();
    // Warm up the process (first connection, runtime internals), then start counting.
    {
        let warm = std::net::TcpStream::connect(addr).expect("connect");
        wait_live(&rt, &server, 1);
        drop(warm);
        wait_live(&rt, &server, 0);
    }
    COUNTING.store(true, Relaxed);
    let live0 = LIVE_BYTES.load(Relaxed);
    let allocs0 = ALLOCS.load(Relaxed);
    let rss0 = rss_bytes();
    let pool0 = server.status().pool;
    let t = Instant::now();
    // The client ends live in a child process (plain blocking sockets), so that this process
    // holds only the server's sessions and its descriptor limit need not cover both ends.
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--idle-client", &addr.to_string(), &n.to_string()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the client process");
    wait_live(&rt, &server, n);
    let open_time = t.elapsed();
    // Let every session task run its first poll and go idle.
    std::thread::sleep(Duration::from_millis(300));
    let status = server.status();
    let live1 = LIVE_BYTES.load(Relaxed);
    let allocs1 = ALLOCS.load(Relaxed);
    let rss1 = rss_bytes();
    let per_session = (live1 as f64 - live0 as f64) / n as f64;
    let per_session_rss = (rss1 as f64 - rss0 as f64) / n as f64;
    let pool_in_use = (status.pool.in_use_bytes as f64 - pool0.in_use_bytes as f64) / n as f64;
    let allocs_per_session = (allocs1 - allocs0) as f64 / n as f64;
    println!("idle sessions: {n} (opened in {open_time:.2?}; RLIMIT_NOFILE {limit})");
    println!("  heap bytes live per idle session   {per_session:>10.0} B");
    println!("    of which pooled buffers in use   {pool_in_use:>10.0} B");
    println!("  allocations per session open       {allocs_per_session:>10.1}");
    println!("  RSS growth per idle session        {per_session_rss:>10.0} B");
    println!("  pool: {:?}", status.pool);
    drop(child.stdin.take()); // the child exits when its stdin closes
    child.wait().expect("client process");
    wait_live(&rt, &server, 0);
    COUNTING.store(false, Relaxed);
    rt.block_on(server.shutdown());
    if o.json {
        let mut j = Json::default();
        j.str("mode", "idle_sessions");
        j.num("sessions", n as f64);
        j.num("bytes_per_idle_session", per_session);
        j.num("pool_bytes_per_idle_session", pool_in_use);
        j.num("allocs_per_session_open", allocs_per_session);
        j.num("rss_bytes_per_idle_session", per_session_rss);
        println!("{}", j.render());
    }
}

/// The child process of `--idle-sessions`: opens `n` connections to `addr`, then holds them
/// until its standard input closes.
pub(crate) fn idle_client(addr: &str, n: usize) {
    raise_nofile(n as u64 + 64);
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        if i % 128 == 127 {
            // Let the server drain its accept backlog (an overflowing backlog drops SYNs,
            // which are retried only after a second).
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut tries = 0;
        let s = loop {
            match std::net::TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("connect {i}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("connect {i}: {e}"),
            }
        };
        socks.push(s);
    }
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    drop(socks);
}

/// Waits (up to a minute) until `server` has exactly `n` live sessions.
fn wait_live(rt: &tokio::runtime::Runtime, server: &Service, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = server.status();
        if st.live() == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} live sessions ({} live)",
            st.live()
        );
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
    }
}
