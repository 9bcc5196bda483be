//! Four-letter word answers, in Apache ZooKeeper 3.8's text formats (its
//! `server/command/*Command.java`), one function per word.

use super::{allowed, monitor, not_whitelisted, version_line, znode_count, ServerInfo};
use crate::engine::Engine;
use std::fmt::Write;

/// The answer to `word`; `arg` is `stmk`'s mask.
pub fn answer(word: &str, arg: Option<i64>, engine: &mut Engine, info: &ServerInfo) -> String {
    if !allowed(word, &info.whitelist) {
        return not_whitelisted(word);
    }
    match word {
        "ruok" => "imok".to_string(),
        "isro" => "rw".to_string(),
        "srvr" => srvr(engine, info, false),
        "stat" => srvr(engine, info, true),
        "mntr" => monitor::rows(engine, info)
            .iter()
            .map(|r| format!("{}\t{}\n", monitor::mntr_name(r), r.value.text()))
            .collect(),
        "envi" => envi(info),
        "conf" => conf(info),
        "cons" => cons(engine, info, false),
        "wchs" => format!(
            "{} connections watching {} paths\nTotal watches:{}\n",
            engine.tree.watches.by_session().len(),
            engine.tree.watches.paths(),
            engine.tree.watches.data_count()
        ),
        "wchc" => wchc(engine),
        "wchp" => wchp(engine),
        "dump" => dump(engine, info),
        "dirs" => format!(
            "datadir_size: {}\nlogdir_size: {}\n",
            info.dir_sizes.0, info.dir_sizes.1
        ),
        "srst" => {
            engine.stats.reset();
            "Server stats reset.\n".to_string()
        }
        "crst" => {
            engine.reset_connection_stats();
            "Connection stats reset.\n".to_string()
        }
        "gtmk" => engine.stats.trace_mask().to_string(),
        "stmk" => {
            let mask = arg.unwrap_or(engine.stats.trace_mask());
            engine.stats.trace_mask = Some(mask);
            mask.to_string()
        }
        "hash" => format!("{:x}: {}\n", engine.last_zxid(), engine.tree.digest),
        _ => String::new(),
    }
}

/// A number as Java prints a double (`9.1`, `0.0`), rounded to 4 decimals as ZooKeeper's
/// averages are.
pub fn java_double(x: f64) -> String {
    let r = (x * 10_000.0).round() / 10_000.0;
    if r.fract() == 0.0 {
        format!("{r:.1}")
    } else {
        format!("{r}")
    }
}

/// `conf`: the settings, each directory followed by its size, as ZooKeeper prints them.
fn conf(info: &ServerInfo) -> String {
    let mut s = String::new();
    for l in &info.conf_lines {
        let _ = writeln!(s, "{l}");
        if l.starts_with("dataDir=") {
            let _ = writeln!(s, "dataDirSize={}", info.dir_sizes.0);
        } else if l.starts_with("dataLogDir=") {
            let _ = writeln!(s, "dataLogSize={}", info.dir_sizes.1);
        }
    }
    if let Some(q) = &info.quorum {
        s.push_str("membership: \n");
        for (id, spec) in &q.members {
            let _ = writeln!(s, "server.{id}={spec}");
        }
    }
    s
}

/// `wchc`: each watching session and the paths it watches, then a blank line.
fn wchc(engine: &Engine) -> String {
    let mut s = String::new();
    for (session, paths) in engine.tree.watches.by_session() {
        let _ = writeln!(s, "0x{session:x}");
        for p in paths {
            let _ = writeln!(s, "\t{p}");
        }
    }
    s.push('\n');
    s
}

/// `wchp`: each watched path and the sessions watching it, then a blank line.
fn wchp(engine: &Engine) -> String {
    let mut s = String::new();
    for (p, sessions) in engine.tree.watches.by_path() {
        let _ = writeln!(s, "{p}");
        for session in sessions {
            let _ = writeln!(s, "\t0x{session:x}");
        }
    }
    s.push('\n');
    s
}

/// `dump`: session expiry sets (as ZooKeeper's SessionTrackerImpl prints them), then each
/// session's ephemeral nodes.
fn dump(engine: &Engine, info: &ServerInfo) -> String {
    let mut s = String::from("SessionTracker dump:\n");
    let sets = engine.sessions.expiry_sets();
    let now = engine.clock();
    let _ = writeln!(
        s,
        "Session Sets ({})/({}):",
        sets.len(),
        engine.sessions.len()
    );
    for (at, ids) in &sets {
        let wall = info.wall_ms.max(now.wall_ms) + (at - now.mono_ms);
        let _ = writeln!(s, "{} expire at {}:", ids.len(), java_date(wall));
        for id in ids {
            let _ = writeln!(s, "\t0x{id:x}");
        }
    }
    s.push_str("ephemeral nodes dump:\n");
    let owners = monitor::ephemerals_by_session(engine);
    let _ = writeln!(s, "Sessions with Ephemerals ({}):", owners.len());
    for (id, paths) in owners {
        let _ = writeln!(s, "0x{id:x}:");
        for p in paths {
            let _ = writeln!(s, "\t{p}");
        }
    }
    s
}

/// `cons` (`brief` = false) and `stat`'s client lines (`brief` = true), as ZooKeeper's
/// `ServerCnxn.dumpConnectionInfo`.
fn cons(engine: &Engine, info: &ServerInfo, brief: bool) -> String {
    let mut s = String::new();
    for c in engine.connection_views() {
        let addr = info.peers.get(&c.conn).cloned().unwrap_or(c.ip.clone());
        let st = &c.stats;
        let _ = write!(
            s,
            " /{addr}[1](queued={},recved={},sent={}",
            c.queued, st.received, st.sent
        );
        if let (false, Some(sid)) = (brief, c.session) {
            let _ = write!(
                s,
                ",sid=0x{sid:x},lop={},est={},to={}",
                st.last_op, st.established_ms, c.session_timeout
            );
            if st.last_cxid >= 0 {
                let _ = write!(s, ",lcxid=0x{:x}", st.last_cxid);
            }
            let _ = write!(
                s,
                ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
                st.last_zxid,
                st.last_response_ms,
                st.last_latency,
                st.min_latency,
                st.avg_latency(),
                st.max_latency
            );
        }
        s.push_str(")\n");
    }
    s.push('\n');
    s
}

fn srvr(engine: &Engine, info: &ServerInfo, with_clients: bool) -> String {
    let st = &engine.stats;
    let mut s = String::new();
    let _ = writeln!(s, "Zookeeper version: {}", version_line());
    if info.mode == "read-only" {
        s.push_str("READ-ONLY mode; serving only read-only clients\n");
    }
    if with_clients {
        s.push_str("Clients:\n");
        s.push_str(&cons(engine, info, true));
    }
    let _ = writeln!(
        s,
        "Latency min/avg/max: {}/{}/{}",
        st.latency_min_ms,
        java_double(st.avg_latency()),
        st.latency_max_ms
    );
    let _ = writeln!(s, "Received: {}", st.packets_received);
    let _ = writeln!(s, "Sent: {}", st.packets_sent);
    let _ = writeln!(s, "Connections: {}", engine.connection_count());
    let _ = writeln!(s, "Outstanding: {}", engine.outstanding());
    let _ = writeln!(s, "Zxid: 0x{:x}", engine.reported_zxid());
    let _ = writeln!(s, "Mode: {}", info.mode);
    let _ = writeln!(s, "Node count: {}", znode_count(engine));
    if info.mode == "leader" {
        let (last, min, max) = st.proposal_sizes();
        let _ = writeln!(s, "Proposal sizes last/min/max: {last}/{min}/{max}");
    }
    s
}

fn envi(info: &ServerInfo) -> String {
    let mut s = String::from("Environment:\n");
    for (k, v) in monitor::environment(info) {
        let _ = writeln!(s, "{k}={v}");
    }
    s
}

/// A wall-clock time as Java's `Date.toString()` prints it in UTC:
/// `Fri Nov 27 17:05:56 UTC 2026`.
pub fn java_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {y}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), by Howard Hinnant's civil-date algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_formats() {
        assert_eq!(java_date(1_795_799_145_633), "Fri Nov 27 17:05:45 UTC 2026");
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(9.1), "9.1");
        assert_eq!(java_double(7.916_666), "7.9167");
        assert_eq!(java_double(16.5), "16.5");
    }
}
