//! The command line: every flag, its default, and the value ([`Opts`]) every mode takes.
//!
//! Hand-written rather than clap: the flags, the `--help` line and the messages of a bad
//! argument (a panic naming the flag) are what scripts and `docs/performance.md` rely on.

/// How the two ends of a loopback run are placed on runtimes and threads.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Layout {
    /// One multi-thread runtime with 2 workers holding both ends.
    Mt2,
    /// Two current-thread runtimes on separate OS threads (server on one, client on the other).
    TwoCt,
    /// One current-thread runtime holding both ends (one core).
    OneCt,
}

impl Layout {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::Mt2 => "mt2",
            Layout::TwoCt => "2xct",
            Layout::OneCt => "1ct",
        }
    }
}

/// What a bulk sender does when the send queue is full.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Backoff {
    /// `SessionRef::ready().await` (the library's back-pressure; the default).
    Ready,
    /// `tokio::task::yield_now()` and retry.
    Yield,
    /// Sleep 1 ms and retry.
    Sleep,
}

/// Everything the command line sets.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Opts {
    /// `--compare`: run the baselines too, interleaved.
    pub(crate) compare: bool,
    /// `--json`: print every figure as one JSON object on the last line.
    pub(crate) json: bool,
    /// `--conns 1,64`: connection counts of the loopback runs.
    pub(crate) conns: Vec<usize>,
    /// `--layout mt2|2xct|1ct`.
    pub(crate) layout: Layout,
    /// `--msgs N`: one-way messages per run (all connections together).
    pub(crate) msgs: u64,
    /// `--rts N`: ping-pong round trips per connection (default by connection count).
    pub(crate) rts: Option<u64>,
    /// `--reps N`: timed repetitions (at least 1).
    pub(crate) reps: usize,
    /// `--only oneway|pingpong`.
    pub(crate) only: Option<String>,
    /// `--idle-sessions N`: the memory mode.
    pub(crate) idle_sessions: Option<usize>,
    /// `--sim`: the turmoil mode.
    pub(crate) sim: bool,
    /// `--read-buffer BYTES`: `Config::read_buffer` of the laxnet services.
    pub(crate) read_buffer: Option<usize>,
    /// `--read-buffer-max BYTES`: `Config::read_buffer_max` of every laxnet service (0: the
    /// default).
    pub(crate) read_buffer_max: Option<usize>,
    /// `--send-queue-limit BYTES`: `Config::send_queue_limit` of both ends (0: the default).
    pub(crate) send_queue_limit: Option<usize>,
    /// `--backoff ready|yield|sleep`: what the bulk sender does on `QueueFull`.
    pub(crate) backoff: Backoff,
    /// `--encrypted`: the loopback runs use `bits-hpke`.
    pub(crate) encrypted: bool,
    /// `--handshakes N`: the connect-rate mode.
    pub(crate) handshakes: Option<u64>,
    /// `--ciphers`: the cipher comparison mode.
    pub(crate) ciphers: bool,
    /// `--client-auth`: encrypted laxnet clients present a key the server allows (the raw
    /// baselines stay as they are).
    pub(crate) client_auth: bool,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            compare: false,
            json: false,
            conns: vec![1, 64],
            layout: Layout::Mt2,
            msgs: 5_000_000,
            rts: None,
            reps: 5,
            only: None,
            idle_sessions: None,
            sim: false,
            read_buffer: None,
            read_buffer_max: None,
            send_queue_limit: None,
            backoff: Backoff::Ready,
            encrypted: false,
            handshakes: None,
            ciphers: false,
            client_auth: false,
        }
    }
}

/// A byte count where 0 means "the library's default".
fn bytes_or_default(n: usize) -> Option<usize> {
    (n != 0).then_some(n)
}

impl Opts {
    /// Parses the arguments (without the program name). Panics with a message that names the
    /// flag on a bad or unknown argument; prints the usage and exits on `-h`/`--help`.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Opts {
        let mut o = Opts::default();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
            match a.as_str() {
                "--compare" => o.compare = true,
                "--json" => o.json = true,
                "--sim" => o.sim = true,
                "--encrypted" => o.encrypted = true,
                "--ciphers" => o.ciphers = true,
                "--client-auth" => o.client_auth = true,
                "--handshakes" => o.handshakes = Some(val().parse().expect("--handshakes N")),
                "--conns" => {
                    o.conns = val()
                        .split(',')
                        .map(|s| s.parse().expect("--conns 1,64"))
                        .collect()
                }
                "--layout" => {
                    o.layout = match val().as_str() {
                        "mt2" => Layout::Mt2,
                        "2xct" => Layout::TwoCt,
                        "1ct" => Layout::OneCt,
                        other => panic!("unknown layout {other} (mt2 | 2xct | 1ct)"),
                    }
                }
                "--msgs" => o.msgs = val().parse().expect("--msgs N"),
                "--rts" => o.rts = Some(val().parse().expect("--rts N")),
                "--reps" => o.reps = val().parse().expect("--reps N"),
                "--only" => o.only = Some(val()),
                "--idle-sessions" => {
                    o.idle_sessions = Some(val().parse().expect("--idle-sessions N"))
                }
                "--backoff" => {
                    o.backoff = match val().as_str() {
                        "ready" => Backoff::Ready,
                        "yield" => Backoff::Yield,
                        "sleep" => Backoff::Sleep,
                        other => panic!("unknown backoff {other} (ready | yield | sleep)"),
                    }
                }
                "--read-buffer" => {
                    o.read_buffer = Some(val().parse().expect("--read-buffer BYTES"))
                }
                "--read-buffer-max" => {
                    o.read_buffer_max =
                        bytes_or_default(val().parse().expect("--read-buffer-max BYTES"))
                }
                "--send-queue-limit" => {
                    o.send_queue_limit =
                        bytes_or_default(val().parse().expect("--send-queue-limit BYTES"))
                }
                "-h" | "--help" => {
                    println!(
                        "perf [--compare] [--json] [--encrypted] [--conns 1,64] [--layout mt2|2xct|1ct] \
                         [--msgs N] [--rts N] [--reps N] [--only oneway|pingpong] [--read-buffer BYTES] [--read-buffer-max BYTES] \
                         [--send-queue-limit BYTES] [--backoff ready|yield|sleep] | --idle-sessions N | --handshakes N [--client-auth] | --sim"
                    );
                    std::process::exit(0);
                }
                other => panic!("unknown argument {other} (try --help)"),
            }
        }
        o.reps = o.reps.max(1);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Opts {
        Opts::parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults() {
        assert_eq!(parse(""), Opts::default());
    }

    #[test]
    fn every_flag() {
        let o = parse(
            "--compare --json --sim --encrypted --ciphers --handshakes 20 --client-auth --conns 1,8,64 \
             --layout 1ct --msgs 20000 --rts 300 --reps 0 --only pingpong --idle-sessions 200 \
             --backoff sleep --read-buffer 4096 --read-buffer-max 65536 --send-queue-limit 1024",
        );
        let want = Opts {
            compare: true,
            json: true,
            conns: vec![1, 8, 64],
            layout: Layout::OneCt,
            msgs: 20_000,
            rts: Some(300),
            reps: 1,
            only: Some("pingpong".into()),
            idle_sessions: Some(200),
            sim: true,
            read_buffer: Some(4096),
            read_buffer_max: Some(65536),
            send_queue_limit: Some(1024),
            backoff: Backoff::Sleep,
            encrypted: true,
            handshakes: Some(20),
            ciphers: true,
            client_auth: true,
        };
        assert_eq!(o, want);
        assert_eq!(parse("--layout 2xct --backoff yield").layout, Layout::TwoCt);
        assert_eq!(parse("--backoff yield").backoff, Backoff::Yield);
    }

    #[test]
    fn zero_bytes_mean_the_default() {
        let o = parse("--send-queue-limit 1024 --send-queue-limit 0 --read-buffer-max 0");
        assert_eq!((o.send_queue_limit, o.read_buffer_max), (None, None));
    }

    #[test]
    #[should_panic(expected = "unknown layout 4ct")]
    fn unknown_layout() {
        parse("--layout 4ct");
    }

    #[test]
    #[should_panic(expected = "--msgs needs a value")]
    fn missing_value() {
        parse("--msgs");
    }
}
