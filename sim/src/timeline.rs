//! The per-session timeline of a run: as text (for `replay`) and as a self-contained HTML/SVG
//! picture (`replay --timeline FILE.html`): a lane per host and per session, with messages,
//! faults, `close()` calls, `Closed` (reason) and destroy marks.

use std::fmt::Write as _;

use crate::log::{Ev, fmt_ev, fmt_id};
use crate::state::State;

fn ms(us: u64) -> String {
    format!("{:.3}ms", us as f64 / 1000.0)
}

/// One text block per session: its lifecycle and traffic counts.
pub fn text(st: &State) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "per-session timeline ({} sessions):",
        st.sessions.len()
    );
    // Which log entries belong to which session (host, inc, id, time window).
    for (idx, s) in st.sessions.iter().enumerate() {
        let host = &st.hosts[s.host as usize].name;
        let peer = s
            .stream
            .and_then(|x| st.streams[x as usize].peer)
            .and_then(|p| st.streams[p as usize].sess)
            .map(|p| {
                let p = &st.sessions[p];
                format!(
                    "{}/{} {}",
                    st.hosts[p.host as usize].name,
                    p.inc,
                    fmt_id(p.id)
                )
            })
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{host}/{} {} ({}; stream {}; peer {peer}): open {}  sent {}  received {}  {}{}",
            s.inc,
            fmt_id(s.id),
            if s.connected { "connected" } else { "accepted" },
            s.stream.map_or("?".into(), |x| x.to_string()),
            ms(s.opened_us),
            s.sent,
            s.recv_next,
            s.close_called_us
                .map_or(String::new(), |t| format!("close() {}  ", ms(t))),
            match (&s.reason, s.closed_us) {
                (Some(r), Some(t)) => format!("closed+destroyed {} ({r})", ms(t)),
                _ => "NEVER CLOSED".into(),
            }
        );
        let faults: Vec<String> = st
            .log
            .iter()
            .filter_map(|e| match &e.ev {
                Ev::Io { stream, act } if Some(*stream) == s.stream => {
                    Some(format!("{} {act:?}", ms(e.t_us)))
                }
                _ => None,
            })
            .collect();
        if !faults.is_empty() {
            let shown: Vec<&String> = faults.iter().take(8).collect();
            let _ = writeln!(
                out,
                "    socket faults ({}): {}{}",
                faults.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if faults.len() > 8 { ", ..." } else { "" }
            );
        }
        for e in &st.log {
            let line = match &e.ev {
                Ev::Ct {
                    stream,
                    record,
                    act,
                } if Some(*stream) == s.stream => {
                    format!("{act:?} on the record {record} it sent")
                }
                Ev::CtRead { stream, from } if Some(*stream) == s.stream => {
                    format!("read the record spoiled by stream {from}")
                }
                _ => continue,
            };
            let _ = writeln!(out, "    ciphertext fault at {}: {line}", ms(e.t_us));
        }
        for v in st.violations.iter().filter(|v| v.sess == Some(idx)) {
            let _ = writeln!(out, "    VIOLATION at {}: {}", ms(v.t_us), v.what);
        }
    }
    let net: Vec<String> = st
        .log
        .iter()
        .filter(|e| matches!(e.ev, Ev::Net { .. } | Ev::Crash | Ev::Start { .. }))
        .map(|e| st.fmt_entry(e))
        .collect();
    if !net.is_empty() {
        let _ = writeln!(out, "hosts and network:");
        for l in net {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Sessions drawn at most (the rest are listed as omitted).
const MAX_LANES: usize = 400;

/// A self-contained HTML page with an SVG timeline.
pub fn html(st: &State, title: &str) -> String {
    let end_us = st.log.last().map_or(1, |e| e.t_us).max(1);
    let width = 1400.0_f64;
    let left = 230.0_f64;
    let x = |t: u64| left + (t as f64 / end_us as f64) * (width - left - 10.0);
    let lane_h = 14.0_f64;
    let mut y = 30.0_f64;
    let mut body = String::new();
    // Host lanes.
    let mut host_y = Vec::new();
    for (h, host) in st.hosts.iter().enumerate() {
        host_y.push(y);
        let _ = write!(
            body,
            r##"<text x="4" y="{:.1}" class="host">{}</text><line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" class="hostlane"/>"##,
            y + 4.0,
            esc(&host.name),
            y,
            width - 10.0,
            y
        );
        for e in st.log.iter().filter(|e| e.host as usize == h) {
            match &e.ev {
                Ev::Crash => {
                    let _ = write!(
                        body,
                        r##"<rect x="{:.1}" y="{:.1}" width="3" height="10" class="crash"><title>{} crash</title></rect>"##,
                        x(e.t_us),
                        y - 5.0,
                        ms(e.t_us)
                    );
                }
                Ev::Start { inc } => {
                    let _ = write!(
                        body,
                        r##"<circle cx="{:.1}" cy="{:.1}" r="3" class="start"><title>{} start, incarnation {inc}</title></circle>"##,
                        x(e.t_us),
                        y,
                        ms(e.t_us)
                    );
                }
                Ev::Net { what, arg } => {
                    let _ = write!(
                        body,
                        r##"<rect x="{:.1}" y="{:.1}" width="2" height="10" class="net"><title>{} {what} {arg}</title></rect>"##,
                        x(e.t_us),
                        y - 5.0,
                        ms(e.t_us)
                    );
                }
                _ => {}
            }
        }
        y += lane_h + 4.0;
    }
    // Session lanes, in opening order.
    let mut lane_of = std::collections::BTreeMap::new();
    for (idx, s) in st.sessions.iter().enumerate().take(MAX_LANES) {
        lane_of.insert(idx, y);
        let end = s.closed_us.unwrap_or(end_us);
        let class = match &s.reason {
            Some(r) if r.is_clean() => "clean",
            Some(_) => "abort",
            None => "open",
        };
        let _ = write!(
            body,
            r##"<text x="4" y="{:.1}" class="sess">{}/{} {}</text><line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="lane {class}"><title>{}/{} {} open {} closed {} {}</title></line>"##,
            y + 4.0,
            esc(&st.hosts[s.host as usize].name),
            s.inc,
            fmt_id(s.id),
            x(s.opened_us),
            x(end),
            esc(&st.hosts[s.host as usize].name),
            s.inc,
            fmt_id(s.id),
            ms(s.opened_us),
            s.closed_us.map_or("never".into(), ms),
            esc(&s.reason.as_ref().map_or(String::new(), |r| r.to_string())),
        );
        if let Some(t) = s.close_called_us {
            let _ = write!(
                body,
                r##"<path d="M{:.1},{:.1} l4,-6 l-8,0 z" class="closecall"><title>{} close()</title></path>"##,
                x(t),
                y - 1.0,
                ms(t)
            );
        }
        if let (Some(t), Some(r)) = (s.closed_us, &s.reason) {
            let _ = write!(
                body,
                r##"<g class="closed {class}"><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/><title>{} Closed + destroyed: {}</title></g>"##,
                x(t) - 4.0,
                y - 4.0,
                x(t) + 4.0,
                y + 4.0,
                x(t) - 4.0,
                y + 4.0,
                x(t) + 4.0,
                y - 4.0,
                ms(t),
                esc(&r.to_string())
            );
        }
        y += lane_h;
    }
    // Marks per session: sends, receives, faults, violations.
    let mut by_key = std::collections::BTreeMap::new();
    for (idx, s) in st.sessions.iter().enumerate().take(MAX_LANES) {
        by_key.insert((s.host, s.inc, s.id), idx);
    }
    let mut stream_lane = std::collections::BTreeMap::new();
    for (idx, s) in st.sessions.iter().enumerate().take(MAX_LANES) {
        if let Some(x) = s.stream {
            stream_lane.insert(x, idx);
        }
    }
    for e in &st.log {
        let (idx, class) = match &e.ev {
            Ev::Send { id, .. } => (by_key.get(&(e.host, e.inc, *id)), "send"),
            Ev::Recv { id, .. } => (by_key.get(&(e.host, e.inc, *id)), "recv"),
            Ev::SendErr { id, .. } => (by_key.get(&(e.host, e.inc, *id)), "senderr"),
            Ev::Io { stream, .. } | Ev::Ct { stream, .. } | Ev::CtRead { stream, .. } => {
                (stream_lane.get(stream), "fault")
            }
            Ev::Violation { .. } => continue,
            _ => continue,
        };
        let Some(idx) = idx else { continue };
        let Some(ly) = lane_of.get(idx) else { continue };
        let dy = match class {
            "send" => -5.0,
            "recv" => 1.0,
            _ => -2.0,
        };
        let _ = write!(
            body,
            r##"<rect x="{:.1}" y="{:.1}" width="1" height="4" class="{class}"><title>{} {}</title></rect>"##,
            x(e.t_us),
            ly + dy,
            ms(e.t_us),
            esc(&fmt_ev(&e.ev))
        );
    }
    for v in &st.violations {
        let vy = v
            .sess
            .and_then(|i| lane_of.get(&i).copied())
            .or_else(|| v.host.map(|h| host_y[h as usize]))
            .unwrap_or(20.0);
        let _ = write!(
            body,
            r##"<circle cx="{:.1}" cy="{vy:.1}" r="5" class="violation"><title>{} VIOLATION: {}</title></circle>"##,
            x(v.t_us),
            ms(v.t_us),
            esc(&v.what)
        );
    }
    // Time axis.
    let mut axis = String::new();
    let step = (end_us / 10).max(1);
    let mut t = 0;
    while t <= end_us {
        let _ = write!(
            axis,
            r##"<line x1="{:.1}" y1="18" x2="{:.1}" y2="{:.1}" class="grid"/><text x="{:.1}" y="14" class="axis">{}</text>"##,
            x(t),
            x(t),
            y,
            x(t) + 2.0,
            ms(t)
        );
        t += step;
    }
    let omitted = st.sessions.len().saturating_sub(MAX_LANES);
    let violations: String = st
        .violations
        .iter()
        .map(|v| format!("<li>{}: {}</li>", ms(v.t_us), esc(&v.what)))
        .collect();
    format!(
        r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; }}
text {{ font-size: 10px; font-family: monospace; }}
.host {{ font-weight: bold; }}
.hostlane {{ stroke: #333; stroke-width: 2; }}
.lane {{ stroke-width: 4; }}
.lane.clean {{ stroke: #9ecae1; }} .lane.abort {{ stroke: #fdae6b; }} .lane.open {{ stroke: #ccc; }}
.closed line {{ stroke-width: 2; }} .closed.clean line {{ stroke: #3182bd; }} .closed.abort line {{ stroke: #e6550d; }}
.closecall {{ fill: #756bb1; }}
.send {{ fill: #31a354; }} .recv {{ fill: #2b8cbe; }} .senderr {{ fill: #e7298a; }} .fault {{ fill: #d62728; }}
.crash {{ fill: #000; }} .start {{ fill: #31a354; }} .net {{ fill: #9467bd; }}
.violation {{ fill: none; stroke: red; stroke-width: 2; }}
.grid {{ stroke: #eee; }} .axis {{ fill: #666; }}
</style></head><body>
<h3>{title}</h3>
<p>Lanes: hosts (crash = black bar, start = green dot, network faults = purple), then one lane per session
(blue = clean close, orange = abortive; purple triangle = close() called; X = Closed and destroyed).
Marks: green = send, blue = receive, pink = failed send, red = socket fault, red ring = violation. Hover for details.
{}</p>
<ul>{violations}</ul>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{:.0}">{axis}{body}</svg>
</body></html>
"##,
        if omitted > 0 {
            format!("{omitted} later sessions omitted.")
        } else {
            String::new()
        },
        y + 20.0
    )
}
