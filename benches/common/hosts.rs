//! "Hosts" on this one machine for ensemble benches: one network namespace per member,
//! each with its own IP on a shared bridge, so that members talk over a real (virtual)
//! link rather than loopback, and each can be pinned to CPUs.
//!
//! Owns the namespaces, the bridge and the veth pairs it makes, and removes all of them on
//! drop (deleting a namespace deletes its end of the veth pair, and so the pair). It starts
//! no process itself: [`Hosts::command`] wraps one in `ip netns exec` (and `taskset`),
//! which both exec, so the child's PID is the program's and the caller stops it by PID.
//!
//! Layout: bridge `zb<pid>br` holds 10.<a>.<b>.254/24 in this (the root) namespace, where
//! the load generator runs; host `i` is namespace `zb<pid>-h<i>` with `lo` up and
//! `zb<pid>p<i>` at 10.<a>.<b>.<i+1>/24, its peer `zb<pid>h<i>` enslaved to the bridge. A
//! delay, where the kernel has `sch_netem`, is a netem qdisc on both ends of every veth
//! (so a round trip between two members crosses it four times); where it has not, the
//! hosts run without one and [`Hosts::describe`] says so.

#![allow(dead_code)]

use std::process::Command;

pub struct Hosts {
    tag: String,
    bridge: String,
    namespaces: Vec<String>,
    ips: Vec<String>,
    delay: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, "ip"];
    all.extend_from_slice(args);
    ip(&all)
}

fn netem(ns: Option<&str>, dev: &str, delay_us: u64) -> Result<(), String> {
    let delay = format!("{delay_us}us");
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "tc"]);
            c
        }
        None => Command::new("tc"),
    };
    let out = cmd
        .args(["qdisc", "add", "dev", dev, "root", "netem", "delay", &delay])
        .output()
        .map_err(|e| format!("tc: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Hosts {
    /// Makes `n` hosts, with `delay_us` of one-way delay on each veth end where netem
    /// exists (0: none asked). Fails (having removed what it made) where namespaces cannot
    /// be made, e.g. without CAP_NET_ADMIN.
    pub fn create(n: usize, delay_us: u64) -> Result<Hosts, String> {
        let pid = std::process::id();
        let tag = format!("zb{pid}");
        let (a, b) = (100 + pid % 100, (pid / 100) % 250);
        let mut h = Hosts {
            bridge: format!("{tag}br"),
            tag,
            namespaces: Vec::new(),
            ips: Vec::new(),
            delay: String::new(),
        };
        ip(&["link", "add", &h.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.{a}.{b}.254/24"),
            "dev",
            &h.bridge,
        ])?;
        ip(&["link", "set", &h.bridge, "up"])?;
        let mut netem_error = None;
        for i in 0..n {
            let ns = format!("{}-h{i}", h.tag);
            ip(&["netns", "add", &ns])?;
            h.namespaces.push(ns.clone());
            let (outer, inner) = (format!("{}h{i}", h.tag), format!("{}p{i}", h.tag));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "master", &h.bridge, "up"])?;
            let addr = format!("10.{a}.{b}.{}", i + 1);
            in_ns(&ns, &["addr", "add", &format!("{addr}/24"), "dev", &inner])?;
            in_ns(&ns, &["link", "set", &inner, "up"])?;
            in_ns(&ns, &["link", "set", "lo", "up"])?;
            h.ips.push(addr);
            if delay_us > 0 && netem_error.is_none() {
                if let Err(e) =
                    netem(None, &outer, delay_us).and_then(|_| netem(Some(&ns), &inner, delay_us))
                {
                    netem_error = Some(e);
                }
            }
        }
        h.delay = match (delay_us, netem_error) {
            (0, _) => "no added delay".into(),
            (_, None) => format!("netem {delay_us} us on each veth end"),
            (_, Some(e)) => {
                // Some ends may have taken a qdisc before one failed: take them all off so
                // that every link is alike.
                for (i, ns) in h.namespaces.iter().enumerate() {
                    let _ = Command::new("tc")
                        .args(["qdisc", "del", "dev", &format!("{}h{i}", h.tag), "root"])
                        .output();
                    let _ = Command::new("ip")
                        .args(["netns", "exec", ns, "tc", "qdisc", "del", "dev"])
                        .arg(format!("{}p{i}", h.tag))
                        .arg("root")
                        .output();
                }
                format!("no added delay: this kernel has no netem ({e})")
            }
        };
        Ok(h)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> &str {
        &self.ips[i]
    }

    /// `program` to run on host `i`, pinned to `cpus` (a taskset list such as "0" or
    /// "0,1") when given.
    pub fn command(&self, i: usize, program: &str, cpus: Option<&str>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespaces[i]]);
        if let Some(cpus) = cpus {
            c.args(["taskset", "-c", cpus]);
        }
        c.arg(program);
        c
    }

    /// One line for a report: how many hosts, how they are linked, the delay.
    pub fn describe(&self) -> String {
        format!(
            "{} network namespaces on one bridge (veth pairs), the load generator in the \
             root namespace; {}",
            self.namespaces.len(),
            self.delay
        )
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
